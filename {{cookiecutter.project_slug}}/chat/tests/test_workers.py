"""The moderation worker through ApplicationCommunicator on the real application's
"channel" route, as ``runworker chat-worker`` runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import channel_layers as layers_manager
from channels.layers import get_channel_layer
from channels.testing import ApplicationCommunicator
from channels.worker import Worker
from django.conf import settings
from django.core.management import get_commands, load_command_class
from django.db import connection
from django.test import override_settings

from chat import services, workers
from chat.models import Message
from chat.workers import ModerationWorker
from config.asgi import application
from realtime.channel_layers import channel_layers

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3
WORKER_SCOPE = {"type": "channel", "channel": services.WORKER_CHANNEL}


async def store(room_name: str, text: str) -> Message:
    room = await database_sync_to_async(services.room_get_or_create)(name=room_name)
    return await database_sync_to_async(services.message_create)(room=room, author=None, text=text)


async def run_jobs(*message_ids: int, done) -> None:
    """Send jobs to a worker instance and wait, bounded, until ``done()`` is true."""
    worker = ApplicationCommunicator(application, WORKER_SCOPE)
    loop = asyncio.get_running_loop()
    try:
        for message_id in message_ids:
            await worker.send_input({"type": "chat.moderate", "message_id": message_id})
        deadline = loop.time() + TIMEOUT
        while not await done():
            assert loop.time() < deadline, "the worker did not finish its jobs in time"
            await asyncio.sleep(0.02)
    finally:
        worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await worker.future


async def is_hidden(message: Message) -> bool:
    return (await Message.objects.aget(pk=message.pk)).hidden


async def wait_until_hidden(*messages: Message, what: str, running=None) -> None:
    """Wait, bounded, until every message is hidden (and the worker still runs)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not all([await is_hidden(message) for message in messages]):
        assert loop.time() < deadline, what
        assert running is None or not running.done(), running
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def worker_running(channel_layer, worker_class=ModerationWorker):
    """A worker on the moderation channel, as runworker runs it; its task."""
    worker = worker_class(application, [services.WORKER_CHANNEL], channel_layer)
    listening = asyncio.ensure_future(worker.handle())
    try:
        yield listening
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening


@override_settings(CHAT_BLOCKED_WORDS=["spam"])
async def test_a_blocked_message_is_hidden_and_the_room_told(channel_layer, make_communicator):
    ann = make_communicator("/ws/chat/lobby/")
    assert (await ann.connect(timeout=TIMEOUT))[0]
    await ann.receive_json_from(timeout=TIMEOUT)
    try:
        bad = await store("lobby", "buy SPAM now")
        good = await store("lobby", "spammy is fine, a whole word is not")
        sentinel = await store("lobby", "spam last")
        await run_jobs(bad.pk, good.pk, sentinel.pk, done=lambda: is_hidden(sentinel))
        frame = await ann.receive_json_from(timeout=TIMEOUT)
        assert frame == {"type": "moderated", "id": bad.pk, "room": "lobby"}
        after = await ann.receive_json_from(timeout=TIMEOUT)
        assert after == {"type": "moderated", "id": sentinel.pk, "room": "lobby"}
    finally:
        await ann.disconnect()
    assert (await Message.objects.aget(pk=bad.pk)).hidden
    assert not (await Message.objects.aget(pk=good.pk)).hidden


