"""The per-user socket cap on real server processes sharing one Redis: it holds under
concurrent connects, its count falls back to 0 when the sockets close, and the
sockets of a server stopped (SIGTERM) or killed (SIGKILL) stop counting on their own
within the claims' lifetime (realtime/guards.py). Servers check every second here,
so a claim lasts 4 s."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time

import pytest
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from realtime.guards import CLAIM_LIFETIME_CHECKS, socket_count, user_count_key
from realtime.testing import report_figure
from realtime.testing.servers import (
    FRAME_TIMEOUT,
    AsgiServer,
    manage,
    running,
    server_env,
    wait_until,
)

pytestmark = pytest.mark.services("REDIS_URL")

CAP = 20
CHECK_SECONDS = 1.0
# The longest a dead process's sockets may still count, and some slack for a busy box.
BOUND = CHECK_SECONDS * CLAIM_LIFETIME_CHECKS + 3

SIGN_IN = """
from django.contrib.auth import get_user_model
from django.test import Client
user = get_user_model().objects.create_user({name!r}, password="correct horse battery")
client = Client()
client.force_login(user)
print("SIGNED-IN", user.pk, client.cookies["sessionid"].value)
"""


def sign_in(env: dict[str, str]) -> tuple[int, str]:
    """A new user in the servers' database, and a session cookie signing it in."""
    name = f"capped-{secrets.token_hex(4)}"
    output = manage(["shell", "-c", SIGN_IN.format(name=name)], env)
    line = next(line for line in output.splitlines() if line.startswith("SIGNED-IN "))
    _, user_id, session_key = line.split()
    return int(user_id), session_key


async def open_socket(server: AsgiServer, session_key: str) -> ClientConnection | None:
    """A chat socket as the user, once its history arrived; None if refused."""
    try:
        ws = await connect(
            server.ws_url("/ws/chat/capped/"),
            origin=server.origin,  # type: ignore[arg-type]
            additional_headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={session_key}"},
            open_timeout=FRAME_TIMEOUT,
            ping_interval=None,
        )
    except InvalidStatus:
        return None
    await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT)
    return ws


async def open_many(servers: list[AsgiServer], session_key: str, count: int) -> list:
    tries = [open_socket(servers[i % len(servers)], session_key) for i in range(count)]
    return [ws for ws in await asyncio.gather(*tries) if ws is not None]


async def close_all(sockets: list) -> None:
    await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in sockets)), FRAME_TIMEOUT)


@pytest.fixture
def loop():
    """One event loop for a test's client sockets, which belong to the loop that
    opened them."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def servers_env(servers_database: str) -> dict[str, str]:
    return server_env(
        database_url=servers_database,
        redis_url=settings.REDIS_URL,
        WEBSOCKET_MAX_SOCKETS_PER_USER=str(CAP),
        WEBSOCKET_SESSION_CHECK_SECONDS=str(CHECK_SECONDS),
    )


def test_concurrent_connects_open_exactly_the_cap_and_the_count_returns_to_0(
    servers_database, tmp_path, loop
):
    env = servers_env(servers_database)
    user_id, session_key = sign_in(env)
    with running(AsgiServer("web-a", env, tmp_path), AsgiServer("web-b", env, tmp_path)) as webs:
        opened = loop.run_until_complete(open_many(list(webs), session_key, 100))
        try:
            assert len(opened) == CAP
            assert socket_count(user_count_key(user_id)) == CAP
        finally:
            loop.run_until_complete(close_all(opened))
        wait_until(
            lambda: socket_count(user_count_key(user_id)) == 0,
            timeout=FRAME_TIMEOUT,
            what="the user's socket count to return to 0",
        )
        # Every slot is free again.
        again = loop.run_until_complete(open_many(list(webs), session_key, CAP))
        loop.run_until_complete(close_all(again))
        assert len(again) == CAP
    report_figure(
        f"socket cap: 100 concurrent connects as one user on 2 servers, {len(opened)} opened "
        f"(cap {CAP}); count 0 after they closed (before: 100 opened, count left high)"
    )


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_stopped_servers_sockets_stop_counting_within_the_bound(
    stop, servers_database, tmp_path, loop
):
    env = servers_env(servers_database)
    user_id, session_key = sign_in(env)
    doomed, other = AsgiServer("doomed", env, tmp_path), AsgiServer("other", env, tmp_path)
    with running(doomed, other):
        held = loop.run_until_complete(open_many([doomed], session_key, 10))
        try:
            assert len(held) == 10
            assert socket_count(user_count_key(user_id)) == 10
            assert doomed.popen is not None
            doomed.popen.send_signal(stop)
            start = time.monotonic()
            wait_until(
                lambda: socket_count(user_count_key(user_id)) == 0,
                timeout=BOUND,
                what=f"the count to fall to 0 after {stop.name}",
                log=doomed.log,
            )
            took = time.monotonic() - start
        finally:
            loop.run_until_complete(close_all(held))
        # The user has every slot again, on the server still running.
        again = loop.run_until_complete(open_many([other], session_key, CAP))
        loop.run_until_complete(close_all(again))
        assert len(again) == CAP
    report_figure(
        f"socket cap: 10 sockets held, {stop.name} to their server, count 0 after {took:.1f}s "
        f"(bound {BOUND:g}s; before: still 9 after SIGTERM)"
    )
