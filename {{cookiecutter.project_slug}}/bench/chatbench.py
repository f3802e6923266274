"""chatbench: how many chat messages the project moves, how fast, on how much memory.

C clients join one room over real WebSockets (the ``websockets`` library) and
post chat messages; every broadcast counts as C deliveries, one per member. Each
figure is measured on the project's server and, in the same run and on the same
load, on the bare ``websockets`` broadcast server of ``bench/bare_server.py``, and
printed also as a ratio to it ("x bare"), so results compare across machines and
across noisy runs.

    uv run python -m bench.chatbench                       # every mode, C = 10, 100, 500
    uv run python -m bench.chatbench --layer redis --clients 100 --modes saturate
    uv run python -m bench.chatbench --target tutorial     # the Channels tutorial's consumer
    uv run python -m bench.chatbench --url ws://127.0.0.1:8000 --origin http://127.0.0.1:8000

Modes:
    saturate  closed loop: ``--senders`` members each post, wait for their own
              message to come back, and post again, for ``--duration`` seconds
    open      open loop: messages are sent on a fixed schedule at ``--rate``
              deliveries a second, whatever the server does; latency counts from
              the scheduled send time, so a slow server cannot hide its queue
    storm     ``--storm`` clients connect at the same moment, one message reaches
              them all, then all leave; checks that the layer's groups are empty after
    idle      ``--idle`` connections held open; server memory per connection

Reported: deliveries/s, latency p50/p99/max, loss (deliveries expected and never
received), failed connects, server CPU per delivery (and Redis's, when chatbench
started it), server RSS, and the load generator's own CPU (near 100% means the
client, not the server, set the pace). The servers chatbench starts run the web
command of the project's Procfile on 127.0.0.1 with ``bench.settings``. Every wait
is bounded; servers it starts are stopped on the way out. Loopback only.
Output: a table, JSON lines (``--jsonl``), and a latency plot (``--plot``, needs
matplotlib). See docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import secrets
import shlex
import shutil
import socket
import subprocess  # nosec B404 - starts the servers under test, fixed commands
import sys
import tempfile
import time
import urllib.parse
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
MODES = ("saturate", "open", "storm", "idle")
# Idle first, on servers that have not yet held many sockets: memory a server freed
# after other modes would otherwise be reused and hide the cost of new connections.
RUN_ORDER = ("idle", "saturate", "open", "storm")
# The command when the Procfile has no web line: uvicorn as the deploy files run it.
DEFAULT_COMMAND = "uvicorn --lifespan off config.asgi:application"
PROJECT_APP = "config.asgi:application"
TUTORIAL_APP = "bench.tutorial:application"
# Options that say where to listen; chatbench replaces them with a socket it hands over.
BIND_OPTIONS = frozenset({"-b", "--bind", "-p", "--port", "--host", "-u", "--uds"})

# Bounded waits, in seconds.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
CONNECT_TIMEOUT = 30.0
# A closed-loop sender stops waiting for its message to reach everyone after this long.
ECHO_TIMEOUT = 10.0
DRAIN_TIMEOUT = 10.0
SETTLE_TIMEOUT = 5.0
POLL = 0.01
# Clients opening at once outside the storm mode.
CONNECT_CONCURRENCY = 50

# Each posted message carries "~b", the measurement's run number, the sender's
# index and the send time (or, in the open loop, the scheduled time) in
# nanoseconds: receivers find it in any frame format by plain string search.
MARK = "~b"
MARK_LENGTH = len(MARK) + 4 + 6 + 19
# What marks a history frame, in the project's protocol and the bare server's.
HISTORY = '"history"'


def message_text(run: int, sender: int, t_ns: int, size: int) -> str:
    core = f"{MARK}{run:04d}{sender:06d}{t_ns:019d}~"
    return core + "x" * max(0, size - len(core))


def parse_mark(text: str) -> tuple[int, int, int] | None:
    """(run, sender, time) of the message in a frame, or None if it carries none."""
    i = text.find(MARK)
    if i < 0 or len(text) < i + MARK_LENGTH:
        return None
    j = i + len(MARK)
    return int(text[j : j + 4]), int(text[j + 4 : j + 10]), int(text[j + 10 : j + 29])


# Measurements.


@dataclass
class Measurement:
    """What one measurement's members received."""

    run: int
    members: int
    latencies: array = field(default_factory=lambda: array("q"))
    received: int = 0
    sent: int = 0
    # Closed loop: (sender, send time) -> [copies still to arrive, future set when none].
    waiting: dict[tuple[int, int], list[Any]] = field(default_factory=dict)

    def record(self, sender: int, t_ns: int, latency_ns: int) -> None:
        self.received += 1
        self.latencies.append(latency_ns)
        entry = self.waiting.get((sender, t_ns))
        if entry is not None:
            entry[0] -= 1
            if entry[0] <= 0:
                del self.waiting[(sender, t_ns)]
                if not entry[1].done():
                    entry[1].set_result(None)

    def expect(self, sender: int, t_ns: int) -> asyncio.Future[None]:
        """A future set once every member has received this message."""
        future = asyncio.get_running_loop().create_future()
        self.waiting[(sender, t_ns)] = [self.members, future]
        return future

    @property
    def expected(self) -> int:
        return self.sent * self.members


