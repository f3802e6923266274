"""Revocation: what closes a signed-in user's sockets, on every consumer kind.

Logging out ends the session even with the channel layer failing; a socket whose
session was deleted, whose user's password changed or who was deactivated closes
with 4001 (at once through the user's group, and within the session check interval
by itself); and the synchronous consumer and the event stream honour the same guards
as the async consumers (socket cap, flood, logout, groups left)."""

from __future__ import annotations

import asyncio
import time
from unittest import mock

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.models import Session
from django.test import Client, override_settings
from django.urls import reverse
from redis.exceptions import ConnectionError as RedisConnectionError

from chat import services
from chat.tests.clients import join_chat
from chat.tests.consumers.test_events import Stream
from realtime.closecodes import CLOSE_LOGGED_OUT, CLOSE_RATE_LIMITED, CLOSE_TOO_MANY_SOCKETS
from realtime.testing import ORIGIN, report_figure

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3
CHECK = 0.2  # seconds between session checks in these tests
SOCKET_PATHS = ["/ws/chat/lobby/", "/ws/chat-sync/lobby/"]


async def signed_in(make_user, name="ann"):
    """A user and a test client signed in as it, and that session's cookie header."""
    user = await database_sync_to_async(make_user)(name)
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())
    return user, client, cookie


async def closed_with(communicator, code, within=TIMEOUT) -> float:
    """Seconds until the socket was closed with ``code`` (frames before it skipped)."""
    start = time.monotonic()
    while True:
        output = await communicator.receive_output(timeout=within)
        if output["type"] == "websocket.close":
            assert output.get("code") == code, output
            return time.monotonic() - start


async def test_logout_ends_the_session_even_with_the_layer_failing(make_user, caplog):
    _, client, _ = await signed_in(make_user)
    key = client.cookies["sessionid"].value
    failing = mock.patch.object(
        services, "user_sockets_close", side_effect=RedisConnectionError("Redis is down")
    )
    with failing:
        response = await database_sync_to_async(client.post)(reverse("logout"))
    assert response.status_code == 302
    assert not await Session.objects.filter(session_key=key).aexists()
    assert "could not close the sockets of user" in caplog.text
    report_figure("logout with the layer failing: 302 and the session deleted (before: 500)")


@pytest.mark.parametrize("path", SOCKET_PATHS)
@override_settings(WEBSOCKET_SESSION_CHECK_SECONDS=CHECK)
async def test_a_socket_whose_session_was_deleted_closes_within_the_interval(
    channel_layer, make_communicator, make_user, path
):
    _, client, cookie = await signed_in(make_user)
    socket = await join_chat(make_communicator, path, headers=[ORIGIN, cookie])
    try:
        # The session ends without any message to the socket (as with Redis down).
        await Session.objects.filter(session_key=client.cookies["sessionid"].value).adelete()
        took = await closed_with(socket, CLOSE_LOGGED_OUT, within=CHECK * 10)
    finally:
        await socket.disconnect()
    report_figure(f"{path}: session deleted, closed 4001 after {took:.2f}s (check every {CHECK}s)")


def change_password(user) -> None:
    user.set_password("a brand new passphrase")
    user.save()


def deactivate(user) -> None:
    user.is_active = False
    user.save()


@pytest.mark.parametrize("path", SOCKET_PATHS)
@pytest.mark.parametrize("change", [change_password, deactivate])
async def test_a_password_change_or_deactivation_closes_the_users_sockets(
    channel_layer, make_communicator, make_user, path, change
):
    # Checks an hour apart: what closes the socket here is the user's group.
    user, _, cookie = await signed_in(make_user)
    with override_settings(WEBSOCKET_SESSION_CHECK_SECONDS=3600):
        socket = await join_chat(make_communicator, path, headers=[ORIGIN, cookie])
        try:
            await database_sync_to_async(change)(user)
            took = await closed_with(socket, CLOSE_LOGGED_OUT)
        finally:
            await socket.disconnect()
    report_figure(f"{path}: {change.__name__}, closed 4001 after {took:.2f}s (before: open 12 h)")


@override_settings(WEBSOCKET_SESSION_CHECK_SECONDS=CHECK)
async def test_a_password_changed_behind_the_signals_back_fails_the_session_check(
    channel_layer, make_communicator, make_user
):
    # A queryset update sends no signal: the session's auth hash no longer matching
    # is what closes the socket.
    user, _, cookie = await signed_in(make_user)
    socket = await join_chat(make_communicator, headers=[ORIGIN, cookie])
    try:
        model = type(user)
        await model.objects.filter(pk=user.pk).aupdate(password=make_password("changed"))
        await closed_with(socket, CLOSE_LOGGED_OUT, within=CHECK * 10)
    finally:
        await socket.disconnect()


@override_settings(WEBSOCKET_SESSION_CHECK_SECONDS=CHECK)
async def test_a_socket_still_signed_in_stays_open(channel_layer, make_communicator, make_user):
    _, _, cookie = await signed_in(make_user)
    socket = await join_chat(make_communicator, "/ws/chat-sync/lobby/", headers=[ORIGIN, cookie])
    try:
        await asyncio.sleep(CHECK * 4)
        assert await socket.receive_nothing(timeout=CHECK)
        await socket.send_json_to({"message": "still here"})
        assert (await socket.receive_json_from(timeout=TIMEOUT))["message"] == "still here"
    finally:
        await socket.disconnect()


