"""The longest a WebSocket stays open: ``WEBSOCKET_MAX_AGE`` seconds (settings).

A channel layer forgets a group membership ``GROUP_EXPIRY`` seconds after it was
added (``realtime/channel_layers.py``: one day), so a socket open longer would
silently stop getting its groups' messages. Before that, this middleware closes it
(code 1001, going away) and hands the consumer a ``websocket.disconnect``, so its
disconnect handler leaves its groups as on any other close; the browser client
reconnects and resyncs from stored history. The server does not need to know:
uvicorn has no such limit (daphne's ``--websocket_timeout`` was one).
https://channels.readthedocs.io/en/stable/topics/channel_layers.html#groups
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from django.conf import settings

from realtime.closecodes import CLOSE_GOING_AWAY


class WebSocketLifetimeMiddleware:
    """Close WebSockets older than ``max_age`` seconds (default: the setting).

    ``__call__`` returns the inner application's coroutine rather than awaiting it,
    so that no coroutine of this middleware is kept for as long as the socket is
    open (about 250 bytes of every idle socket; docs/benchmark.md)."""

    _asgi_single_callable = True  # an ASGI 3 app, though __call__ is a plain def

    def __init__(self, app: Any, max_age: float | None = None) -> None:
        self.app = app
        self.max_age = settings.WEBSOCKET_MAX_AGE if max_age is None else max_age

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        if scope["type"] != "websocket":
            return self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_age
        expired = False

        async def receive_until_deadline() -> dict[str, Any]:
            nonlocal expired
            if not expired:
                try:
                    async with asyncio.timeout_at(deadline):
                        return await receive()
                except TimeoutError:
                    expired = True
                    await send({"type": "websocket.close", "code": CLOSE_GOING_AWAY})
            return {"type": "websocket.disconnect", "code": CLOSE_GOING_AWAY}

        return self.app(scope, receive_until_deadline, send)
