"""A room's new messages as server-sent events: an ``AsyncHttpConsumer``.

Route: ``GET /chat/<room>/events/`` (``Accept: text/event-stream``). Browsers read it
with ``new EventSource(url)``, which reconnects by itself and sends the id of the
last event it saw in ``Last-Event-ID``; the stream then starts with the messages
stored after that id, so none are missed. For a read-only feed (a wall display, a
bot that only listens) this is simpler than a WebSocket and passes through any HTTP
proxy. The stream goes through the pages' host check, HTTPS redirect and security
headers (``PageChecksMixin``, realtime/pagechecks.py), which Django's middleware
would not give a consumer's route.

No long-poll endpoint is offered: SSE already gives a long-lived response with
reconnection and resume built into the browser, and ``GET /chat/<room>/messages/
?after=<id>`` serves clients that can only poll.
https://channels.readthedocs.io/en/stable/topics/consumers.html#asynchttpconsumer
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from chat import limits, selectors
from chat.models import Room
from chat.protocol import message_frame
from chat.rooms import InvalidRoomName, validate_room_name
from realtime.frames import encode
from realtime.guards import client_address
from realtime.pagechecks import PageChecksMixin

PLAIN_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
# Seconds between comment lines that keep idle proxies from closing the stream.
KEEPALIVE_SECONDS = 20


def sse_event(*, event: str, data: str, event_id: int | None = None) -> bytes:
    """One event in the text/event-stream format; data is a single JSON line."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {data}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


class RoomEventsConsumer(PageChecksMixin, AsyncHttpConsumer):
    room: Room | None = None
    keepalive: asyncio.Task[None] | None = None

    async def http_request(self, message: dict[str, Any]) -> None:
        """AsyncHttpConsumer ends the consumer as soon as ``handle`` returns; a stream
        must outlive it, so the consumer stays open while ``self.room`` is set and
        ends on ``http.disconnect`` instead."""
        if "body" in message:
            self.body.append(message["body"])
        if message.get("more_body"):
            return
        await self.handle(b"".join(self.body))
        if self.room is None:
            await self.disconnect()
            raise StopConsumer()

    async def handle(self, body: bytes) -> None:
        try:
            room_name = validate_room_name(self.scope["url_route"]["kwargs"]["room_name"])
        except InvalidRoomName as error:
            await self.send_response(404, str(error).encode(), headers=PLAIN_TEXT)
            return
        if settings.CHAT_REQUIRE_LOGIN and not self.scope["user"].is_authenticated:
            await self.send_response(403, b"Log in first.", headers=PLAIN_TEXT)
            return
        try:
            room = await database_sync_to_async(limits.room_get_or_create_limited)(
                name=room_name, user=self.scope["user"], address=client_address(self.scope)
            )
        except limits.RoomLimitReached:
            body = b"Too many new rooms; follow an existing one."
            await self.send_response(429, body, headers=[*PLAIN_TEXT, (b"retry-after", b"3600")])
            return
        await self.channel_layer.group_add(room.group_name, self.channel_name)
        self.room = room
        await self.send_headers(
            headers=[
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                # nginx would otherwise buffer the stream and deliver it in lumps.
                (b"x-accel-buffering", b"no"),
            ]
        )
        missed = await database_sync_to_async(selectors.message_list_after)(
            room=room, after_id=self.last_event_id(), limit=settings.CHAT_HISTORY_LENGTH
        )
        for message in missed:
            frame = encode(message_frame(message, room.name))
            await self.send_event(event="message", data=frame, event_id=message.pk)
        await self.send_body(b": stream open\n\n", more_body=True)
        self.keepalive = asyncio.create_task(self.send_keepalives())

    def last_event_id(self) -> int:
        for name, value in self.scope.get("headers", []):
            if name == b"last-event-id" and value.isdigit() and len(value) < 19:
                return int(value)
        return 0

    async def send_event(self, *, event: str, data: str, event_id: int | None = None) -> None:
        await self.send_body(sse_event(event=event, data=data, event_id=event_id), more_body=True)

    async def send_keepalives(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            await self.send_body(b": keepalive\n\n", more_body=True)

    async def disconnect(self) -> None:
        if self.keepalive is not None:
            self.keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.keepalive
        if self.room is not None:
            await self.channel_layer.group_discard(self.room.group_name, self.channel_name)

    # Channel-layer events of the room's group.
    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_event(event="message", data=event["frame"], event_id=event["id"])

    async def chat_moderated(self, event: dict[str, Any]) -> None:
        await self.send_event(event="moderated", data=event["frame"])

    async def chat_typing(self, event: dict[str, Any]) -> None:
        """Typing notices are for interactive clients; a feed skips them."""
