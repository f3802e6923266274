"""The building blocks together, on the real-time layer's own test application
(realtime/tests/app.py): no app of the project is needed."""

from __future__ import annotations

from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from realtime.closecodes import (
    CLOSE_BAD_TICKET,
    CLOSE_LOGIN_REQUIRED,
    CLOSE_NOT_FOUND,
    CLOSE_RATE_LIMITED,
    CLOSE_TOO_MANY_SOCKETS,
    CLOSE_UNAVAILABLE,
)
from realtime.testing import ORIGIN, session_cookie
from realtime.tests.app import application, from_address
from realtime.tests.clients import TIMEOUT, joined, refused

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_frames_are_echoed_and_bad_ones_get_typed_errors(channel_layer):
    socket = await joined()
    try:
        await socket.send_json_to({"hello": 1})
        assert await socket.receive_json_from(timeout=TIMEOUT) == {
            "type": "echo",
            "data": {"hello": 1},
        }
        for frame, code in [
            ("not json", "invalid_json"),
            ("[1]", "not_an_object"),
            ("x" * 20_000, "frame_too_large"),
            ('{"action": "fail"}', "bad_action"),
        ]:
            await socket.send_to(text_data=frame)
            error = await socket.receive_json_from(timeout=TIMEOUT)
            assert (error["type"], error["code"]) == ("error", code)
        await socket.send_to(bytes_data=b"\x00")
        assert (await socket.receive_json_from(timeout=TIMEOUT))["code"] == "binary_frame"
        await socket.send_json_to({"still": "open"})
        assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "echo"
    finally:
        await socket.disconnect()


async def test_a_broadcast_reaches_every_socket_of_the_group_once(channel_layer):
    ann, bob = await joined(), await joined()
    other = await joined("/ws/tests/elsewhere/")
    try:
        await ann.send_json_to({"action": "broadcast", "text": "hi"})
        for socket in (ann, bob):
            assert await socket.receive_json_from(timeout=TIMEOUT) == {
                "type": "message",
                "text": "hi",
            }
            assert await socket.receive_nothing(timeout=0.1)
        assert await other.receive_nothing(timeout=0.1)
    finally:
        for socket in (ann, bob, other):
            await socket.disconnect()


@override_settings(
    WEBSOCKET_RATE_LIMIT_BURST=2,
    WEBSOCKET_RATE_LIMIT_PER_SECOND=0.001,
    WEBSOCKET_RATE_LIMIT_STRIKES=1,
)
async def test_a_flood_gets_an_error_then_the_socket_is_closed(channel_layer):
    socket = await joined()
    for _ in range(2):
        await socket.send_json_to({})
        assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "echo"
    await socket.send_json_to({})
    assert (await socket.receive_json_from(timeout=TIMEOUT))["code"] == "rate_limited"
    await socket.send_json_to({})
    assert await socket.receive_output(timeout=TIMEOUT) == {
        "type": "websocket.close",
        "code": CLOSE_RATE_LIMITED,
    }
    await socket.disconnect()


async def test_login_required_refuses_anonymous_sockets(channel_layer, make_user):
    assert await refused("/ws/tests/members/") == CLOSE_LOGIN_REQUIRED
    user = await sync_to_async(make_user)("ann")
    cookie = await sync_to_async(session_cookie)(user)
    socket = await joined("/ws/tests/members/", headers=[cookie])
    await socket.disconnect()


@override_settings(WEBSOCKET_MAX_SOCKETS_PER_USER=2)
async def test_the_per_user_cap_counts_open_sockets(channel_layer, make_user):
    user = await sync_to_async(make_user)("ann")
    cookie = await sync_to_async(session_cookie)(user)
    first, second = await joined(headers=[cookie]), await joined(headers=[cookie])
    assert await refused("/ws/tests/lobby/", headers=[cookie]) == CLOSE_TOO_MANY_SOCKETS
    anonymous = await joined()  # not counted per user
    await first.disconnect()
    third = await joined(headers=[cookie])  # the closed one was released
    for socket in (second, anonymous, third):
        await socket.disconnect()


@override_settings(WEBSOCKET_MAX_SOCKETS_PER_ADDRESS=2)
async def test_the_per_address_cap_counts_open_sockets(channel_layer):
    here, there = from_address(application, "10.0.0.1"), from_address(application, "10.0.0.2")
    first, second = await joined(app=here), await joined(app=here)
    assert await refused("/ws/tests/lobby/", app=here) == CLOSE_TOO_MANY_SOCKETS
    elsewhere = await joined(app=there)
    await first.disconnect()
    third = await joined(app=here)
    for socket in (second, elsewhere, third):
        await socket.disconnect()


async def test_a_ticket_signs_the_socket_in_and_a_bad_one_is_refused(channel_layer, make_user):
    await sync_to_async(make_user)("ann")
    socket = WebsocketCommunicator(
        application, "/ws/tests/lobby/?ticket=user:ann", headers=[ORIGIN]
    )
    assert (await socket.connect(timeout=TIMEOUT))[0]
    assert (await socket.receive_json_from(timeout=TIMEOUT))["user"] == "ann"
    await socket.disconnect()
    assert await refused("/ws/tests/lobby/?ticket=user:nobody") == CLOSE_BAD_TICKET


async def test_an_unclaimed_path_is_refused(channel_layer):
    assert await refused("/ws/nowhere/") == CLOSE_NOT_FOUND


async def test_a_failing_layer_closes_the_socket_with_4503(channel_layer):
    with mock.patch.object(channel_layer, "group_add", side_effect=OSError("Redis is down")):
        socket = WebsocketCommunicator(application, "/ws/tests/down/", headers=[ORIGIN])
        connected, code = await socket.connect(timeout=TIMEOUT)
    assert not connected
    assert code == CLOSE_UNAVAILABLE
    await socket.disconnect()


async def test_groups_and_fanouts_are_left_when_the_consumer_ends(channel_layer):
    discarded = mock.AsyncMock(side_effect=channel_layer.group_discard)
    with mock.patch.object(channel_layer, "group_discard", new=discarded):
        socket = await joined("/ws/tests/leaving/")
        await socket.disconnect()
    assert [call.args[0] for call in discarded.await_args_list] == ["tests.leaving"]
