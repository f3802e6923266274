"""The chat: an ``AsyncWebsocketConsumer`` that parses a frame, calls a service or
selector, and sends a frame.

``ChatConsumer`` is the Channels tutorial's ``AsyncWebsocketConsumer`` grown up:
validated room names, stored history, typed error frames, moderation by the worker,
and sockets that close when their user logs out. The machinery comes from the
real-time layer's building blocks (``realtime/``): ``LayerFaultsMixin`` (close with
4503 when Redis fails), ``FanoutMixin`` (the room's broadcasts through one group
member per process, and the guards: login required, socket caps, the rate limit,
groups always left) and ``FastDispatchMixin`` (a cheaper dispatch, docs/benchmark.md).
The logic it calls lives in ``services.py`` (writes) and ``selectors.py`` (reads);
the frames it speaks are described in ``protocol.py``.
https://channels.readthedocs.io/en/stable/topics/consumers.html
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat import limits, openings, selectors, services
from chat.consumers.room_events import RoomEventsMixin
from chat.models import Room
from chat.protocol import (
    CLOSE_INVALID_ROOM,
    PostMessage,
    RequestHistory,
    ack_frame,
    history_frame,
    parse_client_frame,
)
from chat.rooms import (
    SESSION_LAST_ROOM,
    InvalidRoomName,
    room_group_name,
    user_group_name,
    validate_room_name,
)
from realtime.dispatch import FastDispatchMixin
from realtime.fanout import FanoutMixin
from realtime.faults import LayerFaultsMixin
from realtime.frames import ClientError, encode, error_frame
from realtime.guards import client_address


class ChatConsumer(
    LayerFaultsMixin, FanoutMixin, RoomEventsMixin, FastDispatchMixin, AsyncWebsocketConsumer
):
    room: Room | None = None
    # The handlers of these events only send a frame or close; connect, receive and
    # disconnect store and read through chat/writer.py and database_sync_to_async,
    # which clean the connections themselves (realtime/dispatch.py).
    skip_cleanup_for = frozenset(
        {
            "chat.message",
            "chat.moderated",
            "chat.typing",
            "chat.logout",
            "websocket.connect",
            "websocket.receive",
            "websocket.disconnect",
        }
    )
    # The room reaches the socket through the fan-out: its own channel is read only
    # once it joins the user's group (signed in), realtime/dispatch.py.
    channel_on_demand = True

    def requires_login(self) -> bool:
        return settings.CHAT_REQUIRE_LOGIN

    async def connect(self) -> None:
        try:
            room_name = validate_room_name(self.scope["url_route"]["kwargs"]["room_name"])
        except InvalidRoomName:
            # Closing before accept() refuses the handshake: the client sees HTTP 403.
            await self.close(code=CLOSE_INVALID_ROOM)
            return
        if await self.refused_at_handshake():
            return
        user = self.scope["user"]
        # The room's broadcasts reach this socket through the process's fan-out, which
        # holds them back until the history read below has been sent: joined first,
        # so that nothing posted meanwhile is missed.
        await self.join_fanout(room_group_name(room_name))
        try:
            # Read with the other sockets of this process joining now (chat/openings.py).
            self.room, recent = await openings.room_open(
                name=room_name,
                user=user,
                address=client_address(self.scope),
                history_length=settings.CHAT_HISTORY_LENGTH,
            )
        except limits.RoomLimitReached:
            await self.refuse_new_room()  # the fan-out is left as the consumer ends
            return
        self.history_requests = limits.RequestWindow(
            limit=settings.CHAT_HISTORY_REQUESTS_PER_MINUTE, seconds=60
        )
        if user.is_authenticated:
            await self.join_group(user_group_name(user.pk))
        await self.accept()
        await self.remember_room(room_name)
        frame = limits.history_within_bytes(history_frame(recent, self.room.name), keep="newest")
        await self.send(text_data=encode(frame))
        await self.fanout_live()

    async def refuse_new_room(self) -> None:
        """Accept, say why in an error frame, and close with 4430: a browser sees the
        code (a close before accept() reaches it as a bare HTTP 403)."""
        await self.accept()
        error = ClientError("room_limit", "Too many new rooms; join an existing one.")
        await self.send(text_data=encode(error_frame(error)))
        await self.close(code=limits.CLOSE_ROOM_LIMIT)

    async def remember_room(self, room_name: str) -> None:
        """Store the room in the visitor's session. A WebSocket never saves the
        session by itself, so save it here; the next HTTP request sees the value."""
        session = self.scope.get("session")
        if session is None or session.session_key is None:
            return  # no session cookie: nothing an HTTP request could read back
        session[SESSION_LAST_ROOM] = room_name
        await database_sync_to_async(session.save)()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            if not await self.frame_allowed():  # the rate limit (realtime/guards.py)
                return
            action = parse_client_frame(
                text_data,
                bytes_data,
                max_length=settings.CHAT_MESSAGE_MAX_LENGTH,
                max_frame_bytes=settings.WEBSOCKET_FRAME_MAX_BYTES,
            )
        except ClientError as error:
            await self.send(text_data=encode(error_frame(error)))
            return
        if isinstance(action, PostMessage):
            await self.post_message(action)
        elif isinstance(action, RequestHistory):
            await self.send_history(action)

    async def post_message(self, action: PostMessage) -> None:
        room = self.joined_room()
        user = self.scope["user"]
        message, new = await services.message_save_once(
            room=room,
            author=user,
            text=action.text,
            sender=services.sender_key(author=user, session=self.scope.get("session")),
            client_id=action.client_id,
        )
        if action.client_id:  # acknowledged first: stored, whatever delivery does next
            await self.send(text_data=encode(ack_frame(message, action.client_id)))
        if new:
            await services.message_publish(message=message, room=room)

    async def send_history(self, action: RequestHistory) -> None:
        room = self.joined_room()
        if not self.history_requests.allow():
            error = ClientError("rate_limited", "Too many history requests; wait a minute.")
            await self.send(text_data=encode(error_frame(error)))
            return
        messages, more = await database_sync_to_async(selectors.message_page_after)(
            room=room, after_id=action.after, limit=settings.CHAT_HISTORY_LENGTH
        )
        frame = history_frame(messages, room.name, after=action.after, more=more)
        await self.send(text_data=encode(limits.history_within_bytes(frame)))

    def joined_room(self) -> Room:
        """The room; frames only arrive after connect() accepted, so it is set."""
        if self.room is None:
            raise RuntimeError("a frame arrived before the socket joined its room")
        return self.room
