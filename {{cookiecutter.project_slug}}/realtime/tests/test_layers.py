"""The project's channel layers (realtime/layers.py): the same deliveries as the stock
layers, with less work per message, and a Redis pool that waits instead of failing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import pytest_asyncio
from channels.exceptions import ChannelFull
from channels_redis import core
from django.conf import settings
from redis import asyncio as aioredis
from redis.exceptions import ResponseError

from realtime import layers
from realtime.channel_layers import REDIS_BACKENDS, channel_layers
from realtime.faults import LAYER_ERRORS
from realtime.resp import ReadConnection

TIMEOUT = 3


@pytest.fixture
def memory() -> layers.InMemoryChannelLayer:
    return layers.InMemoryChannelLayer(capacity=3, expiry=60)


@pytest.mark.asyncio
async def test_a_group_message_reaches_each_member_once(memory):
    members = [await memory.new_channel() for _ in range(3)]
    outsider = await memory.new_channel()
    for channel in members:
        await memory.group_add("room", channel)
    await memory.group_send("room", {"type": "chat.message", "frame": "hi"})
    for channel in members:
        message = await asyncio.wait_for(memory.receive(channel), TIMEOUT)
        assert message == {"type": "chat.message", "frame": "hi"}
        assert channel not in memory.channels  # an emptied queue is dropped
    assert outsider not in memory.channels
    await memory.group_discard("room", members[0])
    await memory.group_send("room", {"type": "chat.message", "frame": "again"})
    assert members[0] not in memory.channels


@pytest.mark.asyncio
async def test_the_sent_message_is_a_copy_and_a_full_channel_drops_group_messages(memory):
    channel = await memory.new_channel()
    await memory.group_add("room", channel)
    event = {"type": "chat.message", "frame": "one"}
    for _ in range(5):  # capacity 3: the last two are dropped, as in the stock layer
        await memory.group_send("room", event)
    event["frame"] = "changed after sending"
    received = [await asyncio.wait_for(memory.receive(channel), TIMEOUT) for _ in range(3)]
    assert [m["frame"] for m in received] == ["one"] * 3
    assert channel not in memory.channels
    # A direct send to a full channel still raises, as the stock layer does.
    for _ in range(3):
        await memory.send(channel, {"type": "x"})
    with pytest.raises(ChannelFull):
        await memory.send(channel, {"type": "x"})


@pytest.mark.asyncio
async def test_expired_messages_are_swept_at_most_once_a_second():
    memory = layers.InMemoryChannelLayer(expiry=-1)  # every message is already expired
    now = [1000.0]
    memory.clock = lambda: now[0]
    channel = await memory.new_channel()
    await memory.group_add("room", channel)
    await memory.send(channel, {"type": "old"})
    memory._clean_expired()  # the first sweep
    assert channel not in memory.channels
    assert channel not in memory.groups.get("room", {})  # the stock layer's rule
    await memory.send(channel, {"type": "old"})
    now[0] += 0.5
    memory._clean_expired()  # within the second: no sweep
    assert channel in memory.channels
    now[0] += 0.6
    memory._clean_expired()
    assert channel not in memory.channels


def test_settings_name_the_projects_layers():
    assert channel_layers(redis_url="", kind="redis")["default"]["BACKEND"] == (
        "realtime.layers.InMemoryChannelLayer"
    )
    assert REDIS_BACKENDS["redis"] == "realtime.layers.RedisChannelLayer"


def redis_layer(redis_url: str = "redis://127.0.0.1:1/0") -> layers.RedisChannelLayer:
    config = channel_layers(redis_url=redis_url, kind="redis", prefix="testpool")["default"]
    return layers.RedisChannelLayer(**config["CONFIG"])


def services_layer(name: str) -> layers.RedisChannelLayer:
    """A layer on the services tier's Redis, its keys under a prefix of its own."""
    layer = redis_layer(settings.REDIS_URL)
    layer.prefix = f"test{name}{settings.TEST_RUN_ID}"
    return layer


@pytest_asyncio.fixture
async def reader_layer():
    layer = services_layer("reader")
    yield layer
    await layer.flush()


