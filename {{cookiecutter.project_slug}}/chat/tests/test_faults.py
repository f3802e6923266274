"""Faults survived, on real processes: Redis stopped and restarted under live sockets
and a worker (a private redis-server, never the shared one), and database
connections killed under a live consumer. What each observes goes to the run's
"figures" section.
"""

from __future__ import annotations

import contextlib
import secrets
import time

import pytest
from django.conf import settings
from websockets.exceptions import InvalidStatus

from chat.services import WORKER_CHANNEL
from chat.tests.clients import chat_client
from chat.workers import RETRY_MAX_SECONDS
from realtime.closecodes import CLOSE_UNAVAILABLE
from realtime.testing import report_figure
from realtime.testing.servers import (
    FRAME_TIMEOUT,
    LAYER_KINDS,
    AsgiServer,
    RedisServer,
    Worker,
    is_postgresql,
    manage,
    postgres_connect,
    running,
    server_env,
    wait_until,
    with_query,
)


def room(label: str) -> str:
    return f"{label}-{secrets.token_hex(4)}"


def since(start: float) -> str:
    return f"{time.monotonic() - start:.2f}s"


# Seconds Redis stays down at least: past the worker's longest wait between two tries
# (RETRY_MAX_SECONDS), so that an outage of any length is the same to it.
OUTAGE_SECONDS = RETRY_MAX_SECONDS + 2