class Member:
    """One client in the room: its socket and the task reading it."""

    def __init__(self, index: int, ws: ClientConnection, bench: Bench) -> None:
        self.index = index
        self.ws = ws
        self.bench = bench
        self.errors: Counter[str] = Counter()
        self.task = asyncio.ensure_future(self.read())

    async def read(self) -> None:
        bench = self.bench
        with contextlib.suppress(ConnectionClosed):
            async for data in self.ws:
                now = time.perf_counter_ns()
                text = data if isinstance(data, str) else data.decode()
                # A history frame (sent on joining) may list a message this member
                # also receives live: only live frames count.
                mark = None if HISTORY in text else parse_mark(text)
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
        await self.ws.send(json.dumps({"message": message_text(run, self.index, t_ns, size)}))

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


# Processes.


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    sock.listen(4096)
    return sock


class Process:
    """A child process with its output in a log file: started, checked, stopped.

    chatbench's servers and Redis, and the services tier's processes
    (``realtime/testing/servers.py`` builds on this class)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.pass_fds: tuple[int, ...] = ()

    def command(self) -> tuple[list[str], tuple[int, ...]]:
        """The command line, and file descriptors the child inherits."""
        return self.args, self.pass_fds

    def start(self) -> None:
        args, pass_fds = self.command()
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(  # noqa: S603  # nosec B603 - our own programs, no shell
                args,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=pass_fds,
                start_new_session=True,  # Ctrl-C in the terminal reaches the parent only
            )

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def check_running(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}\n{self.log()}")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT``; the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=STOP_TIMEOUT)
        return self.popen.returncode

    def log(self, tail: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"--- {self.name}: no output"
        return f"--- {self.name} output (last {tail} characters):\n{text[-tail:]}"


class Server:
    """A WebSocket server under test: started here, or only a URL."""

    def __init__(
        self, name: str, base_url: str, origin: str, process: Process | None = None, pid=None
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.origin = origin
        self.process = process
        pid = process.pid if process is not None else pid
        self.ps = psutil.Process(pid) if pid else None

    def ws_url(self, room: str) -> str:
        return f"{self.base_url}/ws/chat/{room}/"

    def cpu_seconds(self) -> float | None:
        if self.ps is None:
            return None
        times = self.ps.cpu_times()
        return times.user + times.system

    def rss(self) -> int | None:
        return None if self.ps is None else self.ps.memory_info().rss


def procfile_command() -> str:
    """The web command of the project's Procfile, or DEFAULT_COMMAND."""
    procfile = PROJECT_ROOT / "Procfile"
    if procfile.exists():
        for line in procfile.read_text().splitlines():
            if line.startswith("web:"):
                return line.removeprefix("web:").strip()
    return DEFAULT_COMMAND