async def test_a_failing_job_is_logged_and_the_next_one_still_runs(channel_layer, caplog):
    first = await store("lobby", "spam one")
    second = await store("lobby", "spam two")
    real = services.messages_moderate_backlog
    calls = []

    def flaky(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(**kwargs)

    with (
        mock.patch.object(services, "messages_moderate_backlog", side_effect=flaky),
        caplog.at_level(logging.ERROR, logger="chat.workers"),
    ):
        await run_jobs(first.pk, second.pk, done=lambda: is_hidden(second))
    assert len(calls) == 2
    assert "moderation job failed" in caplog.text
    # The job after the failed one caught up with both messages from the database.
    assert (await Message.objects.aget(pk=first.pk)).hidden
    assert (await Message.objects.aget(pk=second.pk)).hidden


async def test_a_job_is_only_a_wake_up_the_database_holds_the_work(channel_layer):
    """Messages whose jobs never reached the worker (lost, expired, never sent) are
    checked on the next wake-up, oldest first, each once."""
    lost = [await store("lobby", f"spam {n}") for n in range(3)]
    clean = await store("lobby", "nothing to see")
    last = await store("lobby", "spam last")
    await run_jobs(last.pk, done=lambda: is_hidden(last))
    rows = [m async for m in Message.objects.order_by("id")]
    assert [m.hidden for m in rows] == [True, True, True, False, True]
    assert all(m.moderated_at is not None for m in rows)
    assert [m.pk for m in rows] == [*(m.pk for m in lost), clean.pk, last.pk]
    # Nothing is checked twice: a second pass finds nothing waiting.
    checked = await database_sync_to_async(services.messages_moderate_pending)()
    assert checked == (0, [])


async def test_a_backlog_is_checked_in_bounded_batches_each_message_once(channel_layer):
    messages = [await store("lobby", f"spam {n}") for n in range(7)]
    moderate = database_sync_to_async(services.messages_moderate_pending)
    first, hidden = await moderate(limit=3)
    assert (first, [m.pk for m in hidden]) == (3, [m.pk for m in messages[:3]])
    assert (await moderate(limit=3))[0] == 3
    assert (await moderate(limit=3))[0] == 1
    assert (await moderate(limit=3))[0] == 0
    # A message someone else has checked is not claimed again.
    moderate_one = database_sync_to_async(services.message_moderate)
    assert await moderate_one(message_id=messages[0].pk) is None
    assert await Message.objects.filter(hidden=True, moderated_at__isnull=False).acount() == 7


async def test_workers_at_once_claim_each_message_once(channel_layer):
    """Claims from several connections at once, as several workers (or a worker and
    its restarted self) make them: no message is checked twice."""
    if not connection.features.has_select_for_update_skip_locked:
        # SQLite's claims are single UPDATEs; the test database, in memory with a
        # shared cache, refuses concurrent writers outright instead of waiting.
        pytest.skip("concurrent claims need a database with SELECT ... SKIP LOCKED")
    messages = [await store("lobby", f"spam {n}") for n in range(40)]

    def claim() -> list[int]:
        try:
            return [m.pk for m in services.messages_moderate_pending(limit=7)[1]]
        finally:
            connection.close()  # this thread's own connection

    hidden: list[int] = []
    for _ in range(10):
        rounds = await asyncio.gather(
            *(sync_to_async(claim, thread_sensitive=False)() for _ in range(4))
        )
        hidden += [pk for batch in rounds for pk in batch]
        if not any(rounds):
            break
    assert sorted(hidden) == [m.pk for m in messages]


async def test_a_job_for_a_missing_message_does_nothing(channel_layer):
    sentinel = await store("lobby", "spam")
    await run_jobs(999_999, sentinel.pk, done=lambda: is_hidden(sentinel))
    assert await Message.objects.filter(hidden=True).acount() == 1


async def test_the_worker_catches_up_at_start_with_no_job_sent(channel_layer):
    """ModerationWorker, as runworker runs it: messages stored while it was down, whose
    jobs are gone from the layer, are checked as soon as it starts."""
    waiting = [await store("lobby", f"spam while down {n}") for n in range(3)]
    async with worker_running(channel_layer):
        await wait_until_hidden(*waiting, what="no catch-up at start")


async def test_the_worker_waits_out_a_failing_layer_and_logs_the_outage_once(channel_layer, caplog):
    """Channels' own worker ends the first time the layer's receive raises (the
    process exits); this one tries again with backoff, logs one line when the outage
    starts and one when it ends, and then catches up with what was posted meanwhile."""
    down = True
    tries = 0
    receive, group_send = channel_layer.receive, channel_layer.group_send

    async def flaky_receive(channel: str) -> dict:
        nonlocal tries
        tries += 1
        if down:
            raise ConnectionError("Redis is down")
        return await receive(channel)

    async def flaky_group_send(group: str, message: dict) -> None:
        nonlocal tries
        tries += 1
        if down:
            raise ConnectionError("Redis is down")
        await group_send(group, message)

    loop = asyncio.get_running_loop()
    with (
        mock.patch.object(channel_layer, "receive", side_effect=flaky_receive),
        mock.patch.object(channel_layer, "group_send", side_effect=flaky_group_send),
        mock.patch.object(workers, "RETRY_FIRST_SECONDS", 0.01),
        mock.patch.object(workers, "RETRY_MAX_SECONDS", 0.05),
        mock.patch.object(workers, "SWEEP_SECONDS", 3600),  # only the outage's end catches up
        caplog.at_level(logging.INFO, logger="chat.workers"),
    ):
        async with worker_running(channel_layer) as listening:
            deadline = loop.time() + TIMEOUT
            while tries < 6:
                assert loop.time() < deadline, "the worker did not try again"
                assert not listening.done(), listening
                await asyncio.sleep(0.01)
            message = await store("lobby", "spam posted during the outage")  # no job sent
            down = False
            await wait_until_hidden(message, what="no catch-up after the outage", running=listening)
    lines = [r.getMessage() for r in caplog.records if r.name == "chat.workers"]
    assert len([line for line in lines if "unavailable" in line]) == 1, lines
    assert len([line for line in lines if "back after" in line]) == 1, lines
    assert not [r for r in caplog.records if r.exc_info], "no tracebacks"


@override_settings(CHAT_MODERATION_ENABLED=True)
async def test_the_consumer_wakes_the_worker_for_a_new_message(channel_layer, make_communicator):
    ann = make_communicator("/ws/chat/lobby/")
    assert (await ann.connect(timeout=TIMEOUT))[0]
    await ann.receive_json_from(timeout=TIMEOUT)
    # Spy on the send rather than receive the job: on the Pub/Sub layer a job published
    # before anyone listens is gone, and a shared Redis may carry other runs' jobs.
    # The job is queued after the broadcast, which may reach ann first: wait for it.
    job_queued = asyncio.Event()
    send = channel_layer.send

    async def sending(channel: str, message: dict) -> None:
        await send(channel, message)
        job_queued.set()

    sent_jobs = mock.AsyncMock(side_effect=sending)
    try:
        with mock.patch.object(channel_layer, "send", new=sent_jobs):
            await ann.send_json_to({"message": "hello"})
            sent = await ann.receive_json_from(timeout=TIMEOUT)
            await asyncio.wait_for(job_queued.wait(), TIMEOUT)
        sent_jobs.assert_awaited_once_with(
            services.WORKER_CHANNEL, {"type": "chat.moderate", "message_id": sent["id"]}
        )
    finally:
        await ann.disconnect()


async def test_the_worker_runs_a_job_as_runworker_does_with_no_warning(channel_layer):
    """channels.worker.Worker, as runworker runs it (warnings are errors here: the
    UserWarning async_to_sync raised for runworker's `send` failed every job)."""
    message = await store("lobby", "spam from the worker")
    async with worker_running(channel_layer, Worker):
        # A wake-up sent before the worker listens is lost on the Pub/Sub layer (it
        # queues nothing): send until the job has run, a bounded number of times.
        for _ in range(30):
            await channel_layer.send(
                services.WORKER_CHANNEL, {"type": "chat.moderate", "message_id": message.pk}
            )
            if await is_hidden(message):
                break
            await asyncio.sleep(0.1)
        await wait_until_hidden(message, what="the job did not run")


def capped_layers(kind: str) -> dict:
    """CHANNEL_LAYERS of this kind whose worker channel holds two messages at most."""
    if kind == "redis" and not settings.REDIS_URL:
        pytest.skip("REDIS_URL unset: the Redis layer's capacity needs Redis")
    prefix = f"full{secrets.token_hex(4)}"
    layers = channel_layers(redis_url=settings.REDIS_URL if kind == "redis" else "", kind=kind)
    layers["default"]["CONFIG"].update(channel_capacity={services.WORKER_CHANNEL: 2})
    if kind == "redis":
        layers["default"]["CONFIG"]["prefix"] = prefix
    return layers


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_a_full_worker_channel_never_fails_a_post(make_communicator, caplog, kind):
    """No worker and a channel full of wake-ups: every post is still stored,
    delivered and kept for moderation, the socket stays open, and the full channel
    is logged once (a ChannelFull traceback closed the sender's socket)."""
    posts = 6
    with (
        override_settings(CHANNEL_LAYERS=capped_layers(kind), CHAT_MODERATION_ENABLED=True),
        mock.patch.object(services.WorkerWakeUps, "full", False),
        caplog.at_level(logging.INFO, logger="chat.services"),
    ):
        layers_manager.backends.clear()
        for _ in range(2):  # the channel's capacity
            await services.worker_wake_up(message_id=0)
        ann = make_communicator("/ws/chat/lobby/")
        try:
            assert (await ann.connect(timeout=TIMEOUT))[0]
            assert (await ann.receive_json_from(timeout=TIMEOUT))["type"] == "history"
            for n in range(posts):
                await ann.send_json_to({"message": f"post {n}"})
                frame = await ann.receive_json_from(timeout=TIMEOUT)
                assert (frame["type"], frame["message"]) == ("message", f"post {n}")
            # The wake-ups leave after the broadcasts, one per WAKE_UP_INTERVAL.
            assert await ann.receive_nothing(timeout=3 * services.WAKE_UP_INTERVAL)
        finally:
            await ann.disconnect()
            await get_channel_layer().flush()
            layers_manager.backends.clear()
    waiting = Message.objects.filter(moderated_at__isnull=True)
    assert await waiting.acount() == posts
    full = [r for r in caplog.records if "is full" in r.getMessage()]
    assert len(full) == 1, caplog.text
    assert not [r for r in caplog.records if r.exc_info]


async def test_wake_ups_are_sent_one_at_a_time_off_the_senders_path(monkeypatch):
    """Messages published while a wake-up is on its way ask for one more, not one
    each; the publisher never waits for them; a failed one is logged once."""
    sent: list[int] = []
    gate = asyncio.Event()

    async def slow_wake_up(*, message_id: int) -> None:
        sent.append(message_id)
        await gate.wait()

    monkeypatch.setattr(services, "worker_wake_up", slow_wake_up)
    monkeypatch.setattr(services, "WAKE_UP_INTERVAL", 0.01)
    wake_ups = services.WorkerWakeUps()
    wake_ups.wake(1)
    await asyncio.sleep(0)
    assert sent == [1]  # on its way
    for message_id in range(2, 51):
        wake_ups.wake(message_id)  # returns at once: the publisher does not wait
    await asyncio.sleep(0.05)
    assert sent == [1]  # the others wait for it
    gate.set()
    await wait_for(lambda: wake_ups.sending is None)
    assert sent == [1, 50]  # one more, for the newest message
    wake_ups.wake(51)
    await wait_for(lambda: wake_ups.sending is None)
    assert sent == [1, 50, 51]


async def test_a_failed_wake_up_is_logged_once_and_never_reaches_the_publisher(monkeypatch, caplog):
    async def broken(*, message_id: int) -> None:
        raise ConnectionError("Redis is gone")

    monkeypatch.setattr(services, "worker_wake_up", broken)
    monkeypatch.setattr(services.WorkerWakeUps, "failed", False)
    wake_ups = services.WorkerWakeUps()
    with caplog.at_level(logging.WARNING, logger="chat.services"):
        for message_id in (1, 2, 3):
            wake_ups.wake(message_id)
            await wait_for(lambda: wake_ups.sending is None)
    lost = [r for r in caplog.records if "could not wake the worker up" in r.getMessage()]
    assert len(lost) == 1, caplog.text


async def wait_for(predicate, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_the_worker_merges_the_wake_ups_that_arrive_while_one_waits(
    channel_layer, monkeypatch
):
    """A burst of wake-ups makes two checks, not one each: the first at once, then
    one for all the others, MODERATION_INTERVAL after the first."""
    monkeypatch.setattr(workers, "MODERATION_INTERVAL", 0.05)
    worker = ModerationWorker(application, [services.WORKER_CHANNEL], channel_layer)
    worker.loop = asyncio.get_running_loop()
    checks: asyncio.Queue[dict] = asyncio.Queue()
    monkeypatch.setattr(worker, "queue", lambda channel: checks)
    for message_id in range(1, 21):
        worker.wake_up(services.WORKER_CHANNEL, {"type": "chat.moderate", "message_id": message_id})
        await asyncio.sleep(0.001)
    first = await asyncio.wait_for(checks.get(), TIMEOUT)
    merged = await asyncio.wait_for(checks.get(), TIMEOUT)
    assert (first["message_id"], merged["message_id"]) == (1, 2)
    await asyncio.sleep(0.1)
    assert checks.empty()
    # Malformed jobs are not merged: the consumer gets them, and logs them.
    assert workers.is_wake_up({"type": "chat.moderate", "message_id": 7})
    for job in ({"type": "chat.moderate", "message_id": "x"}, {"type": "chat.moderate"}):
        assert not workers.is_wake_up(job)


async def test_runworker_is_the_chat_apps_command():
    """``manage.py runworker`` runs ModerationWorker: the chat app comes before
    ``channels`` in INSTALLED_APPS, so Django finds the chat's command first."""
    assert get_commands()["runworker"] == "chat"
    command = load_command_class("chat", "runworker")
    assert getattr(command, "worker_class", None) is ModerationWorker
