"""The channel layers ``realtime/channel_layers.py`` configures: Channels' and
channels-redis' own, changed where they cost the chat correctness or speed.

Each keeps the behaviour of the class it replaces: ``realtime/tests/
test_layer_conformance.py`` runs the same tests on ours and on the stock classes, and
the template's tests run channels-redis' own suite (its ``test_core.py`` and
``test_sentinel.py``) on our ``RedisChannelLayer``, which passes every test the stock
class passes. Where ours differs on purpose, the class docstring says so and why;
what the changes bought is measured in docs/benchmark.md.

- ``InMemoryChannelLayer`` (no ``REDIS_URL``): the stock layer looks through every
  channel and group for expired messages on each receive and each group send, and
  starts a task per member to send a group message, so a broadcast to C members
  costs C x C checks. Here a receiver drops its own expired messages, the sweep of
  the others runs at most once a second (they live a minute), and a group message
  goes straight on each member's queue.
- ``RedisChannelLayer``: one task per process reads the process's messages from
  Redis and hands each to its channels' queues, where the stock layer has every
  consumer compete for a lock through two new tasks per message (about half the
  server's CPU per delivery at 100 members); it reads many messages per round
  trip, where the stock layer makes four round trips per message, and sends to a
  group, or to one channel, in one round trip instead of four. Its reader holds
  a connection of its own (``realtime.resp``); the others come from a pool that
  waits (up to ``POOL_TIMEOUT``) for a free connection rather than failing once
  ``POOL_MAX_CONNECTIONS`` are in use: with the stock pool, 1,000 sockets opening
  at once got HTTP 500 (redis-py's ``MaxConnectionsError`` inside ``group_add``)
  and sockets closing at once left their group memberships behind.
https://channels.readthedocs.io/en/stable/topics/channel_layers.html
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from copy import deepcopy
from typing import Any

from channels import layers
from channels.exceptions import ChannelFull
from channels_redis import core, serializers
from redis import asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from realtime.batches import Batches
from realtime.loops import PerLoop
from realtime.resp import ReadConnection

logger = logging.getLogger(__name__)

# Redis connections one server process opens at most for RedisChannelLayer, and
# seconds a command waits for one of them before it fails.
POOL_MAX_CONNECTIONS = 50
POOL_TIMEOUT = 10
# Messages the process's reader takes from Redis in one round trip at most, and
# seconds its blocking read waits when there are none (then it reads again).
READ_BATCH = 100
READ_WAIT = 1.0
# Group sends of one event loop in one round trip at most (RedisChannelLayer).
GROUP_SEND_BATCH = 100
# Seconds between two sweeps: of expired messages in the in-memory layer, of empty
# queues nobody waits on in RedisChannelLayer.
SWEEP_INTERVAL = 1.0


class InMemoryChannelLayer(layers.InMemoryChannelLayer):
    """Channels' in-memory layer without the per-message sweep and tasks.

    Delivers as the stock layer does (``realtime/tests/test_layer_conformance.py``
    runs the same tests on both): an expired message is dropped when it is received, a group send
    skips memberships older than ``group_expiry``, and each member gets its own copy
    of a group message. Two differences, on purpose:

    - The stock layer looks through every channel and group for expired messages on
      each receive and group send; here that sweep runs at most once every
      ``SWEEP_INTERVAL`` seconds. It only frees the memory of channels nobody reads
      (a reader drops its own expired messages at once), so a message-per-socket
      broadcast no longer costs sockets x sockets checks.
    - A layer used from a second event loop while a receive waits in another one
      raises ``RuntimeError``, as channels-redis does; the stock in-memory layer
      would wake the other loop's waiter from the wrong thread and can hang.

    And one fix: ``channel_capacity`` works (a stock in-memory layer given it
    fails every send).
    """

    clock = staticmethod(time.monotonic)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The stock layer keeps channel_capacity as given, and get_capacity fails
        # on it ("too many values to unpack"); channels-redis compiles it so.
        self.channel_capacity: list[tuple[Any, int]] = self.compile_capacities(
            self.channel_capacity
        )
        self.swept = float("-inf")
        self.receiving = 0
        self.receive_loop: asyncio.AbstractEventLoop | None = None

    def _clean_expired(self) -> None:
        now = self.clock()
        if now - self.swept >= SWEEP_INTERVAL:
            self.swept = now
            super()._clean_expired()

    def one_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, unless a receive waits in another loop that still runs."""
        loop = asyncio.get_running_loop()
        other = self.receive_loop
        if self.receiving and other is not loop and other is not None and other.is_running():
            raise RuntimeError(
                "Two event loops are using one InMemoryChannelLayer at once: its queues "
                "belong to one loop (use one layer per loop, or Redis between threads)"
            )
        return loop

    def queue(self, channel: str) -> asyncio.Queue:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        self.one_loop()
        await super().send(channel, message)

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        loop = self.one_loop()
        self._clean_expired()
        self.receiving += 1
        self.receive_loop = loop
        queue = self.queue(channel)
        try:
            while True:
                expires, message = await queue.get()
                if expires >= time.time():
                    return message
                # Expired while it waited: dropped, and the channel leaves its groups,
                # as the stock layer's sweep does.
                self._remove_from_groups(channel)
        finally:
            self.receiving -= 1
            # An empty queue is dropped, as in the stock layer: a closed consumer's
            # channel must not keep one.
            if queue.empty() and self.channels.get(channel) is queue:
                del self.channels[channel]

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        if not isinstance(message, dict):
            raise AssertionError("Message is not a dict")  # as the stock layer
        self.require_valid_group_name(group)
        self.one_loop()
        self._clean_expired()
        members = self.groups.get(group)
        if not members:
            return
        now = time.time()
        joined_after = int(now) - self.group_expiry
        expires = now + self.expiry
        for channel, joined in list(members.items()):
            if joined and joined < joined_after:
                del members[channel]  # the membership expired
                continue
            queue = self.queue(channel)
            if not queue.full():  # a full channel drops the message (ChannelFull)
                # Each member its own copy, as the stock layer: a handler that
                # changes its event must not change another member's.
                queue.put_nowait((expires, deepcopy(message)))