def test_the_redis_pool_waits_for_a_connection_and_keeps_the_client_options():
    pool = redis_layer().create_pool(0)
    assert isinstance(pool, aioredis.BlockingConnectionPool)
    assert pool.max_connections == layers.POOL_MAX_CONNECTIONS
    assert pool.timeout == layers.POOL_TIMEOUT
    assert pool.connection_kwargs["socket_connect_timeout"] == 5
    assert pool.connection_kwargs["port"] == 1


def test_a_sentinel_host_keeps_channels_redis_pool():
    config = channel_layers(
        redis_url="redis://:pw@ignored/1", kind="redis", sentinel_hosts=["127.0.0.1:26379"]
    )["default"]["CONFIG"]
    pool = layers.RedisChannelLayer(**config).create_pool(0)
    assert not isinstance(pool, aioredis.BlockingConnectionPool)


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_many_sockets_joining_and_leaving_at_once_all_succeed():
    """More concurrent group_add/discard calls than the pool has connections (the
    stock pool raises MaxConnectionsError past its limit): they wait their turn."""
    layer = redis_layer(settings.REDIS_URL)
    layer.prefix = f"testpool{settings.TEST_RUN_ID}"
    count = layers.POOL_MAX_CONNECTIONS * 6
    try:
        channels = [await layer.new_channel() for _ in range(count)]
        await asyncio.gather(*(layer.group_add("crowd", c) for c in channels))
        connection = layer.connection(0)
        assert await connection.zcard(layer._group_key("crowd")) == count
        await asyncio.gather(*(layer.group_discard("crowd", c) for c in channels))
        assert await connection.zcard(layer._group_key("crowd")) == 0
    finally:
        await layer.flush()


@pytest.mark.asyncio
async def test_an_unreachable_redis_fails_every_waiting_receive():
    """The process's reader fails; each consumer waiting on it gets the error (and
    LayerFaultsMixin closes its socket with 4503); the next receive tries again."""
    layer = redis_layer("redis://127.0.0.1:1/0")  # nothing listens on port 1
    channels = [await layer.new_channel() for _ in range(2)]
    waiting = [asyncio.ensure_future(layer.receive(c)) for c in channels]
    done, _ = await asyncio.wait(waiting, timeout=TIMEOUT)
    assert len(done) == 2
    for task in done:
        assert isinstance(task.exception(), LAYER_ERRORS)
    with pytest.raises(LAYER_ERRORS):
        await asyncio.wait_for(layer.receive(channels[0]), TIMEOUT)
    await layer.stop_readers()


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_the_readers_deliver_each_message_once_to_each_channel(reader_layer):
    layer = reader_layer
    members = [await layer.new_channel() for _ in range(3)]
    for channel in members:
        await layer.group_add("room", channel)
    waiting = [asyncio.ensure_future(layer.receive(c)) for c in members]
    await layer.group_send("room", {"type": "chat.message", "frame": "hi"})
    received = await asyncio.wait_for(asyncio.gather(*waiting), TIMEOUT)
    assert received == [{"type": "chat.message", "frame": "hi"}] * 3
    # A channel of another prefix (as /readyz makes) is answered while the
    # consumers' channels are waiting: the stock layer would hold it until one
    # of them got a message.
    idle = [asyncio.ensure_future(layer.receive(c)) for c in members]
    probe = await layer.new_channel("readyz.")
    await layer.send(probe, {"type": "readyz.ping"})
    assert await asyncio.wait_for(layer.receive(probe), TIMEOUT) == {"type": "readyz.ping"}
    assert not any(task.done() for task in idle)
    # A consumer that goes away leaves no queue behind.
    for task in idle:
        task.cancel()
    await asyncio.gather(*idle, return_exceptions=True)
    assert not set(members) & set(layer.local_queues)
    started = asyncio.get_running_loop().time()
    await layer.stop_readers()
    assert layer.readers == {}
    # Stopped by a message, not by waiting out a blocking read.
    assert asyncio.get_running_loop().time() - started < layers.READ_WAIT


