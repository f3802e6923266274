"""FastDispatchMixin: forwarded events skip the database connection cleanup, every
other message keeps it, handlers still run one at a time, and a failure ends the
consumer as it did under Channels' own loop."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from chat.consumers import chat
from chat.consumers.dispatch import FastDispatchMixin
from chat.services import message_post
from conftest import join_chat

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3


@pytest.fixture
def cleanups():
    """Count the per-message database connection cleanups Channels' dispatch does."""
    calls = []

    async def counting() -> None:
        calls.append(1)

    with mock.patch("channels.consumer.aclose_old_connections", counting):
        yield calls


async def test_forwarded_events_skip_the_cleanup_and_frames_keep_it(
    channel_layer, make_communicator, cleanups
):
    ann = await join_chat(make_communicator)
    bob = await join_chat(make_communicator)
    try:
        joined = len(cleanups)  # websocket.connect: one each
        assert joined == 2
        await ann.send_json_to({"message": "hello"})
        for client in (ann, bob):
            assert (await client.receive_json_from(timeout=TIMEOUT))["message"] == "hello"
        # The frame ann sent (websocket.receive) was cleaned for; the two
        # chat.message deliveries were not.
        assert len(cleanups) == joined + 1
    finally:
        await ann.disconnect()
        await bob.disconnect()


async def test_a_message_posted_from_sync_code_is_forwarded_without_cleanup(
    channel_layer, make_communicator, cleanups
):
    ann = await join_chat(make_communicator)
    try:
        before = len(cleanups)
        # As a view would: sync code on Django's thread (its connection is cleaned up).
        await database_sync_to_async(message_post)(room_name="lobby", author=None, text="a view")
        assert (await ann.receive_json_from(timeout=TIMEOUT))["message"] == "a view"
        assert len(cleanups) == before
    finally:
        await ann.disconnect()


async def test_the_chat_forwards_only_events_whose_handlers_make_no_orm_call():
    assert chat.ChatConsumer.forward_events == {
        "chat.message",
        "chat.moderated",
        "chat.typing",
        "chat.logout",
    }
    for event in chat.ChatConsumer.forward_events:
        assert hasattr(chat.ChatConsumer, event.replace(".", "_"))


class Recorder(FastDispatchMixin, AsyncWebsocketConsumer):
    """Logs handler entry and exit; ``test.slow`` waits for ``release`` before it ends."""

    log: asyncio.Queue[str]
    release: asyncio.Event

    @classmethod
    def reset(cls) -> None:
        cls.log, cls.release = asyncio.Queue(), asyncio.Event()

    async def connect(self) -> None:
        await self.channel_layer.group_add("recorder", self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard("recorder", self.channel_name)

    async def receive(self, text_data=None, bytes_data=None) -> None:
        self.log.put_nowait(f"frame {text_data}")
        if text_data == "boom":
            raise RuntimeError("handler failed")

    async def test_slow(self, event) -> None:
        self.log.put_nowait("slow start")
        await self.release.wait()
        self.log.put_nowait("slow end")


async def next_entry() -> str:
    return await asyncio.wait_for(Recorder.log.get(), TIMEOUT)


async def test_handlers_run_one_at_a_time_in_arrival_order(channel_layer):
    Recorder.reset()
    communicator = WebsocketCommunicator(Recorder.as_asgi(), "/")
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    try:
        await get_channel_layer().group_send("recorder", {"type": "test.slow"})
        assert await next_entry() == "slow start"
        await communicator.send_to(text_data="during")
        # Time for a wrongly concurrent handler to log its frame; a correct loop
        # holds the frame until the slow handler ends, however long this is.
        await asyncio.sleep(0.1)
        assert Recorder.log.empty()
        Recorder.release.set()
        assert [await next_entry(), await next_entry()] == ["slow end", "frame during"]
    finally:
        await communicator.disconnect()


async def test_a_failing_handler_ends_the_consumer_with_its_exception(channel_layer):
    Recorder.reset()
    communicator = WebsocketCommunicator(Recorder.as_asgi(), "/")
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    await communicator.send_to(text_data="boom")
    with pytest.raises(RuntimeError, match="handler failed"):
        await communicator.wait(timeout=TIMEOUT)
    # Its channel-layer reader was stopped too: nothing is left reading.
    assert not [t for t in asyncio.all_tasks() if "pump" in repr(t.get_coro())]


async def test_a_clean_disconnect_stops_both_readers(channel_layer):
    Recorder.reset()
    communicator = WebsocketCommunicator(Recorder.as_asgi(), "/")
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    await communicator.disconnect()
    await communicator.wait(timeout=TIMEOUT)  # ended without an exception
    assert not [t for t in asyncio.all_tasks() if "pump" in repr(t.get_coro())]
