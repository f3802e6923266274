"""Consumer building blocks: the limits a socket lives under, and groups that are
always left.

``GuardsMixin`` gives an async WebSocket consumer:

- groups joined through ``join_group`` are left when the consumer ends for any
  reason, a crash included, so no failure leaks group membership;
- ``refused_at_handshake()``, for ``connect()``: it closes before ``accept()`` (the
  client sees HTTP 403) a socket that needs a signed-in user and has none (4401,
  ``requires_login()``), or one over the cap of open sockets per signed-in user
  (``WEBSOCKET_MAX_SOCKETS_PER_USER``) or per client address
  (``WEBSOCKET_MAX_SOCKETS_PER_ADDRESS``; 0 for none), both counted across processes
  in the cache (Redis when ``REDIS_URL`` is set) (4409);
- a per-connection rate limit, ``check_rate()`` (``WEBSOCKET_RATE_LIMIT_PER_SECOND``,
  bursts of ``WEBSOCKET_RATE_LIMIT_BURST``): a frame over the limit is refused with a
  ``rate_limited`` error frame, and a client that keeps flooding after
  ``WEBSOCKET_RATE_LIMIT_STRIKES`` refusals is closed with 4429. Other sockets are
  not slowed. With ``JsonFramesMixin`` it runs before each frame is parsed.

Put it after ``LayerFaultsMixin`` and before the Channels base class.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache

from realtime.closecodes import CLOSE_LOGIN_REQUIRED, CLOSE_RATE_LIMITED, CLOSE_TOO_MANY_SOCKETS
from realtime.frames import ClientError
from realtime.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

# Seconds a socket count lives without a new connection refreshing it; bounds how long
# a count stays wrong after a server process is killed outright.
SOCKET_COUNT_TTL = 3600


def socket_count_key(kind: str, key: object) -> str:
    return f"realtime:sockets:{kind}:{key}"


def user_count_key(user_id: int) -> str:
    return socket_count_key("user", int(user_id))


def address_count_key(address: str) -> str:
    return socket_count_key("address", address)


async def socket_claim(key: str, limit: int) -> bool:
    """Count one more open socket under ``key``; False (and no count) if over ``limit``."""
    await cache.aadd(key, 0, timeout=SOCKET_COUNT_TTL)
    try:
        count = await cache.aincr(key)
    except ValueError:  # the key expired between add and incr
        await cache.aset(key, 1, timeout=SOCKET_COUNT_TTL)
        count = 1
    await cache.atouch(key, SOCKET_COUNT_TTL)
    if count > limit:
        await socket_release(key)
        return False
    return True


async def socket_release(key: str) -> None:
    with contextlib.suppress(ValueError):
        await cache.adecr(key)


def client_address(scope: dict[str, Any]) -> str | None:
    """The client's IP address as the server saw it (behind a proxy, uvicorn's
    ``--proxy-headers`` puts the forwarded one here), or None."""
    client = scope.get("client")
    return str(client[0]) if client else None


class GuardsMixin:
    """Group cleanup, login required, socket caps and the per-connection rate limit."""

    # True: anonymous sockets are refused at the handshake (or override requires_login).
    login_required = False

    channel_layer: Any
    channel_name: str
    scope: dict[str, Any]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.joined_groups: set[str] = set()
        self.claimed_counts: list[str] = []
        self.bucket = TokenBucket(
            rate=settings.WEBSOCKET_RATE_LIMIT_PER_SECOND,
            burst=settings.WEBSOCKET_RATE_LIMIT_BURST,
        )
        self.strikes = 0
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            await self.release_everything()

    def requires_login(self) -> bool:
        return self.login_required

    async def join_group(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined_groups.add(group)

    async def leave_group(self, group: str) -> None:
        self.joined_groups.discard(group)
        await self.channel_layer.group_discard(group, self.channel_name)

    async def refused_at_handshake(self) -> bool:
        """Close before accept() (the client sees HTTP 403) a socket that may not open:
        an anonymous one where login is required (4401), or one over a socket cap
        (4409). True if it was refused."""
        user = self.scope["user"]
        if self.requires_login() and not user.is_authenticated:
            await self.close(code=CLOSE_LOGIN_REQUIRED)  # type: ignore[attr-defined]
            return True
        if not await self.claim_sockets(user):
            await self.close(code=CLOSE_TOO_MANY_SOCKETS)  # type: ignore[attr-defined]
            return True
        return False

    async def claim_sockets(self, user: Any) -> bool:
        """True if the socket may open: under the cap of its user (anonymous sockets
        are not counted per user) and of its address."""
        claims = []
        if user.is_authenticated:
            claims.append((user_count_key(user.pk), settings.WEBSOCKET_MAX_SOCKETS_PER_USER))
        address = client_address(self.scope)
        if address is not None and settings.WEBSOCKET_MAX_SOCKETS_PER_ADDRESS:
            claims.append((address_count_key(address), settings.WEBSOCKET_MAX_SOCKETS_PER_ADDRESS))
        for key, limit in claims:
            if not await socket_claim(key, limit):
                return False
            self.claimed_counts.append(key)
        return True

    def check_rate(self) -> bool:
        """Raise ClientError when over the limit; return False when the socket must close."""
        if self.bucket.allow():
            self.strikes = 0
            return True
        self.strikes += 1
        if self.strikes > settings.WEBSOCKET_RATE_LIMIT_STRIKES:
            return False
        raise ClientError("rate_limited", "You are sending too fast; wait a moment.")

    async def frame_allowed(self) -> bool:
        """The rate limit, for ``JsonFramesMixin``: False (and the socket closed) for
        a flood; a ClientError for one frame too many."""
        if self.check_rate():
            return True
        await self.close_for_flooding()
        return False

    async def close_for_flooding(self) -> None:
        logger.info("closing socket %s: message flood", self.channel_name)
        await self.close(code=CLOSE_RATE_LIMITED)  # type: ignore[attr-defined]

    async def release_everything(self) -> None:
        for group in list(self.joined_groups):
            # Best effort: with the layer down there is nothing left to leave.
            with contextlib.suppress(Exception):
                await self.leave_group(group)
        claimed, self.claimed_counts = self.claimed_counts, []
        for key in claimed:
            with contextlib.suppress(Exception):
                await socket_release(key)
