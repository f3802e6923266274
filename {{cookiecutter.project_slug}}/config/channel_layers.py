"""The channel layer configuration, built from ``REDIS_URL``.

With no ``REDIS_URL`` the project uses the in-memory layer: one process, no services.
With it, the layer chosen at generation time carries messages between processes.
Each option below is set on purpose; change them together with the server timeouts
in the deploy commands (docs/deploying.md).
https://channels.readthedocs.io/en/stable/topics/channel_layers.html
"""

from __future__ import annotations

from typing import Any

IN_MEMORY_BACKEND = "channels.layers.InMemoryChannelLayer"
REDIS_BACKENDS = {
    "redis": "channels_redis.core.RedisChannelLayer",
    "redis_pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}

# Messages queued for one channel before new ones are dropped (ChannelFull). A chat
# client that falls this far behind resyncs from stored history on reconnect.
CAPACITY = 1000
# Seconds an undelivered message waits in Redis before it is discarded.
EXPIRY = 60
# Seconds a channel stays in a group without being re-added. Must exceed the longest
# WebSocket the server keeps open (daphne's --websocket_timeout in the deploy
# commands is 86400, one day), or long-lived members would silently stop receiving.
GROUP_EXPIRY = 86400
# Redis client: fail fast when the server is unreachable instead of hanging a
# consumer, and check a connection that sat idle before reusing it.
REDIS_CLIENT_OPTIONS = {"socket_connect_timeout": 5, "health_check_interval": 30}
# RedisChannelLayer only: no single command waits longer than this. Its blocking
# receive asks Redis for 5 seconds at a time, so 10 leaves room. (The Pub/Sub layer
# keeps one subscription connection reading indefinitely and must not time out.)
CORE_SOCKET_TIMEOUT = 10


def channel_layers(
    *,
    redis_url: str,
    kind: str,
    prefix: str = "asgi",
    encryption_keys: list[str] | None = None,
) -> dict[str, Any]:
    """The ``CHANNEL_LAYERS`` setting for the given Redis URL ('' for in-memory)."""
    if not redis_url:
        return {
            "default": {
                "BACKEND": IN_MEMORY_BACKEND,
                "CONFIG": {"capacity": CAPACITY, "expiry": EXPIRY, "group_expiry": GROUP_EXPIRY},
            }
        }
    host: dict[str, Any] = {"address": redis_url, **REDIS_CLIENT_OPTIONS}
    config: dict[str, Any] = {"hosts": [host], "prefix": prefix}
    if kind == "redis":
        host["socket_timeout"] = CORE_SOCKET_TIMEOUT
        config.update(capacity=CAPACITY, expiry=EXPIRY, group_expiry=GROUP_EXPIRY)
    if encryption_keys:
        # Messages in Redis are encrypted with the first key; any key decrypts, so
        # keys can be rotated by prepending a new one.
        config["symmetric_encryption_keys"] = encryption_keys
    return {"default": {"BACKEND": REDIS_BACKENDS[kind], "CONFIG": config}}
