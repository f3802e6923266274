"""Many processes on one Redis: for each Redis layer kind, two uvicorn servers and a
``runworker`` process, started here on loopback, share the run's Redis (REDIS_URL,
with this run's key prefix) and a database. Clients are real WebSockets.

Both kinds' processes start together, and each kind's idle socket is opened at
start and checked by the last test, so the minute it must stay idle overlaps the
other tests instead of adding to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.utils.module_loading import import_string

from chat.services import WORKER_CHANNEL
from chat.tests.clients import ChatClient, chat_client
from realtime.channel_layers import channel_layers
from realtime.testing import report_figure
from realtime.testing.servers import LAYER_KINDS, AsgiServer, Worker, manage, running, server_env

pytestmark = pytest.mark.services("REDIS_URL")

# How long the idle socket must stay open and usable, in seconds.
IDLE_SECONDS = 60


def room(label: str) -> str:
    return f"{label}-{secrets.token_hex(4)}"


@dataclass
class Cluster:
    kind: str
    web1: AsgiServer
    web2: AsgiServer
    worker: Worker
    env: dict[str, str]
    idle: ChatClient
    idle_room: str
    idle_since: float


@pytest.fixture(scope="module")
def clusters(servers_database, tmp_path_factory) -> Iterator[dict[str, Cluster]]:
    """Per layer kind: two servers and a worker, plus a socket left idle from the start."""
    log_dir = tmp_path_factory.mktemp("cluster")
    trios = {}
    for kind in LAYER_KINDS:
        env = server_env(
            database_url=servers_database, redis_url=settings.REDIS_URL, layer_kind=kind
        )
        trios[kind] = (
            AsgiServer(f"{kind}-web1", env, log_dir),
            AsgiServer(f"{kind}-web2", env, log_dir),
            Worker(f"{kind}-worker", env, log_dir, (WORKER_CHANNEL,)),
        )
    with contextlib.ExitStack() as stack:
        stack.enter_context(running(*(process for trio in trios.values() for process in trio)))
        result = {}
        for kind, (web1, web2, worker) in trios.items():
            idle_room = room("idle")
            idle = stack.enter_context(chat_client(web1, idle_room))
            result[kind] = Cluster(
                kind, web1, web2, worker, web1.env, idle, idle_room, time.monotonic()
            )
        yield result


def send_jobs(kind: str, jobs: list[dict[str, Any]]) -> None:
    """Send jobs straight to the worker's channel, through a layer of the given kind."""
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]  # this run's
    config = channel_layers(redis_url=settings.REDIS_URL, kind=kind, prefix=prefix)["default"]
    layer = import_string(config["BACKEND"])(**config["CONFIG"])

    async def send() -> None:
        for job in jobs:
            await layer.send(WORKER_CHANNEL, job)
        # Close the connections in this loop (the Pub/Sub layer's flush only does that).
        await (layer.close_pools() if kind == "redis" else layer.flush())

    asyncio.run(send())


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_clients_on_two_servers_receive_each_others_messages(clusters, kind):
    cluster = clusters[kind]
    name = room("two-servers")
    with chat_client(cluster.web1, name) as ann, chat_client(cluster.web2, name) as bob:
        ann.post("from server one")
        first = [client.frame("message") for client in (ann, bob)]
        bob.post("from server two")
        second = [client.frame("message") for client in (ann, bob)]
    assert first[0] == first[1]
    assert first[0]["message"] == "from server one"
    assert second[0] == second[1]
    assert second[0]["message"] == "from server two"
    # Both servers stored into the one database: a newcomer sees both in its history.
    with chat_client(cluster.web2, name) as carol:
        assert [m["id"] for m in carol.history] == [first[0]["id"], second[0]["id"]]


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_the_worker_does_jobs_and_both_servers_hear_the_result(clusters, kind):
    cluster = clusters[kind]
    name = room("worker")
    with chat_client(cluster.web1, name) as ann, chat_client(cluster.web2, name) as bob:
        ann.post("buy spam now")
        posted = [client.frame("message") for client in (ann, bob)]
        moderated = [client.frame("moderated") for client in (ann, bob)]
    message_id = posted[0]["id"]
    assert posted[0] == posted[1]
    assert moderated == [{"type": "moderated", "id": message_id, "room": name}] * 2
    with chat_client(cluster.web2, name) as carol:
        assert message_id not in [m["id"] for m in carol.history]


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_a_job_right_after_failing_ones_is_still_done(clusters, kind):
    cluster = clusters[kind]
    name = room("failing-jobs")
    with chat_client(cluster.web1, name) as ann, chat_client(cluster.web2, name) as bob:
        # A message stored and delivered without queueing its job (moderation off for
        # this one command), so that the test sends the job itself.
        env = {**cluster.env, "CHAT_MODERATION_ENABLED": "false"}
        posted = manage(["chat_post", name, "cheap spam"], env)
        posted_id = re.search(r"Posted message (\d+)", posted)
        assert posted_id, posted
        message_id = int(posted_id[1])
        assert [client.frame("message")["id"] for client in (ann, bob)] == [message_id] * 2
        send_jobs(
            kind,
            [
                {"type": "chat.moderate", "message_id": "not a number"},  # the job raises
                {"type": "chat.no_such_job"},  # no handler for it
                {"type": "chat.moderate", "message_id": message_id},
            ],
        )
        moderated = [client.frame("moderated") for client in (ann, bob)]
    assert moderated == [{"type": "moderated", "id": message_id, "room": name}] * 2
    assert cluster.worker.exit_code is None, cluster.worker.log()
    assert "moderation job failed" in cluster.worker.log()


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_both_servers_are_ready_while_sockets_are_open(clusters, kind):
    cluster = clusters[kind]
    # The idle socket is open on web1; open one on web2 as well.
    with chat_client(cluster.web2, room("ready")):
        for server in (cluster.web1, cluster.web2):
            assert server.get("/healthz") == (200, {"status": "ok"})
            status, body = server.get("/readyz")
            assert (status, body["checks"]) == (200, {"database": "ok", "channel_layer": "ok"})


@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_an_idle_socket_stays_open_and_usable_for_a_minute(clusters, kind):
    cluster = clusters[kind]
    idle = cluster.idle
    # Nothing may arrive, and the socket must not close, until the minute is over.
    remaining = cluster.idle_since + IDLE_SECONDS - time.monotonic()
    if remaining > 0:
        with pytest.raises(TimeoutError):
            idle.frame(timeout=remaining)
    held = time.monotonic() - cluster.idle_since
    assert held >= IDLE_SECONDS
    # Still a member of its room across processes, both ways.
    with chat_client(cluster.web2, cluster.idle_room) as other:
        other.post("still there?")
        assert idle.frame("message")["message"] == "still there?"
        assert other.frame("message")["message"] == "still there?"
        idle.post("yes")
        assert other.frame("message")["message"] == "yes"
        assert idle.frame("message")["message"] == "yes"
    report_figure(f"idle socket ({kind}): open and usable after {held:.0f}s idle")