def server_args(command: str, fd: int, app: str, extra: Sequence[str] = ()) -> list[str]:
    """The command with its listening options replaced by ``--fd``, run by this Python;
    ``extra`` options go before the application."""
    words = shlex.split(command)
    program, rest = words[0], words[1:]
    args: list[str] = []
    skip = False
    for word in rest:
        if skip:
            skip = False
            continue
        if word in BIND_OPTIONS:
            skip = True
            continue
        if word.split("=", 1)[0] in BIND_OPTIONS:
            continue
        args.append(app if word == PROJECT_APP else word)
    if app not in args:
        args.append(app)
    position = args.index(app)
    args[position:position] = [*extra, "--fd", str(fd)]
    return [sys.executable, "-m", Path(program).name, *args]


def start_redis(log_dir: Path) -> tuple[Process, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(
            "chatbench: --layer needs Redis: install redis-server or pass --redis-url."
        )
    with free_socket() as sock:
        port = sock.getsockname()[1]
    args = [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]
    args += ["--dir", str(log_dir)]
    process = Process("redis", args, {"PATH": os.environ.get("PATH", "")}, log_dir)
    process.start()
    url = f"redis://{LOOPBACK}:{port}/0"
    deadline = time.monotonic() + START_TIMEOUT
    import redis

    while True:
        process.check_running()
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            if client.ping():
                return process, url
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer\n{process.log()}") from None
            time.sleep(0.05)
        finally:
            client.close()


def migrate(env: dict[str, str]) -> None:
    result = subprocess.run(  # nosec B603 - our own manage.py, no shell
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"chatbench: migrate failed:\n{result.stdout}{result.stderr}")


@dataclass
class Stack:
    """Everything chatbench started, stopped together."""

    processes: list[Process] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)
    redis: Process | None = None
    redis_url: str = ""
    prefix: str = ""
    layer: str = "memory"

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        for sock in self.sockets:
            sock.close()

    def redis_ps(self) -> psutil.Process | None:
        return psutil.Process(self.redis.pid) if self.redis and self.redis.pid else None


def start_server(
    stack: Stack,
    name: str,
    args_for: Callable[[int], list[str]],
    env_for: Callable[[int], dict[str, str]],
    logs: Path,
) -> tuple[Process, int]:
    """Start a server on a loopback socket bound here and handed over; its port."""
    sock = free_socket()
    stack.sockets.append(sock)
    port = sock.getsockname()[1]
    process = Process(name, args_for(sock.fileno()), env_for(port), logs)
    process.pass_fds = (sock.fileno(),)
    process.start()
    stack.processes.append(process)
    return process, port


