"""Many rooms over one socket: an ``AsyncJsonWebsocketConsumer`` with typed actions.

Route: ``/ws/rooms/``. Every client frame is a JSON object with an ``action``:

    {"action": "join", "room": "lobby"}      -> {"type": "joined", "room": "lobby",
                                                  "messages": [<message frames>]}
    {"action": "leave", "room": "lobby"}     -> {"type": "left", "room": "lobby"}
    {"action": "message", "room": "lobby", "message": "hi"}
                                             -> every member: a message frame
    {"action": "message", "room": "lobby", "message": "hi", "client_id": "k3x9"}
                                             -> the same, and the sender an ack frame;
                                                a retry of the id is stored once
    {"action": "typing", "room": "lobby"}    -> the other members: a typing frame

Room members on ``/ws/chat/<room>/`` and here share one group per room, so both
see each other's messages. Errors come back as typed error frames
(``not_joined``, ``too_many_rooms``, ``invalid_room``, ...) and the socket stays open:
``JsonFramesMixin`` (realtime/frames.py) parses each frame within its limits and
turns a ``ClientError`` into an error frame, after ``GuardsMixin``'s rate limit.
https://channels.readthedocs.io/en/stable/topics/consumers.html#asyncjsonwebsocketconsumer
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from chat import limits, selectors, services
from chat.consumers.room_events import RoomEventsMixin
from chat.models import Room
from chat.protocol import ack_frame, message_client_id, message_frame, message_text
from chat.rooms import InvalidRoomName, user_group_name, validate_room_name
from realtime.faults import LayerFaultsMixin
from realtime.frames import ClientError, JsonFramesMixin
from realtime.guards import GuardsMixin, client_address

# How many rooms one socket may be in at once.
MAX_ROOMS_PER_SOCKET = 20


class RoomsJsonConsumer(
    LayerFaultsMixin, GuardsMixin, RoomEventsMixin, JsonFramesMixin, AsyncJsonWebsocketConsumer
):
    def requires_login(self) -> bool:
        return settings.CHAT_REQUIRE_LOGIN

    async def connect(self) -> None:
        self.rooms: dict[str, Room] = {}
        if await self.refused_at_handshake():
            return
        user = self.scope["user"]
        if user.is_authenticated:
            await self.join_group(user_group_name(user.pk))
        await self.accept()

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        action = content.get("action")
        handlers = {
            "join": self.join,
            "leave": self.leave,
            "message": self.post_message,
            "typing": self.typing,
        }
        if not isinstance(action, str) or action not in handlers:
            raise ClientError(
                "unknown_action", "Unknown action; use join, leave, message or typing."
            )
        await handlers[action](self.room_name(content), content)

    @staticmethod
    def room_name(content: dict[str, Any]) -> str:
        try:
            return validate_room_name(content.get("room"))
        except InvalidRoomName as error:
            raise ClientError("invalid_room", str(error)) from None

    def joined_room(self, name: str) -> Room:
        if name not in self.rooms:
            raise ClientError("not_joined", f"Join {name!r} first.")
        return self.rooms[name]

    async def join(self, name: str, content: dict[str, Any]) -> None:
        if name not in self.rooms and len(self.rooms) >= MAX_ROOMS_PER_SOCKET:
            raise ClientError(
                "too_many_rooms", f"One socket may join {MAX_ROOMS_PER_SOCKET} rooms."
            )
        try:
            room = await database_sync_to_async(limits.room_get_or_create_limited)(
                name=name, user=self.scope["user"], address=client_address(self.scope)
            )
        except limits.RoomLimitReached:
            raise ClientError("room_limit", "Too many new rooms; join an existing one.") from None
        await self.join_group(room.group_name)
        self.rooms[name] = room
        recent = await database_sync_to_async(selectors.message_list_recent)(
            room=room, limit=settings.CHAT_HISTORY_LENGTH
        )
        await self.send_json(
            {"type": "joined", "room": name, "messages": [message_frame(m, name) for m in recent]}
        )

    async def leave(self, name: str, content: dict[str, Any]) -> None:
        room = self.joined_room(name)
        await self.leave_group(room.group_name)
        del self.rooms[name]
        await self.send_json({"type": "left", "room": name})

    async def post_message(self, name: str, content: dict[str, Any]) -> None:
        room = self.joined_room(name)
        text = message_text(content, max_length=settings.CHAT_MESSAGE_MAX_LENGTH)
        client_id = message_client_id(content)
        user = self.scope["user"]
        message, new = await services.message_save_once(
            room=room,
            author=user,
            text=text,
            sender=services.sender_key(author=user, session=self.scope.get("session")),
            client_id=client_id,
        )
        if client_id:
            await self.send_json(ack_frame(message, client_id))
        if new:
            await services.message_publish(message=message, room=room)

    async def typing(self, name: str, content: dict[str, Any]) -> None:
        room = self.joined_room(name)
        await self.channel_layer.group_send(
            room.group_name,
            services.typing_event(
                room=room, author=self.scope["user"], sender_channel=self.channel_name
            ),
        )