def moderated_ids(client, until: int, timeout: float = FRAME_TIMEOUT) -> set[int]:
    """The ids of the moderation frames the client receives until one for ``until``
    (other frames are skipped)."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while until not in seen:
        frame = client.frame(timeout=max(deadline - time.monotonic(), 0.01))
        if frame["type"] == "moderated":
            seen.add(frame["id"])
    return seen


def texts_after(client, after: int) -> list[str]:
    return [m["message"] for m in client.resync(after=after)]


@pytest.mark.services("REDIS_URL")
@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_a_redis_outage_is_survived(kind, servers_database, tmp_path):
    observed = []
    redis_server = RedisServer(tmp_path)
    with running(redis_server):
        env = server_env(database_url=servers_database, redis_url=redis_server.url, layer_kind=kind)
        web = AsgiServer("web", env, tmp_path)
        worker = Worker("worker", env, tmp_path, (WORKER_CHANNEL,))
        with running(web, worker), contextlib.ExitStack() as stack:
            name = room("outage")
            ann = stack.enter_context(chat_client(web, name))
            bob = stack.enter_context(chat_client(web, name))
            # The worker moderates one message first, so that its Redis connections were
            # in use before the outage (a restarted Redis leaves them dead).
            ann.post("before the outage: spam")
            before, _ = (client.frame("message") for client in (ann, bob))
            assert [client.frame("moderated")["id"] for client in (ann, bob)] == [before["id"]] * 2

            redis_server.stop()
            stopped = time.monotonic()

            # Sockets are closed with 4503 at once (RedisChannelLayer: their receive
            # fails), or keep waiting and are told when they act (the Pub/Sub layer
            # reconnects its subscription by itself, so an idle socket notices nothing).
            if kind == "redis":
                codes = [client.close_code(timeout=FRAME_TIMEOUT) for client in (ann, bob)]
                assert codes == [CLOSE_UNAVAILABLE] * 2
                observed.append(f"both sockets closed {CLOSE_UNAVAILABLE} after {since(stopped)}")
            else:
                with pytest.raises(TimeoutError):
                    bob.frame(timeout=1)
                posted = time.monotonic()
                ann.post("during the outage, from a socket")
                assert ann.close_code(timeout=FRAME_TIMEOUT) == CLOSE_UNAVAILABLE
                observed.append(
                    f"idle socket left open; a socket that posted closed {CLOSE_UNAVAILABLE} "
                    f"{since(posted)} after posting (its message stored)"
                )

            # The worker stays up whatever the layer does: RedisChannelLayer's receive
            # fails (Channels' runworker exited then), the Pub/Sub layer's reconnects.

            # The server answers and reports the fault.
            asked = time.monotonic()
            assert web.get("/healthz") == (200, {"status": "ok"})
            status, body = web.get("/readyz")
            assert (status, body["checks"]) == (503, {"database": "ok", "channel_layer": "fail"})
            observed.append(f"/healthz 200 and /readyz 503 within {since(asked)}")
            # A new socket is refused at the handshake (HTTP 403), not left hanging.
            with pytest.raises(InvalidStatus) as refused:
                stack.enter_context(chat_client(web, name))
            assert refused.value.response.status_code == 403
            observed.append("a new socket refused at the handshake (HTTP 403)")
            # A message stored while its delivery fails (posted from outside a consumer).
            output = manage(
                ["chat_post", name, "during the outage, from a command"], env, succeed=False
            )
            assert "ConnectionError" in output
            # One to moderate: stored, but its job never reached the layer.
            manage(["chat_post", name, "during the outage: spam"], env, succeed=False)
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
            assert worker.exit_code is None, worker.log()
            observed.append(f"worker still up {since(stopped)} into the outage")

            redis_server.start()
            redis_server.wait_ready()
            back = time.monotonic()

            # At the first try: ready, a new socket joins, the resync from the last
            # message seen before the outage returns every message stored since, and
            # delivery works.
            status, body = web.get("/readyz")
            assert (status, body["checks"]) == (200, {"database": "ok", "channel_layer": "ok"})
            carol = stack.enter_context(chat_client(web, name))
            # (The spam one is left out: the worker may have hidden it already.)
            missed = [text for text in texts_after(carol, before["id"]) if "spam" not in text]
            expected = ["during the outage, from a command"]
            if kind == "redis_pubsub":
                expected.insert(0, "during the outage, from a socket")
            assert missed == expected
            carol.post("after the outage: spam")
            message = carol.frame("message")
            observed.append(
                f"Redis back: /readyz 200, a new socket, its resync ({len(missed)} message(s) "
                f"stored during the outage) and a new message, all at the first try, "
                f"within {since(back)}"
            )
            # The worker that stayed up does the job, and the one of the message stored
            # during the outage (when the layer came back, or at this wake-up).
            moderated_ids(carol, until=message["id"])
            assert texts_after(carol, before["id"]) == expected
            observed.append("the message stored during the outage moderated once Redis was back")
            # The Pub/Sub socket that stayed open receives again, and its own resync
            # finds what it missed.
            if kind == "redis_pubsub":
                assert bob.frame("message") == message
                moderated_ids(bob, until=message["id"])
                assert texts_after(bob, before["id"]) == expected
            assert web.exit_code is None
            # The worker finds the layer back by itself (it tries with backoff).
            wait_until(
                lambda: "channel layer back after" in worker.log(tail=10**6),
                timeout=RETRY_MAX_SECONDS + FRAME_TIMEOUT,
                what="the worker to log that the layer is back",
                log=worker.log,
            )
            assert worker.exit_code is None
    # One line when the outage starts and one when it ends, and no traceback.
    log = worker.log(tail=10**6)
    lines = (log.count("channel layer unavailable"), log.count("channel layer back after"))
    assert lines == (1, 1), log
    assert "Traceback" not in log, log
    observed.append(f"the worker logged {lines[0]} line(s) at the outage, {lines[1]} after")
    report_figure(f"redis outage ({kind}): " + "; ".join(observed))


def terminate(database_url: str, application_name: str) -> int:
    """Kill every connection of the processes with this application name; how many."""
    with postgres_connect(database_url) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        ).fetchall()
    return len(rows)


@pytest.mark.services("DATABASE_URL")
def test_a_killed_database_connection_is_replaced_unnoticed(servers_database, tmp_path):
    if not is_postgresql(servers_database):
        pytest.skip("DATABASE_URL is not PostgreSQL, whose pg_terminate_backend this uses")
    application_name = f"web-{settings.TEST_RUN_ID}-{secrets.token_hex(4)}"
    database_url = with_query(servers_database, application_name=application_name)
    # One server: the in-memory layer is enough, and keeps this test about the database.
    env = server_env(database_url=database_url, redis_url="")
    with running(AsgiServer("web", env, tmp_path)) as (web,), chat_client(web, room("db")) as ann:
        ann.post("one")
        first = ann.frame("message")
        killed = terminate(servers_database, application_name)
        assert killed >= 1
        # The next message is stored and delivered: a message frame, not an error frame.
        ann.post("two")
        second = ann.frame("message")
        assert second["message"] == "two"
        assert [m["message"] for m in ann.resync(after=first["id"] - 1)] == ["one", "two"]
        # HTTP requests borrow from the same pool.
        killed_again = terminate(servers_database, application_name)
        assert web.get("/readyz")[0] == 200
    report_figure(
        f"database connection killed: {killed} then {killed_again} connection(s) terminated; "
        "the next message was stored and delivered, /readyz 200"
    )
