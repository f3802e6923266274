"""Posting into a room from outside a consumer: the chat_post command and the HTTP
endpoint, both through services.message_post."""

from __future__ import annotations

from io import StringIO

import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from chat.models import Message

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3


async def joined(make_communicator, room="lobby"):
    communicator = make_communicator(f"/ws/chat/{room}/")
    assert (await communicator.connect(timeout=TIMEOUT))[0]
    await communicator.receive_json_from(timeout=TIMEOUT)
    return communicator


async def test_the_command_posts_into_a_room(channel_layer, make_communicator, make_user):
    await database_sync_to_async(make_user)("deploybot")
    ann = await joined(make_communicator)
    try:
        await database_sync_to_async(call_command)(
            "chat_post", "lobby", "Deploy finished", "--as", "deploybot"
        )
        frame = await ann.receive_json_from(timeout=TIMEOUT)
        assert frame["message"] == "Deploy finished"
        assert frame["username"] == "deploybot"
    finally:
        await ann.disconnect()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["lo bby", "x"], "Room names are"),
        (["lobby", "  "], "empty"),
        (["lobby", "x", "--as", "nobody"], "No user named 'nobody'"),
    ],
)
async def test_the_command_refuses_bad_input(channel_layer, args, error):
    with pytest.raises(CommandError, match=error):
        await database_sync_to_async(call_command)("chat_post", *args)
    assert not await Message.objects.aexists()


async def test_the_http_endpoint_posts_and_lists(channel_layer, make_communicator):
    ann = await joined(make_communicator)
    client = Client()
    url = reverse("chat:messages", args=["lobby"])
    try:
        response = await database_sync_to_async(client.post)(url, {"message": "over http"})
        assert response.status_code == 201
        frame = await ann.receive_json_from(timeout=TIMEOUT)
        assert frame["message"] == "over http"
        listed = await database_sync_to_async(client.get)(url, {"after": frame["id"] - 1})
        assert [m["message"] for m in listed.json()["messages"]] == ["over http"]
        assert (await database_sync_to_async(client.get)(url, {"after": frame["id"]})).json() == {
            "messages": []
        }
    finally:
        await ann.disconnect()


async def test_the_http_endpoint_refuses_bad_input(channel_layer):
    client = Client()
    url = reverse("chat:messages", args=["lobby"])
    empty = await database_sync_to_async(client.post)(url, {"message": "  "})
    assert empty.status_code == 400
    assert empty.json()["code"] == "message_empty"
    long = await database_sync_to_async(client.post)(url, {"message": "x" * 2001})
    assert long.json()["code"] == "message_too_long"
    bad_after = await database_sync_to_async(client.get)(url, {"after": "x"})
    assert bad_after.status_code == 400
    bad_room = await database_sync_to_async(client.get)("/chat/a.b/messages/")
    assert bad_room.status_code == 404
    assert not await Message.objects.aexists()


async def test_the_command_says_when_the_layer_cannot_reach_the_server(channel_layer):
    out = StringIO()
    await database_sync_to_async(call_command)("chat_post", "lobby", "hello", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Posted message ")
    if isinstance(channel_layer, InMemoryChannelLayer):
        assert lines[1:] == [
            "Stored, but not delivered live: the in-memory channel layer reaches this "
            "process only. Members see it in the room's history; set REDIS_URL to "
            "deliver to connected members."
        ]
    else:
        assert lines[1:] == []
    assert await Message.objects.filter(text="hello").aexists()
