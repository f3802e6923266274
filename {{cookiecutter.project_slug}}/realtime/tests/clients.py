"""WebSocket clients of the real-time layer's test application (realtime/tests/app.py),
shared by the tests that connect to it."""

from __future__ import annotations

from channels.testing import WebsocketCommunicator

from realtime.testing import ORIGIN
from realtime.tests.app import application

TIMEOUT = 3


async def joined(path="/ws/tests/lobby/", headers=(), app=application):
    communicator = WebsocketCommunicator(app, path, headers=[ORIGIN, *headers])
    connected, code = await communicator.connect(timeout=TIMEOUT)
    assert connected, code
    assert (await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "hello"
    return communicator


async def refused(path, headers=(), app=application):
    communicator = WebsocketCommunicator(app, path, headers=[ORIGIN, *headers])
    connected, code = await communicator.connect(timeout=TIMEOUT)
    assert not connected
    await communicator.disconnect()
    return code
