"""The benchmark's baseline is the Channels tutorial's chat, behaving as published:
each message goes to every member of the room, and nothing else is checked."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from bench.tutorial import application

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3
ORIGIN = (b"origin", b"http://localhost")


async def test_a_message_reaches_every_member_of_the_room(channel_layer):
    ann = WebsocketCommunicator(application, "/ws/chat/lobby/", headers=[ORIGIN])
    bob = WebsocketCommunicator(application, "/ws/chat/lobby/", headers=[ORIGIN])
    other = WebsocketCommunicator(application, "/ws/chat/elsewhere/", headers=[ORIGIN])
    try:
        for client in (ann, bob, other):
            assert (await client.connect(timeout=TIMEOUT))[0]
        await ann.send_json_to({"message": "hello"})
        for client in (ann, bob):
            assert await client.receive_json_from(timeout=TIMEOUT) == {"message": "hello"}
        assert await other.receive_nothing(timeout=0.2)
    finally:
        for client in (ann, bob, other):
            await client.disconnect()


async def test_it_checks_only_the_origins_host(channel_layer):
    foreign = WebsocketCommunicator(
        application, "/ws/chat/lobby/", headers=[(b"origin", b"http://evil.example")]
    )
    connected, _ = await foreign.connect(timeout=TIMEOUT)
    assert not connected
    await foreign.disconnect()
