"""The chat as a synchronous ``WebsocketConsumer``: the form of the Channels
tutorial's part 2, kept as a working alternative at ``/ws/chat-sync/<room>/``.

It speaks the same frames as ``ChatConsumer`` and shares its rooms: members on
either route see each other's messages. Sync consumers run each handler in a thread
of their own, so they may call the ORM directly, but each open socket then holds a
thread while it works: prefer the async consumer for a busy chat, and use this form
when the consumer mostly calls blocking code. It has the async consumers' guards
through ``SyncGuardsMixin`` (realtime/guards.py): login required, the socket caps,
the rate limit (a flood is closed with 4429), the session check, and groups left
however it ends, a handler that raised included; logging out closes it (4001) as it
closes them, through the user's group.
https://channels.readthedocs.io/en/stable/tutorial/part_2.html
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import WebsocketConsumer
from django.conf import settings

from chat import limits, selectors, services
from chat.models import Room
from chat.protocol import (
    CLOSE_INVALID_ROOM,
    PostMessage,
    ack_frame,
    history_frame,
    parse_client_frame,
)
from chat.rooms import InvalidRoomName, user_group_name, validate_room_name
from realtime.closecodes import CLOSE_LOGGED_OUT
from realtime.frames import ClientError, encode, error_frame
from realtime.guards import SyncGuardsMixin, client_address


# Not LayerFaultsMixin: its close() is a coroutine, for async consumers only.
class SyncChatConsumer(SyncGuardsMixin, WebsocketConsumer):
    room: Room | None = None

    def requires_login(self) -> bool:
        return settings.CHAT_REQUIRE_LOGIN

    def connect(self) -> None:
        try:
            room_name = validate_room_name(self.scope["url_route"]["kwargs"]["room_name"])
        except InvalidRoomName:
            self.close(code=CLOSE_INVALID_ROOM)
            return
        if self.refused_at_handshake():
            return
        try:
            self.room = limits.room_get_or_create_limited(
                name=room_name, user=self.scope["user"], address=client_address(self.scope)
            )
        except limits.RoomLimitReached:
            self.accept()  # so that the client sees the code (see ChatConsumer)
            error = ClientError("room_limit", "Too many new rooms; join an existing one.")
            self.send(text_data=encode(error_frame(error)))
            self.close(code=limits.CLOSE_ROOM_LIMIT)
            return
        self.history_requests = limits.RequestWindow(
            limit=settings.CHAT_HISTORY_REQUESTS_PER_MINUTE, seconds=60
        )
        self.join_group(self.room.group_name)
        if self.scope["user"].is_authenticated:
            self.join_group(user_group_name(self.scope["user"].pk))
        self.accept()
        recent = selectors.message_list_recent(room=self.room, limit=settings.CHAT_HISTORY_LENGTH)
        frame = limits.history_within_bytes(history_frame(recent, self.room.name), keep="newest")
        self.send(text_data=encode(frame))

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.room is None:
            raise RuntimeError("a frame arrived before the socket joined its room")
        try:
            if not self.frame_allowed():  # the rate limit; a flood is closed
                return
            action = parse_client_frame(
                text_data,
                bytes_data,
                max_length=settings.CHAT_MESSAGE_MAX_LENGTH,
                max_frame_bytes=settings.WEBSOCKET_FRAME_MAX_BYTES,
            )
        except ClientError as error:
            self.send(text_data=encode(error_frame(error)))
            return
        if isinstance(action, PostMessage):
            user = self.scope["user"]
            message, new = services.message_create_once(
                room=self.room,
                author=user,
                text=action.text,
                sender=services.sender_key(author=user, session=self.scope.get("session")),
                client_id=action.client_id,
            )
            if action.client_id:
                self.send(text_data=encode(ack_frame(message, action.client_id)))
            if new:
                async_to_sync(services.message_publish)(message=message, room=self.room, wait=True)
        elif not self.history_requests.allow():
            refusal = ClientError("rate_limited", "Too many history requests; wait a minute.")
            self.send(text_data=encode(error_frame(refusal)))
        else:
            found, more = selectors.message_page_after(
                room=self.room, after_id=action.after, limit=settings.CHAT_HISTORY_LENGTH
            )
            frame = history_frame(found, self.room.name, after=action.after, more=more)
            self.send(text_data=encode(limits.history_within_bytes(frame)))

    # Channel-layer events, the same ones ChatConsumer handles.
    def chat_message(self, event: dict[str, Any]) -> None:
        self.send(text_data=event["frame"])

    def chat_moderated(self, event: dict[str, Any]) -> None:
        self.send(text_data=event["frame"])

    def chat_typing(self, event: dict[str, Any]) -> None:
        if event.get("sender") != self.channel_name:
            self.send(text_data=event["frame"])

    def chat_logout(self, event: dict[str, Any]) -> None:
        self.close(code=CLOSE_LOGGED_OUT)
