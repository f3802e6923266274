"""A client's retry is stored once: messages sent with a ``client_id`` are
acknowledged to their sender, and the same id from the same sender again is answered
with the stored message instead of a second copy (chat/protocol.py), on every
consumer that stores messages."""

from __future__ import annotations

from unittest import mock

import pytest
from channels.db import database_sync_to_async

from chat import selectors, services
from chat.models import Message
from chat.tests.clients import join_chat
from realtime.testing import ORIGIN, session_cookie

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3


async def frames_until_quiet(communicator) -> list[dict]:
    frames = []
    while not await communicator.receive_nothing(timeout=0.2):
        frames.append(await communicator.receive_json_from(timeout=TIMEOUT))
    return frames


@pytest.mark.parametrize("path", ["/ws/chat/lobby/", "/ws/chat-sync/lobby/"])
async def test_the_same_client_id_twice_is_stored_once_and_acknowledged_twice(
    channel_layer, make_communicator, path
):
    ann = await join_chat(make_communicator, path)
    bob = await join_chat(make_communicator, path)
    try:
        await ann.send_json_to({"message": "hello", "client_id": "c-1"})
        first = await frames_until_quiet(ann)
        # The retry, as a client sends it after its socket dropped before the ack.
        await ann.send_json_to({"message": "hello", "client_id": "c-1"})
        second = await frames_until_quiet(ann)
        seen_by_bob = await frames_until_quiet(bob)
    finally:
        await ann.disconnect()
        await bob.disconnect()
    stored = [m async for m in Message.objects.all()]
    assert [(m.text, m.client_id) for m in stored] == [("hello", "c-1")]
    message = next(frame for frame in first if frame["type"] == "message")
    ack = next(frame for frame in first if frame["type"] == "ack")
    assert ack == {"type": "ack", "client_id": "c-1", "message": ack["message"]}
    assert ack["message"]["id"] == stored[0].pk
    assert sorted(frame["type"] for frame in first) == ["ack", "message"]
    assert message["id"] == stored[0].pk
    # The retry: only an ack carrying the stored message, and no second broadcast.
    assert second == [ack]
    assert [frame["type"] for frame in seen_by_bob] == ["message"]


async def test_the_json_consumer_stores_a_retry_once(channel_layer, make_communicator):
    ann = make_communicator("/ws/rooms/")
    assert (await ann.connect(timeout=TIMEOUT))[0]
    try:
        await ann.send_json_to({"action": "join", "room": "lobby"})
        assert (await ann.receive_json_from(timeout=TIMEOUT))["type"] == "joined"
        post = {"action": "message", "room": "lobby", "message": "hi", "client_id": "j-1"}
        await ann.send_json_to(post)
        first = await frames_until_quiet(ann)
        await ann.send_json_to(post)
        second = await frames_until_quiet(ann)
    finally:
        await ann.disconnect()
    assert await Message.objects.acount() == 1
    assert sorted(frame["type"] for frame in first) == ["ack", "message"]
    assert [frame["type"] for frame in second] == ["ack"]
    assert second[0]["message"]["id"] == (await Message.objects.aget()).pk


async def test_the_same_client_id_from_two_senders_is_two_messages(
    channel_layer, make_communicator, make_user
):
    ann_user = await database_sync_to_async(make_user)("ann")
    bob_user = await database_sync_to_async(make_user)("bob")
    clients = []
    for user in (ann_user, bob_user):
        cookie = await database_sync_to_async(session_cookie)(user)
        clients.append(await join_chat(make_communicator, headers=[ORIGIN, cookie]))
    try:
        for client in clients:
            await client.send_json_to({"message": "same id", "client_id": "shared"})
            assert "ack" in [frame["type"] for frame in await frames_until_quiet(client)]
    finally:
        for client in clients:
            await client.disconnect()
    authors = [m.author_name async for m in Message.objects.order_by("id")]
    assert authors == ["ann", "bob"]


async def test_a_retry_racing_its_first_copy_is_stored_once(channel_layer):
    """A copy that missed the first lookup (the other was being stored by another
    process): the unique constraint refuses it, and it is answered with the other."""
    room = await database_sync_to_async(services.room_get_or_create)(name="lobby")
    post = {"room": room, "author": None, "text": "hi", "sender": "s", "client_id": "race"}
    first = await database_sync_to_async(services.message_create)(**post)
    real = selectors.message_get_by_client_id
    misses = iter([None])
    with mock.patch.object(
        selectors,
        "message_get_by_client_id",
        side_effect=lambda **kwargs: next(misses, None) or real(**kwargs),
    ):
        again, new = await database_sync_to_async(services.message_create_once)(**post)
    assert (again.pk, new) == (first.pk, False)
    assert await Message.objects.acount() == 1


async def test_the_async_consumers_look_a_message_up_only_when_the_constraint_refuses_it(
    channel_layer,
):
    """No lookup before storing (a hop per message): the unique constraint tells a
    retry, which is then answered with the stored copy."""
    room = await database_sync_to_async(services.room_get_or_create)(name="lobby")
    post = {"room": room, "author": None, "text": "hi", "sender": "s", "client_id": "once"}
    with mock.patch.object(
        selectors, "message_get_by_client_id", wraps=selectors.message_get_by_client_id
    ) as lookups:
        first, first_new = await services.message_save_once(**post)
        assert lookups.call_count == 0
        again, again_new = await services.message_save_once(**post)
        assert lookups.call_count == 1
    assert (first_new, again_new) == (True, False)
    assert again.pk == first.pk
    assert await Message.objects.acount() == 1


@pytest.mark.parametrize("client_id", ["", "x" * 65, "no spaces", 7, ["a"]])
async def test_a_bad_client_id_is_an_error_frame(channel_layer, make_communicator, client_id):
    ann = await join_chat(make_communicator)
    try:
        await ann.send_json_to({"message": "hi", "client_id": client_id})
        frame = await ann.receive_json_from(timeout=TIMEOUT)
    finally:
        await ann.disconnect()
    assert (frame["type"], frame["code"]) == ("error", "invalid_client_id")
    assert await Message.objects.acount() == 0
