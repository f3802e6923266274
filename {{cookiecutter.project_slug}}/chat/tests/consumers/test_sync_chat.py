"""The sync WebsocketConsumer (tutorial part 2 form) at /ws/chat-sync/<room>/."""

from __future__ import annotations

import pytest

from chat.protocol import CLOSE_INVALID_ROOM
from chat.tests.clients import join_chat

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3


async def test_sync_and_async_members_of_a_room_see_each_other(channel_layer, make_communicator):
    sync = await join_chat(make_communicator, "/ws/chat-sync/lobby/")
    async_ = await join_chat(make_communicator, "/ws/chat/lobby/")
    try:
        await sync.send_json_to({"message": "from sync"})
        for client in (sync, async_):
            assert (await client.receive_json_from(timeout=TIMEOUT))["message"] == "from sync"
        await async_.send_json_to({"message": "from async"})
        for client in (sync, async_):
            assert (await client.receive_json_from(timeout=TIMEOUT))["message"] == "from async"
    finally:
        await sync.disconnect()
        await async_.disconnect()


async def test_sync_consumer_errors_history_and_refusals(channel_layer, make_communicator):
    sync = await join_chat(make_communicator, "/ws/chat-sync/lobby/")
    try:
        await sync.send_to(text_data="{")
        assert (await sync.receive_json_from(timeout=TIMEOUT))["code"] == "invalid_json"
        await sync.send_json_to({"message": "one"})
        first = await sync.receive_json_from(timeout=TIMEOUT)
        await sync.send_json_to({"action": "history", "after": first["id"] - 1})
        history = await sync.receive_json_from(timeout=TIMEOUT)
        assert [m["message"] for m in history["messages"]] == ["one"]
    finally:
        await sync.disconnect()
    bad = make_communicator("/ws/chat-sync/a.b/")
    assert await bad.connect(timeout=TIMEOUT) == (False, CLOSE_INVALID_ROOM)
    await bad.disconnect()
