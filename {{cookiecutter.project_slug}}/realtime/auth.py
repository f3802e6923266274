"""ASGI middleware for WebSockets: the session and user, and single-use tickets.

``WebSocketAuthMiddlewareStack`` is Channels' ``AuthMiddlewareStack`` (cookies, the
session, ``scope["user"]``) without the session check on every frame sent, and for
a WebSocket in one middleware that copies the scope once (see
``WebSocketAuthMiddleware``).

``TicketAuthMiddleware(inner, redeem=...)`` signs a WebSocket in with a single-use
ticket; ``redeem(ticket=...)`` is the project's (``accounts.services.ticket_redeem``),
synchronous, and returns the user or None.
A client presents the ticket in the ``Authorization: Ticket <ticket>`` header, or,
for clients that cannot set headers on a WebSocket, as ``?ticket=<ticket>`` (it is
short-lived and used up on first presentation, and ``realtime.logredact`` keeps it
out of the server's access log). A valid ticket sets ``scope["user"]``; an invalid,
expired or reused one is refused at the handshake (HTTP 403). Connections without a
ticket pass through unchanged, with the session's user. Put it outside the origin
check (``config/asgi.py``): a ticket presented from a refused origin is used up too,
so a refused use cannot be replayed from a trusted one.
https://channels.readthedocs.io/en/stable/topics/authentication.html
https://channels.readthedocs.io/en/stable/topics/sessions.html
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddleware, UserLazyObject, get_user
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.cookie import parse_cookie
from django.utils.functional import LazyObject

from realtime.closecodes import CLOSE_BAD_TICKET


def presented_ticket(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            if scheme.lower() == "ticket":
                return credential.strip()
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket")
    return values[0] if values else None


async def refuse(receive: Any, send: Any) -> None:
    """Answer the handshake with a close: the client sees HTTP 403."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": CLOSE_BAD_TICKET})


class TicketAuthMiddleware(BaseMiddleware):
    """A socket that presents a ticket is signed in as the ticket's user, or refused.

    A socket without one goes straight on: ``__call__`` then returns the inner
    application's coroutine, as ``realtime.lifetime.WebSocketLifetimeMiddleware``
    does, so that neither a coroutine of this middleware nor a copy of the scope
    is kept while the socket is open."""

    _asgi_single_callable = True  # an ASGI 3 app, though __call__ is a plain def

    def __init__(self, inner: Any, *, redeem: Callable[..., Any]) -> None:
        super().__init__(inner)
        self.redeem = redeem

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        ticket = presented_ticket(scope)
        if ticket is None:
            # The scope as it came, as the origin check passes it: the session
            # middleware inside copies it before it adds anything (464 bytes a socket).
            return self.inner(scope, receive, send)
        return self.with_ticket(ticket, scope, receive, send)

    async def with_ticket(self, ticket: str, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        user = await database_sync_to_async(self.redeem)(ticket=ticket)
        if user is None:
            return await refuse(receive, send)
        return await self.inner({**scope, "user": user}, receive, send)


class TicketUserAuthMiddleware(AuthMiddleware):
    """Channels' ``AuthMiddleware``, keeping a user that a ticket already set."""

    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        if isinstance(scope["user"], UserLazyObject):
            await super().resolve_scope(scope)


class WebSocketSessionMiddleware(SessionMiddleware):
    """Channels' ``SessionMiddleware``, minus its work on every WebSocket frame.

    Channels wraps ``send`` to save the session and set its cookie when an HTTP
    response starts; before looking at the message type it reads the session's state,
    for every message. A WebSocket never starts an HTTP response (a consumer that
    changes the session saves it itself), so that wrapper only costs time: about a
    tenth of the server's CPU per delivery (docs/benchmark.md). Here a
    WebSocket's session is resolved as before and ``send`` passes straight through;
    other scopes get Channels' own behaviour."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await super().__call__(scope, receive, send)
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        return await self.inner(wrapper.scope, receive, send)


class WebSocketAuthMiddleware:
    """Channels' ``AuthMiddlewareStack`` for a WebSocket, in one step: the same
    ``scope["cookies"]``, ``scope["session"]`` (a lazy object around the session
    store, as Channels') and ``scope["user"]`` (resolved from the session, or the
    one a ticket set), in one new scope.

    Channels' three middlewares copy the scope four times and keep each copy, with
    its coroutine, for as long as the socket is open: about 3 KB of every idle
    socket (docs/benchmark.md). Other scopes (HTTP) go through Channels' own stack,
    with ``WebSocketSessionMiddleware``'s handling of anything else."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fallback = CookieMiddleware(
            WebSocketSessionMiddleware(TicketUserAuthMiddleware(inner))
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket" or "session" in scope:
            return await self.fallback(scope, receive, send)
        cookies: dict[str, str] = {}
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                cookies = parse_cookie(value.decode("latin1"))
                break
        store = import_module(settings.SESSION_ENGINE).SessionStore(
            cookies.get(settings.SESSION_COOKIE_NAME)
        )
        session = LazyObject()
        session._wrapped = store
        own = {**scope, "cookies": cookies, "session": session}
        if "user" not in own:
            own["user"] = UserLazyObject()
        if isinstance(own["user"], UserLazyObject):
            if store.session_key is None:
                # No session cookie: nobody to look up, and no hop to the database
                # thread for it (a thousand sockets connecting at once queued there).
                own["user"]._wrapped = AnonymousUser()
            else:
                own["user"]._wrapped = await get_user(own)
        return await self.inner(own, receive, send)


def WebSocketAuthMiddlewareStack(inner: Any) -> Any:
    """Named as Channels' ``AuthMiddlewareStack``, and doing its work."""
    return WebSocketAuthMiddleware(inner)