@contextlib.contextmanager
def counting(reads: list[str], name: str, refuse: bool = False) -> Iterator[None]:
    """Record each call of a Redis command in ``reads``, through redis-py or the
    reader's own connection; with ``refuse``, answer it as a Redis that does not
    know it does."""
    with contextlib.ExitStack() as patches:
        for owner in (aioredis.Redis, ReadConnection):
            command = getattr(owner, name)

            async def counted(client, *args, command=command, **kwargs):
                reads.append(name)
                if refuse:
                    raise ResponseError(f"unknown command '{name.upper()}'")
                return await command(client, *args, **kwargs)

            patches.enter_context(mock.patch.object(owner, name, counted))
        yield


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_the_reader_takes_the_messages_waiting_in_one_round_trip_in_order(reader_layer):
    layer = reader_layer
    reads: list[str] = []
    channel = await layer.new_channel()
    for number in range(5):  # queued in Redis before any reader runs
        await layer.send(channel, {"type": "test.message", "n": number})
    with counting(reads, "bzmpop"), counting(reads, "zpopmin"), counting(reads, "bzpopmin"):
        received = [await asyncio.wait_for(layer.receive(channel), TIMEOUT) for _ in range(5)]
        # A message to a reader that waits: one round trip too.
        await asyncio.sleep(0.1)
        await layer.send(channel, {"type": "test.message", "n": 5})
        received.append(await asyncio.wait_for(layer.receive(channel), TIMEOUT))
    assert [message["n"] for message in received] == list(range(6))
    # One BZMPOP took all five, one waited for the sixth; the reader may already be
    # waiting for more. channels-redis reads one message per BZPOPMIN.
    assert set(reads) == {"bzmpop"}
    assert len(reads) <= 3


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_on_a_redis_before_7_the_reader_reads_in_two_round_trips(reader_layer, caplog):
    layer = reader_layer
    reads: list[str] = []
    channel = await layer.new_channel()
    for number in range(5):
        await layer.send(channel, {"type": "test.message", "n": number})
    with (
        caplog.at_level(logging.INFO, logger="realtime.layers"),
        counting(reads, "bzmpop", refuse=True),
        counting(reads, "zpopmin"),
        counting(reads, "bzpopmin"),
    ):
        received = [await asyncio.wait_for(layer.receive(channel), TIMEOUT) for _ in range(5)]
        await asyncio.sleep(0.1)  # waiting in BZPOPMIN now
        await layer.send(channel, {"type": "test.message", "n": 5})
        received.append(await asyncio.wait_for(layer.receive(channel), TIMEOUT))
    assert [message["n"] for message in received] == list(range(6))
    assert reads[:3] == ["bzmpop", "zpopmin", "zpopmin"]  # asked once, then ZPOPMIN took all
    assert reads.count("bzmpop") == 1
    assert "bzpopmin" in reads
    assert caplog.text.count("Redis has no BZMPOP") == 1


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_a_cancelled_reader_ends_at_once_not_after_its_blocking_read(reader_layer):
    layer = reader_layer
    channel = await layer.new_channel()
    waiting = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.2)  # the reader is in its blocking read (READ_WAIT: 1 s)
    (reader,) = layer.readers.values()
    # As asyncio.run does to the tasks left when its loop ends (the test client
    # and async_to_sync run such loops).
    reader.cancel()
    waiting.cancel()
    done, _ = await asyncio.wait([reader], timeout=layers.READ_WAIT / 2)
    assert done == {reader}


@pytest.mark.services("REDIS_URL")
def test_a_loop_that_ends_while_its_reader_reads_closes_within_one_blocking_read():
    """asyncio.run cancels the reader as its loop ends; a cancellation redis-py
    swallows (Python 3.11) must still end it, not leave the loop reading on."""
    layer = services_layer("loopend")

    async def send_and_receive() -> None:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "test.message"})
        await asyncio.wait_for(layer.receive(channel), TIMEOUT)

    took: list[float] = []

    def run() -> None:
        started = time.monotonic()
        asyncio.run(send_and_receive())
        took.append(time.monotonic() - started)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(TIMEOUT + 2 * layers.READ_WAIT)
    assert took, "the loop never ended: its reader kept reading"
    assert took[0] < TIMEOUT


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_a_group_send_drops_expired_messages_first_and_skips_full_channels(reader_layer):
    sender, other = reader_layer, services_layer("other")
    other.prefix = sender.prefix  # another process on the same Redis
    sender.capacity = 1
    here, there = await sender.new_channel(), await other.new_channel()
    for channel in (here, there):
        await sender.group_add("room", channel)
    there_key = sender.prefix + sender.non_local_name(there)
    try:
        await sender.send(there, {"type": "test.old"})  # the other process's key is full
        await sender.group_send("room", {"type": "test.first"})
        assert await asyncio.wait_for(sender.receive(here), TIMEOUT) == {"type": "test.first"}
        client = sender.connection(0)
        assert await client.zcard(there_key) == 1  # full: the group message was dropped
        # Once the waiting message is older than the layer's expiry, the next group send
        # drops it before it checks for room.
        (waiting,) = await client.zrange(there_key, 0, -1)
        await client.zadd(there_key, {waiting: time.time() - sender.expiry - 5})
        await sender.group_send("room", {"type": "test.second"})
        assert await asyncio.wait_for(sender.receive(here), TIMEOUT) == {"type": "test.second"}
        assert await asyncio.wait_for(other.receive(there), TIMEOUT) == {"type": "test.second"}
    finally:
        await other.flush()


