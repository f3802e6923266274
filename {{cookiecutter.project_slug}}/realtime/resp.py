"""A Redis connection for the channel layer's blocking reads alone, speaking RESP
itself (hiredis, already redis-py's parser here, splits the replies).

``RedisChannelLayer``'s reader sends one command at a time and waits for its reply,
once per message in a quiet room. Through redis-py, the layer's receive of such a
message cost the server 370-425 µs of CPU on the benchmark's machine, most of it in
the client's layers around one write and one reply; on this connection 142-169
(docs/benchmark.md). It
serves plain ``redis://`` addresses, which is what compose and most deployments use;
a layer on TLS, a Unix socket or Sentinel reads through redis-py as before
(``ReadConnection.serves``).

Replies have the shapes redis-py's own methods return, so the reader's code is the
same on both. A command that fails on a connection Redis dropped (it restarted) is
sent once more on a new connection, as the layer's redis-py retry does; a command
cancelled or timed out closes the connection, since its reply may still come.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


def pack(arguments: tuple[Any, ...]) -> bytes:
    """A command as RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(arguments)]
    for argument in arguments:
        if isinstance(argument, str):
            argument = argument.encode()
        elif not isinstance(argument, bytes):
            argument = str(argument).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(argument), argument))
    return b"".join(parts)


class Protocol(asyncio.Protocol):
    """One connection's bytes: each reply is handed to the command waiting for it."""

    def __init__(self) -> None:
        self.parser = hiredis.Reader(replyError=ResponseError)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Any] | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP connection's is one

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        while (reply := self.parser.gets()) is not False:
            waiter, self.waiter = self.waiter, None
            if waiter is None or waiter.done():
                # A reply no command waits for: the stream is out of step.
                self.fail(RedisConnectionError("Redis sent a reply nobody asked for"))
                return
            waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Redis closed the connection: {exc or 'at its end'}"))

    def fail(self, error: BaseException) -> None:
        if self.lost is None:
            self.lost = error
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


class ReadConnection:
    """The connection a layer's reader holds for its life, made on first use."""

    def __init__(self, host: dict[str, Any]) -> None:
        self.options = parse_url(host["address"])
        self.connect_timeout: float | None = host.get("socket_connect_timeout")
        # A blocking command waits up to its own timeout and then this long for Redis.
        self.timeout: float | None = host.get("socket_timeout")
        self.protocol: Protocol | None = None

    @staticmethod
    def serves(host: dict[str, Any]) -> bool:
        """Whether the host is a plain TCP ``redis://`` address with nothing redis-py
        would add to it (TLS, a Unix socket, Sentinel, a client name...)."""
        address = host.get("address")
        known = {
            "address",
            "socket_connect_timeout",
            "socket_timeout",
            "health_check_interval",
            "retry",
        }
        if not isinstance(address, str) or not address.startswith("redis://") or set(host) - known:
            return False
        return set(parse_url(address)) <= {"host", "port", "db", "username", "password"}

    async def connect(self) -> Protocol:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            _, protocol = await loop.create_connection(
                Protocol, self.options.get("host", "localhost"), self.options.get("port", 6379)
            )
        self.protocol = protocol
        try:
            password, username = self.options.get("password"), self.options.get("username")
            if password is not None:
                await self.send(("AUTH", username, password) if username else ("AUTH", password))
            if self.options.get("db"):
                await self.send(("SELECT", self.options["db"]))
        except BaseException:
            self.close()
            raise
        return protocol

    async def send(self, arguments: tuple[Any, ...], blocks: float = 0) -> Any:
        protocol = self.protocol
        if protocol is None or protocol.lost is not None or protocol.transport is None:
            raise RedisConnectionError("not connected to Redis")
        if protocol.waiter is not None:
            raise RuntimeError("one command at a time on a ReadConnection")
        waiter = protocol.waiter = asyncio.get_running_loop().create_future()
        protocol.transport.write(pack(arguments))
        try:
            async with asyncio.timeout(None if self.timeout is None else self.timeout + blocks):
                reply = await waiter
        except TimeoutError as error:
            self.close()
            raise RedisTimeoutError(f"no reply from Redis to {arguments[0]}") from error
        except BaseException:
            self.close()  # cancelled: the reply may still come, out of step
            raise
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def command(self, *arguments: Any, blocks: float = 0) -> Any:
        """One command's reply; ``blocks`` is how long Redis itself may wait to answer."""
        if self.protocol is None or self.protocol.lost is not None:
            await self.connect()
            return await self.send(arguments, blocks)
        try:
            return await self.send(arguments, blocks)
        except RedisConnectionError:
            # Redis dropped this connection (it restarted): once more on a new one.
            await self.connect()
            return await self.send(arguments, blocks)

    def close(self) -> None:
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.fail(RedisConnectionError("closed"))

    # The reader's commands, replying as redis-py's methods of the same names.

    async def bzmpop(
        self, wait: float, numkeys: int, keys: list[str], *, min: bool, count: int
    ) -> Any:
        end = "MIN" if min else "MAX"
        return await self.command("BZMPOP", wait, numkeys, *keys, end, "COUNT", count, blocks=wait)

    async def zpopmin(self, key: str, count: int) -> list[tuple[bytes, float]]:
        flat = await self.command("ZPOPMIN", key, count)
        return [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def bzpopmin(self, key: str, wait: float) -> tuple[bytes, bytes, float] | None:
        found = await self.command("BZPOPMIN", key, wait, blocks=wait)
        return None if found is None else (found[0], found[1], float(found[2]))
