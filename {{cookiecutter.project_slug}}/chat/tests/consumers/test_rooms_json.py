"""The AsyncJsonWebsocketConsumer with typed actions at /ws/rooms/."""

from __future__ import annotations

import pytest
from django.test import override_settings

from chat.consumers.rooms_json import MAX_ROOMS_PER_SOCKET

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3


async def open_rooms(make_communicator):
    communicator = make_communicator("/ws/rooms/")
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


async def act(communicator, **frame):
    await communicator.send_json_to(frame)
    return await communicator.receive_json_from(timeout=TIMEOUT)


async def test_join_message_typing_leave(channel_layer, make_communicator):
    ann = await open_rooms(make_communicator)
    bob = await open_rooms(make_communicator)
    try:
        assert await act(ann, action="join", room="lobby") == {
            "type": "joined",
            "room": "lobby",
            "messages": [],
        }
        assert (await act(bob, action="join", room="lobby"))["type"] == "joined"
        sent = await act(ann, action="message", room="lobby", message="hi")
        assert (sent["type"], sent["message"], sent["room"]) == ("message", "hi", "lobby")
        assert (await bob.receive_json_from(timeout=TIMEOUT))["message"] == "hi"

        await ann.send_json_to({"action": "typing", "room": "lobby"})
        typing = await bob.receive_json_from(timeout=TIMEOUT)
        assert typing == {"type": "typing", "room": "lobby", "username": "anonymous"}
        assert await ann.receive_nothing(timeout=0.2)  # no echo of one's own typing

        assert await act(bob, action="leave", room="lobby") == {"type": "left", "room": "lobby"}
        await ann.send_json_to({"action": "message", "room": "lobby", "message": "gone?"})
        assert (await ann.receive_json_from(timeout=TIMEOUT))["message"] == "gone?"
        assert await bob.receive_nothing(timeout=0.2)
    finally:
        await ann.disconnect()
        await bob.disconnect()


async def test_one_socket_many_rooms_and_chat_page_members(channel_layer, make_communicator):
    multi = await open_rooms(make_communicator)
    page = make_communicator("/ws/chat/kitchen/")
    assert (await page.connect(timeout=TIMEOUT))[0]
    await page.receive_json_from(timeout=TIMEOUT)
    try:
        await act(multi, action="join", room="lobby")
        await act(multi, action="join", room="kitchen")
        await page.send_json_to({"message": "from the page"})
        assert (await page.receive_json_from(timeout=TIMEOUT))["message"] == "from the page"
        frame = await multi.receive_json_from(timeout=TIMEOUT)
        assert (frame["room"], frame["message"]) == ("kitchen", "from the page")
    finally:
        await multi.disconnect()
        await page.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"action": "dance"}, "unknown_action"),
        ({"room": "lobby"}, "unknown_action"),
        ({"action": "join"}, "invalid_room"),
        ({"action": "join", "room": "a b"}, "invalid_room"),
        ({"action": "message", "room": "lobby", "message": "x"}, "not_joined"),
        ({"action": "leave", "room": "lobby"}, "not_joined"),
        ({"action": "typing", "room": "lobby"}, "not_joined"),
    ],
)
async def test_typed_error_frames(channel_layer, make_communicator, frame, code):
    client = await open_rooms(make_communicator)
    try:
        error = await act(client, **frame)
        assert error["type"] == "error"
        assert error["code"] == code
        assert error["message"]
        # The socket stays usable.
        assert (await act(client, action="join", room="lobby"))["type"] == "joined"
    finally:
        await client.disconnect()


@override_settings(WEBSOCKET_RATE_LIMIT_BURST=1000)  # this test sends more than a burst
async def test_bad_frames_and_the_room_limit(channel_layer, make_communicator):
    client = await open_rooms(make_communicator)
    try:
        await client.send_to(text_data="nope")
        assert (await client.receive_json_from(timeout=TIMEOUT))["code"] == "invalid_json"
        await client.send_to(bytes_data=b"\x01")
        assert (await client.receive_json_from(timeout=TIMEOUT))["code"] == "binary_frame"
        await act(client, action="join", room="lobby")
        bad = await act(client, action="message", room="lobby", message=7)
        assert bad["code"] == "message_not_string"
        for index in range(MAX_ROOMS_PER_SOCKET - 1):
            await act(client, action="join", room=f"room{index}")
        assert (await act(client, action="join", room="onemore"))["code"] == "too_many_rooms"
    finally:
        await client.disconnect()
