"""The guards the chat's consumers use, on the real-time layer's own test consumers:
the session check, the synchronous consumer's guards, and an HTTP stream's caps and
page checks (realtime/guards.py, realtime/pagechecks.py)."""

from __future__ import annotations

from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import override_settings

from realtime.closecodes import (
    CLOSE_LOGGED_OUT,
    CLOSE_LOGIN_REQUIRED,
    CLOSE_RATE_LIMITED,
    CLOSE_TOO_MANY_SOCKETS,
)
from realtime.guards import still_signed_in
from realtime.testing import session_cookie
from realtime.tests.app import application, from_address, http_application
from realtime.tests.clients import TIMEOUT, joined, refused

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

CHECK = 0.1  # seconds between session checks in these tests


@override_settings(WEBSOCKET_SESSION_CHECK_SECONDS=CHECK)
@pytest.mark.parametrize("path", ["/ws/tests/lobby/", "/ws/tests-sync/lobby/"])
async def test_a_socket_whose_session_ends_is_closed_with_4001(channel_layer, make_user, path):
    user = await sync_to_async(make_user)("ann")
    cookie = await sync_to_async(session_cookie)(user)
    socket = await joined(path, headers=[cookie])
    assert await socket.receive_nothing(timeout=CHECK * 3)  # still signed in: left open
    await Session.objects.all().adelete()  # logged out elsewhere
    assert await socket.receive_output(timeout=TIMEOUT) == {
        "type": "websocket.close",
        "code": CLOSE_LOGGED_OUT,
    }
    await socket.disconnect()


@override_settings(WEBSOCKET_SESSION_CHECK_SECONDS=CHECK)
async def test_a_ticket_socket_closes_when_its_user_is_deactivated(channel_layer, make_user):
    user = await sync_to_async(make_user)("ann")
    socket = await joined("/ws/tests/lobby/?ticket=user:ann")
    await get_user_model().objects.filter(pk=user.pk).aupdate(is_active=False)
    assert (await socket.receive_output(timeout=TIMEOUT))["code"] == CLOSE_LOGGED_OUT
    await socket.disconnect()


async def test_still_signed_in_follows_django(make_user, client):
    def check() -> None:
        user = make_user("ann")
        client.force_login(user)
        key = client.session.session_key
        assert still_signed_in(user_id=user.pk, session_key=key)
        assert not still_signed_in(user_id=user.pk + 1, session_key=key)  # another user's
        user.set_password("a new long passphrase")
        user.save()
        assert not still_signed_in(user_id=user.pk, session_key=key)  # password changed
        assert still_signed_in(user_id=user.pk, session_key=None)  # ticket: active
        get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        assert not still_signed_in(user_id=user.pk, session_key=None)

    await sync_to_async(check)()


async def test_the_sync_consumer_refuses_anonymous_sockets_where_login_is_required(
    channel_layer,
):
    assert await refused("/ws/tests-sync/members/") == CLOSE_LOGIN_REQUIRED


@override_settings(WEBSOCKET_MAX_SOCKETS_PER_ADDRESS=1)
async def test_the_sync_consumer_keeps_the_cap_and_leaves_its_group(channel_layer):
    here = from_address(application, "10.0.0.9")
    discarded = mock.AsyncMock(side_effect=channel_layer.group_discard)
    with mock.patch.object(channel_layer, "group_discard", new=discarded):
        first = await joined("/ws/tests-sync/lobby/", app=here)
        assert await refused("/ws/tests-sync/lobby/", app=here) == CLOSE_TOO_MANY_SOCKETS
        await first.disconnect()
    assert [call.args[0] for call in discarded.await_args_list] == ["tests.sync.lobby"]
    second = await joined("/ws/tests-sync/lobby/", app=here)  # the claim was given back
    await second.disconnect()


@override_settings(
    WEBSOCKET_RATE_LIMIT_BURST=1,
    WEBSOCKET_RATE_LIMIT_PER_SECOND=0.001,
    WEBSOCKET_RATE_LIMIT_STRIKES=1,
)
async def test_the_sync_consumer_rate_limits_then_closes(channel_layer):
    socket = await joined("/ws/tests-sync/lobby/")
    await socket.send_to(text_data="one")
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "echo"
    await socket.send_to(text_data="two")
    assert (await socket.receive_json_from(timeout=TIMEOUT))["code"] == "rate_limited"
    await socket.send_to(text_data="three")
    assert (await socket.receive_output(timeout=TIMEOUT))["code"] == CLOSE_RATE_LIMITED
    await socket.disconnect()


async def stream(host=b"localhost", app=http_application):
    communicator = HttpCommunicator(app, "GET", "/tests/stream/", headers=[(b"host", host)])
    return await communicator.get_response(timeout=TIMEOUT)


async def test_a_stream_gets_the_pages_headers(channel_layer, settings):
    response = await stream()
    assert (response["status"], response["body"]) == (200, b"open")
    headers = dict(response["headers"])
    assert headers[b"x-frame-options"] == b"DENY"
    assert headers[b"content-security-policy"] == settings.CONTENT_SECURITY_POLICY.encode()


async def test_a_stream_refuses_an_unknown_host_and_redirects_to_https(channel_layer):
    with override_settings(ALLOWED_HOSTS=["example.com"]):
        assert (await stream(b"evil.test"))["status"] == 400
    with override_settings(ALLOWED_HOSTS=["example.com"], SECURE_SSL_REDIRECT=True):
        response = await stream(b"example.com")
    assert response["status"] == 301
    assert dict(response["headers"])[b"location"] == b"https://example.com/tests/stream/"


@override_settings(WEBSOCKET_MAX_SOCKETS_PER_ADDRESS=1)
async def test_a_stream_over_the_address_cap_gets_429(channel_layer):
    here = from_address(http_application, "10.0.0.8")
    first = HttpCommunicator(here, "GET", "/tests/stream/", headers=[(b"host", b"localhost")])
    assert (await first.get_response(timeout=TIMEOUT))["status"] == 200
    assert (await stream(app=here))["status"] == 200  # the first ended: its claim is back
