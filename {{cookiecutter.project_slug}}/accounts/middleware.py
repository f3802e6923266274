"""ASGI middleware that signs a WebSocket in with a single-use ticket.

A client presents the ticket in the ``Authorization: Ticket <ticket>`` header, or,
for clients that cannot set headers on a WebSocket, as ``?ticket=<ticket>`` (it is
short-lived and used up on first presentation, so a logged URL is worthless). A
valid ticket sets ``scope["user"]``; an invalid, expired or reused one is refused at
the handshake (HTTP 403). Connections without a ticket pass through unchanged, with
the session's user from ``AuthMiddlewareStack``.
https://channels.readthedocs.io/en/stable/topics/authentication.html#custom-authentication
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware

from accounts.services import ticket_redeem
from chat.protocol import CLOSE_BAD_TICKET


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
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        ticket = presented_ticket(scope)
        if ticket is None:
            return await super().__call__(scope, receive, send)
        user = await database_sync_to_async(ticket_redeem)(ticket=ticket)
        if user is None:
            return await refuse(receive, send)
        return await super().__call__({**scope, "user": user}, receive, send)
