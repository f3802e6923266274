"""WebSocketAuthMiddlewareStack: a WebSocket gets the session's user as under
Channels' AuthMiddlewareStack, and its frames go to the server's own send."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from realtime.auth import WebSocketAuthMiddlewareStack
from realtime.testing import session_cookie

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def run_stack(scope_type: str, headers: list[tuple[bytes, bytes]]):
    """Call the stack once; what the inner application saw, and the server's send."""
    seen = {}

    async def inner(scope, receive, send):
        seen["user"] = await sync_to_async(lambda: scope["user"].username)()
        seen["session_key"] = scope["session"].session_key
        seen["send"] = send

    async def receive():
        return {}

    async def server_send(message):
        return None

    scope = {"type": scope_type, "path": "/ws/chat/lobby/", "headers": headers}
    await WebSocketAuthMiddlewareStack(inner)(scope, receive, server_send)
    return seen, server_send


async def test_a_websocket_gets_the_sessions_user_and_the_servers_send(make_user):
    user = await sync_to_async(make_user)("ann")
    cookie = await sync_to_async(session_cookie)(user)
    seen, server_send = await run_stack("websocket", [cookie])
    assert seen["user"] == "ann"
    assert seen["session_key"]
    assert seen["send"] is server_send


async def test_an_anonymous_websocket_gets_an_anonymous_user():
    seen, _ = await run_stack("websocket", [])
    assert seen["user"] == ""
    assert seen["session_key"] is None


async def test_other_scopes_keep_channels_session_saving_send(make_user):
    user = await sync_to_async(make_user)("bob")
    cookie = await sync_to_async(session_cookie)(user)
    seen, server_send = await run_stack("http", [cookie])
    assert seen["user"] == "bob"
    assert seen["send"] is not server_send
