"""What a WebSocket consumer does when the channel layer fails under it.

With Redis down, the layer's calls raise inside the consumer (joining a group,
receiving on its channel, sending to a group). Left alone, that exception reaches
the server, which logs a traceback and drops the socket. This mixin logs one
warning and closes the socket with ``CLOSE_UNAVAILABLE`` (4503), which the browser
client treats like any drop: it reconnects with backoff and resyncs history, so no
stored message is missed once Redis is back. Put it first among an async consumer's
bases (its ``close()`` is a coroutine, as theirs is).

It also keeps the socket's closing to one close: ``close()`` is a no-op once the
consumer (or its fan-out, realtime/fanout.py) closed the socket, where a second
close would be an error in the server ("Unexpected ASGI message"). And a client
that went away while the consumer was replying (the server raises its
``ClientDisconnected``, an ``OSError``) is the client's doing, not the layer's: one
DEBUG line, no warning.
"""

from __future__ import annotations

import contextlib
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

# What the server raises from send() once the client is gone (uvicorn's is an OSError).
try:
    from uvicorn.protocols.utils import ClientDisconnected
except ImportError:  # pragma: no cover - uvicorn is the project's server

    class ClientDisconnected(OSError):  # type: ignore[no-redef]
        """Stands in for uvicorn's, which nothing then raises."""


class LayerFaultsMixin:
    """Close the socket cleanly with 4503 when the channel layer is unreachable, and
    close it only once."""

    socket_closed = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        except ClientDisconnected:
            logger.debug("client went away during a reply")
        except LAYER_ERRORS as error:
            logger.warning("channel layer unavailable, closing socket: %r", error)
            if not self.socket_closed:
                self.socket_closed = True
                with contextlib.suppress(ClientDisconnected):
                    await send({"type": "websocket.close", "code": CLOSE_UNAVAILABLE})

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        """The consumer's ``close``, once: a socket already closed stays as it is."""
        if self.socket_closed:
            return
        self.socket_closed = True
        await super().close(code=code, reason=reason)  # type: ignore[misc]
