"""The chat's limits beyond one socket: HTTP posts and new rooms, counted per user and
per client address across processes, and history replies bounded per socket.

Counts live in fixed windows (``CHAT_HTTP_POSTS_PER_MINUTE``, ``CHAT_ROOMS_PER_HOUR``;
0 turns one off). With the Redis cache (``CACHE_REDIS_URL``, by default
``REDIS_URL``) a count is one Lua script, INCR and its expiry together: Django 5.2's
``cache.incr`` checks the key and increments it in two round trips, so a key that
expires between them comes back with no expiry and counts forever. Without Redis
each process counts alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

from chat import selectors, services
from chat.models import Room
from realtime import closecodes
from realtime.frames import encode

logger = logging.getLogger(__name__)

# INCR, and an expiry on a key that has none (the first hit of a window).
_WINDOW_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""

# A socket that would create a room past the limit is accepted, told why in an error
# frame, and closed with this code (the browser client stops; other rooms still open).
CLOSE_ROOM_LIMIT = closecodes.register(
    4430, "room_limit", "too many new rooms from this user or address: join an existing one"
)

# The cache keys' prefix (tests give each test its own).
KEY_PREFIX = "chat:limit"

_local_lock = threading.Lock()
_local_counts: dict[str, tuple[float, int]] = {}


def window_hit(key: str, *, window: int) -> int:
    """Count one hit under ``key`` in its current window of ``window`` seconds and
    return the window's count so far. With Redis unreachable it returns 0 (the limit
    lets the request through: a cache outage must not stop the chat)."""
    if isinstance(cache, RedisCache):
        full_key = cache.make_and_validate_key(key)
        try:
            # The backend's redis-py client (not public API, and not in django-stubs).
            client = cache._cache.get_client(full_key, write=True)  # type: ignore[attr-defined]
            return int(client.eval(_WINDOW_SCRIPT, 1, full_key, window))
        except RedisError as error:
            logger.warning("rate limit not counted, the cache's Redis failed: %s", error)
            return 0
    now = time.monotonic()
    with _local_lock:
        expires, count = _local_counts.get(key, (0.0, 0))
        if expires <= now:
            if len(_local_counts) > 10_000:  # drop finished windows now and then
                for stale in [k for k, (ends, _) in _local_counts.items() if ends <= now]:
                    del _local_counts[stale]
            expires, count = now + window, 0
        _local_counts[key] = (expires, count + 1)
        return count + 1


def _within(kind: str, keys: Iterable[str], *, limit: int, window: int) -> bool:
    """True if every key is still within ``limit`` hits, counting this one."""
    if limit <= 0:
        return True
    counts = [window_hit(f"{KEY_PREFIX}:{kind}:{key}", window=window) for key in keys]
    return all(count <= limit for count in counts)


def client_keys(*, user: Any, address: str | None) -> list[str]:
    """Who a hit counts against: the signed-in user and the client address."""
    keys = []
    if user is not None and user.is_authenticated:
        keys.append(f"user:{user.pk}")
    if address:
        keys.append(f"address:{address}")
    return keys


def http_post_allowed(*, user: Any, address: str | None) -> bool:
    """One HTTP post of a message; False past ``CHAT_HTTP_POSTS_PER_MINUTE``."""
    return _within(
        "posts",
        client_keys(user=user, address=address),
        limit=settings.CHAT_HTTP_POSTS_PER_MINUTE,
        window=60,
    )


def room_creation_allowed(*, user: Any, address: str | None) -> bool:
    """One new room; False past ``CHAT_ROOMS_PER_HOUR``. A signed-in user is counted
    per user (many may share an address behind NAT), an anonymous visitor per
    address."""
    signed_in = user is not None and user.is_authenticated
    keys = client_keys(user=user, address=None if signed_in else address)
    return _within("rooms", keys, limit=settings.CHAT_ROOMS_PER_HOUR, window=3600)


class RequestWindow:
    """At most ``limit`` requests in any ``seconds`` on one socket (in memory)."""

    __slots__ = ("limit", "seconds", "times")  # one per open socket

    def __init__(self, *, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        # Made on the first request: most sockets never ask (an empty deque is 600 bytes).
        self.times: deque[float] | None = None

    def allow(self) -> bool:
        now = time.monotonic()
        if self.times is None:
            self.times = deque()
        while self.times and self.times[0] <= now - self.seconds:
            self.times.popleft()
        if self.limit > 0 and len(self.times) >= self.limit:
            return False
        self.times.append(now)
        return True


def history_within_bytes(frame: dict[str, Any], *, keep: str = "oldest") -> dict[str, Any]:
    """A history frame cut to ``CHAT_HISTORY_MAX_BYTES`` encoded, saying ``"more":
    true``: the oldest messages kept in a reply to a history request (the client asks
    again after the last one), the newest in the history a socket opens with."""
    limit = settings.CHAT_HISTORY_MAX_BYTES - len(',"more":true')
    size = len(encode(frame).encode("utf-8"))
    if size <= limit:
        return frame
    kept = list(frame["messages"])
    while kept and size > limit:
        dropped = kept.pop(0 if keep == "newest" else -1)
        size -= len(encode(dropped).encode("utf-8")) + 1  # and its comma
    return {**frame, "messages": kept, "more": True}


class RoomLimitReached(Exception):
    """The room does not exist and its creator is past ``CHAT_ROOMS_PER_HOUR``."""


def room_get_or_create_limited(*, name: str, user: Any, address: str | None) -> Room:
    """The room, created if it is new and its creator is within the limit; else
    RoomLimitReached. Joining a room that exists is never limited."""
    room = selectors.room_get(name=name)
    if room is not None:
        return room
    if not room_creation_allowed(user=user, address=address):
        raise RoomLimitReached(name)
    return services.room_get_or_create(name=name)
