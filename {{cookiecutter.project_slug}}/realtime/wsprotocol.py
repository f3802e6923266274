"""uvicorn's WebSocket protocol (``websockets-sansio``), with what a socket may cost
bounded whatever its client sends or fails to read.

The server runs it with ``--ws realtime.wsprotocol:WebSocketProtocol`` (every web
command: the Procfile, the Dockerfile, the compose and systemd files). It is
uvicorn's own Sans-I/O protocol plus:

- a client that does not read what the server writes is cut off: uvicorn answers
  each ping with a pong written straight to the socket, unlike the application's
  frames, which wait while its write buffer is full. A client that sends pings and
  never reads the pongs grew the server by 185 MB in 12 s. Once the buffer holds
  more than ``WRITE_BUFFER_LIMIT`` bytes after the client's data is handled, or
  stays above the transport's high-water mark for ``WRITE_STALL_TIMEOUT`` seconds,
  the connection is aborted (nothing more can reach that client anyway), with one
  INFO line;
- the application can tell whether a send would return at once, and write a text
  frame it encoded once for many sockets: the scope's ``realtime.send_ready``
  extension (``SEND_READY``, which ``realtime/fanout.py`` uses), so that a group's fan-out writes to
  the sockets that can take a frame and buffers for the others, never waiting on
  one, and encodes each broadcast once instead of once per socket (a server frame
  is not masked, so its bytes are the same for every socket without compression);
- an idle socket keeps 6.7 KB less: the receive queue and the "writable" event are
  ``realtime.waiters``' (no deques while nobody waits), and the handshake request,
  which uvicorn and websockets' parser keep for the socket's life, is emptied of its
  headers once the scope has its own copy of them;
- a text frame that is not UTF-8 is closed with 1007 and one INFO line, not
  uvicorn's traceback per frame;
- every TCP connection has Nagle's algorithm off (``TCP_NODELAY``), also on a
  listening socket handed over with ``--fd`` (socket activation, chatbench): uvicorn
  opens such a socket as a Unix one, so its event loop never sets the option, and a
  broadcast's small frames then waited for the client's delayed ACKs, up to 40 ms
  each on Linux (docs/benchmark.md).

Applications see no difference: the same ASGI messages, in the same order.
https://www.uvicorn.org/settings/#implementation
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from realtime.waiters import SocketEvent, SocketQueue

logger = logging.getLogger(__name__)

# Bytes the write buffer may hold once a client's data is handled: above this the
# client sends (pings) faster than it reads. Far above what the application's writes
# leave there (they wait at the transport's high-water mark, 64 KiB, plus one frame).
WRITE_BUFFER_LIMIT = 1024 * 1024
# Seconds the write buffer may stay above the high-water mark: a client that reads
# nothing for that long is gone or stuck. Shorter than --ws-ping-timeout (30 s),
# whose close would itself wait behind the full buffer.
WRITE_STALL_TIMEOUT = 20.0
CLOSE_INVALID_DATA = 1007
# The scope extension the fan-out uses (realtime/fanout.py): {"ready": whether a
# send returns at once, "write": write_encoded}.
SEND_READY = "realtime.send_ready"
# The socket option that names a socket's address family (Linux; 39 where Python
# does not define the name).
SO_DOMAIN = getattr(socket, "SO_DOMAIN", 39)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's Sans-I/O WebSocket protocol with a bounded write buffer and quiet
    handling of invalid UTF-8."""

    stall_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = SocketQueue()  # type: ignore[assignment]  # the part of asyncio.Queue uvicorn calls
        self.writable = SocketEvent(is_set=True)  # type: ignore[assignment]  # likewise asyncio.Event

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        no_delay(transport)
        super().connection_made(transport)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The scope holds the headers as bytes; nothing reads the parsed request again,
        # yet uvicorn keeps it, and so does websockets' parser (a local of its running
        # generator): about 2.9 KB of every idle socket.
        del self.request
        event.headers.clear()
        if self.handshake_initiated and not self.close_sent:
            # The application has not started yet: its task runs on the next turn.
            self.scope["extensions"][SEND_READY] = {
                "ready": self.writable.is_set,
                "write": self.write_encoded,
            }

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The handshake's response, headers and all, is sent: uvicorn keeps it
            # for the socket's life otherwise (about 2 KB of every idle socket).
            del self.response

    def write_encoded(self, frame: bytes) -> bool:
        """Write a whole frame encoded by ``encode_text_frame`` as the application's
        ``websocket.send`` would, if the socket is open, takes it at once and has no
        extension that changes a frame's bytes (permessage-deflate); else False, and
        the caller sends it through ASGI instead."""
        if (
            self.close_sent
            or self.disconnected
            or not self.handshake_complete
            or self.conn.state is not State.OPEN
            or self.conn.extensions
            or not self.writable.is_set()
        ):
            return False
        self.transport.write(frame)
        return True

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            self.cut_off("sends without reading what it is sent")

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.stall_timer is None:
            self.stall_timer = self.loop.call_later(
                WRITE_STALL_TIMEOUT, self.cut_off, "has read nothing for too long"
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        self.cancel_stall_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_stall_timer()
        super().connection_lost(exc)

    def cancel_stall_timer(self) -> None:
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None

    def cut_off(self, why: str) -> None:
        """Drop the connection at once: a close frame would wait behind the buffer."""
        self.stall_timer = None
        if self.disconnected:
            return
        logger.info("closing WebSocket from %s: the client %s", self.client_text(), why)
        # The application's next send raises ClientDisconnected, as on any lost client.
        self.transport.abort()

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent and not is_utf8(self.frames):
            self.frames = []
            logger.info("closing WebSocket from %s: a text frame is not UTF-8", self.client_text())
            self.conn.send_close(CLOSE_INVALID_DATA, "invalid UTF-8")
            self.handle_parser_exception()
            return
        super().send_receive_event_to_app()

    def client_text(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unknown client"


def encode_text_frame(text: str) -> bytes:
    """A server's unmasked, unfragmented text frame, for ``write_encoded``."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def no_delay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on a TCP connection, whatever family the server
    took its socket for (the kernel knows: ``SO_DOMAIN``)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        if sock.getsockopt(socket.SOL_SOCKET, SO_DOMAIN) in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        logger.debug("could not set TCP_NODELAY", exc_info=True)


def is_utf8(parts: list[bytes]) -> bool:
    try:
        b"".join(parts).decode()
    except UnicodeDecodeError:
        return False
    return True