def swallowed_cancel(task: asyncio.Task[Any]) -> None:
    """Raise the cancellation a Redis command swallowed. On Python 3.11, redis-py's
    send (``asyncio.wait_for`` with the socket timeout) can return normally when the
    task is cancelled just as the send completes; ``Task.cancelling()`` still counts
    the request. Without this, a reader cancelled by ``asyncio.run`` (the test client,
    ``async_to_sync``) would read on and hold its loop open."""
    if task.cancelling():
        raise asyncio.CancelledError


class Script:
    """A Lua script that Redis runs by its SHA-1, sent in full only to a Redis that
    does not know it (it restarted, or its scripts were flushed)."""

    def __init__(self, source: str) -> None:
        self.source = source
        # Redis names a script by its SHA-1: a name, not a secret.
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def run(self, client: Any, keys: tuple[Any, ...], arguments: tuple[Any, ...]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *arguments)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *arguments)


# channels-redis' send in one call: the channel's expired messages dropped, its
# length checked against its capacity (0 returned when full), the message added.
SEND = Script("""
local key = KEYS[1]
redis.call('ZREMRANGEBYSCORE', key, 0, ARGV[2])
if redis.call('ZCARD', key) >= tonumber(ARGV[5]) then
    return 0
end
redis.call('ZADD', key, ARGV[3], ARGV[1])
redis.call('EXPIRE', key, ARGV[4])
return 1
""")


# channels-redis' group send script, with each channel's expired messages dropped in
# the same call (channels-redis drops them in a round trip of its own first).
GROUP_SEND_LUA = """
local count = #KEYS
local over_capacity = 0
local cutoff = tonumber(ARGV[2 * count + 1])
local now = ARGV[2 * count + 2]
local expiry = ARGV[2 * count + 3]
for i = 1, count do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, cutoff)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[count + i]) then
        redis.call('ZADD', KEYS[i], now, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


# A group send in one call, for a layer on one Redis with msgpack messages
# (RedisChannelLayer.group_message_head): the group's expired members are dropped,
# the others read and gathered by the key their messages go to (a process's
# channels share one key: the name up to its "!"), and each key gets the message
# with its channels' list as msgpack appended, where it has room, as
# GROUP_SEND_LUA does. It reaches keys it is not given in KEYS: fine on one Redis
# server, which is all channels-redis supports (no Redis Cluster).
GROUP_SEND_ONE_TRIP = Script("""
local group = KEYS[1]
local head, prefix = ARGV[2], ARGV[3]
local cutoff, now, expiry = ARGV[4], ARGV[5], ARGV[6]
local capacity = tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', group, 0, ARGV[1])
local members = redis.call('ZRANGE', group, 0, -1)

