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
    with_query,
)


def room(label: str) -> str:
    return f"{label}-{secrets.token_hex(4)}"


def since(start: float) -> str:
    return f"{time.monotonic() - start:.2f}s"


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

            # The worker: RedisChannelLayer's receive fails and runworker exits non-zero,
            # for its supervisor to restart (systemd Restart=on-failure, compose restart:
            # unless-stopped); the Pub/Sub layer's keeps reconnecting, and it stays up.
            if kind == "redis":
                code = worker.wait_exit(timeout=FRAME_TIMEOUT)
                assert code != 0
                observed.append(f"worker exited with {code} {since(stopped)} after the stop")

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
            if kind == "redis_pubsub":
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
            missed = [m["message"] for m in carol.resync(after=before["id"])]
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
            # The worker does the job: the one that stayed up, or the one its supervisor
            # restarts (the job waited in Redis meanwhile).
            if kind == "redis":
                worker.start()
                worker.wait_ready()
            assert carol.frame("moderated")["id"] == message["id"]
            # The Pub/Sub socket that stayed open receives again, and its own resync
            # finds what it missed.
            if kind == "redis_pubsub":
                assert bob.frame("message") == message
                assert bob.frame("moderated")["id"] == message["id"]
                assert [m["message"] for m in bob.resync(after=before["id"])] == expected
            assert web.exit_code is None
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
