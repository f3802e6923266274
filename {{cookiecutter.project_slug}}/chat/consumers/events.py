"""A room's new messages as server-sent events: an ``AsyncHttpConsumer``.

Route: ``GET /chat/<room>/events/`` (``Accept: text/event-stream``). Browsers read it
with ``new EventSource(url)``, which reconnects by itself and sends the id of the last
event it saw in ``Last-Event-ID``; the stream then starts with the messages stored
after that id, page by page, so none are missed. Past ``RESYNC_PAGES`` pages (an
absence longer than the browser client pages in by itself) an ``event: gap`` says
where the rest starts (``{"type": "gap", "after": <id>}``), for ``GET
/chat/<room>/messages/?after=<id>``: nothing goes missing unsaid. For a read-only feed
(a wall display, a bot that only listens) this is simpler than a WebSocket and passes
through any HTTP proxy. The stream goes through the pages' host check, HTTPS redirect
and security headers (``PageChecksMixin``, realtime/pagechecks.py), which Django's
middleware would not give a consumer's route. It honours the sockets' guards
(``HttpGuards``, realtime/guards.py): a stream counts against the per-user and per-
address socket caps (429 past them), and it ends when its user logs out (the user's
group, at once) or its session stops signing the user in (the session check).

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
from chat.rooms import InvalidRoomName, user_group_name, validate_room_name
from realtime.frames import encode
from realtime.guards import HttpGuards, client_address
from realtime.pagechecks import PageChecksMixin

PLAIN_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
# Seconds between comment lines that keep idle proxies from closing the stream.
KEEPALIVE_SECONDS = 20
# History pages a resumed stream sends before it names a gap (as the browser client).
RESYNC_PAGES = 20


def sse_event(*, event: str, data: str, event_id: int | None = None) -> bytes:
    """One event in the text/event-stream format; data is a single JSON line."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {data}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


class RoomEventsConsumer(PageChecksMixin, HttpGuards, AsyncHttpConsumer):
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
        if await self.guards_refused():
            body = b"Too many open sockets and streams; close some first."
            await self.send_response(429, body, headers=[*PLAIN_TEXT, (b"retry-after", b"60")])
            return
        try:
            room = await database_sync_to_async(limits.room_get_or_create_limited)(
                name=room_name, user=self.scope["user"], address=client_address(self.scope)
            )
        except limits.RoomLimitReached:
            body = b"Too many new rooms; follow an existing one."
            await self.send_response(429, body, headers=[*PLAIN_TEXT, (b"retry-after", b"3600")])
            return
        await self.join_group(room.group_name)
        if self.scope["user"].is_authenticated:
            await self.join_group(user_group_name(self.scope["user"].pk))
        self.room = room
        await self.send_headers(
            headers=[
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
                # nginx would otherwise buffer the stream and deliver it in lumps.
                (b"x-accel-buffering", b"no"),
            ]
        )
        await self.send_missed(room, after=self.last_event_id())
        await self.send_body(b": stream open\n\n", more_body=True)
        self.keepalive = asyncio.create_task(self.send_keepalives())

    async def send_missed(self, room: Room, *, after: int) -> None:
        """The messages after ``after``: a page for a new stream, up to RESYNC_PAGES
        for a resumed one, then a gap event if more remain."""
        for _ in range(RESYNC_PAGES if after else 1):
            page, more = await database_sync_to_async(selectors.message_page_after)(
                room=room, after_id=after, limit=settings.CHAT_HISTORY_LENGTH
            )
            for message in page:
                frame = encode(message_frame(message, room.name))
                await self.send_event(event="message", data=frame, event_id=message.pk)
                after = message.pk
            if not more:
                return
        if self.last_event_id():
            gap = encode({"type": "gap", "room": room.name, "after": after})
            await self.send_event(event="gap", data=gap)

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
        """The stream's groups are left by ``HttpGuards``, however it ends."""
        await self.stop_keepalive()

    async def stop_keepalive(self) -> None:
        if self.keepalive is not None:
            self.keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.keepalive
            self.keepalive = None

    async def end_revoked(self) -> None:
        """End the response: the session no longer signs the user in. The consumer
        itself ends on the ``http.disconnect`` that follows."""
        await self.stop_keepalive()
        if self.room is not None:
            self.room = None
            await self.send_event(event="logout", data="{}")
            await self.send_body(b"", more_body=False)

    # Channel-layer events of the room's group.
    async def chat_message(self, event: dict[str, Any]) -> None:
        await self.send_event(event="message", data=event["frame"], event_id=event["id"])

    async def chat_moderated(self, event: dict[str, Any]) -> None:
        await self.send_event(event="moderated", data=event["frame"])

    async def chat_typing(self, event: dict[str, Any]) -> None:
        """Typing notices are for interactive clients; a feed skips them."""

    async def chat_logout(self, event: dict[str, Any]) -> None:
        await self.end_revoked()
