"""What one client can cost a real server, and what it logs: the Procfile's uvicorn
(``realtime/wsprotocol.py``) serving the real-time layer's test application
(``realtime/tests/asgi.py``). Each test's figures go to the run's "figures" section.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
import redis
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.conf import settings
from django.test import override_settings
from websockets.exceptions import ConnectionClosed

from realtime.channel_layers import channel_layers as build_channel_layers
from realtime.closecodes import CLOSE_RATE_LIMITED, CLOSE_UNAVAILABLE
from realtime.groups import frame_event
from realtime.testing import report_figure
from realtime.testing.processes import PROJECT_APP
from realtime.testing.servers import (
    FRAME_TIMEOUT,
    LOOPBACK,
    AsgiServer,
    RedisServer,
    WebSocketClient,
    running,
    server_env,
    websocket,
)
from realtime.wsprotocol import WRITE_STALL_TIMEOUT

TEST_APP = "realtime.tests.asgi:application"
# What the ping flood may add to the server's memory, in bytes.
FLOOD_MEMORY_LIMIT = 20 * 1024 * 1024
# Longest a flood or a wait for a log line runs, in seconds.
FLOOD_SECONDS = 12.0
LOG_TIMEOUT = 10.0


class LayerAppServer(AsgiServer):
    """The Procfile's server command, serving the test application; ``send_buffer``
    sets the kernel's send buffer of every socket it accepts (they inherit the
    listening socket's), so that a client that reads nothing fills it quickly."""

    send_buffer: int | None = None

    def command(self) -> tuple[list[str], tuple[int, ...]]:
        args, fds = super().command()
        if self.send_buffer is not None and self.sock is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        return [TEST_APP if arg == PROJECT_APP else arg for arg in args], fds

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = LOG_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while text not in (log := self.log_text()):
            assert time.monotonic() < deadline, f"no {text!r} in the server's log\n{self.log()}"
            time.sleep(0.05)
        return log


def assert_quiet(log: str) -> None:
    """Nothing a client did shows as a warning, an error or a traceback."""
    for marker in ("Traceback", "WARNING", "ERROR", "Exception in ASGI application"):
        assert marker not in log, f"{marker!r} in the server's log:\n{log[-4000:]}"


@pytest.fixture
def server(servers_database, tmp_path) -> Iterator[LayerAppServer]:
    env = server_env(database_url=servers_database, redis_url="", DJANGO_LOG_LEVEL="INFO")
    with running(LayerAppServer("web", env, tmp_path)) as (web,):
        yield web


# A WebSocket written by hand, to send what no library would and to read nothing.


def raw_websocket(server: AsgiServer, path: str, receive_buffer: int = 4096) -> socket.socket:
    """A socket past the WebSocket handshake, with a small receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(FRAME_TIMEOUT)
    sock.connect((LOOPBACK, server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{server.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {server.origin}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        assert chunk, "the server closed during the handshake"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame, as a client must send it (payloads under 126 bytes)."""
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


PING, TEXT = 0x9, 0x1


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


@pytest.mark.services("DATABASE_URL")
def test_a_client_that_pings_and_never_reads_is_cut_off(server):
    sock = raw_websocket(server, "/ws/tests/pings/")
    before = peak = rss(server.pid)
    pings = client_frame(PING, b"p" * 125) * 500
    sent = 0
    start = time.monotonic()
    cut_off = False
    with sock:
        while time.monotonic() - start < FLOOD_SECONDS:
            try:
                sock.sendall(pings)
            except (TimeoutError, OSError):
                cut_off = True
                break
            sent += len(pings)
            peak = max(peak, rss(server.pid))
        lasted = time.monotonic() - start
    grown = peak - before
    report_figure(
        f"ping flood, never reading: server RSS +{grown / 2**20:.1f} MB after "
        f"{sent / 2**20:.1f} MB of pings in {lasted:.1f}s; "
        f"{'cut off' if cut_off else 'still open'}"
    )
    assert cut_off, "the server kept the flooding socket open"
    assert grown < FLOOD_MEMORY_LIMIT
    log = server.wait_for_log("sends without reading")
    assert_quiet(log)


