"""Authentication and sessions on the chat socket: usernames, the login-required
mode, the session written by the consumer, and logout closing open sockets."""

from __future__ import annotations

import os

import pytest
from channels.db import database_sync_to_async
from django.test import Client, override_settings
from django.urls import reverse

from chat.protocol import CLOSE_LOGGED_OUT
from chat.tests.clients import join_chat
from realtime.closecodes import CLOSE_LOGIN_REQUIRED
from realtime.testing import ORIGIN, session_cookie

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3


async def join_as(make_communicator, cookie, room="lobby"):
    return await join_chat(make_communicator, f"/ws/chat/{room}/", headers=[ORIGIN, cookie])


async def test_a_signed_in_users_name_is_on_their_messages(
    channel_layer, make_communicator, make_user
):
    user = await database_sync_to_async(make_user)("ann")
    cookie = await database_sync_to_async(session_cookie)(user)
    ann = await join_as(make_communicator, cookie)
    try:
        await ann.send_json_to({"message": "hi"})
        frame = await ann.receive_json_from(timeout=TIMEOUT)
        assert frame["username"] == "ann"
    finally:
        await ann.disconnect()


async def test_anonymous_visitors_may_chat_by_default(channel_layer, make_communicator):
    communicator = make_communicator("/ws/chat/lobby/")
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    await communicator.disconnect()


@override_settings(CHAT_REQUIRE_LOGIN=True)
async def test_login_required_refuses_anonymous_sockets(channel_layer, make_communicator):
    communicator = make_communicator("/ws/chat/lobby/")
    connected, code = await communicator.connect(timeout=TIMEOUT)
    assert not connected
    assert code == CLOSE_LOGIN_REQUIRED
    await communicator.disconnect()


@override_settings(CHAT_REQUIRE_LOGIN=True)
async def test_login_required_admits_signed_in_users(channel_layer, make_communicator, make_user):
    user = await database_sync_to_async(make_user)("ann")
    cookie = await database_sync_to_async(session_cookie)(user)
    ann = await join_as(make_communicator, cookie)
    await ann.disconnect()


async def test_the_room_joined_is_saved_in_the_session_for_later_requests(
    channel_layer, make_communicator, make_user
):
    user = await database_sync_to_async(make_user)("ann")
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())
    ann = await join_as(make_communicator, cookie, room="kitchen")
    await ann.disconnect()
    response = await database_sync_to_async(client.get)(reverse("chat:lobby"))
    assert response.context["last_room"] == "kitchen"
    assert 'href="/chat/kitchen/"' in response.content.decode()


async def test_http_logout_closes_that_users_sockets_only(
    channel_layer, make_communicator, make_user
):
    ann_user = await database_sync_to_async(make_user)("ann")
    bob_user = await database_sync_to_async(make_user)("bob")
    ann_client = Client()
    await database_sync_to_async(ann_client.force_login)(ann_user)
    ann_cookie = (b"cookie", f"sessionid={ann_client.cookies['sessionid'].value}".encode())
    ann = await join_as(make_communicator, ann_cookie)
    bob = await join_as(make_communicator, await database_sync_to_async(session_cookie)(bob_user))
    try:
        response = await database_sync_to_async(ann_client.post)(reverse("logout"))
        assert response.status_code == 302
        closed = await ann.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": CLOSE_LOGGED_OUT}
        await bob.send_json_to({"message": "still open"})
        assert (await bob.receive_json_from(timeout=TIMEOUT))["message"] == "still open"
    finally:
        await ann.disconnect()
        await bob.disconnect()


async def test_no_synchronous_only_escape_hatch_is_set():
    # The consumers reach the ORM through database_sync_to_async; the suite would raise
    # SynchronousOnlyOperation if any path did not. Make sure nothing disables that check.
    assert "DJANGO_ALLOW_ASYNC_UNSAFE" not in os.environ
