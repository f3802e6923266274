"""chatbench's processes: the servers under test (the project's web command, the
Channels tutorial's consumer, the bare ``websockets`` server), Redis and the
migrations, each server on a socket chatbench hands over, all stopped on the way out."""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import shutil
import socket
import subprocess  # nosec B404 - starts the servers under test, fixed commands
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake
from websockets.typing import Origin

# The process and server-command helpers are the real-time layer's test helpers;
# chatbench's modules import them from here.
from realtime.testing.processes import (
    PROJECT_APP,
    Process,
    procfile_command,
    server_args,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"

TUTORIAL_APP = "bench.tutorial:application"

# Bounded waits, in seconds (stopping: STOP_TIMEOUT).
START_TIMEOUT = 60.0


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    sock.listen(4096)
    return sock


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

    @property
    def sends_history(self) -> bool:
        """Whether a member gets a history frame on joining (the tutorial sends none)."""
        return self.name != "tutorial"

    def ws_url(self, room: str) -> str:
        return f"{self.base_url}/ws/chat/{room}/"

    def cpu_seconds(self) -> float | None:
        if self.ps is None:
            return None
        times = self.ps.cpu_times()
        return times.user + times.system

    def rss(self) -> int | None:
        return None if self.ps is None else self.ps.memory_info().rss


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
                    elif args.hops:
                        env["BENCH_HOPS_FILE"] = str(logs / f"hops-{target}{n + 1}.jsonl")
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
