"""realtime.wsprotocol in-process: uvicorn serving a bare ASGI echo application with
the project's WebSocket protocol, and clients written by hand on loopback. The same
behaviour against the project's own server processes is in test_server_limits.py
(services tier); these need no service."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import socket
import time
import types
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from websockets.asyncio.client import connect
from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.server import ServerProtocol

from realtime import wsprotocol
from realtime.tests.test_server_limits import PING, TEXT, client_frame, raw_websocket
from realtime.wsprotocol import SEND_READY, WebSocketProtocol, encode_text_frame

pytestmark = pytest.mark.asyncio

LOOPBACK = "127.0.0.1"
SEEN_SCOPES: list[dict[str, Any]] = []
# What the server's encoded write answered after the application closed the socket.
LATE_WRITES: list[bool] = []
# TCP_NODELAY on each connection the recording protocol accepted.
NO_DELAY: list[int] = []
# The protocol of each connection the fixture's server accepted.
PROTOCOLS: list[WebSocketProtocol] = []


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept, echo text frames back, and end on disconnect. A frame starting with
    "encoded:" is echoed through the server's encoded write (``SEND_READY``); "close,
    then write" closes and tries an encoded write after."""
    assert scope["type"] == "websocket"
    SEEN_SCOPES.append(scope)
    write = scope["extensions"][SEND_READY]["write"]
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            text = message.get("text") or ""
            if text.startswith("encoded:") and write(encode_text_frame(text)):
                continue
            if text == "close, then write":
                await send({"type": "websocket.close", "code": 1000})
                LATE_WRITES.append(write(encode_text_frame("too late")))
                continue
            await send({"type": "websocket.send", "text": text})
        else:
            return


class SmallSendBuffer(WebSocketProtocol):
    """The protocol under test, with a kernel send buffer too small to hide what
    piles up in the transport's own buffer (loopback would absorb megabytes)."""

    def connection_made(self, transport: Any) -> None:
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        super().connection_made(transport)
        PROTOCOLS.append(self)


class RecordingNoDelay(WebSocketProtocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        NO_DELAY.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@pytest_asyncio.fixture
async def server() -> AsyncIterator[SimpleNamespace]:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        echo, host=LOOPBACK, port=port, ws=SmallSendBuffer, lifespan="off", log_config=None
    )
    async with serving(config, port) as running:
        yield running


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config, port: int) -> AsyncIterator[Any]:
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve())
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.02)
    try:
        yield SimpleNamespace(port=port, origin=f"http://{LOOPBACK}:{port}")
    finally:
        running.should_exit = True
        await asyncio.wait_for(task, timeout=15)


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes or resets the connection."""
    received = b""
    sock.settimeout(timeout)
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


async def test_frames_pass_through_and_the_app_can_ask_whether_a_send_is_ready(server):
    def talk() -> bytes:
        with raw_websocket(server, "/ws/echo/") as sock:
            sock.sendall(client_frame(TEXT, "héllo".encode()))
            return sock.recv(4096)

    SEEN_SCOPES.clear()
    reply = await asyncio.to_thread(talk)
    assert reply == b"\x81\x06" + "héllo".encode()
    ready = SEEN_SCOPES[-1]["extensions"][SEND_READY]["ready"]
    assert ready() is True


async def test_a_burst_of_frames_in_one_read_is_echoed_whole_and_in_order(server):
    count = 3000

    def burst() -> bytes:
        with raw_websocket(server, "/ws/echo/") as sock:
            sock.sendall(b"".join(client_frame(TEXT, b"%04d" % n) for n in range(count)))
            received = b""
            sock.settimeout(10)
            while len(received) < count * 6:
                received += sock.recv(65536)
            return received

    received = await asyncio.to_thread(burst)
    assert received == b"".join(b"\x81\x04%04d" % n for n in range(count))


def held_by(protocol: WebSocketProtocol) -> list[Any]:
    """What a connection's protocol keeps through its own attributes, its websockets
    connection, that connection's parser and the queue and event between them and
    the application (not the event loop, the server or the application)."""
    kinds = (
        *(dict, list, tuple, set, types.GeneratorType, types.FrameType),
        *(ServerProtocol, Request, Headers, WebSocketProtocol, asyncio.Queue, asyncio.Event),
    )
    seen: dict[int, Any] = {}
    todo: list[Any] = [protocol]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen[id(obj)] = obj
        if obj is protocol or isinstance(obj, kinds) or type(obj).__module__ == "realtime.waiters":
            todo.extend(gc.get_referents(obj))
    return list(seen.values())


async def test_an_open_socket_keeps_no_parsed_handshake_and_no_deque(server):
    """An idle socket keeps its protocol for its life (docs/benchmark.md, memory per
    idle socket): neither the parsed handshake request, whose headers the scope
    has a copy of, nor the deques of asyncio's Queue and Event, 760 bytes each."""
    PROTOCOLS.clear()
    async with connect(f"ws://{LOOPBACK}:{server.port}/ws/echo/", origin=server.origin) as ws:
        await ws.send("hi")
        assert await ws.recv() == "hi"
        held = held_by(PROTOCOLS[-1])
        assert (b"host", f"{LOOPBACK}:{server.port}".encode()) in SEEN_SCOPES[-1]["headers"]
    assert not [obj for obj in held if isinstance(obj, Headers) and len(obj)]
    assert not [obj for obj in held if isinstance(obj, collections.deque)]
    assert len(held) > 50  # the walk went through the protocol and its connection