@pytest.mark.services("DATABASE_URL")
def test_invalid_utf8_is_one_info_line_and_a_1007(server):
    frames = 20
    for _ in range(frames):
        with raw_websocket(server, "/ws/tests/utf8/") as sock:
            sock.sendall(client_frame(TEXT, b'{"text": "\xff\xfe"}'))
            data = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(4096):
                    data += chunk
            # The hello frame, then a close frame with 1007.
            assert struct.pack("!H", 1007) in data, data
    log = server.wait_for_log("not UTF-8")
    assert log.count("a text frame is not UTF-8") == frames
    assert_quiet(log)
    lines = [line for line in log.splitlines() if "UTF-8" in line]
    report_figure(
        f"invalid UTF-8: {frames} frames, {len(lines)} log lines, "
        f"{sum(len(line) + 1 for line in lines)} bytes of log, no traceback"
    )


@pytest.mark.services("DATABASE_URL")
def test_a_flood_close_is_sent_once(server):
    with websocket(server, "/ws/tests/flood/") as ws:
        client = WebSocketClient(ws)
        assert client.frame("hello")
        # Many frames at once, so that some still wait in the server when it closes.
        for _ in range(400):
            with contextlib.suppress(ConnectionClosed):
                client.send_json({"action": "echo"})
        code = None
        with contextlib.suppress(TimeoutError):
            while True:
                try:
                    client.frame(timeout=FRAME_TIMEOUT)
                except ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd else None
                    break
    assert code == CLOSE_RATE_LIMITED
    server.wait_for_log("message flood")
    time.sleep(0.5)  # anything the server would log after the close
    assert_quiet(server.log_text())
    report_figure("flood close: one close (4429), no 'Unexpected ASGI message' in the log")


@pytest.mark.services("DATABASE_URL")
def test_a_client_gone_mid_reply_is_not_a_layer_fault(server):
    # Each client asks for echoes and drops its TCP connection without a close frame.
    clients = 20
    for _ in range(clients):
        sock = raw_websocket(server, "/ws/tests/gone/")
        payload = json.dumps({"action": "echo", "delay": 0.2}).encode()
        sock.sendall(client_frame(TEXT, payload))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset: the server's next write finds the client gone
    time.sleep(1)  # each reply comes 0.2 s after its client left
    log = server.log_text()
    assert "channel layer unavailable" not in log
    assert_quiet(log)
    report_figure(f"client gone mid-reply: {clients} resets, no layer warning, no traceback")


# A room with sockets that read nothing.

ROOM_READERS = 20
ROOM_NON_READERS = 10
BROADCASTS = 120
BROADCAST_INTERVAL = 0.04
PADDING = 14 * 1024


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# Longest a reader waits for the next broadcast: the old fan-out held each one up to
# 2 s per socket that read nothing, one after another.
READ_TIMEOUT = 30.0


def room_latencies(server: AsgiServer, room: str, non_readers: int) -> tuple[list[float], int]:
    """Seconds from each broadcast's send to its arrival at each reader, and how
    many arrivals were still missing after READ_TIMEOUT."""
    latencies: list[float] = []
    with contextlib.ExitStack() as stack:
        stuck = [
            stack.enter_context(raw_websocket(server, f"/ws/tests/{room}/"))
            for _ in range(non_readers)
        ]
        readers = [
            WebSocketClient(stack.enter_context(websocket(server, f"/ws/tests/{room}/")))
            for _ in range(ROOM_READERS)
        ]
        for reader in readers:
            reader.frame("hello")
        results: list[list[float]] = [[] for _ in readers]

        def read(reader: WebSocketClient, into: list[float]) -> None:
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                while len(into) < BROADCASTS:
                    frame = reader.frame("message", timeout=READ_TIMEOUT)
                    into.append(time.monotonic() - json.loads(frame["text"])["at"])

        threads = [
            threading.Thread(target=read, args=(reader, into))
            for reader, into in zip(readers, results, strict=True)
        ]
        for thread in threads:
            thread.start()
        sender = readers[0]
        for _ in range(BROADCASTS):
            text = json.dumps({"at": time.monotonic(), "pad": "x" * PADDING})
            sender.send_json({"action": "broadcast", "text": text})
            time.sleep(BROADCAST_INTERVAL)
        for thread in threads:
            thread.join(timeout=READ_TIMEOUT * 2)
        assert len(stuck) == non_readers
    for into in results:
        latencies.extend(into)
    return latencies, ROOM_READERS * BROADCASTS - len(latencies)


