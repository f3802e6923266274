"""Chat members for the tests: on a communicator (``join_chat``) or on a real
WebSocket to a server process (``chat_client``), each past the room's history."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from channels.testing import WebsocketCommunicator

from realtime.testing.servers import FRAME_TIMEOUT, AsgiServer, WebSocketClient, websocket

# Seconds join_chat waits for the handshake and for the history frame.
JOIN_TIMEOUT = 3


async def join_chat(
    make_communicator: Callable[..., WebsocketCommunicator],
    path: str = "/ws/chat/lobby/",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> WebsocketCommunicator:
    """A communicator connected to a chat room, past the room's history frame."""
    communicator = make_communicator(path, headers=headers)
    connected, code = await communicator.connect(timeout=JOIN_TIMEOUT)
    assert connected, code
    assert (await communicator.receive_json_from(timeout=JOIN_TIMEOUT))["type"] == "history"
    return communicator


class ChatClient(WebSocketClient):
    """A chat member on a real WebSocket: the room's history, posts and resyncs."""

    def __init__(self, ws: Any) -> None:
        super().__init__(ws)
        self.history: list[dict[str, Any]] = self.frame("history")["messages"]

    def post(self, text: str) -> None:
        self.send_json({"message": text})

    def resync(self, after: int, timeout: float = FRAME_TIMEOUT) -> list[dict[str, Any]]:
        """The messages after id ``after``, as a reconnecting client asks for them."""
        self.send_json({"action": "history", "after": after})
        return self.frame("history", timeout)["messages"]


@contextlib.contextmanager
def chat_client(server: AsgiServer, room: str) -> Iterator[ChatClient]:
    """Join a room on a server, like the browser: allowed Origin, history first."""
    with websocket(server, f"/ws/chat/{room}/") as ws:
        yield ChatClient(ws)
