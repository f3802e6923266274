"""The channel layer configuration, built from ``REDIS_URL``.

With no ``REDIS_URL`` the project uses the in-memory layer: one process, no services.
With it, the layer chosen at generation time carries messages between processes.
https://channels.readthedocs.io/en/stable/topics/channel_layers.html
"""

from __future__ import annotations

from typing import Any

IN_MEMORY_BACKEND = "channels.layers.InMemoryChannelLayer"
REDIS_BACKENDS = {
    "redis": "channels_redis.core.RedisChannelLayer",
    "redis_pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


def channel_layers(
    *, redis_url: str, kind: str, prefix: str = "asgi", group_expiry: int = 86400
) -> dict[str, Any]:
    """The ``CHANNEL_LAYERS`` setting for the given Redis URL ('' for in-memory)."""
    if not redis_url:
        return {"default": {"BACKEND": IN_MEMORY_BACKEND, "CONFIG": {"capacity": 1000}}}
    config: dict[str, Any] = {"hosts": [redis_url], "prefix": prefix}
    if kind == "redis":
        config.update(
            # Messages waiting for one channel before new ones are dropped.
            capacity=1000,
            # Seconds an undelivered message lives.
            expiry=60,
            # Seconds a channel stays in a group without being re-added; longer than
            # any WebSocket the server keeps open, so members are not silently lost.
            group_expiry=group_expiry,
        )
    return {"default": {"BACKEND": REDIS_BACKENDS[kind], "CONFIG": config}}