def django_env(stack: Stack, args: argparse.Namespace, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(40),
        DATABASE_URL=database_url,
        REDIS_URL=stack.redis_url,
        CHANNEL_LAYER_PREFIX=stack.prefix,
        CACHE_KEY_PREFIX=f"{stack.prefix}cache",
        # Saturation runs far past a person's typing speed: raise the per-socket limit.
        WEBSOCKET_RATE_LIMIT_PER_SECOND=str(args.rate_limit),
        WEBSOCKET_RATE_LIMIT_BURST=str(int(args.rate_limit)),
        CHAT_MODERATION_ENABLED="true" if args.worker else "false",
        DJANGO_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if stack.layer != "memory":
        env["CHANNEL_LAYER_KIND"] = stack.layer
    return env


def start_stack(args: argparse.Namespace, logs: Path) -> tuple[Stack, dict[str, list[Server]]]:
    """Start Redis (if needed), the servers under test and the bare reference."""
    stack = Stack(layer=args.layer, prefix=f"bench{secrets.token_hex(4)}")
    servers: dict[str, list[Server]] = {}
    try:
        if args.url:
            base = args.url.rstrip("/")
            servers["url"] = [Server("url", base, args.origin or origin_of(base), pid=args.pid)]
        else:
            if args.layer != "memory":
                if args.redis_url:
                    stack.redis_url = args.redis_url
                else:
                    stack.redis, stack.redis_url = start_redis(logs)
                    stack.processes.append(stack.redis)
            database_url = args.database_url or f"sqlite:///{logs / 'bench.sqlite3'}"
            base_env = django_env(stack, args, database_url)
            migrate(base_env)
            command = args.command or procfile_command()
            for target in args.targets:
                app = TUTORIAL_APP if target == "tutorial" else PROJECT_APP
                servers[target] = []
                for n in range(max(args.processes)):
                    env = dict(base_env)
                    if target == "tutorial":
                        env["BENCH_TUTORIAL_LAYER"] = "true"
                    process, port = start_server(
                        stack,
                        f"{target}{n + 1}",
                        # Typing only: mypy cannot infer lambdas with default arguments.
                        lambda fd, app=app: server_args(command, fd, app),  # type: ignore[misc]
                        lambda port, env=env: {**env, "DJANGO_TRUSTED_ORIGINS": http_origin(port)},  # type: ignore[misc]
                        logs,
                    )
                    servers[target].append(
                        Server(target, f"ws://{LOOPBACK}:{port}", http_origin(port), process)
                    )
            if args.worker:
                worker_env = {**base_env, "DJANGO_SETTINGS_MODULE": "bench.settings"}
                worker = Process(
                    "worker",
                    [sys.executable, "manage.py", "runworker", "chat-worker"],
                    worker_env,
                    logs,
                )
                worker.start()
                stack.processes.append(worker)
        if not args.no_bare:
            process, port = start_server(
                stack,
                "bare",
                lambda fd: [sys.executable, "-m", "bench.bare_server", "--fd", str(fd)],
                lambda port: {**os.environ, "PYTHONUNBUFFERED": "1"},
                logs,
            )
            servers["bare"] = [
                Server("bare", f"ws://{LOOPBACK}:{port}", http_origin(port), process)
            ]
    except BaseException:
        stack.stop()
        raise
    return stack, servers


def http_origin(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


def origin_of(ws_url: str) -> str:
    parts = urllib.parse.urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}"


# The load generator.


class Bench:
    def __init__(self, args: argparse.Namespace, stack: Stack) -> None:
        self.args = args
        self.stack = stack
        self.current: Measurement | None = None
        self.run = 0
        self.late = 0

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

    async def saturate(self, servers: Sequence[Server], clients: int) -> dict[str, Any]:
        return await self.broadcast_run(servers, clients, rate=None)

    async def open_loop(self, servers: Sequence[Server], clients: int, rate: float) -> dict:
        return await self.broadcast_run(servers, clients, rate=rate)

    async def broadcast_run(
        self, servers: Sequence[Server], clients: int, rate: float | None
    ) -> dict[str, Any]:
        args = self.args
        room = f"bench{secrets.token_hex(4)}"
        members, failures = await self.join(servers, room, clients)
        row: dict[str, Any] = {"clients": clients, "connected": len(members)}
        row["failed_connects"] = sum(failures.values())
        if not members:
            return row
        try:
            warm = await self.warm_up(members)
            senders = members[: max(1, min(args.senders, len(members)))]
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
        opened = await asyncio.gather(*(one(i) for i in range(count)))
        members = [m for m in opened if m is not None]
        used = usage.stop()
        row: dict[str, Any] = {
            "clients": count,
            "connected": len(members),
            "failed_connects": sum(failures.values()),
            "failures": dict(failures),
            "server_rss_mb": used.rss_mb,
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


async def settled_rss(servers: Sequence[Server]) -> int | None:
    """The servers' total RSS once it stops moving (bounded)."""
    if any(s.ps is None for s in servers):
        return None
    previous = -1
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        await asyncio.sleep(0.5)
        total = sum(s.rss() or 0 for s in servers)
        if abs(total - previous) < 64 * 1024 or time.monotonic() > deadline:
            return total
        previous = total


class Usage:
    """CPU used by the servers, Redis and this process between start and stop."""

    def __init__(self, servers: Sequence[Server], stack: Stack) -> None:
        self.servers = servers
        self.redis = stack.redis_ps()
        self.wall = time.monotonic()
        self.client = time.process_time()
        self.server = self.server_cpu()
        self.redis_cpu = self.redis_cpu_seconds()

    def server_cpu(self) -> float | None:
        values = [s.cpu_seconds() for s in self.servers]
        return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]

    def redis_cpu_seconds(self) -> float | None:
        if self.redis is None:
            return None
        times = self.redis.cpu_times()
        return times.user + times.system

    def stop(self) -> Used:
        wall = time.monotonic() - self.wall
        server = self.server_cpu()
        redis_cpu = self.redis_cpu_seconds()
        rss = [s.rss() for s in self.servers]
        return Used(
            wall=wall,
            client=time.process_time() - self.client,
            server=None if server is None or self.server is None else server - self.server,
            redis=None
            if redis_cpu is None or self.redis_cpu is None
            else redis_cpu - self.redis_cpu,
            rss_mb=None if None in rss else sum(rss) / 2**20,  # type: ignore[arg-type]
        )


@dataclass
class Used:
    wall: float
    client: float
    server: float | None
    redis: float | None
    rss_mb: float | None

    def per_delivery(self, deliveries: int) -> dict[str, Any]:
        per = max(deliveries, 1)
        return {
            "server_cpu_us_per_delivery": None if self.server is None else self.server / per * 1e6,
            "redis_cpu_us_per_delivery": None if self.redis is None else self.redis / per * 1e6,
            "server_cpu_pct": None if self.server is None else 100 * self.server / self.wall,
            "client_cpu_pct": 100 * self.client / self.wall,
            "server_rss_mb": self.rss_mb,
        }


def latency_figures(samples: array) -> dict[str, float | None]:
    if not samples:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] / 1e6

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": ordered[-1] / 1e6}


