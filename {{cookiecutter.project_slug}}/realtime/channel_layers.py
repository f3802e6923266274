"""The channel layer configuration, built from ``REDIS_URL``.

With no ``REDIS_URL`` the project uses the in-memory layer: one process, no services.
With it, the layer chosen at generation time carries messages between processes.
With ``REDIS_SENTINEL_HOSTS`` as well, the layer asks those Sentinels where the
master is, and follows a failover (docs/scaling.md).
Each option below is set on purpose; change them together with the server timeouts
in the deploy commands (docs/deploying.md).
https://channels.readthedocs.io/en/stable/topics/channel_layers.html
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import parse_url

# realtime/layers.py: the in-memory layer without its per-message sweep, and
# RedisChannelLayer with a pool that waits for a connection instead of failing.
IN_MEMORY_BACKEND = "realtime.layers.InMemoryChannelLayer"
REDIS_BACKENDS = {
    "redis": "realtime.layers.RedisChannelLayer",
    "redis_pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}

# Messages queued for one channel before new ones are dropped (ChannelFull). A chat
# client that falls this far behind resyncs from stored history on reconnect.
CAPACITY = 1000
# Seconds an undelivered message waits in Redis before it is discarded.
EXPIRY = 60
# Seconds a channel stays in a group without being re-added. Must exceed the longest
# a WebSocket stays open (settings.WEBSOCKET_MAX_AGE, half a day, config/lifetime.py),
# or long-lived members would silently stop receiving.
GROUP_EXPIRY = 86400
# Redis client: fail fast when the server is unreachable instead of hanging a
# consumer, and check a connection that sat idle before reusing it. After Redis
# restarts or fails over, a pooled connection is dead although Redis answers again:
# retry a command once, at once, on a new connection, so the first socket or job
# after the outage works (chat/tests/test_faults.py). A Redis that is really down
# still fails the command at once, and the consumer closes its socket with 4503.
REDIS_CLIENT_OPTIONS = {
    "socket_connect_timeout": 5,
    "health_check_interval": 30,
    "retry": Retry(NoBackoff(), 1),
}
# Sentinel connections (finding the master) get the same short timeouts.
SENTINEL_CLIENT_OPTIONS = {"socket_connect_timeout": 5, "socket_timeout": 5}
DEFAULT_SENTINEL_PORT = 26379
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
    sentinel_hosts: list[str] | None = None,
    sentinel_master: str = "mymaster",
    sentinel_password: str = "",
) -> dict[str, Any]:
    """The ``CHANNEL_LAYERS`` setting for the given Redis URL ('' for in-memory).

    With ``sentinel_hosts`` ("host:port" each), the master named ``sentinel_master``
    is found through them; ``redis_url`` then gives only the master's password,
    user and database number (its host is not used).
    """
    if not redis_url:
        if sentinel_hosts:
            raise ImproperlyConfigured(
                "REDIS_SENTINEL_HOSTS is set but REDIS_URL is not: set REDIS_URL for the "
                "master's password and database, e.g. redis://:password@mymaster/0"
            )
        return {
            "default": {
                "BACKEND": IN_MEMORY_BACKEND,
                "CONFIG": {"capacity": CAPACITY, "expiry": EXPIRY, "group_expiry": GROUP_EXPIRY},
            }
        }
    host: dict[str, Any] = {**REDIS_CLIENT_OPTIONS}
    if sentinel_hosts:
        host.update(sentinel_host(redis_url, sentinel_hosts, sentinel_master, sentinel_password))
    else:
        host["address"] = redis_url
    config: dict[str, Any] = {"hosts": [host], "prefix": prefix}
    if kind == "redis":
        host["socket_timeout"] = CORE_SOCKET_TIMEOUT
        config.update(capacity=CAPACITY, expiry=EXPIRY, group_expiry=GROUP_EXPIRY)
    if encryption_keys:
        # Messages in Redis are encrypted with the first key; any key decrypts, so
        # keys can be rotated by prepending a new one.
        config["symmetric_encryption_keys"] = encryption_keys
    return {"default": {"BACKEND": REDIS_BACKENDS[kind], "CONFIG": config}}


def sentinel_host(
    redis_url: str, sentinel_hosts: list[str], master: str, password: str
) -> dict[str, Any]:
    """The host entry channels-redis turns into a Sentinel-backed connection pool."""
    url = parse_url(redis_url)
    sentinel_options: dict[str, Any] = {**SENTINEL_CLIENT_OPTIONS}
    if password:
        sentinel_options["password"] = password
    entry: dict[str, Any] = {
        "master_name": master,
        "sentinels": [parse_sentinel(value) for value in sentinel_hosts],
        "sentinel_kwargs": sentinel_options,
    }
    # The master's own credentials, database and TLS, from REDIS_URL.
    entry.update({key: url[key] for key in ("username", "password", "db") if key in url})
    if redis_url.startswith("rediss://"):
        entry["ssl"] = True
    return entry


def parse_sentinel(value: str) -> tuple[str, int]:
    """A "host:port" entry (port 26379 when left out) as the pair redis-py takes."""
    host, separator, port = value.strip().rpartition(":")
    if not separator or host.endswith(":"):  # no port given, or a bare IPv6 address
        host, port = value.strip(), ""
    host = host.removeprefix("[").removesuffix("]")
    if not host or not (port == "" or port.isdigit()):
        raise ImproperlyConfigured(f"REDIS_SENTINEL_HOSTS: {value!r} is not host:port.")
    return host, int(port) if port else DEFAULT_SENTINEL_PORT