local function length(small, tag, n)
    if n < small then
        return string.char(tag + n)
    elseif tag == 0xa0 and n < 0x100 then
        return string.char(0xd9, n)
    elseif n < 0x10000 then
        return string.char(tag == 0xa0 and 0xda or 0xdc, math.floor(n / 0x100), n % 0x100)
    end
    return string.char(tag == 0xa0 and 0xdb or 0xdd, math.floor(n / 0x1000000),
        math.floor(n / 0x10000) % 0x100, math.floor(n / 0x100) % 0x100, n % 0x100)
end

local keys, channels = {}, {}
for _, channel in ipairs(members) do
    local bang = string.find(channel, '!', 1, true)
    local key = prefix .. (bang and string.sub(channel, 1, bang) or channel)
    local list = channels[key]
    if not list then
        list = {}
        channels[key] = list
        keys[#keys + 1] = key
    end
    list[#list + 1] = length(32, 0xa0, #channel) .. channel
end

local over_capacity = 0
for _, key in ipairs(keys) do
    local list = channels[key]
    redis.call('ZREMRANGEBYSCORE', key, 0, cutoff)
    if redis.call('ZCARD', key) < capacity then
        redis.call('ZADD', key, now, head .. length(16, 0x90, #list) .. table.concat(list))
        redis.call('EXPIRE', key, expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return {over_capacity, #members}
""")


class ReaderFailed:
    """Put on a channel's queue when the process's Redis reader failed."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class RedisChannelLayer(core.RedisChannelLayer):
    """channels-redis' RedisChannelLayer, with one reader per process, sends in one
    round trip, and a pool that waits for a free connection.

    The stock layer makes every consumer's ``receive`` compete for one lock, through
    two new tasks and an ``asyncio.wait`` per message, and the lock's holder reads
    from Redis for everyone (so a channel of another prefix, such as /readyz's,
    waits until a consumer's message arrives). Here one task per process and
    prefix reads those messages from Redis, many per round trip (``read``), and
    puts each on the queue of the channels it names; a consumer's
    ``receive`` only waits on its queue. Messages sent to a name without "!" (a
    worker's channel) are received as before.

    Differences from channels-redis, on purpose: no backup copy of a message being
    read (``read`` says why); a receive in a second event loop while a reader runs
    in another raises ``RuntimeError``, as channels-redis does, and once that loop
    has stopped the queues move to the new one (``own_loop``); the pool waits for a
    free connection (``create_pool``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.local_queues: dict[str, asyncio.Queue[Any]] = {}
        self.readers: dict[str, asyncio.Task[None]] = {}
        self.queues_loop: asyncio.AbstractEventLoop | None = None
        self.swept = 0.0
        # BZMPOP until a Redis before 7.0 refuses it (``pop_waiting``).
        self.blocking_batch_pop = True
        # Each loop's group sends, many in one round trip under load.
        self.group_sends: PerLoop[Batches[tuple[Any, ...], Any]] = PerLoop(
            lambda: Batches(self.group_send_scripts, GROUP_SEND_BATCH)
        )

    def create_pool(self, index: int) -> aioredis.ConnectionPool:
        host = dict(self.hosts[index])
        if "address" not in host:  # Sentinel: channels-redis' own pool
            return super().create_pool(index)
        return aioredis.BlockingConnectionPool.from_url(
            host.pop("address"), max_connections=POOL_MAX_CONNECTIONS, timeout=POOL_TIMEOUT, **host
        )

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """channels-redis' ``send`` in one round trip instead of four (``SEND``): on
        this machine 160-220 µs of the sender's CPU against 610-700, and the check
        against the channel's capacity and the add are one step, so concurrent
        sends no longer take a channel past its capacity."""
        # The same errors as channels-redis, whose own tests expect them.
        if not isinstance(message, dict):
            raise AssertionError("message is not a dict")
        self.require_valid_channel_name(channel)  # raises TypeError on a bad name
        if "__asgi_channel__" in message:
            raise AssertionError("__asgi_channel__ is reserved for the layer")
        key = channel
        if "!" in channel:
            # A process's channels share one key; the message names its channel.
            message = {**message, "__asgi_channel__": channel}
            key = self.non_local_name(channel)
            index = self.consistent_hash(channel)
        else:
            index = next(self._send_index_generator)
        now = time.time()
        arguments = (
            self.serialize(message),
            int(now) - int(self.expiry),
            now,
            int(self.expiry),
            self.get_capacity(channel),
        )
        if not await SEND.run(self.connection(index), (self.prefix + key,), arguments):
            raise ChannelFull()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """channels-redis' ``group_send`` in one round trip instead of four: one
        script drops the group's expired members, reads the others, and adds the
        message to each Redis key they read from (``GROUP_SEND_ONE_TRIP``).
        Under load, the group sends of a loop that arrive while one round trip is
        under way go together in the next (``realtime.batches``).

        The script can only reach keys on the group's own Redis and cannot run
        Python, so a layer whose messages need more (several hosts, encryption, a
        capacity per channel pattern, a serializer other than msgpack) sends as
        ``group_send_two_trips`` does."""
        if not isinstance(message, dict):
            raise AssertionError("Message is not a dict")  # as channels-redis
        self.require_valid_group_name(group)
        head = self.group_message_head(message)
        if head is None:
            await self.group_send_two_trips(group, message)
            return
        now = time.time()
        arguments = (
            self._group_key(group),
            int(now) - self.group_expiry,
            head,
            self.prefix,
            int(now) - int(self.expiry),
            now,
            self.expiry,
            self.capacity,
        )
        over_capacity, members = await self.group_sends.get().submit(arguments)
        if over_capacity:
            logger.info(
                "%s of %s channels over capacity in group %s", over_capacity, members, group
            )

    async def group_send_scripts(self, sends: list[tuple[Any, ...]]) -> list[Any]:
        """Run ``GROUP_SEND_ONE_TRIP`` once for each of ``sends`` (its arguments),
        all in one round trip; each send's outcome or error, in order. A Redis
        that does not know the script (it restarted, or its scripts were flushed)
        is sent it, and the sends it refused run again."""
        client = self.connection(0)
        if len(sends) == 1:
            group_key, *arguments = sends[0]
            return [await GROUP_SEND_ONE_TRIP.run(client, (group_key,), tuple(arguments))]
        outcomes = await self.scripts_pipelined(client, sends)
        unknown = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, NoScriptError)]
        if unknown:
            await client.script_load(GROUP_SEND_ONE_TRIP.source)
            again = await self.scripts_pipelined(client, [sends[i] for i in unknown])
            for i, outcome in zip(unknown, again, strict=True):
                outcomes[i] = outcome
        return outcomes

    @staticmethod
    async def scripts_pipelined(client: aioredis.Redis, sends: list[tuple[Any, ...]]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for arguments in sends:
            pipe.evalsha(GROUP_SEND_ONE_TRIP.sha, 1, *arguments)
        return list(await pipe.execute(raise_on_error=False))

    def group_message_head(self, message: dict[str, Any]) -> bytes | None:
        """The serialized message up to its ``__asgi_channel__`` list, which the
        script appends, or None when the script cannot build what ``serialize``
        would (see ``group_send``).

        A msgpack map is its entry count and then its entries, so the message is
        packed with ``__asgi_channel__`` last, set to nil (one byte), and the nil is
        cut off: the script puts the list of each key's channels in its place."""
        serializer = self._serializer
        if (
            len(self.hosts) != 1
            or self.channel_capacity
            or type(serializer) is not serializers.MsgPackSerializer
            or serializer.crypter
        ):
            return None
        body = {key: value for key, value in message.items() if key != "__asgi_channel__"}
        body["__asgi_channel__"] = None
        packed = serializer.as_bytes(body)
        length = serializer.random_prefix_length
        # A random prefix as serialize() adds: two equal messages must stay two
        # members of a key's sorted set.
        prefix = os.urandom(length)
        return prefix + packed[:-1]

    async def group_send_two_trips(self, group: str, message: dict[str, Any]) -> None:
        """channels-redis' ``group_send`` in two round trips instead of four: the
        group's expired members are dropped and its members read in one pipeline,
        and each Redis host gets one script that drops its channels' expired
        messages and adds the new one where there is room."""
        key = self._group_key(group)
        pipe = self.connection(self.consistent_hash(group)).pipeline(transaction=False)
        pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
        pipe.zrange(key, 0, -1)
        _, members = await pipe.execute()
        channel_names = [member.decode("utf8") for member in members]
        by_host, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        for index, keys in by_host.items():
            now = time.time()
            over_capacity = await self.connection(index).eval(
                GROUP_SEND_LUA,
                len(keys),
                *keys,
                *(messages[key] for key in keys),
                *(capacities[key] for key in keys),
                int(now) - int(self.expiry),
                now,
                self.expiry,
            )
            if over_capacity:
                logger.info(
                    "%s of %s channels over capacity in group %s",
                    over_capacity,
                    len(channel_names),
                    group,
                )

    def local_queue(self, channel: str) -> asyncio.Queue[Any]:
        queue = self.local_queues.get(channel)
        if queue is None:
            # Full: the oldest message is dropped, as in channels-redis.
            queue = self.local_queues[channel] = core.BoundedQueue(self.capacity)
        return queue

    async def receive(self, channel: str) -> dict[str, Any]:
        if "!" not in channel:
            return await super().receive(channel)
        self.require_valid_channel_name(channel)  # raises TypeError on a bad name
        process_channel = self.non_local_name(channel)
        if not process_channel.endswith(self.client_prefix + "!"):
            # AssertionError, as channels-redis (its own test expects it).
            raise AssertionError(f"{channel!r} belongs to another process (wrong client prefix)")
        self.own_loop()
        self.sweep()
        queue = self.local_queue(channel)
        reader = self.readers.get(process_channel)
        if reader is None or reader.done():
            self.readers[process_channel] = asyncio.ensure_future(self.read(process_channel))
        try:
            item = await queue.get()
        except asyncio.CancelledError:
            if queue.empty():  # the consumer is gone
                self.local_queues.pop(channel, None)
            raise
        if isinstance(item, ReaderFailed):
            raise item.error
        return item

    async def read(self, process_channel: str) -> None:
        """Move this process's messages from Redis to their channels' queues, until
        this task is no longer the process's reader (see ``stop_readers``).

        One round trip per read (``pop_waiting``) takes up to ``READ_BATCH``
        messages, in order, or waits for the next one, on a connection of the
        reader's own where ``realtime.resp`` serves the host (a read there costs
        about 40% of one through redis-py), else through the layer's pool.
        channels-redis' ``receive_single`` costs four round trips per message
        instead, for its backup queue: a message whose read is interrupted goes back
        to its channel for the channel's next reader. A process channel has no other
        reader, and its reader is only interrupted when the process stops
        (``stop_readers``), when its sockets close anyway. A read that fails (Redis
        gone) loses what Redis sent it with either design.
        """
        index = self.consistent_hash(process_channel)
        key = self.prefix + process_channel
        me = asyncio.current_task()
        if me is None:
            raise RuntimeError("read() runs as a task")
        host = self.hosts[index]
        own = ReadConnection(host) if ReadConnection.serves(host) else None
        try:
            while self.readers.get(process_channel) is me:
                swallowed_cancel(me)
                waiting = await self.pop_waiting(own or self.connection(index), key, me)
                for content in waiting:
                    message = self.deserialize(content)
                    target = message.pop("__asgi_channel__")
                    for channel in target if isinstance(target, list) else [target]:
                        self.local_queue(channel).put_nowait(message)
        except Exception as error:  # noqa: BLE001 - handed to every receiver
            if self.readers.get(process_channel) is not me:
                return  # stopped: nobody is waiting for this reader any more
            del self.readers[process_channel]
            # Every consumer waiting here learns of it (LayerFaultsMixin closes its
            # socket with 4503); the next receive starts a new reader.
            for channel, queue in list(self.local_queues.items()):
                if channel.startswith(process_channel):
                    queue.put_nowait(ReaderFailed(error))
        finally:
            if own is not None:
                own.close()

    async def pop_waiting(self, client: Any, key: str, me: asyncio.Task[Any]) -> list[bytes]:
        """Up to ``READ_BATCH`` messages of the key, oldest first, waiting up to
        ``READ_WAIT`` seconds for one if none is there (then none).

        BZMPOP (Redis 7.0) does both in one round trip. On an older Redis, ZPOPMIN
        takes what is waiting and an empty channel costs a second round trip,
        BZPOPMIN, which waits: a quiet room's message costs two reads per process.
        (Not pipelined: a pipeline's blocking read holds a cancellation until it ends.)
        """
        if self.blocking_batch_pop:
            try:
                found = await client.bzmpop(READ_WAIT, 1, [key], min=True, count=READ_BATCH)
            except ResponseError as error:
                if "unknown command" not in str(error).lower():
                    raise
                self.blocking_batch_pop = False
                logger.info("Redis has no BZMPOP (before 7.0): reading in two round trips")
            else:
                return [] if found is None else [content for content, _ in found[1]]
        waiting = await client.zpopmin(key, READ_BATCH)
        if waiting:
            return [content for content, _ in waiting]
        swallowed_cancel(me)
        first = await client.bzpopmin(key, READ_WAIT)
        return [] if first is None else [first[1]]

    def sweep(self) -> None:
        """Drop queues nobody waits on and that hold nothing (one-off receivers such
        as /readyz), at most every SWEEP_INTERVAL seconds."""
        now = time.monotonic()
        if now - self.swept < SWEEP_INTERVAL:
            return
        self.swept = now
        for channel, queue in list(self.local_queues.items()):
            if queue.empty() and not getattr(queue, "_getters", True):
                del self.local_queues[channel]

    def own_loop(self) -> None:
        """Receive in the running loop: the readers and queues are this loop's.

        When they belong to a loop that no longer runs (``async_to_sync`` runs each
        call in a loop of its own), they are dropped and the
        messages the queues hold move to new ones: an asyncio queue that waited in
        one loop cannot wait in another. While a reader still runs in another loop,
        this raises ``RuntimeError`` as channels-redis does, instead of handing
        messages between threads.
        """
        loop = asyncio.get_running_loop()
        if self.queues_loop is loop:
            return
        for reader in self.readers.values():
            if not reader.done() and reader.get_loop().is_running():
                raise RuntimeError(
                    "Two event loops are trying to receive() on one channel layer at once!"
                )
        self.readers = {}
        self.queues_loop = loop
        for channel, old in list(self.local_queues.items()):
            self.local_queues[channel] = queue = core.BoundedQueue(self.capacity)
            while not old.empty():
                queue.put_nowait(old.get_nowait())

    async def stop_readers(self) -> None:
        """Stop the readers. Each is sent a message so that its blocking read ends at
        once (redis-py can hold a cancellation until the read ends, up to
        ``READ_WAIT``); a reader still running after that is cancelled. Readers of
        a loop that no longer runs are dropped, and one running in another loop is
        cancelled there."""
        readers, self.readers = self.readers, {}
        loop = asyncio.get_running_loop()
        for process_channel, reader in list(readers.items()):
            if reader.get_loop() is loop:
                continue
            del readers[process_channel]
            if reader.get_loop().is_running():
                reader.get_loop().call_soon_threadsafe(reader.cancel)
        for process_channel, reader in readers.items():
            if not reader.done():
                with contextlib.suppress(Exception):  # Redis down: the read fails anyway
                    await self.send(process_channel + "stop", {"type": "layer.stop"})
        if readers:
            _, running = await asyncio.wait(readers.values(), timeout=READ_WAIT + 1)
            for reader in running:
                reader.cancel()

    async def flush(self) -> None:
        await self.stop_readers()
        self.local_queues.clear()
        await super().flush()

    async def close_pools(self) -> None:
        await self.stop_readers()
        await super().close_pools()