# Ratios, the table and JSON lines.

# Figure -> True when higher is better (ratios are always ours / bare).
RATIO_FIGURES = {
    "deliveries_per_s": True,
    "server_cpu_us_per_delivery": False,
    "p50_ms": False,
    "p99_ms": False,
    "kb_per_connection": False,
}


def add_ratios(rows: list[dict[str, Any]]) -> None:
    bare = {key(r): r for r in rows if r["server"] == "bare"}
    for row in rows:
        reference = bare.get(key(row))
        if reference is None or row["server"] == "bare":
            continue
        ratios = {}
        for figure in RATIO_FIGURES:
            ours, theirs = row.get(figure), reference.get(figure)
            if ours is not None and theirs:
                ratios[figure] = ours / theirs
        row["x_bare"] = ratios


def key(row: dict[str, Any]) -> tuple:
    return row["mode"], row["clients"], row.get("offered_per_s")


DELIVERED = ("deliv/s", "deliveries_per_s", "{:,.0f}")
LATENCY_AND_LOSS = [
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("max ms", "max_ms", "{:.0f}"),
    ("loss", "loss", "{:,}"),
]
SERVER_CPU = ("CPU us/deliv", "server_cpu_us_per_delivery", "{:.1f}")
SERVER_RSS = ("RSS MB", "server_rss_mb", "{:.0f}")
CONNECTED = ("connected", "connected", "{:,}")
COLUMNS = {
    "saturate": [
        DELIVERED,
        *LATENCY_AND_LOSS,
        SERVER_CPU,
        ("Redis us", "redis_cpu_us_per_delivery", "{:.1f}"),
        SERVER_RSS,
        ("client CPU", "client_cpu_pct", "{:.0f}%"),
    ],
    "open": [("offered/s", "offered_per_s", "{:,.0f}"), DELIVERED, *LATENCY_AND_LOSS, SERVER_CPU],
    "storm": [
        CONNECTED,
        ("failed", "failed_connects", "{:,}"),
        ("connect p50 ms", "connect_p50_ms", "{:.0f}"),
        ("connect p99 ms", "connect_p99_ms", "{:.0f}"),
        ("delivered", "delivered", "{:,}"),
        ("left in group", "left_in_group", "{}"),
        SERVER_RSS,
    ],
    "idle": [CONNECTED, ("KB/conn", "kb_per_connection", "{:.1f}"), SERVER_RSS],
}


def cell(row: dict[str, Any], figure: str, fmt: str) -> str:
    value = row.get(figure)
    if value is None:
        return "n/a"
    text = fmt.format(value)
    ratio = row.get("x_bare", {}).get(figure)
    return f"{text} ({ratio:.2f}x)" if ratio is not None else text


