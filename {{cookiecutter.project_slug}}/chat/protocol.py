"""The chat's wire protocol: what clients may send, and every frame the server sends.

Client to server (text frames, JSON objects):
    {"message": "hi"}                       post a message (the Channels tutorial's form)
    {"message": "hi", "client_id": "k3x9"}  the same, acknowledged; a retry with the same
                                            id from the same sender is stored once
    {"action": "history", "after": 41}      ask for messages after id 41 (on reconnect)

Server to client:
    {"type": "message", "id": 42, "room": "lobby", "username": "ann",
     "message": "hi", "created": "2026-01-01T12:00:00+00:00"}
    {"type": "history", "room": "lobby", "messages": [<message frames>]}   on connect
    {"type": "history", "room": "lobby", "messages": [...], "after": 41, "more": true}
        the reply to a history request: a page of at most CHAT_HISTORY_LENGTH;
        "more" says messages follow it, and the client asks again after the page
    {"type": "ack", "client_id": "k3x9", "message": <message frame>}   to the sender of
        a message with a client_id, once it is stored (a retry gets the stored one)
    {"type": "moderated", "id": 42, "room": "lobby"}   message 42 was hidden
    {"type": "typing", "room": "lobby", "username": "ann"}   (JSON consumer's rooms)
    {"type": "error", "code": "invalid_json", "message": "..."}   (realtime/frames.py)

Close codes: the chat registers its own two in the real-time layer's registry
(``realtime/closecodes.py``, which lists the rest: login required, bad ticket, no
such path, too slow, too many sockets, rate limited, layer unavailable):
    4001 logged out elsewhere (HTTP logout closes that user's sockets)
    4400 invalid room name

The client-facing ``type`` is separate from the channel-layer event ``type``
(``chat.message``), which never leaves the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chat.models import Message
from realtime import closecodes
from realtime.frames import ClientError, parse_json_object

CLOSE_LOGGED_OUT = closecodes.register(4001, "logged_out", "the user logged out elsewhere")
CLOSE_INVALID_ROOM = closecodes.register(4400, "invalid_room", "invalid room name")


# The largest id a client may name: the top of a 64-bit signed integer column.
MAX_ID = 2**63 - 1
# A client's id for its message: what the browser client makes (chat-socket.js).
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class PostMessage:
    text: str
    client_id: str = ""


@dataclass(frozen=True)
class RequestHistory:
    after: int


ClientAction = PostMessage | RequestHistory


def parse_client_frame(
    text_data: str | None,
    bytes_data: bytes | None,
    *,
    max_length: int,
    max_frame_bytes: int,
) -> ClientAction:
    """Turn one chat frame into an action, or raise ClientError saying why not."""
    data = parse_json_object(text_data, bytes_data, max_frame_bytes=max_frame_bytes)
    action = data.get("action", "message")
    if action == "message":
        return PostMessage(
            text=message_text(data, max_length=max_length), client_id=message_client_id(data)
        )
    if action == "history":
        return RequestHistory(after=message_id(data.get("after", 0)))
    raise ClientError("unknown_action", "Unknown action; use 'message' or 'history'.")


def message_id(value: Any) -> int:
    """A message id sent by a client: an integer in the database's range."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise ClientError("invalid_after", "'after' must be a message id (an integer >= 0).")
    return value


def message_client_id(data: dict[str, Any]) -> str:
    """The optional ``client_id`` a client gave its message; "" if none."""
    value = data.get("client_id")
    if value is None:
        return ""
    if not isinstance(value, str) or CLIENT_ID_RE.fullmatch(value) is None:
        raise ClientError(
            "invalid_client_id", "'client_id' must be 1 to 64 letters, digits, '-' or '_'."
        )
    return value


def message_text(data: dict[str, Any], *, max_length: int) -> str:
    if "message" not in data:
        raise ClientError("missing_message", "The object has no 'message' key.")
    text = data["message"]
    if not isinstance(text, str):
        raise ClientError("message_not_string", "'message' must be a string.")
    return clean_message_text(text, max_length=max_length)


def clean_message_text(text: str, *, max_length: int) -> str:
    """The text to store, stripped; ClientError if it is empty or too long."""
    text = text.strip()
    if not text:
        raise ClientError("message_empty", "The message is empty.")
    if "\x00" in text or not _encodable(text):
        raise ClientError("invalid_text", "The message contains characters that cannot be stored.")
    if len(text) > max_length:
        raise ClientError("message_too_long", f"Messages are limited to {max_length} characters.")
    return text


def _encodable(text: str) -> bool:
    """False for text with lone surrogates (from JSON escapes such as "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def message_frame(message: Message, room_name: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": message.pk,
        "room": room_name,
        "username": message.author_name,
        "message": message.text,
        "created": message.created.isoformat(),
    }


def history_frame(
    messages: Iterable[Message], room_name: str, *, after: int | None = None, more: bool = False
) -> dict[str, Any]:
    """The room's recent messages on connect; a reply to ``{"action": "history"}`` also
    echoes its ``after`` and says whether ``more`` messages follow the page."""
    frame: dict[str, Any] = {
        "type": "history",
        "room": room_name,
        "messages": [message_frame(message, room_name) for message in messages],
    }
    if after is not None:
        frame.update(after=after, more=more)
    return frame


def ack_frame(message: Message, client_id: str) -> dict[str, Any]:
    """To the sender: its message ``client_id`` is stored, as this one."""
    frame = message_frame(message, message.room.name)
    return {"type": "ack", "client_id": client_id, "message": frame}


def typing_frame(room_name: str, username: str) -> dict[str, Any]:
    return {"type": "typing", "room": room_name, "username": username}


def moderated_frame(message: Message, room_name: str) -> dict[str, Any]:
    return {"type": "moderated", "id": message.pk, "room": room_name}