@pytest.mark.services("DATABASE_URL")
def test_sockets_that_do_not_read_cost_the_room_nothing(servers_database, tmp_path):
    env = server_env(
        database_url=servers_database,
        redis_url="",
        WEBSOCKET_RATE_LIMIT_PER_SECOND="1000",
        WEBSOCKET_RATE_LIMIT_BURST="1000",
    )
    web = LayerAppServer("web", env, tmp_path)
    web.send_buffer = 64 * 1024
    with running(web):
        latencies, missing_alone = room_latencies(web, "readers", 0)
        alone = percentile(latencies, 0.99)
        latencies, missing = room_latencies(web, "mixed", ROOM_NON_READERS)
        slowed = percentile(latencies, 0.99)
        log = web.log_text()
    report_figure(
        f"slow readers: p99 {alone * 1000:.1f} ms for {ROOM_READERS} readers alone, "
        f"{slowed * 1000:.1f} ms with {ROOM_NON_READERS} sockets that read nothing "
        f"({BROADCASTS} broadcasts of {PADDING // 1024} KiB; {missing} arrivals missing "
        f"after {READ_TIMEOUT:g}s)"
    )
    assert missing_alone == missing == 0
    # Twice the room's own p99, and a little for a shared 2-core test machine.
    assert slowed <= 2 * alone + 0.02
    assert "too slow for group" in log
    assert_quiet(log)


# The channel layer on Redis.


