"""Limits on chat sockets: the rate limit, the per-user socket cap, and group
cleanup on any failure."""

from __future__ import annotations

from unittest import mock

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from chat import selectors
from realtime.closecodes import CLOSE_RATE_LIMITED, CLOSE_TOO_MANY_SOCKETS
from realtime.testing import ORIGIN, report_figure, session_cookie

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3


async def join(make_communicator, path="/ws/chat/lobby/", headers=None):
    communicator = make_communicator(path, headers=headers)
    connected, code = await communicator.connect(timeout=TIMEOUT)
    assert connected, code
    if path.startswith("/ws/chat/"):
        await communicator.receive_json_from(timeout=TIMEOUT)
    return communicator


@override_settings(
    WEBSOCKET_RATE_LIMIT_BURST=5,
    WEBSOCKET_RATE_LIMIT_PER_SECOND=0.001,
    WEBSOCKET_RATE_LIMIT_STRIKES=3,
)
async def test_a_flood_is_throttled_then_closed_while_others_keep_chatting(
    channel_layer, make_communicator
):
    flooder = await join(make_communicator)
    other = await join(make_communicator)
    try:
        for index in range(5):
            await flooder.send_json_to({"message": f"burst {index}"})
            assert (await flooder.receive_json_from(timeout=TIMEOUT))["type"] == "message"
            await other.receive_json_from(timeout=TIMEOUT)
        for _ in range(3):
            await flooder.send_json_to({"message": "too fast"})
            error = await flooder.receive_json_from(timeout=TIMEOUT)
            assert error["code"] == "rate_limited"
        await flooder.send_json_to({"message": "still flooding"})
        assert await flooder.receive_output(timeout=TIMEOUT) == {
            "type": "websocket.close",
            "code": CLOSE_RATE_LIMITED,
        }
        # Nothing over the limit reached the room, and the room still works.
        await other.send_json_to({"message": "unaffected"})
        assert (await other.receive_json_from(timeout=TIMEOUT))["message"] == "unaffected"
    finally:
        await flooder.disconnect()
        await other.disconnect()
    report_figure("rate limit: burst of 5 delivered, 3 refused with error frames, closed 4429")


@override_settings(WEBSOCKET_RATE_LIMIT_BURST=2, WEBSOCKET_RATE_LIMIT_PER_SECOND=0.001)
async def test_the_json_consumer_is_rate_limited_too(channel_layer, make_communicator):
    client = await join(make_communicator, "/ws/rooms/")
    try:
        for _ in range(2):
            await client.send_json_to({"action": "join", "room": "lobby"})
            assert (await client.receive_json_from(timeout=TIMEOUT))["type"] == "joined"
        await client.send_json_to({"action": "join", "room": "lobby"})
        assert (await client.receive_json_from(timeout=TIMEOUT))["code"] == "rate_limited"
    finally:
        await client.disconnect()


@override_settings(WEBSOCKET_MAX_SOCKETS_PER_USER=2)
async def test_a_user_may_hold_only_so_many_sockets(channel_layer, make_communicator, make_user):
    user = await database_sync_to_async(make_user)("ann")
    cookie = await database_sync_to_async(session_cookie)(user)
    headers = [ORIGIN, cookie]
    first = await join(make_communicator, headers=headers)
    second = await join(make_communicator, "/ws/rooms/", headers=headers)
    third = make_communicator("/ws/chat/lobby/", headers=headers)
    assert await third.connect(timeout=TIMEOUT) == (False, CLOSE_TOO_MANY_SOCKETS)
    await third.disconnect()
    anonymous = await join(make_communicator)  # anonymous sockets are not counted
    await first.disconnect()
    again = await join(make_communicator, headers=headers)  # a closed one frees a place
    for communicator in (second, anonymous, again):
        await communicator.disconnect()
    report_figure("socket cap: 2 of 2 allowed, the 3rd refused with 4409, freed on close")


async def test_a_crash_after_joining_leaves_no_group_membership(channel_layer, make_communicator):
    added = mock.AsyncMock(side_effect=channel_layer.group_add)
    discarded = mock.AsyncMock(side_effect=channel_layer.group_discard)
    communicator = make_communicator("/ws/chat/lobby/")
    with (
        mock.patch.object(channel_layer, "group_add", new=added),
        mock.patch.object(channel_layer, "group_discard", new=discarded),
        mock.patch.object(selectors, "message_list_recent", side_effect=RuntimeError("db down")),
        # The fan-out is joined, then the room's history read fails, before accept.
        pytest.raises(RuntimeError, match="db down"),
    ):
        await communicator.connect(timeout=TIMEOUT)
    joined = {call.args for call in added.await_args_list}
    left = {call.args for call in discarded.await_args_list}
    assert joined
    assert joined == left
