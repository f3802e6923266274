"""The moderation worker through ApplicationCommunicator on the real application's
"channel" route, as ``runworker chat-worker`` runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from channels.testing import ApplicationCommunicator
from channels.worker import Worker
from django.test import override_settings

from chat import services
from chat.models import Message
from config.asgi import application

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
    real = services.message_moderate
    calls = []

    def flaky(*, message_id):
        calls.append(message_id)
        if message_id == first.pk:
            raise RuntimeError("boom")
        return real(message_id=message_id)

    with (
        mock.patch.object(services, "message_moderate", side_effect=flaky),
        caplog.at_level(logging.ERROR, logger="chat.workers"),
    ):
        await run_jobs(first.pk, second.pk, done=lambda: is_hidden(second))
    assert calls == [first.pk, second.pk]
    assert "moderation job failed" in caplog.text
    assert (await Message.objects.aget(pk=second.pk)).hidden
    assert not (await Message.objects.aget(pk=first.pk)).hidden


async def test_a_job_for_a_missing_message_does_nothing(channel_layer):
    sentinel = await store("lobby", "spam")
    await run_jobs(999_999, sentinel.pk, done=lambda: is_hidden(sentinel))
    assert await Message.objects.filter(hidden=True).acount() == 1


@override_settings(CHAT_MODERATION_ENABLED=True)
async def test_the_consumer_queues_a_job_for_each_new_message(channel_layer, make_communicator):
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
    worker = Worker(application, [services.WORKER_CHANNEL], channel_layer)
    listening = asyncio.ensure_future(worker.handle())
    try:
        await channel_layer.send(
            services.WORKER_CHANNEL, {"type": "chat.moderate", "message_id": message.pk}
        )
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while not await is_hidden(message):
            assert asyncio.get_running_loop().time() < deadline, "the job did not run"
            await asyncio.sleep(0.02)
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
