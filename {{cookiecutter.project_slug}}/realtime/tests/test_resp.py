"""The reader's own Redis connection (realtime/resp.py): what it serves, its replies
against a real Redis, and how it fails: no reply, a dropped or cancelled read, a
reply nobody asked for."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from django.conf import settings
from redis import asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from realtime.channel_layers import channel_layers
from realtime.resp import ReadConnection, pack

TIMEOUT = 5


def host(address: str, **options: Any) -> dict[str, Any]:
    return {"address": address, "socket_connect_timeout": 2, "socket_timeout": 2, **options}


def test_a_command_is_an_array_of_bulk_strings():
    assert pack(("BZMPOP", 1.5, 1, b"k\x00", "MIN", "é")) == (
        b"*6\r\n$6\r\nBZMPOP\r\n$3\r\n1.5\r\n$1\r\n1\r\n$2\r\nk\x00\r\n$3\r\nMIN\r\n$2\r\n\xc3\xa9\r\n"
    )


def test_it_serves_plain_redis_addresses_and_leaves_the_rest_to_redis_py():
    ours = channel_layers(redis_url="redis://:pw@h:6380/2", kind="redis")["default"]["CONFIG"]
    assert ReadConnection.serves(ours["hosts"][0])
    assert ReadConnection.serves({"address": "redis://user:pw@h"})
    sentinel = channel_layers(
        redis_url="redis://:pw@m/0", kind="redis", sentinel_hosts=["127.0.0.1:26379"]
    )["default"]["CONFIG"]
    for other in (
        sentinel["hosts"][0],  # no address: Sentinel finds the master
        {"address": "rediss://h:6380/0"},  # TLS
        {"address": "unix:///run/redis.sock"},
        {"address": "redis://h/0?client_name=web"},  # an option redis-py would apply
        {"address": "redis://h/0", "ssl_cert_reqs": "none"},
    ):
        assert not ReadConnection.serves(other), other


KEY = f"testresp{settings.TEST_RUN_ID}"


@pytest_asyncio.fixture
async def redis_db() -> AsyncIterator[tuple[ReadConnection, aioredis.Redis]]:
    """A ReadConnection to the services tier's Redis on database 3, and a redis-py
    client beside it; the test's key (``KEY``) is deleted after."""
    url = settings.REDIS_URL.rsplit("/", 1)[0] + "/3"
    client = aioredis.Redis.from_url(url)
    reads = ReadConnection(host(url))
    yield reads, client
    reads.close()
    await client.delete(KEY)
    await client.aclose()


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_its_replies_have_redis_pys_shapes_on_the_database_of_the_url(redis_db):
    reads, client = redis_db
    await client.zadd(KEY, {b"a": 1.0, b"b": 2.0, b"c": 3.0})
    assert await reads.bzmpop(1, 1, [KEY], min=True, count=1) == [KEY.encode(), [[b"a", b"1"]]]
    assert await reads.zpopmin(KEY, 1) == [(b"b", 2.0)]
    assert await reads.bzpopmin(KEY, 1) == (KEY.encode(), b"c", 3.0)
    # Nothing left: the blocking reads wait their time out and answer none.
    assert await reads.bzmpop(0.1, 1, [KEY], min=True, count=5) is None
    assert await reads.bzpopmin(KEY, 0.1) is None
    assert await reads.zpopmin(KEY, 5) == []
    with pytest.raises(ResponseError):  # Redis' error, as redis-py raises it
        await reads.command("NOSUCHCOMMAND")
    assert await reads.command("PING") == b"PONG"  # and the connection goes on


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_a_wrong_password_is_redis_error_on_connect():
    if "@" in settings.REDIS_URL:
        pytest.skip("the services' Redis has a password of its own")
    url = settings.REDIS_URL.replace("redis://", "redis://:not-the-password@", 1)
    reads = ReadConnection(host(url))
    with pytest.raises(ResponseError):
        await reads.command("PING")
    assert reads.protocol is None  # closed, not left half set up


@contextlib.asynccontextmanager
async def fake_redis(answer: Callable[[bytes], bytes | None]) -> AsyncIterator[str]:
    """A server on 127.0.0.1 that answers each chunk it reads with ``answer(chunk)``
    (nothing when it returns None)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                reply = answer(chunk)
                if reply is not None:
                    writer.write(reply)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.close()


@pytest.mark.asyncio
async def test_a_reply_that_never_comes_times_out_and_closes_the_connection():
    async with fake_redis(lambda chunk: None) as url:
        reads = ReadConnection(host(url, socket_timeout=0.1))
        with pytest.raises(RedisTimeoutError):
            await asyncio.wait_for(reads.bzmpop(0.1, 1, ["k"], min=True, count=1), TIMEOUT)
        assert reads.protocol is None


@pytest.mark.asyncio
async def test_a_reply_nobody_asked_for_fails_the_connection():
    async with fake_redis(lambda chunk: b"+PONG\r\n+PONG\r\n") as url:
        reads = ReadConnection(host(url))
        # The first reply answers the PING; the second finds no command waiting.
        assert await asyncio.wait_for(reads.command("PING"), TIMEOUT) == b"PONG"
        await asyncio.sleep(0.05)
        assert reads.protocol is not None
        assert isinstance(reads.protocol.lost, RedisConnectionError)


@pytest.mark.asyncio
async def test_a_refused_connection_is_an_os_error_the_layer_reports():
    async with fake_redis(lambda chunk: None) as url:
        pass  # closed: nothing listens on its port now
    reads = ReadConnection(host(url))
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(reads.command("PING"), TIMEOUT)


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_a_read_redis_dropped_is_sent_again_on_a_new_connection(redis_db):
    reads, client = redis_db
    client_id = await reads.command("CLIENT", "ID")
    waiting = asyncio.ensure_future(reads.bzmpop(2, 1, [KEY], min=True, count=1))
    await asyncio.sleep(0.1)
    await client.client_kill_filter(_id=client_id)  # as a Redis restart would
    await asyncio.sleep(0.1)
    await client.zadd(KEY, {b"after": 1.0})
    found = await asyncio.wait_for(waiting, TIMEOUT)
    assert found == [KEY.encode(), [[b"after", b"1"]]]
    assert await reads.command("CLIENT", "ID") != client_id


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_a_cancelled_read_closes_the_connection_and_the_next_opens_one(redis_db):
    reads, client = redis_db
    waiting = asyncio.ensure_future(reads.bzmpop(5, 1, [KEY], min=True, count=1))
    await asyncio.sleep(0.1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert reads.protocol is None  # its late reply cannot answer the next command
    await asyncio.sleep(0.05)  # Redis has seen the connection close
    await client.zadd(KEY, {b"next": 1.0})
    found = await asyncio.wait_for(reads.bzmpop(1, 1, [KEY], min=True, count=1), TIMEOUT)
    assert found == [KEY.encode(), [[b"next", b"1"]]]