def group_members(redis_url: str, group: str) -> int:
    """Members of the group in Redis (RedisChannelLayer keeps each group in a sorted
    set, ``<prefix>:group:<name>``)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=FRAME_TIMEOUT)
    try:
        keys = list(client.scan_iter(match=f"*:group:{group}", count=1000))
        return sum(client.zcard(key) for key in keys)
    finally:
        client.close()


async def broadcast_from_here(group: str, count: int) -> None:
    # RedisChannelLayer, as the servers of these tests run, whatever this suite's kind.
    config = build_channel_layers(
        redis_url=os.environ["REDIS_URL"], kind="redis", prefix=f"test{settings.TEST_RUN_ID}"
    )
    with override_settings(CHANNEL_LAYERS=config):
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    try:
        for _ in range(count):
            frame = {"type": "message", "text": "x" * PADDING}
            await layer.group_send(group, frame_event("tests.message", frame))
    finally:
        with contextlib.suppress(Exception):
            await layer.close_pools()


@pytest.mark.services
def test_no_group_keeps_a_member_once_its_sockets_are_gone(servers_database, tmp_path):
    redis_url = os.environ["REDIS_URL"]
    env = server_env(
        database_url=servers_database,
        redis_url=redis_url,
        layer_kind="redis",
        WEBSOCKET_RATE_LIMIT_PER_SECOND="1000",
        WEBSOCKET_RATE_LIMIT_BURST="1000",
    )
    web = LayerAppServer("web", env, tmp_path)
    web.send_buffer = 64 * 1024
    rooms = 5
    left = []
    with running(web):
        for number in range(rooms):
            room = f"leftovers-{number}-{secrets.token_hex(3)}"
            group = f"tests.{room}"
            with contextlib.ExitStack() as stack:
                stuck = [
                    stack.enter_context(raw_websocket(web, f"/ws/tests/{room}/")) for _ in range(3)
                ]
                assert group_members(redis_url, group) == 1  # the process's fan-out
                # From another process (this one), so that the room's only local
                # sockets on the server are the ones that read nothing.
                asyncio.run(broadcast_from_here(group, 80))
                # The room's last local sockets are dropped mid-broadcast (too slow),
                # and only then go away.
                deadline = time.monotonic() + LOG_TIMEOUT
                while web.log_text().count(f"too slow for group {group}") < len(stuck):
                    assert time.monotonic() < deadline, web.log()
                    time.sleep(0.05)
            deadline = time.monotonic() + LOG_TIMEOUT
            while (members := group_members(redis_url, group)) and time.monotonic() < deadline:
                time.sleep(0.05)
            left.append(members)
        log = web.log_text()
    report_figure(
        f"stale group members: {sum(1 for n in left if n)} of {rooms} rooms kept a member "
        "after their last sockets were dropped mid-broadcast and closed"
    )
    assert left == [0] * rooms
    assert_quiet(log)


@pytest.mark.services("REDIS_URL")
def test_a_redis_outage_closes_each_socket_once(servers_database, tmp_path):
    redis_server = RedisServer(tmp_path)
    sockets = 10
    with running(redis_server):
        env = server_env(
            database_url=servers_database, redis_url=redis_server.url, layer_kind="redis"
        )
        with (
            running(LayerAppServer("web", env, tmp_path)) as (web,),
            contextlib.ExitStack() as stack,
        ):
            clients = [
                WebSocketClient(stack.enter_context(websocket(web, "/ws/tests/outage/")))
                for _ in range(sockets)
            ]
            for client in clients:
                client.frame("hello")
            redis_server.stop()
            codes = [client.close_code(timeout=FRAME_TIMEOUT) for client in clients]
            time.sleep(0.5)  # anything the server would log after the closes
            log = web.log_text()
    assert codes == [CLOSE_UNAVAILABLE] * sockets
    for marker in ("Traceback", "Unexpected ASGI message", "RuntimeError"):
        assert marker not in log, f"{marker!r} in the server's log:\n{log[-4000:]}"
    warnings = log.count("WARNING")
    report_figure(
        f"redis outage: {sockets} sockets closed {CLOSE_UNAVAILABLE} once each; "
        f"{warnings} warning lines (the layer's, ours to fix), no traceback"
    )


@pytest.mark.services
def test_a_socket_that_stops_reading_is_cut_off_and_leaves_its_group(servers_database, tmp_path):
    redis_url = os.environ["REDIS_URL"]
    env = server_env(database_url=servers_database, redis_url=redis_url, layer_kind="redis")
    web = LayerAppServer("web", env, tmp_path)
    web.send_buffer = 64 * 1024
    room = f"stopped-{secrets.token_hex(3)}"
    group = f"tests.{room}"
    with running(web), raw_websocket(web, f"/ws/tests/{room}/"):
        assert group_members(redis_url, group) == 1
        asyncio.run(broadcast_from_here(group, 80))
        start = time.monotonic()
        # Dropped (4408) once its buffer is full; its close cannot reach a client that
        # reads nothing, so the server cuts it off, and its consumer leaves the group.
        web.wait_for_log("has read nothing for too long", timeout=WRITE_STALL_TIMEOUT + 10)
        cut_off = time.monotonic() - start
        deadline = time.monotonic() + LOG_TIMEOUT
        while group_members(redis_url, group) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(redis_url, group) == 0
        log = web.log_text()
    assert f"too slow for group {group}" in log
    assert_quiet(log)
    report_figure(
        f"a socket that stopped reading: dropped, cut off {cut_off:.1f}s after the broadcasts "
        f"(WRITE_STALL_TIMEOUT {WRITE_STALL_TIMEOUT:g}s), its group empty"
    )
