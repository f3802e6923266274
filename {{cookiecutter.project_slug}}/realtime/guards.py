"""Limits every chat socket lives under, shared by the async chat consumers.

- Groups joined through ``join_group`` are left when the consumer ends for any
  reason, a crash included, so no failure leaks group membership.
- A signed-in user may hold at most ``CHAT_MAX_SOCKETS_PER_USER`` sockets at once,
  counted across processes in the cache (Redis when ``REDIS_URL`` is set).
- Messages are rate limited per connection (``CHAT_RATE_LIMIT_PER_SECOND``, bursts
  of ``CHAT_RATE_LIMIT_BURST``): a message over the limit is refused with a
  ``rate_limited`` error frame, and a client that keeps flooding after
  ``CHAT_RATE_LIMIT_STRIKES`` refusals is closed with 4429. Other sockets, in the
  same room or not, are not slowed.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache

from chat.protocol import (
    CLOSE_LOGIN_REQUIRED,
    CLOSE_RATE_LIMITED,
    CLOSE_TOO_MANY_SOCKETS,
    ClientError,
)
from chat.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

# Seconds a user's socket count lives without a new connection refreshing it; bounds
# how long a count stays wrong after a server process is killed outright.
SOCKET_COUNT_TTL = 3600


def socket_count_key(user_id: int) -> str:
    return f"chat:sockets:{int(user_id)}"


async def user_socket_claim(user_id: int) -> bool:
    """Count one more open socket for the user; False (and no count) if over the cap."""
    key = socket_count_key(user_id)
    await cache.aadd(key, 0, timeout=SOCKET_COUNT_TTL)
    try:
        count = await cache.aincr(key)
    except ValueError:  # the key expired between add and incr
        await cache.aset(key, 1, timeout=SOCKET_COUNT_TTL)
        count = 1
    await cache.atouch(key, SOCKET_COUNT_TTL)
    if count > settings.CHAT_MAX_SOCKETS_PER_USER:
        await user_socket_release(user_id)
        return False
    return True


async def user_socket_release(user_id: int) -> None:
    with contextlib.suppress(ValueError):
        await cache.adecr(socket_count_key(user_id))


class GuardsMixin:
    """Group cleanup, the per-user socket cap and the per-connection rate limit."""

    channel_layer: Any
    channel_name: str
    scope: dict[str, Any]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.joined_groups: set[str] = set()
        self.claimed_socket_for: int | None = None
        self.bucket = TokenBucket(
            rate=settings.CHAT_RATE_LIMIT_PER_SECOND, burst=settings.CHAT_RATE_LIMIT_BURST
        )
        self.strikes = 0
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            await self.release_everything()

    async def join_group(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined_groups.add(group)

    async def leave_group(self, group: str) -> None:
        self.joined_groups.discard(group)
        await self.channel_layer.group_discard(group, self.channel_name)

    async def refused_at_handshake(self) -> bool:
        """Close before accept() (the client sees HTTP 403) a socket its user may not
        open: an anonymous visitor where login is required (4401), or one socket over
        the user's cap (4409). True if it was refused."""
        user = self.scope["user"]
        if settings.CHAT_REQUIRE_LOGIN and not user.is_authenticated:
            await self.close(code=CLOSE_LOGIN_REQUIRED)  # type: ignore[attr-defined]
            return True
        if not await self.claim_user_socket(user):
            await self.close(code=CLOSE_TOO_MANY_SOCKETS)  # type: ignore[attr-defined]
            return True
        return False

    async def claim_user_socket(self, user: Any) -> bool:
        """True if the socket may open; anonymous sockets are not counted."""
        if not user.is_authenticated:
            return True
        if not await user_socket_claim(user.pk):
            return False
        self.claimed_socket_for = user.pk
        return True

    def check_rate(self) -> bool:
        """Raise ClientError when over the limit; return False when the socket must close."""
        if self.bucket.allow():
            self.strikes = 0
            return True
        self.strikes += 1
        if self.strikes > settings.CHAT_RATE_LIMIT_STRIKES:
            return False
        raise ClientError("rate_limited", "You are sending too fast; wait a moment.")

    async def close_for_flooding(self) -> None:
        logger.info("closing socket %s: message flood", self.channel_name)
        await self.close(code=CLOSE_RATE_LIMITED)  # type: ignore[attr-defined]

    async def release_everything(self) -> None:
        for group in list(self.joined_groups):
            # Best effort: with the layer down there is nothing left to leave.
            with contextlib.suppress(Exception):
                await self.leave_group(group)
        if self.claimed_socket_for is not None:
            with contextlib.suppress(Exception):
                await user_socket_release(self.claimed_socket_for)
            self.claimed_socket_for = None
