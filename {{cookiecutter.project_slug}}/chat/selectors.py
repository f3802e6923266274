"""Reads: the queries the consumers, views and worker share. Synchronous; async
callers wrap them in ``database_sync_to_async``.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef

from chat.models import Message, Room


def room_get(*, name: str) -> Room | None:
    return Room.objects.filter(name=name).first()


def room_list_recent(*, limit: int = 20) -> list[Room]:
    """The newest rooms with a visible message: a room only visited (or created by a
    script in bulk) is not listed."""
    spoken = Message.objects.filter(room=OuterRef("pk"), hidden=False)
    return list(Room.objects.filter(Exists(spoken)).order_by("-created")[:limit])


def message_list_recent(*, room: Room, limit: int) -> list[Message]:
    """The room's last ``limit`` visible messages, oldest first."""
    newest = list(room.messages.filter(hidden=False).order_by("-id")[:limit])
    newest.reverse()
    return newest


def message_list_after(*, room: Room, after_id: int, limit: int) -> list[Message]:
    """Visible messages with an id above ``after_id``, oldest first, at most ``limit``."""
    return message_page_after(room=room, after_id=after_id, limit=limit)[0]


def message_page_after(*, room: Room, after_id: int, limit: int) -> tuple[list[Message], bool]:
    """A page of ``message_list_after``, and whether more messages follow it (one row
    more is read to know): a client catching up asks again until none do."""
    rows = list(room.messages.filter(hidden=False, id__gt=after_id).order_by("id")[: limit + 1])
    return rows[:limit], len(rows) > limit


def message_get_by_client_id(*, sender: str, client_id: str) -> Message | None:
    """The message this sender's client stored under ``client_id``, if any."""
    return (
        Message.objects.select_related("room")
        .filter(sender_key=sender, client_id=client_id)
        .first()
    )
