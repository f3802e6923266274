"""Room names and the channel-layer group names made from them.

Every group name of the chat comes from a function here, through the real-time
layer's ``group_name`` (realtime/groups.py), which checks each part; a room name is
validated before it becomes part of one, and raw URL text never is.
"""

from __future__ import annotations

import re

from realtime.groups import group_name

ROOM_NAME_MAX_LENGTH = 64
ROOM_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,%d}$" % ROOM_NAME_MAX_LENGTH)  # noqa: UP031 - "{" would need escaping
# The session key that remembers the last room a visitor joined (the lobby offers it).
SESSION_LAST_ROOM = "chat_last_room"


class InvalidRoomName(ValueError):
    """The text cannot name a room."""


def validate_room_name(name: object) -> str:
    """Return the name unchanged if it may name a room, else raise InvalidRoomName."""
    if not isinstance(name, str) or not ROOM_NAME_RE.fullmatch(name):
        raise InvalidRoomName(
            f"Room names are 1-{ROOM_NAME_MAX_LENGTH} ASCII letters, digits, '-' or '_'."
        )
    return name


def room_group_name(room_name: str) -> str:
    """The channel-layer group of everyone in a room."""
    return group_name("chat", "room", validate_room_name(room_name))


def user_group_name(user_id: int) -> str:
    """The channel-layer group of every socket one signed-in user has open."""
    return group_name("chat", "user", int(user_id))