# The synchronous consumer's guards.


async def test_http_logout_closes_the_sync_consumer(channel_layer, make_communicator, make_user):
    _, client, cookie = await signed_in(make_user)
    socket = await join_chat(make_communicator, "/ws/chat-sync/lobby/", headers=[ORIGIN, cookie])
    try:
        response = await database_sync_to_async(client.post)(reverse("logout"))
        assert response.status_code == 302
        await closed_with(socket, CLOSE_LOGGED_OUT)
    finally:
        await socket.disconnect()


@override_settings(WEBSOCKET_MAX_SOCKETS_PER_USER=2)
async def test_the_sync_consumer_counts_against_the_socket_cap(
    channel_layer, make_communicator, make_user
):
    _, _, cookie = await signed_in(make_user)
    headers = [ORIGIN, cookie]
    first = await join_chat(make_communicator, "/ws/chat/lobby/", headers=headers)
    second = await join_chat(make_communicator, "/ws/chat-sync/lobby/", headers=headers)
    third = make_communicator("/ws/chat-sync/lobby/", headers=headers)
    try:
        assert await third.connect(timeout=TIMEOUT) == (False, CLOSE_TOO_MANY_SOCKETS)
    finally:
        for socket in (first, second, third):
            await socket.disconnect()
    again = await join_chat(make_communicator, "/ws/chat-sync/lobby/", headers=headers)
    await again.disconnect()


@override_settings(
    WEBSOCKET_RATE_LIMIT_BURST=3,
    WEBSOCKET_RATE_LIMIT_PER_SECOND=0.001,
    WEBSOCKET_RATE_LIMIT_STRIKES=2,
)
async def test_the_sync_consumer_closes_a_flood(channel_layer, make_communicator):
    socket = await join_chat(make_communicator, "/ws/chat-sync/lobby/")
    try:
        for index in range(3):
            await socket.send_json_to({"message": f"burst {index}"})
            assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "message"
        for _ in range(2):
            await socket.send_json_to({"message": "too fast"})
            assert (await socket.receive_json_from(timeout=TIMEOUT))["code"] == "rate_limited"
        await socket.send_json_to({"message": "still flooding"})
        await closed_with(socket, CLOSE_RATE_LIMITED)
    finally:
        await socket.disconnect()


async def test_the_sync_consumer_leaves_its_groups_when_a_handler_raises(
    channel_layer, make_communicator, make_user
):
    _, _, cookie = await signed_in(make_user)
    added = mock.AsyncMock(side_effect=channel_layer.group_add)
    discarded = mock.AsyncMock(side_effect=channel_layer.group_discard)
    crash = mock.patch.object(services, "message_create_once", side_effect=RuntimeError("boom"))
    with (
        mock.patch.object(channel_layer, "group_add", new=added),
        mock.patch.object(channel_layer, "group_discard", new=discarded),
    ):
        path = "/ws/chat-sync/lobby/"
        socket = await join_chat(make_communicator, path, headers=[ORIGIN, cookie])
        with crash:
            await socket.send_json_to({"message": "this handler raises"})
            with pytest.raises(RuntimeError, match="boom"):
                await socket.wait(timeout=TIMEOUT)
    joined = sorted(call.args for call in added.await_args_list)
    assert len(joined) == 2  # the room's group and the user's
    assert sorted(call.args for call in discarded.await_args_list) == joined


# The event stream's guards.


async def stream_as(cookie) -> Stream:
    stream = Stream("/chat/lobby/events/", headers=[cookie])
    start = await stream.open()
    assert start["status"] == 200, start
    assert await stream.chunk() == b": stream open\n\n"
    return stream


async def test_logout_ends_the_event_stream(channel_layer, make_user):
    _, client, cookie = await signed_in(make_user)
    stream = await stream_as(cookie)
    try:
        await database_sync_to_async(client.post)(reverse("logout"))
        assert (await stream.chunk()).startswith(b"event: logout\n")
        end = await stream.communicator.receive_output(timeout=TIMEOUT)
        assert end == {"type": "http.response.body", "body": b"", "more_body": False}
    finally:
        await stream.close()


@override_settings(WEBSOCKET_SESSION_CHECK_SECONDS=CHECK)
async def test_an_event_stream_whose_session_was_deleted_ends(channel_layer, make_user):
    _, client, cookie = await signed_in(make_user)
    stream = await stream_as(cookie)
    try:
        await Session.objects.filter(session_key=client.cookies["sessionid"].value).adelete()
        assert (await stream.chunk()).startswith(b"event: logout\n")
    finally:
        await stream.close()


@override_settings(WEBSOCKET_MAX_SOCKETS_PER_USER=1)
async def test_event_streams_count_against_the_socket_cap(
    channel_layer, make_communicator, make_user
):
    _, _, cookie = await signed_in(make_user)
    socket = await join_chat(make_communicator, headers=[ORIGIN, cookie])
    refused = Stream("/chat/lobby/events/", headers=[cookie])
    try:
        start = await refused.open()
        assert start["status"] == 429
    finally:
        await refused.close()
        await socket.disconnect()
    stream = await stream_as(cookie)
    await stream.close()