def table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for mode in MODES:
        selected = [r for r in rows if r["mode"] == mode]
        if not selected:
            continue
        headers = ["server", "C", *(title for title, _, _ in COLUMNS[mode])]
        body = [
            [r["label"], f"{r['clients']:,}", *(cell(r, f, fmt) for _, f, fmt in COLUMNS[mode])]
            for r in selected
        ]
        widths = [max(len(x) for x in column) for column in zip(headers, *body, strict=True)]
        lines.append(f"\n{mode}")
        for values in [headers, *body]:
            lines.append("  ".join(v.rjust(w) for v, w in zip(values, widths, strict=True)))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }


def plot(rows: list[dict[str, Any]], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (uv run --with matplotlib ...)"
    selected = [r for r in rows if r["mode"] == "open" and r.get("p99_ms") is not None]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label in sorted({r["label"] for r in selected}):
        for clients in sorted({r["clients"] for r in selected}):
            points = sorted(
                (r["offered_per_s"], r["p99_ms"], r["p50_ms"])
                for r in selected
                if r["label"] == label and r["clients"] == clients
            )
            if not points:
                continue
            xs = [p[0] for p in points]
            axes.plot(xs, [p[1] for p in points], marker="o", label=f"{label} C={clients} p99")
            axes.plot(xs, [p[2] for p in points], linestyle="--", label=f"{label} C={clients} p50")
    axes.set_xlabel("offered deliveries/s")
    axes.set_ylabel("latency (ms, from scheduled send)")
    axes.set_yscale("log")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return f"plot written to {path}"


# Command line.


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chatbench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    what = parser.add_argument_group("what to measure")
    what.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES)
    )
    what.add_argument("--clients", type=int_list, default=[10, 100, 500], help="room sizes C")
    what.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    what.add_argument(
        "--senders",
        type=int,
        default=100,
        help="closed loop: members posting at once (all of a room of 100: with 50, the "
        "project's server sat idle part of the time, waiting on round trips)",
    )
    what.add_argument("--rate", type=float_list, default=[1000.0], help="open loop: deliveries/s")
    what.add_argument("--storm", type=int, default=1000, help="storm: clients at once")
    what.add_argument("--idle", type=int, default=1000, help="idle: connections held")
    what.add_argument("--size", type=int, default=64, help="characters per message")
    what.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    where = parser.add_argument_group("servers")
    where.add_argument(
        "--target",
        dest="targets",
        default="project",
        type=lambda t: t.split(","),
        help="project (config.asgi), tutorial (bench/tutorial.py), or both",
    )
    where.add_argument(
        "--layer",
        choices=("memory", "redis", "redis_pubsub"),
        default="memory",
        help="channel layer of the servers chatbench starts",
    )
    where.add_argument("--processes", type=int_list, default=[1], help="server processes, e.g. 1,2")
    where.add_argument("--command", help="server command (default: the Procfile's web line)")
    where.add_argument("--redis-url", help="Redis to use (default: a private redis-server)")
    where.add_argument("--database-url", help="database (default: a fresh SQLite file)")
    where.add_argument("--worker", action="store_true", help="also run the moderation worker")
    where.add_argument(
        "--rate-limit", type=float, default=1e6, help="WEBSOCKET_RATE_LIMIT_PER_SECOND and BURST"
    )
    where.add_argument("--url", help="measure this running server (ws://host:port) instead")
    where.add_argument("--origin", help="Origin header for --url (default: its http origin)")
    where.add_argument("--pid", type=int, help="with --url: the server's pid, for CPU and RSS")
    where.add_argument("--no-bare", action="store_true", help="skip the bare reference")
    out = parser.add_argument_group("output")
    out.add_argument("--jsonl", help="write JSON lines here ('-': standard output)")
    out.add_argument("--plot", help="PNG of open-loop latency against offered load")
    out.add_argument("--logs", help="keep server logs in this folder")
    args = parser.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    unknown = set(args.modes) - set(MODES) or set(args.targets) - {"project", "tutorial"}
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    if args.url:
        args.targets, args.processes = ["url"], [1]
    if max(args.processes) > 1 and args.layer == "memory" and not args.url:
        parser.error("--processes above 1 needs a Redis layer (--layer redis or redis_pubsub)")
    bounds = [*args.clients, args.storm, args.idle, args.senders, *args.processes]
    if min(bounds) < 1 or args.duration <= 0 or min(args.rate) <= 0:
        parser.error("counts, rates and the duration must be positive")
    return args