@contextlib.contextmanager
def round_trips() -> Iterator[list[str]]:
    """Each round trip to Redis meanwhile: a command, or a pipeline of them."""
    calls: list[str] = []
    command, pipeline = aioredis.Redis.execute_command, aioredis.client.Pipeline.execute

    async def counted_command(client, *args, **kwargs):
        calls.append(str(args[0]))
        return await command(client, *args, **kwargs)

    async def counted_pipeline(pipe, *args, **kwargs):
        calls.append(f"pipeline of {len(pipe.command_stack)}")
        return await pipeline(pipe, *args, **kwargs)

    with (
        mock.patch.object(aioredis.Redis, "execute_command", counted_command),
        mock.patch.object(aioredis.client.Pipeline, "execute", counted_pipeline),
    ):
        yield calls


@pytest_asyncio.fixture
async def member(reader_layer) -> str:
    """A channel of reader_layer's, in the group "room"."""
    channel = await reader_layer.new_channel()
    await reader_layer.group_add("room", channel)
    return channel


async def sent_at_once(layer: layers.RedisChannelLayer, count: int) -> None:
    await asyncio.gather(
        *(layer.group_send("room", {"type": "test.message", "n": n}) for n in range(count))
    )


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_a_group_message_is_stored_as_channels_redis_would_store_it(reader_layer):
    """The script appends each key's channel list to the message as msgpack: the
    bytes are channels-redis' own (after the random prefix), for names and lists of
    every msgpack length class, and for any value msgpack packs."""
    layer = reader_layer
    here = [await layer.new_channel() for _ in range(17)]  # a list of 16 or more
    long_name = "worker." + "w" * 40  # a str8 name, and a key of its own (no "!")
    members = [*here, long_name]
    for channel in members:
        await layer.group_add("room", channel)
    message: dict[str, Any] = {f"k{n}": n for n in range(16)}  # a map of 16 or more entries
    message |= {"type": "test.message", "bytes": b"\x00\xff", "text": "é" * 40, "nested": {}}
    message["__asgi_channel__"] = "ignored"  # replaced, as channels-redis does
    with round_trips() as calls:
        await layer.group_send("room", message)
    assert calls == ["EVALSHA"]
    client = layer.connection(0)
    members_now = [m.decode() for m in await client.zrange(layer._group_key("room"), 0, -1)]
    _, expected, _ = core.RedisChannelLayer._map_channel_keys_to_connection(
        layer, members_now, message
    )
    length = layer._serializer.random_prefix_length
    for key, stock in expected.items():
        (stored,) = await client.zrange(key, 0, -1)
        assert stored[length:] == stock[length:]
    del message["__asgi_channel__"]
    assert await asyncio.wait_for(layer.receive(long_name), TIMEOUT) == message
    for channel in here:
        received = await asyncio.wait_for(layer.receive(channel), TIMEOUT)
        assert received["bytes"] == b"\x00\xff"
        assert received["nested"] == {}


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_group_sends_at_once_share_round_trips_and_arrive_in_order(reader_layer, member):
    with round_trips() as calls:
        await sent_at_once(reader_layer, 50)
    # All were handed in before the first went: one pipeline.
    assert calls == ["pipeline of 50"]
    received = [await asyncio.wait_for(reader_layer.receive(member), TIMEOUT) for _ in range(50)]
    assert [message["n"] for message in received] == list(range(50))


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_a_redis_that_forgot_the_script_is_sent_it_again(reader_layer, member):
    client = reader_layer.connection(0)
    for together in (1, 3):
        await client.script_flush()
        await sent_at_once(reader_layer, together)
        assert await client.script_exists(layers.GROUP_SEND_ONE_TRIP.sha) == [True]
        for n in range(together):
            assert (await asyncio.wait_for(reader_layer.receive(member), TIMEOUT))["n"] == n


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_a_send_is_one_round_trip_and_stored_as_channels_redis_stores_it(reader_layer):
    layer, client = reader_layer, reader_layer.connection(0)
    length = layer._serializer.random_prefix_length
    local = await layer.new_channel()
    message = {"type": "test.message", "bytes": b"\x00\xff", "text": "é"}
    for channel, key in ((local, layer.non_local_name(local)), ("worker.w", "worker.w")):
        await client.script_flush()  # a Redis that forgot the script is sent it
        for expected_calls in (["EVALSHA", "EVAL"], ["EVALSHA"]):
            with round_trips() as calls:
                await layer.send(channel, message)
            assert calls == expected_calls
        expected = message | {"__asgi_channel__": channel} if "!" in channel else message
        stored = await client.zrange(layer.prefix + key, 0, -1)
        assert [s[length:] for s in stored] == [layer.serialize(expected)[length:]] * 2
        for _ in range(2):
            assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == message
    with pytest.raises(AssertionError):
        await layer.send(local, {"type": "x", "__asgi_channel__": "mine"})
    with pytest.raises(AssertionError):
        await layer.send(local, "not a dict")  # the error under test
    with pytest.raises(TypeError):
        await layer.send("bad name!!", {"type": "x"})


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_sends_at_once_stop_at_the_channels_capacity(reader_layer):
    """The capacity check and the add are one step: channels-redis' four round trips
    let sends that arrive together take a channel past its capacity."""
    layer = reader_layer
    layer.capacity = 5
    layer.channel_capacity = layer.compile_capacities({"worker.small": 2})
    for channel, capacity in ((await layer.new_channel(), 5), ("worker.small", 2)):
        outcomes = await asyncio.gather(
            *(layer.send(channel, {"type": "x", "n": n}) for n in range(20)),
            return_exceptions=True,
        )
        assert outcomes.count(None) == capacity
        assert all(isinstance(o, ChannelFull) for o in outcomes if o is not None)
        key = layer.prefix + (layer.non_local_name(channel) if "!" in channel else channel)
        assert await layer.connection(0).zcard(key) == capacity


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
async def test_a_failed_group_send_fails_alone_and_the_next_ones_go(reader_layer, member):
    layer, channel = reader_layer, member
    good = {"type": "test.message"}
    with pytest.raises(TypeError):  # msgpack cannot pack it, as with channels-redis
        await layer.group_send("room", {"type": "test.message", "value": object()})
    # A script error (here a group key of another type) reaches its own sender only.
    await layer.connection(0).set(layer._group_key("broken"), "not a sorted set")
    outcomes = await asyncio.gather(
        layer.group_send("room", good),
        layer.group_send("broken", good),
        layer.group_send("room", good),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], aioredis.ResponseError)
    for _ in range(2):
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == good


@pytest.mark.services("REDIS_URL")
@pytest.mark.asyncio
@pytest.mark.parametrize(
    "config",
    [{"channel_capacity": {"test*": 5}}, {"symmetric_encryption_keys": ["a key"]}],
    ids=["capacity per pattern", "encryption"],
)
async def test_a_layer_the_script_cannot_serve_sends_in_two_trips(config):
    settings_config = channel_layers(redis_url=settings.REDIS_URL, kind="redis")["default"]
    layer = layers.RedisChannelLayer(**{**settings_config["CONFIG"], **config})
    layer.prefix = f"testtwotrips{settings.TEST_RUN_ID}"
    try:
        assert layer.group_message_head({"type": "test.message"}) is None
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        await layer.group_send("room", {"type": "test.message"})
        assert await asyncio.wait_for(layer.receive(channel), TIMEOUT) == {"type": "test.message"}
    finally:
        await layer.flush()