async def test_a_frame_encoded_once_reaches_the_client_as_asgi_would_send_it(server):
    def talk() -> tuple[bytes, bytes]:
        with raw_websocket(server, "/ws/echo/") as sock:
            sock.sendall(client_frame(TEXT, "plain:héllo".encode()))
            plain = sock.recv(4096)
            sock.sendall(client_frame(TEXT, "encoded:héllo".encode()))
            return plain, sock.recv(4096)

    plain, encoded = await asyncio.to_thread(talk)
    # FIN + text, an unmasked length, the UTF-8 payload: the same framing both ways.
    assert plain == b"\x81\x0c" + "plain:héllo".encode()
    assert encoded == b"\x81\x0e" + "encoded:héllo".encode()


async def test_an_encoded_write_after_the_close_is_refused(server):
    def close_then_write() -> bytes:
        with raw_websocket(server, "/ws/echo/") as sock:
            sock.sendall(client_frame(TEXT, b"close, then write"))
            return read_until_closed(sock, timeout=5)

    LATE_WRITES.clear()
    received = await asyncio.to_thread(close_then_write)
    assert LATE_WRITES == [False]
    assert received.startswith(b"\x88")  # the close frame, and nothing after it
    assert b"too late" not in received


async def test_a_socket_handed_over_by_file_descriptor_sends_without_delay():
    """uvicorn opens a --fd socket as a Unix one, so its event loop leaves Nagle's
    algorithm on; the protocol turns it off (small frames waited for delayed ACKs)."""
    listening = socket.socket()
    listening.bind((LOOPBACK, 0))
    listening.listen(16)
    port = listening.getsockname()[1]
    config = uvicorn.Config(
        echo, fd=listening.fileno(), ws=RecordingNoDelay, lifespan="off", log_config=None
    )
    NO_DELAY.clear()
    try:
        async with serving(config, port) as running:

            def talk() -> bytes:
                with raw_websocket(running, "/ws/echo/") as sock:
                    sock.sendall(client_frame(TEXT, b"hi"))
                    return sock.recv(4096)

            assert await asyncio.to_thread(talk) == b"\x81\x02hi"
    finally:
        listening.close()
    assert NO_DELAY == [1]


async def test_a_text_frame_that_is_not_utf8_closes_with_1007_and_one_info_line(server, caplog):
    def send_bad() -> bytes:
        with raw_websocket(server, "/ws/echo/") as sock:
            sock.sendall(client_frame(TEXT, b"\xff\xfe not utf-8"))
            return read_until_closed(sock, timeout=5)

    with caplog.at_level(logging.INFO, logger="realtime.wsprotocol"):
        received = await asyncio.to_thread(send_bad)
    assert received[:4] == b"\x88\x0f\x03\xef"  # a close frame, code 1007
    lines = [record for record in caplog.records if record.name == "realtime.wsprotocol"]
    assert [record.levelno for record in lines] == [logging.INFO]
    assert "a text frame is not UTF-8" in lines[0].getMessage()
    assert not [record for record in caplog.records if record.exc_info]


async def test_a_client_that_pings_and_never_reads_is_cut_off(server, caplog, monkeypatch):
    monkeypatch.setattr(wsprotocol, "WRITE_BUFFER_LIMIT", 64 * 1024)

    def flood() -> int:
        sent = 0
        with raw_websocket(server, "/ws/echo/", receive_buffer=2048) as sock:
            ping = client_frame(PING, b"x" * 125)
            with contextlib.suppress(ConnectionResetError, BrokenPipeError, TimeoutError):
                for _ in range(20000):  # 2.5 MB of pongs asked for, at most
                    sock.sendall(ping)
                    sent += 1
        return sent

    with caplog.at_level(logging.INFO, logger="realtime.wsprotocol"):
        sent = await asyncio.to_thread(flood)
        deadline = time.monotonic() + 10
        while "sends without reading" not in caplog.text:
            assert time.monotonic() < deadline, f"not cut off after {sent} pings"
            await asyncio.sleep(0.05)
    assert sent < 20000 or "sends without reading" in caplog.text


async def test_a_client_that_reads_nothing_for_too_long_is_cut_off(server, caplog, monkeypatch):
    monkeypatch.setattr(wsprotocol, "WRITE_STALL_TIMEOUT", 0.3)
    big = "y" * 100

    def stall() -> None:
        # Each frame is echoed; the replies fill the server's buffer past its
        # high-water mark while this client reads nothing.
        with (
            raw_websocket(server, "/ws/echo/", receive_buffer=2048) as sock,
            contextlib.suppress(ConnectionResetError, BrokenPipeError, TimeoutError),
        ):
            for _ in range(3000):
                sock.sendall(client_frame(TEXT, big.encode()))
            time.sleep(1.5)

    with caplog.at_level(logging.INFO, logger="realtime.wsprotocol"):
        await asyncio.to_thread(stall)
    assert "has read nothing for too long" in caplog.text or (
        "sends without reading" in caplog.text
    )
