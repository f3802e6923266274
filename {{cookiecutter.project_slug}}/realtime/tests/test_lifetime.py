"""WebSocketLifetimeMiddleware: a socket is closed at its age limit, and the consumer
leaves its groups as on any other close."""

from __future__ import annotations

from unittest import mock

import pytest
from channels.testing import WebsocketCommunicator

from realtime.lifetime import CLOSE_GOING_AWAY, WebSocketLifetimeMiddleware
from realtime.testing import ORIGIN
from realtime.tests.app import websocket_stack

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3
MAX_AGE = 0.5


async def test_an_old_socket_is_closed_and_leaves_its_groups(channel_layer):
    short_lived = websocket_stack(max_age=MAX_AGE)
    client = WebsocketCommunicator(short_lived, "/ws/tests/lobby/", headers=[ORIGIN])
    added = mock.AsyncMock(side_effect=channel_layer.group_add)
    discarded = mock.AsyncMock(side_effect=channel_layer.group_discard)
    with (
        mock.patch.object(channel_layer, "group_add", new=added),
        mock.patch.object(channel_layer, "group_discard", new=discarded),
    ):
        connected, _ = await client.connect(timeout=TIMEOUT)
        assert connected
        assert (await client.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
        # Frames sent before the limit are served as usual.
        await client.send_json_to({"text": "before the limit"})
        received = await client.receive_json_from(timeout=TIMEOUT)
        assert received["data"] == {"text": "before the limit"}
        assert added.await_args_list
        assert not discarded.await_args_list

        closed = await client.receive_output(timeout=MAX_AGE + TIMEOUT)
        assert closed == {"type": "websocket.close", "code": CLOSE_GOING_AWAY}
        # The consumer got websocket.disconnect: it ends, leaving every group it joined.
        await client.wait(timeout=TIMEOUT)
    joined = {call.args for call in added.await_args_list}
    left = {call.args for call in discarded.await_args_list}
    assert joined == left


async def test_http_passes_through_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["type"], receive))

    async def receive():
        return {}

    await WebSocketLifetimeMiddleware(app, max_age=0)({"type": "http"}, receive, None)
    assert seen == [("http", receive)]
