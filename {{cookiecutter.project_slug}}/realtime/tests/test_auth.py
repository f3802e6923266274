"""WebSocketAuthMiddlewareStack: a WebSocket gets the session's user as under
Channels' AuthMiddlewareStack, and its frames go to the server's own send."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from realtime.auth import WebSocketAuthMiddlewareStack
from realtime.testing import session_cookie

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def run_stack(scope_type: str, headers: list[tuple[bytes, bytes]], **extra):
    """Call the stack once; what the inner application saw, and the server's send."""
    seen = {}

    async def inner(scope, receive, send):
        seen["user"] = await sync_to_async(lambda: scope["user"].username)()
        seen["session_key"] = scope["session"].session_key
        seen["send"] = send
        seen["scope"] = scope

    async def receive():
        return {}

    async def server_send(message):
        return None

    scope = {"type": scope_type, "path": "/ws/chat/lobby/", "headers": headers, **extra}
    await WebSocketAuthMiddlewareStack(inner)(scope, receive, server_send)
    seen["outer"] = scope
    return seen, server_send


async def test_a_websocket_gets_the_sessions_user_and_the_servers_send(make_user):
    user = await sync_to_async(make_user)("ann")
    cookie = await sync_to_async(session_cookie)(user)
    seen, server_send = await run_stack("websocket", [cookie])
    assert seen["user"] == "ann"
    assert seen["session_key"]
    assert seen["send"] is server_send


async def test_a_websocket_gets_the_cookies_in_one_new_scope_its_callers_never_see(make_user):
    user = await sync_to_async(make_user)("cy")
    cookie = await sync_to_async(session_cookie)(user)
    seen, _ = await run_stack("websocket", [cookie, (b"cookie", b"ignored=1")])
    inner, outer = seen["scope"], seen["outer"]
    assert inner is not outer
    assert set(outer) == {"type", "path", "headers"}  # nothing leaks upstream
    assert inner["cookies"][settings.SESSION_COOKIE_NAME] == seen["session_key"]
    assert "ignored" not in inner["cookies"]  # the first Cookie header, as Channels
    assert inner["session"]["_auth_user_id"] == str(user.pk)


async def test_a_user_a_ticket_set_is_kept(make_user):
    ticketed = await sync_to_async(make_user)("dee")
    other = await sync_to_async(make_user)("eve")
    cookie = await sync_to_async(session_cookie)(other)
    seen, _ = await run_stack("websocket", [cookie], user=ticketed)
    assert seen["user"] == "dee"
    assert seen["scope"]["user"] is ticketed


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
