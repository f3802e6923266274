"""FastDispatchMixin: the chat's frames and events skip Channels' per-message
connection cleanup while their ORM calls still clean for themselves, every other
message keeps it, handlers still run one at a time, and a failure ends the consumer
as it did under Channels' own loop."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from chat.consumers import chat
from chat.rooms import user_group_name
from chat.services import message_post
from chat.tests.clients import join_chat
from realtime.closecodes import CLOSE_LOGGED_OUT
from realtime.dispatch import FastDispatchMixin
from realtime.testing import ORIGIN, session_cookie

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


async def test_chat_frames_skip_the_dispatch_cleanup_and_their_orm_calls_clean(
    channel_layer, make_communicator, cleanups
):
    ann = await join_chat(make_communicator)
    bob = await join_chat(make_communicator)
    try:
        await ann.send_json_to({"message": "hello"})
        for client in (ann, bob):
            assert (await client.receive_json_from(timeout=TIMEOUT))["message"] == "hello"
    finally:
        await ann.disconnect()
        await bob.disconnect()
    # Neither the joins (websocket.connect), the frame ann sent (websocket.receive),
    # the deliveries nor the leaving went through dispatch's cleanup. Their ORM calls
    # cleaned before and after, in database_sync_to_async (test_writer.py counts it:
    # Channels' test communicator turns that cleanup off while the app runs).
    assert cleanups == []


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


async def test_the_chat_skips_the_cleanup_only_where_handlers_clean_or_need_none():
    assert chat.ChatConsumer.skip_cleanup_for == {
        "chat.message",
        "chat.moderated",
        "chat.typing",
        "chat.logout",
        "websocket.connect",
        "websocket.receive",
        "websocket.disconnect",
    }
    for message_type in chat.ChatConsumer.skip_cleanup_for:
        assert hasattr(chat.ChatConsumer, message_type.replace(".", "_"))


async def test_message_types_not_listed_keep_the_cleanup(channel_layer, cleanups):
    communicator = await connected_recorder()
    try:
        await communicator.send_to(text_data="hello")
        assert await next_entry() == "frame hello"
        assert len(cleanups) == 2  # websocket.connect, websocket.receive
    finally:
        await communicator.disconnect()


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


async def connected_recorder() -> WebsocketCommunicator:
    Recorder.reset()
    communicator = WebsocketCommunicator(Recorder.as_asgi(), "/")
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


async def next_entry() -> str:
    return await asyncio.wait_for(Recorder.log.get(), TIMEOUT)


async def test_handlers_run_one_at_a_time_in_arrival_order(channel_layer):
    communicator = await connected_recorder()
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
    communicator = await connected_recorder()
    await communicator.send_to(text_data="boom")
    with pytest.raises(RuntimeError, match="handler failed"):
        await communicator.wait(timeout=TIMEOUT)
    # Its channel-layer reader was stopped too: nothing is left reading.
    assert readers() == 0


async def test_a_clean_disconnect_stops_both_readers(channel_layer):
    communicator = await connected_recorder()
    await communicator.disconnect()
    await communicator.wait(timeout=TIMEOUT)  # ended without an exception
    assert readers() == 0


def readers() -> int:
    """The consumers' source readers running now (one per source each)."""
    return len([t for t in asyncio.all_tasks() if "pump" in repr(t.get_coro())])


async def test_a_chat_socket_reads_its_own_channel_only_once_it_joins_a_group(
    channel_layer, make_communicator, make_user
):
    """channel_on_demand: an anonymous socket's room comes through the fan-out, so it
    reads only its client; a signed-in one joins its user's group and reads its
    channel too, and the group's events reach it."""
    ann = await join_chat(make_communicator)
    try:
        assert readers() == 1
        await ann.send_json_to({"message": "hello"})
        assert (await ann.receive_json_from(timeout=TIMEOUT))["message"] == "hello"
        user = await database_sync_to_async(make_user)("bob")
        cookie = await database_sync_to_async(session_cookie)(user)
        bob = await join_chat(make_communicator, headers=[ORIGIN, cookie])
        assert readers() == 3
        await get_channel_layer().group_send(user_group_name(user.pk), {"type": "chat.logout"})
        closed = await bob.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": CLOSE_LOGGED_OUT}
        await bob.wait(timeout=TIMEOUT)
        assert readers() == 1
    finally:
        await ann.disconnect()


async def test_a_consumer_not_on_demand_reads_its_channel_from_the_start(channel_layer):
    communicator = await connected_recorder()
    try:
        assert readers() == 2
    finally:
        await communicator.disconnect()
