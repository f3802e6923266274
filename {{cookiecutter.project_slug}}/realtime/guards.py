"""Consumer building blocks: the limits a socket lives under, sessions that are
re-checked, and groups that are always left.

``GuardsMixin`` gives an async WebSocket consumer, ``SyncGuardsMixin`` the same to a
synchronous ``WebsocketConsumer``:

- groups joined through ``join_group`` are left when the consumer ends for any
  reason, a crash in a handler included, so no failure leaks group membership;
- ``refused_at_handshake()``, for ``connect()``: it closes before ``accept()`` (the
  client sees HTTP 403) a socket that needs a signed-in user and has none (4401,
  ``requires_login()``), or one over the cap of open sockets per signed-in user
  (``WEBSOCKET_MAX_SOCKETS_PER_USER``) or per client address
  (``WEBSOCKET_MAX_SOCKETS_PER_ADDRESS``; 0 for none) (4409);
- a per-connection rate limit, ``check_rate()`` (``WEBSOCKET_RATE_LIMIT_PER_SECOND``,
  bursts of ``WEBSOCKET_RATE_LIMIT_BURST``): a frame over the limit is refused with a
  ``rate_limited`` error frame, and a client that keeps flooding after
  ``WEBSOCKET_RATE_LIMIT_STRIKES`` refusals is closed with 4429 (``frame_allowed()``).
  Other sockets are not slowed. With ``JsonFramesMixin`` it runs before each frame is
  parsed;
- every ``WEBSOCKET_SESSION_CHECK_SECONDS`` the socket checks that its session still
  signs its user in, as Django would on the next request: a session logged out
  (deleted), a password changed (the session's auth hash no longer matches) or a user
  deactivated closes it with 4001 (``CLOSE_LOGGED_OUT``). A socket signed in by a
  ticket checks that its user is still active. This holds whatever happened to the
  channel layer when the session ended; closing at once is the app's part (a logout
  signal sending to the user's group).

The socket caps are counted in ``SocketClaims``: with the cache on Redis, one sorted
set per user and per address, of socket ids scored by when each claim expires; a
claim is added only under the cap, in one Lua script, so concurrent connects on any
number of processes never open more than the cap. Each open socket renews its claims
at every session check, and a claim lasts ``CLAIM_LIFETIME_CHECKS`` checks: the
sockets of a process killed outright stop counting within that time (2 minutes by
default). With the cache in memory (no Redis) the same count is kept per process.

``HttpGuards`` gives the socket caps and the session check to a long-lived HTTP
response (a server-sent events stream). Put ``GuardsMixin`` after
``LayerFaultsMixin`` and before the Channels base class.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
import uuid
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib import auth
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.utils.crypto import constant_time_compare

from realtime.closecodes import (
    CLOSE_LOGGED_OUT,
    CLOSE_LOGIN_REQUIRED,
    CLOSE_RATE_LIMITED,
    CLOSE_TOO_MANY_SOCKETS,
)
from realtime.frames import ClientError
from realtime.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

# A socket claim lasts this many session checks without being renewed.
CLAIM_LIFETIME_CHECKS = 4

# Both scripts first drop the set's expired claims, by Redis' own clock, so that
# every process agrees on what has expired. KEYS[1]: the set.
TRIM = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
"""
# ARGV: socket id, cap (-1 to renew a claim whatever the count: the socket is open),
# claim lifetime (ms). 1 if the socket is counted, 0 if the cap is reached.
CLAIM_SCRIPT = (
    TRIM
    + """
local cap = tonumber(ARGV[2])
if cap >= 0 and redis.call('ZSCORE', KEYS[1], ARGV[1]) == false
    and redis.call('ZCARD', KEYS[1]) >= cap then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)
COUNT_SCRIPT = TRIM + "return redis.call('ZCARD', KEYS[1])"


def check_interval() -> float:
    return float(settings.WEBSOCKET_SESSION_CHECK_SECONDS)


def claim_lifetime() -> float:
    """Seconds a socket's claim counts without being renewed."""
    return check_interval() * CLAIM_LIFETIME_CHECKS


def socket_count_key(kind: str, key: object) -> str:
    return f"realtime:sockets:{kind}:{key}"


def user_count_key(user_id: int) -> str:
    return socket_count_key("user", int(user_id))


def address_count_key(address: str) -> str:
    return socket_count_key("address", address)


class SocketClaims:
    """Open sockets by key, counted in the default cache's Redis, else in memory."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.local: dict[str, dict[str, float]] = {}
        self.scripts: tuple[Any, Any] | None = None

    def on_redis(self) -> bool:
        return isinstance(caches["default"], RedisCache)

    def redis_call(self, which: int, key: str, *args: Any) -> int:
        """Run script ``which`` (0: claim, 1: count) on the set of ``key``."""
        backend = caches["default"]
        client = backend._cache.get_client(write=True)  # type: ignore[attr-defined]
        if self.scripts is None:  # registered once; each call names its client (a new
            # one per get_client(), on the backend's shared connection pool)
            self.scripts = (
                client.register_script(CLAIM_SCRIPT),
                client.register_script(COUNT_SCRIPT),
            )
        full_key = backend.make_and_validate_key(key)
        return int(self.scripts[which](keys=[full_key], args=list(args), client=client))

    def claim(self, key: str, socket_id: str, limit: int) -> bool:
        """Count the socket under ``key`` if fewer than ``limit`` are (-1: whatever
        the count); False if not."""
        lifetime = claim_lifetime()
        if self.on_redis():
            return bool(self.redis_call(0, key, socket_id, limit, int(lifetime * 1000)))
        with self.lock:
            now = time.monotonic()
            claims = self.live(key, now)
            if 0 <= limit <= len(claims) and socket_id not in claims:
                return False
            claims[socket_id] = now + lifetime
            return True

    def renew(self, key: str, socket_id: str) -> None:
        self.claim(key, socket_id, -1)

    def release(self, key: str, socket_id: str) -> None:
        if self.on_redis():
            backend = caches["default"]
            client = backend._cache.get_client(write=True)  # type: ignore[attr-defined]
            client.zrem(backend.make_and_validate_key(key), socket_id)
            return
        with self.lock:
            claims = self.local.get(key, {})
            claims.pop(socket_id, None)
            if not claims:
                self.local.pop(key, None)

    def count(self, key: str) -> int:
        """Sockets counted under ``key`` now (for tests and checks)."""
        if self.on_redis():
            return self.redis_call(1, key)
        with self.lock:
            return len(self.live(key, time.monotonic()))

    def live(self, key: str, now: float) -> dict[str, float]:
        claims = self.local.setdefault(key, {})
        for socket_id, expires in list(claims.items()):
            if expires <= now:
                del claims[socket_id]
        return claims


CLAIMS = SocketClaims()


def socket_count(key: str) -> int:
    return CLAIMS.count(key)


async def run_claims(function: Any, *args: Any) -> Any:
    """Call a claims function: in a thread when it talks to Redis."""
    if CLAIMS.on_redis():
        return await sync_to_async(function, thread_sensitive=False)(*args)
    return function(*args)


def client_address(scope: dict[str, Any]) -> str | None:
    """The client's IP address as the server saw it (behind a proxy, uvicorn's
    ``--proxy-headers`` puts the forwarded one here), or None."""
    client = scope.get("client")
    return str(client[0]) if client else None


def signed_in_by_session(scope: dict[str, Any]) -> str | None:
    """The session key if the scope's user came from its session (not from a ticket);
    synchronous (the session may not be loaded yet)."""
    user, session = scope.get("user"), scope.get("session")
    if user is None or not user.is_authenticated or session is None:
        return None
    return session.session_key if str(session.get(auth.SESSION_KEY)) == str(user.pk) else None


def still_signed_in(*, user_id: Any, session_key: str | None) -> bool:
    """Whether a socket's user is still signed in (synchronous: database and session
    store). By session: the session, read afresh, gives the same user as
    ``django.contrib.auth.get_user`` would on a request (a deleted session, a changed
    password and an inactive user all fail), without its side effects on the session.
    By ticket (no session key): the user is still active."""
    model = auth.get_user_model()
    if session_key is None:
        return model._default_manager.filter(pk=user_id, is_active=True).exists()
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    backend_path = store.get(auth.BACKEND_SESSION_KEY)
    if str(store.get(auth.SESSION_KEY)) != str(user_id):
        return False
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return False
    user = auth.load_backend(backend_path).get_user(model._meta.pk.to_python(user_id))
    if user is None:
        return False
    if not hasattr(user, "get_session_auth_hash"):
        return True
    session_hash = store.get(auth.HASH_SESSION_KEY) or ""
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return bool(session_hash) and any(constant_time_compare(session_hash, h) for h in hashes)


class SocketGuards:
    """What every guarded consumer keeps: its claims, the session it checks, and the
    task that checks it. Subclasses say how to close (``close_revoked``)."""

    login_required = False

    channel_name: str
    scope: dict[str, Any]

    def start_guards(self) -> None:
        self.socket_id = uuid.uuid4().hex
        self.joined_groups: set[str] = set()
        self.claimed_counts: list[str] = []
        self.bucket = TokenBucket(
            rate=settings.WEBSOCKET_RATE_LIMIT_PER_SECOND,
            burst=settings.WEBSOCKET_RATE_LIMIT_BURST,
        )
        self.strikes = 0
        self.watcher: asyncio.Task[None] | None = None

    def requires_login(self) -> bool:
        return self.login_required

    def claims_wanted(self, user: Any) -> list[tuple[str, int]]:
        claims = []
        if user.is_authenticated:
            claims.append((user_count_key(user.pk), settings.WEBSOCKET_MAX_SOCKETS_PER_USER))
        address = client_address(self.scope)
        if address is not None and settings.WEBSOCKET_MAX_SOCKETS_PER_ADDRESS:
            claims.append((address_count_key(address), settings.WEBSOCKET_MAX_SOCKETS_PER_ADDRESS))
        return claims

    def claim_sockets_sync(self, user: Any) -> bool:
        """True if the socket may open: under the cap of its user (anonymous sockets
        are not counted per user) and of its address. Synchronous (Redis)."""
        for key, limit in self.claims_wanted(user):
            if not CLAIMS.claim(key, self.socket_id, limit):
                return False
            self.claimed_counts.append(key)
        return True

    async def claim_sockets(self, user: Any) -> bool:
        """``claim_sockets_sync`` for async code; no hop to a thread when there is
        nothing to claim (no cap applies to this socket)."""
        if not self.claims_wanted(user):
            return True
        return bool(await run_claims(self.claim_sockets_sync, user))

    def check_rate(self) -> bool:
        """Raise ClientError when over the limit; return False when the socket must close."""
        if self.bucket.allow():
            self.strikes = 0
            return True
        self.strikes += 1
        if self.strikes > settings.WEBSOCKET_RATE_LIMIT_STRIKES:
            return False
        raise ClientError("rate_limited", "You are sending too fast; wait a moment.")

    def start_watching(self) -> None:
        """Re-check the session and renew the claims every check interval, from now
        until the consumer ends. Call on the event loop."""
        user = self.scope.get("user")
        if self.claimed_counts or (user is not None and user.is_authenticated):
            self.watcher = asyncio.ensure_future(self.watch())  # else nothing to check

    async def watch(self) -> None:
        user = self.scope.get("user")
        user_id = user.pk if user is not None and user.is_authenticated else None
        session_key = None
        if user_id is not None:
            session_key = await database_sync_to_async(signed_in_by_session)(self.scope)
        while True:
            await asyncio.sleep(check_interval())
            for key in list(self.claimed_counts):
                try:
                    await run_claims(CLAIMS.renew, key, self.socket_id)
                except Exception as error:  # noqa: BLE001 - renewed next time
                    logger.info("could not renew socket claim %s: %r", key, error)
            if user_id is None:
                continue
            try:
                signed_in = await database_sync_to_async(still_signed_in)(
                    user_id=user_id, session_key=session_key
                )
            except Exception as error:  # noqa: BLE001 - a database outage revokes nothing
                logger.info("could not check the session of socket %s: %r", self.socket_id, error)
                continue
            if not signed_in:
                logger.info("closing socket %s: its session has ended", self.socket_id)
                await self.close_revoked()
                return

    async def close_revoked(self) -> None:
        raise NotImplementedError

    async def stop_guards(self, layer: Any) -> None:
        """Stop the checks, leave every group and give the claims back; best effort:
        with the layer or Redis down there is nothing left to leave."""
        if self.watcher is not None:
            self.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.watcher
        for group in list(self.joined_groups):
            self.joined_groups.discard(group)
            with contextlib.suppress(Exception):
                await layer.group_discard(group, self.channel_name)
        claimed, self.claimed_counts = self.claimed_counts, []
        for key in claimed:
            with contextlib.suppress(Exception):
                await run_claims(CLAIMS.release, key, self.socket_id)


class AsyncGuards(SocketGuards):
    """The guards' life around an async consumer: set up, and always released."""

    channel_layer: Any

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.start_guards()
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            await self.release_everything()

    async def join_group(self, group: str) -> None:
        listen = getattr(self, "listen_on_channel", None)  # FastDispatchMixin's, when used
        if listen is not None:
            await listen()  # the group's messages arrive on the consumer's channel
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined_groups.add(group)

    async def release_everything(self) -> None:
        await self.stop_guards(self.channel_layer)


