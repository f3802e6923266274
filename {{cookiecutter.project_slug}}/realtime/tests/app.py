"""An application of the real-time layer's own, for its tests: one consumer built on
every building block, behind the same middleware as ``config/asgi.py``, and no app of
the project. ``/ws/tests/<group>/`` joins the group's fan-out and says hello; a frame
``{"action": "broadcast", "text": ...}`` goes to the group, ``{"action": "fail"}``
raises a ClientError, anything else is echoed (after ``"delay"`` seconds, if given).
``/ws/tests-sync/<group>/`` is the same on a synchronous consumer (``SyncGuardsMixin``),
and ``/tests/stream/`` an HTTP consumer (``PageChecksMixin``, ``HttpGuards``) that
answers "open"."""

from __future__ import annotations

import asyncio
from typing import Any

from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer, WebsocketConsumer
from channels.routing import URLRouter
from django.contrib.auth import get_user_model
from django.urls import re_path

from realtime.auth import TicketAuthMiddleware, WebSocketAuthMiddlewareStack
from realtime.dispatch import FastDispatchMixin
from realtime.fanout import FanoutMixin
from realtime.faults import LayerFaultsMixin
from realtime.frames import ClientError, JsonFramesMixin, encode
from realtime.groups import frame_event, group_name
from realtime.guards import HttpGuards, SyncGuardsMixin
from realtime.lifetime import WebSocketLifetimeMiddleware
from realtime.origins import TrustedOriginValidator
from realtime.pagechecks import PageChecksMixin
from realtime.refuse import RefuseConsumer


class EchoConsumer(
    LayerFaultsMixin, FanoutMixin, JsonFramesMixin, FastDispatchMixin, AsyncJsonWebsocketConsumer
):
    skip_cleanup_for = frozenset({"websocket.receive"})

    def requires_login(self) -> bool:
        return self.scope["url_route"]["kwargs"]["group"] == "members"

    async def connect(self) -> None:
        if await self.refused_at_handshake():
            return
        self.group = group_name("tests", self.scope["url_route"]["kwargs"]["group"])
        await self.join_fanout(self.group)
        await self.accept()
        await self.send_json({"type": "hello", "user": self.scope["user"].get_username()})
        await self.fanout_live()

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        action = content.get("action")
        if action == "broadcast":
            event = frame_event("tests.message", {"type": "message", "text": content.get("text")})
            await self.channel_layer.group_send(self.group, event)
        elif action == "fail":
            raise ClientError("bad_action", "This action always fails.")
        else:
            delay = content.get("delay")
            if isinstance(delay, int | float) and 0 < delay <= 5:
                await asyncio.sleep(delay)
            await self.send_json({"type": "echo", "data": content})


class SyncEchoConsumer(SyncGuardsMixin, WebsocketConsumer):
    def requires_login(self) -> bool:
        return self.scope["url_route"]["kwargs"]["group"] == "members"

    def connect(self) -> None:
        if self.refused_at_handshake():
            return
        self.join_group(group_name("tests", "sync", self.scope["url_route"]["kwargs"]["group"]))
        self.accept()
        self.send(text_data=encode({"type": "hello", "user": self.scope["user"].get_username()}))

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            if not self.frame_allowed():
                return
        except ClientError as error:
            self.send(text_data=encode({"type": "error", "code": error.code}))
            return
        self.send(text_data=encode({"type": "echo", "text": text_data}))


class StreamConsumer(PageChecksMixin, HttpGuards, AsyncHttpConsumer):
    async def handle(self, body: bytes) -> None:
        if await self.guards_refused():
            await self.send_response(429, b"Too many streams.")
            return
        await self.send_response(200, b"open", headers=[(b"content-type", b"text/plain")])

    async def end_revoked(self) -> None:  # pragma: no cover - a response ends at once here
        pass


def redeem(*, ticket: str) -> Any:
    """A ticket is ``user:<username>``: that user, or None."""
    kind, _, username = ticket.partition(":")
    if kind != "user":
        return None
    return get_user_model().objects.filter(username=username).first()


routes = URLRouter(
    [
        re_path(r"^ws/tests/(?P<group>[A-Za-z0-9_-]+)/$", EchoConsumer.as_asgi()),
        re_path(r"^ws/tests-sync/(?P<group>[A-Za-z0-9_-]+)/$", SyncEchoConsumer.as_asgi()),
        re_path(r"", RefuseConsumer.as_asgi()),
    ]
)


def websocket_stack(max_age: float | None = None) -> WebSocketLifetimeMiddleware:
    return WebSocketLifetimeMiddleware(
        TrustedOriginValidator(
            WebSocketAuthMiddlewareStack(TicketAuthMiddleware(routes, redeem=redeem))
        ),
        max_age=max_age,
    )


application = websocket_stack()

# The HTTP consumer, with the session and user as the project's streams get them.
http_application = WebSocketAuthMiddlewareStack(StreamConsumer.as_asgi())


def from_address(app: Any, address: str) -> Any:
    """The app, seeing every connection come from ``address`` (as a server sets it)."""

    async def with_client(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return await app({**scope, "client": (address, 50000)}, receive, send)

    return with_client
