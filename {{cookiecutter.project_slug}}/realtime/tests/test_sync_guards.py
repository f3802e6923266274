"""``SyncGuardsMixin`` on a synchronous consumer of the tests' own (no app of the
project): its groups left when a handler raises, the socket cap, and the session
check closing a socket whose session was deleted."""

from __future__ import annotations

from unittest import mock

import pytest
from channels.db import database_sync_to_async
from channels.generic.websocket import WebsocketConsumer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.test import override_settings
from django.urls import re_path

from realtime.auth import WebSocketAuthMiddlewareStack
from realtime.closecodes import CLOSE_LOGGED_OUT, CLOSE_TOO_MANY_SOCKETS
from realtime.groups import group_name
from realtime.guards import SyncGuardsMixin, socket_count, user_count_key
from realtime.testing import session_cookie

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3
GROUP = group_name("tests", "sync")


class SyncEchoConsumer(SyncGuardsMixin, WebsocketConsumer):
    def connect(self) -> None:
        if self.refused_at_handshake():
            return
        self.join_group(GROUP)
        self.accept()

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "fail":
            raise RuntimeError("the handler failed")
        self.send(text_data=text_data)


application = WebSocketAuthMiddlewareStack(
    URLRouter([re_path(r"^ws/sync/$", SyncEchoConsumer.as_asgi())])
)


async def connected(cookie) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/sync/", headers=[cookie])
    connected, code = await communicator.connect(timeout=TIMEOUT)
    assert connected, code
    return communicator


async def test_a_handler_that_raises_leaves_no_group(channel_layer, make_user):
    user = await database_sync_to_async(make_user)()
    discarded = mock.AsyncMock(side_effect=channel_layer.group_discard)
    with mock.patch.object(channel_layer, "group_discard", new=discarded):
        socket = await connected(await database_sync_to_async(session_cookie)(user))
        await socket.send_to(text_data="fail")
        with pytest.raises(RuntimeError, match="the handler failed"):
            await socket.wait(timeout=TIMEOUT)
    assert [call.args[0] for call in discarded.await_args_list] == [GROUP]
    assert socket_count(user_count_key(user.pk)) == 0


@override_settings(WEBSOCKET_MAX_SOCKETS_PER_USER=1)
async def test_the_cap_holds_for_sync_sockets(channel_layer, make_user):
    user = await database_sync_to_async(make_user)()
    cookie = await database_sync_to_async(session_cookie)(user)
    first = await connected(cookie)
    second = WebsocketCommunicator(application, "/ws/sync/", headers=[cookie])
    assert await second.connect(timeout=TIMEOUT) == (False, CLOSE_TOO_MANY_SOCKETS)
    await first.disconnect()
    assert socket_count(user_count_key(user.pk)) == 0


@override_settings(WEBSOCKET_SESSION_CHECK_SECONDS=0.1)
async def test_a_deleted_session_closes_the_sync_socket(channel_layer, make_user):
    user = await database_sync_to_async(make_user)()
    name, value = await database_sync_to_async(session_cookie)(user)
    socket = await connected((name, value))
    key = value.decode().partition("=")[2]
    await Session.objects.filter(session_key=key).adelete()
    assert await socket.receive_output(timeout=TIMEOUT) == {
        "type": "websocket.close",
        "code": CLOSE_LOGGED_OUT,
    }
    await socket.disconnect()
