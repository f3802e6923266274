"""Moderation is durable, on real processes: a server, the worker (``manage.py
runworker chat-worker``) and a private redis-server. The worker is killed in the
middle of a backlog and kept down while more messages are posted and their jobs are
gone from the layer (what its 60-second expiry does, done here at once): when it
is back, every message has been checked and none twice. The database holds the
work (``Message.moderated_at``); the layer's job is only a wake-up (docs/worker.md).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import sqlite3
import time
from collections import Counter

import pytest
import redis

from chat.services import WORKER_CHANNEL
from chat.tests.clients import ChatClient, chat_client
from realtime.testing import report_figure
from realtime.testing.servers import (
    LAYER_KINDS,
    AsgiServer,
    RedisServer,
    Worker,
    is_postgresql,
    postgres_connect,
    running,
    server_env,
    wait_until,
)

pytestmark = pytest.mark.services("REDIS_URL")

# Messages posted while the worker runs, then while it is down.
BEFORE_KILL = 200
WHILE_DOWN = 100
# Bounded wait for the worker to check the whole backlog after its restart.
CATCH_UP_TIMEOUT = 60.0
# A socket posts this fast without the rate limit refusing it.
FAST = {"WEBSOCKET_RATE_LIMIT_PER_SECOND": "10000", "WEBSOCKET_RATE_LIMIT_BURST": "10000"}


def post_many(
    client: ChatClient, texts: list[str], moderated: list[int], worker: Worker | None = None
) -> list[int]:
    """Post each text; the ids of the stored messages, in order (from the broadcast
    frames; the ids of moderation frames go to ``moderated``). With a worker: kill
    it at the first moderation frame, mid-backlog."""
    for text in texts:
        client.post(text)
    ids: list[int] = []
    while len(ids) < len(texts) or (worker is not None and worker.exit_code is None):
        frame = client.frame()
        if frame["type"] == "message":
            ids.append(frame["id"])
            continue
        moderated.append(frame["id"])
        if worker is not None and worker.popen is not None and worker.exit_code is None:
            worker.popen.kill()
            worker.wait_exit(timeout=10)
    return ids


def drain_moderated(
    client: ChatClient, moderated: list[int], until: set[int], timeout: float
) -> None:
    """Read moderation frames into ``moderated`` until every id of ``until`` is in,
    then for one more second (a duplicate would arrive right after)."""
    deadline = time.monotonic() + timeout
    while not until <= set(moderated):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"not moderated: {sorted(until - set(moderated))}"
        frame = client.frame(timeout=remaining)
        if frame["type"] == "moderated":
            moderated.append(frame["id"])
    with contextlib.suppress(TimeoutError):
        while True:
            frame = client.frame(timeout=1)
            if frame["type"] == "moderated":
                moderated.append(frame["id"])


ROOM_MESSAGES = (
    "SELECT COUNT(*) FROM chat_message JOIN chat_room ON chat_room.id = room_id "
    "WHERE chat_room.name = %s AND "
)
WAITING = ROOM_MESSAGES + "moderated_at IS NULL"
HIDDEN = ROOM_MESSAGES + "hidden"


def count_messages(database_url: str, room: str, query: str) -> int:
    """How many of the room's messages in the servers' database the query counts."""
    if is_postgresql(database_url):
        with postgres_connect(database_url) as connection:
            row = connection.execute(query, [room]).fetchone()
    else:
        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as connection:
            row = connection.execute(query.replace("%s", "?"), [room]).fetchone()
    assert row is not None
    return int(row[0])


def waiting_messages(database_url: str, room: str) -> int:
    return count_messages(database_url, room, WAITING)


def hidden_messages(database_url: str, room: str) -> int:
    return count_messages(database_url, room, HIDDEN)


def hidden_lines(worker: Worker) -> Counter[int]:
    """How often the worker's log says each message was hidden (every run of it)."""
    text = worker.log_path.read_text(errors="replace")
    return Counter(int(n) for n in re.findall(r"message (\d+) in \S+ hidden by moderation", text))


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_a_killed_worker_and_expired_jobs_lose_no_moderation(kind, servers_database, tmp_path):
    redis_server = RedisServer(tmp_path)
    with running(redis_server):
        env = server_env(
            database_url=servers_database, redis_url=redis_server.url, layer_kind=kind, **FAST
        )
        web = AsgiServer("web", env, tmp_path)
        worker = Worker("worker", env, tmp_path, (WORKER_CHANNEL,))
        name = f"backlog-{secrets.token_hex(4)}"
        moderated: list[int] = []
        with running(web, worker), chat_client(web, name) as ann:
            # Killed as soon as it has started on the backlog: the jobs it had taken
            # from Redis and not done die with it.
            post_many(ann, [f"spam {n}" for n in range(BEFORE_KILL)], moderated, worker=worker)
            killed_with = waiting_messages(servers_database, name)
            second = post_many(ann, [f"spam while down {n}" for n in range(WHILE_DOWN)], moderated)
            # The jobs of the messages posted meanwhile expire in the layer.
            client = redis.Redis.from_url(redis_server.url)
            try:
                expired = [key for key in client.keys("*") if WORKER_CHANNEL.encode() in key]
                if expired:
                    client.delete(*expired)
            finally:
                client.close()
            waiting = waiting_messages(servers_database, name)
            assert waiting >= WHILE_DOWN

            worker.start()
            worker.wait_ready()
            started = time.monotonic()
            wait_until(
                lambda: waiting_messages(servers_database, name) == 0,
                timeout=CATCH_UP_TIMEOUT,
                what="the backlog to be checked",
                log=worker.log,
            )
            caught_up = time.monotonic() - started
            assert hidden_messages(servers_database, name) == BEFORE_KILL + WHILE_DOWN
            # Announced to the room: all those the restarted worker checked. (One the
            # killed worker had hidden but not yet announced stays hidden: its room is
            # not told, docs/worker.md.)
            drain_moderated(ann, moderated, set(second), timeout=CATCH_UP_TIMEOUT)
        # None twice: no message announced or hidden twice.
        assert [n for n, seen in Counter(moderated).items() if seen > 1] == []
        logged = hidden_lines(worker)
        assert set(second) <= set(logged)
        assert max(logged.values()) == 1
    report_figure(
        f"moderation after a killed worker ({kind}): {BEFORE_KILL + WHILE_DOWN} messages, "
        f"killed with {killed_with} unchecked, {waiting} waiting after {WHILE_DOWN} "
        f"posted while down and their jobs expired; all checked {caught_up:.1f}s after the "
        "restart, none twice"
    )
