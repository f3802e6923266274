"""The benchmark's reference: a room broadcast in plain asyncio on ``websockets``.

It speaks the chat's protocol (``chat/protocol.py``) and nothing else: a client
joins a room at ``/ws/chat/<room>/``, gets an empty history frame, and every
``{"message": ...}`` it sends is encoded once as a message frame and written to
every member of the room, sender included. No Django, no channel layer, no
database: the cost of moving the same frames with the least machinery, against
which ``bench.chatbench`` prints every figure as a ratio.

    python -m bench.bare_server --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
from datetime import UTC, datetime

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

PATH_PREFIX = "/ws/chat/"
# The chat's own limits, so both servers refuse the same frames.
MAX_FRAME_BYTES = 16 * 1024
MAX_MESSAGE_LENGTH = 2000


class Rooms:
    """Members of each room and the next message id."""

    def __init__(self) -> None:
        self.members: dict[str, set[ServerConnection]] = {}
        self.next_id = 0

    async def handler(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        room = path.removeprefix(PATH_PREFIX).rstrip("/")
        if not path.startswith(PATH_PREFIX) or not room or "/" in room:
            await ws.close(code=4404)
            return
        members = self.members.setdefault(room, set())
        members.add(ws)
        try:
            await ws.send(json.dumps({"type": "history", "room": room, "messages": []}))
            async for data in ws:
                self.receive(room, members, data)
        except ConnectionClosed:
            pass
        finally:
            members.discard(ws)
            if not members:
                self.members.pop(room, None)

    def receive(self, room: str, members: set[ServerConnection], data: str | bytes) -> None:
        if not isinstance(data, str) or len(data) > MAX_FRAME_BYTES:
            return
        try:
            text = json.loads(data)["message"]
        except (ValueError, KeyError, TypeError):
            return
        if not isinstance(text, str) or len(text) > MAX_MESSAGE_LENGTH:
            return
        self.next_id += 1
        frame = json.dumps(
            {
                "type": "message",
                "id": self.next_id,
                "room": room,
                "username": "anonymous",
                "message": text,
                "created": datetime.now(UTC).isoformat(),
            }
        )
        broadcast(members, frame)


async def main(sock: socket.socket) -> None:
    rooms = Rooms()
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
    # Pings are off, as on the chat's clients; permessage-deflate is accepted when a
    # client offers it (chatbench offers it only with --deflate).
    async with serve(rooms.handler, sock=sock, ping_interval=None, max_size=MAX_FRAME_BYTES):
        print(f"bare server listening on {sock.getsockname()}", flush=True)
        await stop


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int, help="listen on 127.0.0.1 at this port")
    where.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    return parser.parse_args(argv)


def listening_socket(args: argparse.Namespace) -> socket.socket:
    if args.fd is not None:
        return socket.socket(fileno=args.fd)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(1024)
    return sock


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(listening_socket(parse_args())))
