"""Writes: the actions the consumers, views, management commands and worker share.

Each is a keyword-only function named ``<entity>_<action>``. Synchronous; async
callers wrap them in ``database_sync_to_async``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import connection

from chat.models import Message, Room
from chat.protocol import message_frame, moderated_frame, typing_frame
from chat.rooms import user_group_name, validate_room_name
from realtime.frames import encode

logger = logging.getLogger(__name__)

ANONYMOUS_NAME = "anonymous"
# The worker's channel (CHAT_WORKER_CHANNEL, "chat-worker" unless set):
# ``manage.py runworker chat-worker`` consumes it.
WORKER_CHANNEL = settings.CHAT_WORKER_CHANNEL

Author = AbstractBaseUser | AnonymousUser | None


def room_get_or_create(*, name: str) -> Room:
    room, _ = Room.objects.get_or_create(name=validate_room_name(name))
    return room


def author_name(author: Author) -> str:
    """The name shown on a sender's messages."""
    if author is not None and author.is_authenticated:
        return author.get_username()
    return ANONYMOUS_NAME


def message_new(*, room: Room, author: Author, text: str) -> Message:
    """A message not yet stored: ``message_create`` stores one, ``messages_save``
    (through chat/writer.py) many at once."""
    signed_in = author is not None and author.is_authenticated
    return Message(
        room=room,
        # Typing only: a signed-in author is the user model, but request.user is typed
        # AbstractBaseUser, which django-stubs cannot narrow to it.
        author=author if signed_in else None,  # type: ignore[misc]
        author_name=author_name(author),
        text=text,
    )


def message_create(*, room: Room, author: Author, text: str) -> Message:
    message = message_new(room=room, author=author, text=text)
    message.save(force_insert=True)
    return message


def messages_save(*, messages: Sequence[Message]) -> list[Message | Exception]:
    """Store new messages with one INSERT (``bulk_create``: one transaction, split into
    a few statements on SQLite), in order, and give each its outcome: the
    saved message, or the error that kept it from being stored.

    If the one INSERT fails, the messages are stored one by one, so that a message
    the database refuses fails alone and the others are stored. A database that
    cannot return the new ids from a multi-row INSERT (MySQL) stores them one by one.
    """
    if len(messages) > 1 and connection.features.can_return_rows_from_bulk_insert:
        try:
            return list(Message.objects.bulk_create(messages))
        except Exception:  # noqa: BLE001 - each message is tried alone below, and fails alone
            logger.warning("storing %d messages at once failed; one by one now", len(messages))
    outcomes: list[Message | Exception] = []
    for message in messages:
        message.pk = None  # a failed bulk_create stored none of them (one transaction)
        try:
            message.save(force_insert=True)
        except Exception as error:  # noqa: BLE001 - handed to this message's sender
            outcomes.append(error)
        else:
            outcomes.append(message)
    return outcomes


def message_event(*, message: Message, room: Room) -> dict[str, Any]:
    """The channel-layer event that delivers a stored message to a room's members."""
    return {
        "type": "chat.message",
        "id": message.pk,
        "frame": encode(message_frame(message, room.name)),
    }


def typing_event(*, room: Room, author: Author, sender_channel: str) -> dict[str, Any]:
    """A "someone is typing" event; the sender's own channel skips it."""
    return {
        "type": "chat.typing",
        "frame": encode(typing_frame(room.name, author_name(author))),
        "sender": sender_channel,
    }


def moderation_job(*, message: Message) -> dict[str, Any]:
    """The worker job that checks a new message (see chat/workers.py)."""
    return {"type": "chat.moderate", "message_id": message.pk}


async def message_publish(*, message: Message, room: Room) -> None:
    """Deliver a stored message to the room's members and queue its moderation."""
    channel_layer = get_channel_layer()
    await channel_layer.group_send(room.group_name, message_event(message=message, room=room))
    if settings.CHAT_MODERATION_ENABLED:
        await channel_layer.send(WORKER_CHANNEL, moderation_job(message=message))


def message_post(*, room_name: str, author: Author, text: str) -> Message:
    """Store a message and publish it (for sync callers: views, commands)."""
    room = room_get_or_create(name=room_name)
    message = message_create(room=room, author=author, text=text)
    async_to_sync(message_publish)(message=message, room=room)
    return message


def blocked_word(text: str) -> str | None:
    """The first blocked word the text contains as a whole word, if any."""
    for word in settings.CHAT_BLOCKED_WORDS:
        if re.search(rf"\b{re.escape(word)}\b", text, flags=re.IGNORECASE):
            return word
    return None


def message_moderate(*, message_id: int) -> Message | None:
    """Hide a message that contains a blocked word and tell its room; return it if hidden."""
    message = Message.objects.select_related("room").filter(pk=message_id).first()
    if message is None or message.hidden or blocked_word(message.text) is None:
        return None
    message.hidden = True
    message.save(update_fields=["hidden"])
    room = message.room
    async_to_sync(get_channel_layer().group_send)(
        room.group_name,
        {"type": "chat.moderated", "frame": encode(moderated_frame(message, room.name))},
    )
    logger.info("message %s in %s hidden by moderation", message.pk, room.name)
    return message


def user_sockets_close(*, user_id: int) -> None:
    """Close every WebSocket the user has open, in every process (on HTTP logout)."""
    async_to_sync(get_channel_layer().group_send)(user_group_name(user_id), {"type": "chat.logout"})
