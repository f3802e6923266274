"""What a WebSocket consumer does when the channel layer fails under it.

With Redis down, the layer's calls raise inside the consumer (joining a group,
receiving on its channel, sending to a group). Left alone, that exception reaches
the server, which logs a traceback and drops the socket. This mixin logs one
warning and closes the socket with ``CLOSE_UNAVAILABLE`` (4503), which the browser
client treats like any drop: it reconnects with backoff and resyncs history, so no
stored message is missed once Redis is back. Put it first among a consumer's bases.
"""

from __future__ import annotations

import logging
from typing import Any

from realtime.closecodes import CLOSE_UNAVAILABLE

logger = logging.getLogger(__name__)

# What a failing layer raises: the Redis client's errors (redis.exceptions.RedisError
# subclasses), OSError for refused and reset connections, and TimeoutError.
try:
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover - redis is installed with channels-redis
    RedisError = OSError  # type: ignore[assignment,misc]

LAYER_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class LayerFaultsMixin:
    """Close the socket cleanly with 4503 when the channel layer is unreachable."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        except LAYER_ERRORS as error:
            logger.warning("channel layer unavailable, closing socket: %r", error)
            await send({"type": "websocket.close", "code": CLOSE_UNAVAILABLE})
