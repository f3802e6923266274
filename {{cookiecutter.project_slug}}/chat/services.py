"""Writes: the actions the consumers, views, management commands and worker share.

Each is a keyword-only function named ``<entity>_<action>``. Synchronous; async
callers wrap them in ``database_sync_to_async``.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser

from chat.models import Message, Room
from chat.protocol import encode, message_frame
from chat.rooms import validate_room_name

ANONYMOUS_NAME = "anonymous"


def room_get_or_create(*, name: str) -> Room:
    room, _ = Room.objects.get_or_create(name=validate_room_name(name))
    return room


def message_create(
    *, room: Room, author: AbstractBaseUser | AnonymousUser | None, text: str
) -> Message:
    signed_in = author is not None and author.is_authenticated
    return Message.objects.create(
        room=room,
        author=author if signed_in else None,
        author_name=author.get_username() if signed_in else ANONYMOUS_NAME,
        text=text,
    )


def message_event(*, message: Message, room: Room) -> dict[str, Any]:
    """The channel-layer event that delivers a stored message to a room's members."""
    return {"type": "chat.message", "frame": encode(message_frame(message, room.name))}


def message_post(
    *, room_name: str, author: AbstractBaseUser | AnonymousUser | None, text: str
) -> Message:
    """Store a message and deliver it to everyone in the room (for sync callers)."""
    room = room_get_or_create(name=room_name)
    message = message_create(room=room, author=author, text=text)
    channel_layer = get_channel_layer()
    async_to_sync(channel_layer.group_send)(
        room.group_name, message_event(message=message, room=room)
    )
    return message
