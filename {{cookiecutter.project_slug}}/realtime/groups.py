"""Channel-layer group names, and the events that carry a frame to a group's sockets.

Every group name should come from ``group_name``: channel layers accept only ASCII
letters, digits, hyphens, underscores and periods, under 100 characters, so each
part is checked before it becomes part of a name, and raw URL text never does::

    group_name("chat", "room", room_name)   # "chat.room.lobby"
    group_name("notifications", "user", 7)  # "notifications.user.7"

Parts are joined with periods and may not contain one, so two different lists of
parts never make the same name.
https://channels.readthedocs.io/en/stable/topics/channel_layers.html#groups
"""

from __future__ import annotations

import re
from typing import Any

from realtime.frames import encode

GROUP_NAME_MAX_LENGTH = 99
PART_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class InvalidGroupName(ValueError):
    """The parts cannot make a group name."""


def group_name(*parts: str | int) -> str:
    """The parts joined with ``.``; InvalidGroupName if a part is not ASCII letters,
    digits, ``-`` or ``_`` (an int is written in decimal) or the name is too long."""
    if not parts:
        raise InvalidGroupName("a group name needs at least one part")
    texts = []
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, str | int):
            raise InvalidGroupName(f"group name parts are text or integers, not {part!r}")
        text = str(part)
        if not PART_RE.fullmatch(text):
            raise InvalidGroupName(f"{text!r}: use ASCII letters, digits, '-' or '_'")
        texts.append(text)
    name = ".".join(texts)
    if len(name) > GROUP_NAME_MAX_LENGTH:
        raise InvalidGroupName(f"group names are at most {GROUP_NAME_MAX_LENGTH} characters")
    return name


def frame_event(event_type: str, frame: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A channel-layer event for ``group_send`` that carries a frame, encoded once here:
    fan-outs (realtime/fanout.py) write it as it is to each of their sockets, and a
    consumer that joined the group itself gets it in its ``<app>_<event>`` handler.
    ``sender=<channel name>`` keeps it from that socket."""
    return {"type": event_type, "frame": encode(frame), **extra}