class GuardsMixin(AsyncGuards):
    """Group cleanup, login required, socket caps, the rate limit and the session
    check, for an async WebSocket consumer."""

    async def leave_group(self, group: str) -> None:
        self.joined_groups.discard(group)
        await self.channel_layer.group_discard(group, self.channel_name)

    async def refused_at_handshake(self) -> bool:
        """Close before accept() (the client sees HTTP 403) a socket that may not open:
        an anonymous one where login is required (4401), or one over a socket cap
        (4409). True if it was refused; else the session checks start."""
        user = self.scope["user"]
        if self.requires_login() and not user.is_authenticated:
            await self.close(code=CLOSE_LOGIN_REQUIRED)  # type: ignore[attr-defined]
            return True
        if not await self.claim_sockets(user):
            await self.close(code=CLOSE_TOO_MANY_SOCKETS)  # type: ignore[attr-defined]
            return True
        self.start_watching()
        return False

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

    async def close_revoked(self) -> None:
        await self.close(code=CLOSE_LOGGED_OUT)  # type: ignore[attr-defined]


class SyncGuardsMixin(SocketGuards):
    """``GuardsMixin`` for a synchronous ``WebsocketConsumer``: the same calls, made
    from its handlers' thread (``refused_at_handshake()``, ``join_group()``,
    ``frame_allowed()``), and the same cleanup however the consumer ends."""

    channel_layer: Any

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.start_guards()
        self.raw_send = send
        self.guards_loop = asyncio.get_running_loop()
        # The checks start from a handler's thread, but in the loop's own context: in
        # the thread's, asgiref would take the task for part of the handler.
        self.guards_context = contextvars.copy_context()
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            await self.stop_guards(self.channel_layer)

    def join_group(self, group: str) -> None:
        async_to_sync(self.channel_layer.group_add)(group, self.channel_name)
        self.joined_groups.add(group)

    def leave_group(self, group: str) -> None:
        self.joined_groups.discard(group)
        async_to_sync(self.channel_layer.group_discard)(group, self.channel_name)

    def refused_at_handshake(self) -> bool:
        user = self.scope["user"]
        if self.requires_login() and not user.is_authenticated:
            self.close(code=CLOSE_LOGIN_REQUIRED)  # type: ignore[attr-defined]
            return True
        if not self.claim_sockets_sync(user):
            self.close(code=CLOSE_TOO_MANY_SOCKETS)  # type: ignore[attr-defined]
            return True
        self.guards_loop.call_soon_threadsafe(self.start_watching, context=self.guards_context)
        return False

    def frame_allowed(self) -> bool:
        if self.check_rate():
            return True
        logger.info("closing socket %s: message flood", self.channel_name)
        self.close(code=CLOSE_RATE_LIMITED)  # type: ignore[attr-defined]
        return False

    async def close_revoked(self) -> None:
        await self.raw_send({"type": "websocket.close", "code": CLOSE_LOGGED_OUT})


class HttpGuards(AsyncGuards):
    """The socket caps and session check for a long-lived HTTP response in an
    ``AsyncHttpConsumer``: ``await self.guards_refused()`` before the response starts
    (True: over a cap, answer 429), and ``end_revoked()`` ends the response when the
    session ends. Groups joined through ``join_group`` are left however it ends."""

    async def guards_refused(self) -> bool:
        if not await self.claim_sockets(self.scope["user"]):
            return True
        self.start_watching()
        return False

    async def close_revoked(self) -> None:
        await self.end_revoked()

    async def end_revoked(self) -> None:
        raise NotImplementedError