def raise_file_limit(connections: int) -> None:
    """Each client socket is a file descriptor here (and one in the server)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections * 2 + 256
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


async def wait_ready(servers: dict[str, list[Server]]) -> None:
    """Each server completes a WebSocket handshake (bounded wait)."""
    for group in servers.values():
        for server in group:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if server.process is not None:
                    server.process.check_running()
                try:
                    async with connect(
                        server.ws_url("ready"),
                        origin=Origin(server.origin),
                        open_timeout=2,
                        ping_interval=None,
                    ):
                        break
                except (OSError, InvalidHandshake, TimeoutError) as error:
                    if time.monotonic() > deadline:
                        log = server.process.log() if server.process else ""
                        raise RuntimeError(
                            f"{server.name} is not answering: {error}\n{log}"
                        ) from None
                    await asyncio.sleep(0.2)


async def measure(args: argparse.Namespace, stack: Stack, servers: dict[str, list[Server]]):
    await wait_ready(servers)
    bench = Bench(args, stack)
    rows: list[dict[str, Any]] = []
    targets = [t for t in servers if t != "bare"]

    def label(name: str, processes: int) -> str:
        return name if processes == 1 else f"{name} x{processes}"

    async def run(mode: str, name: str, processes: int, job) -> None:
        group = servers[name][:processes]
        for server in group:
            if server.process is not None:
                server.process.check_running()
        row = await job(group)
        row.update(mode=mode, server=name, processes=processes, label=label(name, processes))
        rows.append(row)
        print(f"  {mode:8} {row['label']:14} C={row['clients']}: done", file=sys.stderr)

    plan = []
    for mode in sorted(args.modes, key=RUN_ORDER.index):
        if mode in ("saturate", "open"):
            for clients in args.clients:
                for rate in args.rate if mode == "open" else [None]:
                    plan.append((mode, clients, rate))
        else:
            plan.append((mode, args.storm if mode == "storm" else args.idle, None))
    for mode, clients, rate in plan:
        # Typing only: annotated, because mypy cannot infer lambdas with default arguments.
        jobs: dict[str, Any] = {
            "saturate": lambda g, c=clients: bench.saturate(g, c),
            "open": lambda g, c=clients, r=rate: bench.open_loop(g, c, r),
            "storm": lambda g, c=clients: bench.storm(g, c),
            "idle": lambda g, c=clients: bench.idle(g, c),
        }
        for name in targets:
            for processes in args.processes:
                await run(mode, name, processes, jobs[mode])
        if "bare" in servers:
            await run(mode, "bare", 1, jobs[mode])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    raise_file_limit(max(args.storm, args.idle, *args.clients))
    meta: dict[str, Any] = {
        "kind": "meta",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python -m bench.chatbench " + " ".join(sys.argv[1:] if argv is None else argv),
        "server_command": args.url or args.command or procfile_command(),
        "layer": "n/a" if args.url else args.layer,
    }
    with contextlib.ExitStack() as cleanup:
        if args.logs:
            logs = Path(args.logs)
            logs.mkdir(parents=True, exist_ok=True)
        else:
            logs = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="chatbench-")))
        print("chatbench: starting servers", file=sys.stderr)
        stack, servers = start_stack(args, logs)
        cleanup.callback(stack.stop)
        rows = asyncio.run(measure(args, stack, servers))
    meta["machine"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    add_ratios(rows)
    m = meta["machine"]
    print(f"\nchatbench {meta['date']}: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB")
    print(f"layer {meta['layer']}; server: {meta['server_command']}")
    print(f"load average before {m['load_before']}, after {m['load_after']}")
    print(f"command: {meta['command']}")
    print(table(rows))
    if args.jsonl:
        lines = "".join(json.dumps(x) + "\n" for x in [meta, *rows])
        if args.jsonl == "-":
            sys.stdout.write(lines)
        else:
            Path(args.jsonl).write_text(lines)
    if args.plot:
        print(plot(rows, Path(args.plot)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
