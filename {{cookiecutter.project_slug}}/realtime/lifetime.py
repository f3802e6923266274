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
from typing import Any

from django.conf import settings

from realtime.closecodes import CLOSE_GOING_AWAY


class WebSocketLifetimeMiddleware:
    """Close WebSockets older than ``max_age`` seconds (default: the setting)."""

    def __init__(self, app: Any, max_age: float | None = None) -> None:
        self.app = app
        self.max_age = settings.WEBSOCKET_MAX_AGE if max_age is None else max_age

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
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

        return await self.app(scope, receive_until_deadline, send)
