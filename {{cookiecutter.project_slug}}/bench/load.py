"""chatbench's load: members that join a room over real WebSockets and post marked
messages, in the four modes (``saturate``, ``open``, ``storm``, ``idle``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from bench.measure import Measurement, Usage, latency_figures, settled_rss
from bench.processes import Server, Stack
from realtime.testing.processes import STOP_TIMEOUT

MODES = ("saturate", "open", "storm", "idle")
# Bounded waits, in seconds.
CONNECT_TIMEOUT = 30.0

# A closed-loop sender stops waiting for its message to reach everyone after this long.
ECHO_TIMEOUT = 10.0
DRAIN_TIMEOUT = 10.0
POLL = 0.01

# Clients opening at once outside the storm mode.
CONNECT_CONCURRENCY = 50

# Each posted message carries "~b", the measurement's run number, the sender's
# index and the send time (or, in the open loop, the scheduled time) in
# nanoseconds: receivers find it in any frame format by plain string search.
MARK = "~b"
MARK_LENGTH = len(MARK) + 4 + 6 + 19

# What marks a history frame, in the project's protocol and the bare server's, and
# the project's ack of a message sent with a client_id (it carries the message).
HISTORY = '"history"'
ACK = '"ack"'


def message_text(run: int, sender: int, t_ns: int, size: int) -> str:
    core = f"{MARK}{run:04d}{sender:06d}{t_ns:019d}~"
    return core + "x" * max(0, size - len(core))


def client_id(token: str, run: int, sender: int, t_ns: int) -> str:
    """The client_id a message is sent with, as the shipped client sends one
    (chat-socket.js): unique across senders, runs and chatbench invocations (the
    benchmark's members are anonymous: one sender to the unique constraint)."""
    return f"{token}-{run}-{sender}-{t_ns}"


def delivery_mark(text: str) -> tuple[int, int, int] | None:
    """The mark of a live message frame: None for any other frame, such as a
    history, which may list a message also received live, or the ack of a
    message the member sent."""
    if HISTORY in text or ACK in text:
        return None
    return parse_mark(text)


def parse_mark(text: str) -> tuple[int, int, int] | None:
    """(run, sender, time) of the message in a frame, or None if it carries none."""
    i = text.find(MARK)
    if i < 0 or len(text) < i + MARK_LENGTH:
        return None
    j = i + len(MARK)
    return int(text[j : j + 4]), int(text[j + 4 : j + 10]), int(text[j + 10 : j + 29])


class Member:
    """One client in the room: its socket and the task reading it."""

    def __init__(self, index: int, ws: ClientConnection, bench: Bench) -> None:
        self.index = index
        self.ws = ws
        self.bench = bench
        self.errors: Counter[str] = Counter()
        self.connected_at = time.perf_counter_ns()
        # When its history frame arrived: from then on it is in the room, live.
        self.joined_at: int | None = None
        self.task = asyncio.ensure_future(self.read())

    async def read(self) -> None:
        bench = self.bench
        with contextlib.suppress(ConnectionClosed):
            async for data in self.ws:
                now = time.perf_counter_ns()
                text = data if isinstance(data, str) else data.decode()
                if self.joined_at is None and HISTORY in text:
                    self.joined_at = now
                mark = delivery_mark(text)
                if mark is None:
                    if '"error"' in text:
                        self.errors[error_code(text)] += 1
                    continue
                measurement = bench.current
                if measurement is not None and mark[0] == measurement.run:
                    measurement.record(mark[1], mark[2], now - mark[2])
                elif mark[1] == self.index:
                    bench.late += 1

    async def post(self, run: int, t_ns: int, size: int) -> None:
        text = message_text(run, self.index, t_ns, size)
        ids = client_id(self.bench.token, run, self.index, t_ns)
        await self.ws.send(json.dumps({"message": text, "client_id": ids}))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


def error_code(text: str) -> str:
    try:
        return str(json.loads(text).get("code", "error"))
    except (ValueError, AttributeError):
        return "error"


class Bench:
    def __init__(self, args: argparse.Namespace, stack: Stack) -> None:
        self.args = args
        self.stack = stack
        self.current: Measurement | None = None
        self.run = 0
        self.late = 0
        # Part of every client_id: runs of earlier invocations stay in the database.
        self.token = secrets.token_hex(4)

    def next_run(self) -> int:
        self.run = (self.run + 1) % 10000
        return self.run

    async def open(self, server: Server, room: str, index: int) -> Member:
        ws = await connect(
            server.ws_url(room),
            origin=Origin(server.origin),
            open_timeout=CONNECT_TIMEOUT,
            close_timeout=STOP_TIMEOUT,
            ping_interval=None,
            compression="deflate" if self.args.deflate else None,
            max_queue=1024,
        )
        return Member(index, ws, self)

    async def join(self, servers: Sequence[Server], room: str, count: int) -> tuple[list, Counter]:
        """``count`` members in the room, spread over the servers; and failures."""
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
        failures: Counter[str] = Counter()

        async def one(index: int) -> Member | None:
            async with limit:
                try:
                    return await self.open(servers[index % len(servers)], room, index)
                except Exception as error:  # noqa: BLE001 - every failure is counted by kind
                    failures[failure_kind(error)] += 1
                    return None

        members = await asyncio.gather(*(one(i) for i in range(count)))
        return [m for m in members if m is not None], failures

    async def leave(self, members: Iterable[Member]) -> None:
        await asyncio.wait_for(
            asyncio.gather(*(m.close() for m in members)), STOP_TIMEOUT + CONNECT_TIMEOUT
        )

    async def warm_up(self, members: list[Member]) -> bool:
        """Every member receives a message before measuring (joins are complete)."""
        for _ in range(3):
            measurement = Measurement(self.next_run(), len(members))
            self.current = measurement
            await members[0].post(measurement.run, time.perf_counter_ns(), self.args.size)
            measurement.sent = 1
            # Typing only: mypy cannot infer lambdas with default arguments.
            if await wait_for(lambda m=measurement: m.received >= m.expected, DRAIN_TIMEOUT):  # type: ignore[misc]
                return True
        return False

    async def drain(self, measurement: Measurement) -> None:
        await wait_for(lambda: measurement.received >= measurement.expected, DRAIN_TIMEOUT)

    # Modes.

    async def saturate(
        self, servers: Sequence[Server], clients: int, senders: int
    ) -> dict[str, Any]:
        return await self.broadcast_run(servers, clients, senders, rate=None)

    async def open_loop(self, servers: Sequence[Server], clients: int, rate: float) -> dict:
        return await self.broadcast_run(servers, clients, max(self.args.senders), rate=rate)

    async def broadcast_run(
        self, servers: Sequence[Server], clients: int, senders_wanted: int, rate: float | None
    ) -> dict[str, Any]:
        args = self.args
        room = f"bench{secrets.token_hex(4)}"
        members, failures = await self.join(servers, room, clients)
        row: dict[str, Any] = {"clients": clients, "connected": len(members)}
        if rate is None:
            row["senders"] = min(senders_wanted, clients)
        row["failed_connects"] = sum(failures.values())
        if not members:
            return row
        try:
            warm = await self.warm_up(members)
            senders = members[: max(1, min(senders_wanted, len(members)))]
            measurement = Measurement(self.next_run(), len(members))
            self.current = measurement
            usage = Usage(servers, self.stack)
            start = time.perf_counter_ns()
            end = start + int(args.duration * 1e9)
            if rate is None:
                await asyncio.gather(*(self.closed_loop(m, measurement, end) for m in senders))
            else:
                interval = len(members) / rate  # seconds between messages
                count = max(1, int(args.duration / interval))
                await asyncio.gather(
                    *(
                        self.scheduled(
                            m, measurement, start, interval, range(i, count, len(senders))
                        )
                        for i, m in enumerate(senders)
                    )
                )
            in_window = measurement.received
            elapsed = (time.perf_counter_ns() - start) / 1e9
            used = usage.stop()
            await self.drain(measurement)
            self.current = None
            errors: Counter[str] = Counter()
            for m in members:
                errors.update(m.errors)
            row.update(
                run=measurement.run,
                warm=warm,
                sent=measurement.sent,
                deliveries=measurement.received,
                deliveries_per_s=in_window / elapsed,
                loss=max(0, measurement.expected - measurement.received),
                refused=sum(errors.values()),
                **latency_figures(measurement.latencies),
                **used.per_delivery(in_window),
            )
            if rate is not None:
                row["offered_per_s"] = rate
            if args.hops:
                # For bench/hops.py, which joins them to the servers' stamps (not saved).
                row["completed"] = measurement.completed
        finally:
            self.current = None
            await self.leave(members)
        return row

    async def closed_loop(self, member: Member, measurement: Measurement, end: int) -> None:
        """Post, wait until the message has reached every member, post again."""
        while time.perf_counter_ns() < end:
            t_ns = time.perf_counter_ns()
            delivered = measurement.expect(member.index, t_ns)
            await member.post(measurement.run, t_ns, self.args.size)
            measurement.sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(delivered, ECHO_TIMEOUT)

    async def scheduled(
        self, member: Member, measurement: Measurement, start: int, interval: float, ks: range
    ) -> None:
        for k in ks:
            due = start + int(k * interval * 1e9)
            delay = (due - time.perf_counter_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            await member.post(measurement.run, due, self.args.size)
            measurement.sent += 1

    async def storm(self, servers: Sequence[Server], count: int) -> dict[str, Any]:
        """``count`` clients connect at once, all get one message, all leave."""
        room = f"storm{secrets.token_hex(4)}"
        failures: Counter[str] = Counter()
        times = array("q")

        async def one(index: int) -> Member | None:
            started = time.perf_counter_ns()
            try:
                member = await self.open(servers[index % len(servers)], room, index)
            except Exception as error:  # noqa: BLE001 - every failure is counted by kind
                failures[failure_kind(error)] += 1
                return None
            times.append(time.perf_counter_ns() - started)
            return member

        usage = Usage(servers, self.stack)
        storm_start = time.perf_counter_ns()
        opened = await asyncio.gather(*(one(i) for i in range(count)))
        members = [m for m in opened if m is not None]
        # In the room once its history has arrived; for a server that sends none
        # (the tutorial), once connected.
        history = servers[0].sends_history
        if history:
            await wait_for(lambda: all(m.joined_at for m in members), DRAIN_TIMEOUT)
        used = usage.stop()
        joined = [t for m in members if (t := m.joined_at if history else m.connected_at)]
        row: dict[str, Any] = {
            "clients": count,
            "connected": len(members),
            "failed_connects": sum(failures.values()),
            "failures": dict(failures),
            "server_rss_mb": used.rss_mb,
            # From the moment they all start connecting until the last one is in.
            "all_in_ms": (max(joined) - storm_start) / 1e6 if joined else None,
            "not_in": len(members) - len(joined),
        }
        row.update({f"connect_{k}": v for k, v in latency_figures(times).items()})
        try:
            if members:
                measurement = Measurement(self.next_run(), len(members))
                self.current = measurement
                await members[0].post(measurement.run, time.perf_counter_ns(), self.args.size)
                measurement.sent = 1
                await self.drain(measurement)
                row["delivered"] = measurement.received
        finally:
            self.current = None
            await asyncio.wait_for(
                asyncio.gather(*(m.close() for m in members)), STOP_TIMEOUT + CONNECT_TIMEOUT
            )
        group = group_name(servers[0].name, room)
        row["left_in_group"] = await asyncio.to_thread(self.group_members, group)
        return row

    def group_members(self, group: str) -> int | None:
        """Members the layer still lists in the group once every client has left
        (polled until zero, bounded); None where it cannot be seen from outside."""
        stack = self.stack
        if not stack.redis_url or stack.layer == "memory":
            return None
        import redis

        client = redis.Redis.from_url(stack.redis_url, socket_timeout=5)
        try:
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while True:
                if stack.layer == "redis":
                    left = client.zcard(f"{stack.prefix}:group:{group}")
                else:
                    channel = f"{stack.prefix}__group__{group}"
                    left = dict(client.pubsub_numsub(channel)).get(channel.encode(), 0)
                if left == 0 or time.monotonic() > deadline:
                    return int(left)
                time.sleep(0.1)
        finally:
            client.close()

    async def idle(self, servers: Sequence[Server], count: int) -> dict[str, Any]:
        """Server memory per open connection: RSS before and after ``count`` idle sockets."""
        warm, _ = await self.join(servers, f"idle{secrets.token_hex(4)}", CONNECT_CONCURRENCY)
        await self.leave(warm)
        before = await settled_rss(servers)
        room = f"idle{secrets.token_hex(4)}"
        members, failures = await self.join(servers, room, count)
        try:
            after = await settled_rss(servers)
        finally:
            await self.leave(members)
        row: dict[str, Any] = {
            "clients": count,
            "connected": len(members),
            "failed_connects": sum(failures.values()),
        }
        if before is not None and after is not None and members:
            row["server_rss_mb"] = after / 2**20
            row["kb_per_connection"] = (after - before) / len(members) / 1024
        return row


def group_name(server: str, room: str) -> str:
    """The group a room's members join: the project's (chat/rooms.py) or the tutorial's."""
    if server == "tutorial":
        return f"chat_{room}"
    from chat.rooms import room_group_name

    return room_group_name(room)


def failure_kind(error: BaseException) -> str:
    if isinstance(error, InvalidStatus):
        return f"http {error.response.status_code}"
    if isinstance(error, TimeoutError):
        return "timeout"
    return type(error).__name__


async def wait_for(predicate: Callable[[], bool], within: float) -> bool:
    """Poll until ``predicate()`` is true (True) or ``within`` seconds pass (False)."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL)
    return True
