"""The chat consumer through WebsocketCommunicator on the real ASGI application."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from chat.models import Message
from chat.protocol import CLOSE_INVALID_ROOM
from chat.services import message_create, message_post, room_get_or_create
from realtime.closecodes import CLOSE_NOT_FOUND

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3


async def join(make_communicator, room: str):
    communicator = make_communicator(f"/ws/chat/{room}/")
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    history = await communicator.receive_json_from(timeout=TIMEOUT)
    assert history["type"] == "history"
    return communicator, history


async def test_two_clients_in_a_room_both_receive_a_message(channel_layer, make_communicator):
    ann, _ = await join(make_communicator, "lobby")
    bob, _ = await join(make_communicator, "lobby")
    try:
        await ann.send_json_to({"message": "hello"})
        for client in (ann, bob):
            frame = await client.receive_json_from(timeout=TIMEOUT)
            assert frame["type"] == "message"
            assert frame["message"] == "hello"
            assert frame["username"] == "anonymous"
            assert frame["room"] == "lobby"
    finally:
        await ann.disconnect()
        await bob.disconnect()


async def test_a_client_in_another_room_receives_nothing(channel_layer, make_communicator):
    ann, _ = await join(make_communicator, "lobby")
    eve, _ = await join(make_communicator, "elsewhere")
    try:
        await ann.send_json_to({"message": "only for the lobby"})
        assert (await ann.receive_json_from(timeout=TIMEOUT))["message"] == "only for the lobby"
        assert await eve.receive_nothing(timeout=0.3)
    finally:
        await ann.disconnect()
        await eve.disconnect()


@pytest.mark.parametrize("room", ["caf%C3%A9", "a%20b", "x" * 65, "a.b"])
async def test_a_bad_room_name_is_refused_at_the_handshake(channel_layer, make_communicator, room):
    communicator = make_communicator(f"/ws/chat/{room}/")
    connected, code = await communicator.connect(timeout=TIMEOUT)
    assert not connected
    assert code == CLOSE_INVALID_ROOM
    await communicator.disconnect()


async def test_an_unknown_path_is_refused(channel_layer, make_communicator):
    communicator = make_communicator("/ws/nowhere/")
    connected, code = await communicator.connect(timeout=TIMEOUT)
    assert not connected
    assert code == CLOSE_NOT_FOUND
    await communicator.disconnect()


async def test_a_foreign_origin_is_refused(channel_layer, make_communicator):
    communicator = make_communicator("/ws/chat/lobby/", headers=[(b"origin", b"http://evil.test")])
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert not connected
    await communicator.disconnect()


async def test_messages_are_stored_and_sent_as_history_on_join(channel_layer, make_communicator):
    ann, history = await join(make_communicator, "lobby")
    assert history["messages"] == []
    try:
        await ann.send_json_to({"message": "first"})
        await ann.receive_json_from(timeout=TIMEOUT)
    finally:
        await ann.disconnect()
    assert await Message.objects.filter(room__name="lobby", text="first").aexists()
    bob, history = await join(make_communicator, "lobby")
    await bob.disconnect()
    assert [m["message"] for m in history["messages"]] == ["first"]


async def test_history_after_an_id_returns_what_was_missed(channel_layer, make_communicator):
    ann, _ = await join(make_communicator, "lobby")
    try:
        await ann.send_json_to({"message": "one"})
        seen = await ann.receive_json_from(timeout=TIMEOUT)
        await ann.send_json_to({"message": "two"})
        await ann.receive_json_from(timeout=TIMEOUT)
        await ann.send_json_to({"action": "history", "after": seen["id"]})
        missed = await ann.receive_json_from(timeout=TIMEOUT)
        assert missed["type"] == "history"
        assert [m["message"] for m in missed["messages"]] == ["two"]
        assert (missed["after"], missed["more"]) == (seen["id"], False)
    finally:
        await ann.disconnect()


@override_settings(CHAT_HISTORY_LENGTH=3)
async def test_a_long_gap_comes_in_pages_until_none_follow(channel_layer, make_communicator):
    room = await database_sync_to_async(room_get_or_create)(name="lobby")
    missed = [
        await database_sync_to_async(message_create)(room=room, author=None, text=f"m{n}")
        for n in range(7)
    ]
    ann, _ = await join(make_communicator, "lobby")
    try:
        cursor, pages, seen = 0, [], []
        while True:
            await ann.send_json_to({"action": "history", "after": cursor})
            page = await ann.receive_json_from(timeout=TIMEOUT)
            assert page["after"] == cursor
            pages.append(len(page["messages"]))
            seen += [m["message"] for m in page["messages"]]
            if not page["more"]:
                break
            cursor = page["messages"][-1]["id"]
        assert pages == [3, 3, 1]
        assert seen == [message.text for message in missed]
    finally:
        await ann.disconnect()


async def test_bad_input_gets_an_error_frame_and_the_socket_stays_usable(
    channel_layer, make_communicator
):
    ann, _ = await join(make_communicator, "lobby")
    try:
        await ann.send_to(text_data="not json")
        error = await ann.receive_json_from(timeout=TIMEOUT)
        assert error == {
            "type": "error",
            "code": "invalid_json",
            "message": "The frame is not valid JSON.",
        }
        await ann.send_to(bytes_data=b"\x00")
        assert (await ann.receive_json_from(timeout=TIMEOUT))["code"] == "binary_frame"
        await ann.send_json_to({"message": "still here"})
        assert (await ann.receive_json_from(timeout=TIMEOUT))["message"] == "still here"
    finally:
        await ann.disconnect()


async def test_a_message_posted_by_a_service_reaches_the_room(channel_layer, make_communicator):
    from channels.db import database_sync_to_async

    ann, _ = await join(make_communicator, "lobby")
    try:
        await database_sync_to_async(message_post)(room_name="lobby", author=None, text="from code")
        frame = await ann.receive_json_from(timeout=TIMEOUT)
        assert frame["message"] == "from code"
    finally:
        await ann.disconnect()


def coroutines_awaited(coroutine: Any) -> list[str]:
    """The names of the coroutines a task's coroutine is awaiting, outermost first."""
    names = []
    while coroutine is not None and hasattr(coroutine, "cr_frame"):
        names.append(coroutine.__qualname__)
        coroutine = coroutine.cr_await
    return names


async def test_an_open_socket_keeps_no_coroutine_of_a_pass_through_middleware(
    channel_layer, make_communicator
):
    """Each coroutine an open socket awaits through is kept with its frame and its
    scope for as long as the socket lives (docs/benchmark.md, memory per idle
    socket); the middlewares of config/asgi.py that only decide and pass on keep none."""
    ann, _ = await join(make_communicator, "lobby")
    held = coroutines_awaited(ann.future.get_coro())
    await ann.disconnect()
    assert "ChatConsumer" in held  # the walk reached the consumer
    assert not {
        "WebSocketLifetimeMiddleware.__call__",
        "TicketAuthMiddleware.__call__",
        "BaseMiddleware.__call__",
        "TrustedOriginValidator.__call__",
        "FanoutMixin.__call__",
    } & set(held)
