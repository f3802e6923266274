"""JSON frames: parsing a client's frame within limits, typed error frames, encoding.

A client that sends something the server will not act on gets a typed error frame,
``{"type": "error", "code": "invalid_json", "message": "..."}``, and its socket stays
open: raise ``ClientError(code, message)`` anywhere in a handler and
``JsonFramesMixin`` (or your own ``except ClientError``) sends it. The codes this
module raises: ``binary_frame``, ``empty_frame``, ``frame_too_large`` (over
``WEBSOCKET_FRAME_MAX_BYTES``), ``invalid_json``, ``not_an_object``; the guards add
``rate_limited``.

Frames are encoded once (``encode``: compact, UTF-8 as is) and then sent as they are
to every member of a group.
https://channels.readthedocs.io/en/stable/topics/consumers.html#asyncjsonwebsocketconsumer
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings


class ClientError(Exception):
    """A client sent something the server will not act on; told to it as an error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_json_object(
    text_data: str | None, bytes_data: bytes | None, *, max_frame_bytes: int
) -> dict[str, Any]:
    """Decode one WebSocket frame as a JSON object, or raise ClientError saying why not."""
    if bytes_data is not None and text_data is None:
        raise ClientError("binary_frame", "Send JSON text frames, not binary frames.")
    if not text_data:
        raise ClientError("empty_frame", "The frame was empty; send a JSON object.")
    if len(text_data) > max_frame_bytes or len(text_data.encode("utf-8")) > max_frame_bytes:
        raise ClientError("frame_too_large", f"Frames are limited to {max_frame_bytes} bytes.")
    try:
        data = json.loads(text_data)
    except (ValueError, RecursionError):
        raise ClientError("invalid_json", "The frame is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ClientError("not_an_object", 'Send a JSON object, e.g. {"message": "hi"}.')
    return data


def error_frame(error: ClientError) -> dict[str, Any]:
    return {"type": "error", "code": error.code, "message": error.message}


def encode(frame: dict[str, Any]) -> str:
    """Frames are encoded once, then sent as-is to every member of a group."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


class JsonFramesMixin:
    """For an ``AsyncJsonWebsocketConsumer``: each frame is parsed within
    ``WEBSOCKET_FRAME_MAX_BYTES`` before ``receive_json`` sees it, a ``ClientError``
    raised while parsing or handling becomes an error frame, and replies are encoded
    with ``encode``. With ``GuardsMixin`` ahead of it, a frame over the rate limit is
    refused before it is parsed."""

    send: Callable[..., Awaitable[None]]
    receive_json: Callable[..., Awaitable[None]]

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            if not await self.frame_allowed():
                return
            content = parse_json_object(
                text_data, bytes_data, max_frame_bytes=settings.WEBSOCKET_FRAME_MAX_BYTES
            )
            await self.receive_json(content)
        except ClientError as error:
            await self.send(text_data=encode(error_frame(error)))

    async def frame_allowed(self) -> bool:
        """Whether to handle the next frame (``GuardsMixin`` applies the rate limit)."""
        return True

    @classmethod
    async def encode_json(cls, content: dict[str, Any]) -> str:
        return encode(content)
