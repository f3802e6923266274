"""Limits beyond one socket (chat/limits.py): HTTP posts and new rooms per user and
per address, the per-address socket cap on by default, the lobby listing only rooms
with messages, and history replies bounded in size and rate per socket."""

from __future__ import annotations

import json
import os
import threading
import uuid
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.cache.backends.redis import RedisCache
from django.test import Client, override_settings
from django.urls import reverse

from chat import limits, selectors, services
from chat.models import Message, Room
from chat.protocol import history_frame
from config.asgi import application
from config.settings import base
from realtime.closecodes import CLOSE_TOO_MANY_SOCKETS, registered
from realtime.frames import encode
from realtime.testing import ORIGIN, report_figure

TIMEOUT = 3


@pytest.fixture(autouse=True)
def fresh_counts(monkeypatch):
    """Each test counts from zero, under keys of its own (in Redis when the run has
    one), with the limits on as base.py sets them: the test settings turn them off,
    as the rest of the suite shares one address and one minute."""
    monkeypatch.setattr(limits, "KEY_PREFIX", f"chat:limit:{uuid.uuid4().hex}")
    limits._local_counts.clear()
    with override_settings(
        CHAT_HTTP_POSTS_PER_MINUTE=base.CHAT_HTTP_POSTS_PER_MINUTE,
        CHAT_ROOMS_PER_HOUR=base.CHAT_ROOMS_PER_HOUR,
    ):
        yield
    limits._local_counts.clear()


def post(client: Client, room: str, text: str, address: str = "10.0.0.1"):
    return client.post(
        reverse("chat:messages", args=[room]), {"message": text}, REMOTE_ADDR=address
    )


@pytest.mark.django_db
@override_settings(CHAT_HTTP_POSTS_PER_MINUTE=3)
def test_http_posts_are_limited_per_address_and_per_user(client, make_user):
    codes = [post(client, "lobby", f"m{index}").status_code for index in range(5)]
    assert codes == [201, 201, 201, 429, 429]
    refused = post(client, "lobby", "again")
    assert refused.json()["code"] == "rate_limited"
    assert refused["Retry-After"] == "60"
    assert post(client, "lobby", "from elsewhere", address="10.0.0.2").status_code == 201
    # A signed-in user is counted as a user too, whatever address they post from.
    member = Client()
    member.force_login(make_user("ann"))
    answers = [post(member, "lobby", "x", address=f"10.1.0.{i}").status_code for i in range(4)]
    assert answers == [201, 201, 201, 429]
    assert Message.objects.count() == 7
    report_figure("HTTP posts: 3 a minute allowed, the 4th answered 429 (before: all accepted)")


@pytest.mark.django_db
def test_http_posts_are_limited_by_default(client, settings):
    assert settings.CHAT_HTTP_POSTS_PER_MINUTE == 20
    codes = [post(client, "lobby", f"m{index}").status_code for index in range(25)]
    assert codes.count(201) == 20
    assert codes[20:] == [429] * 5


@pytest.mark.django_db
@override_settings(CHAT_ROOMS_PER_HOUR=2)
def test_new_rooms_are_limited_per_address_and_existing_ones_stay_open(client):
    assert post(client, "first", "hi").status_code == 201
    assert post(client, "second", "hi").status_code == 201
    refused = post(client, "third", "hi")
    assert refused.status_code == 429
    assert refused.json()["code"] == "room_limit"
    assert not Room.objects.filter(name="third").exists()
    assert post(client, "first", "still fine").status_code == 201  # exists: not limited
    assert post(client, "third", "hi", address="10.9.9.9").status_code == 201


def from_address(address: str):
    """config.asgi.application as a server would call it for a client at ``address``."""

    async def app(scope, receive, send):
        return await application({**scope, "client": (address, 40000)}, receive, send)

    return app


async def open_socket(path: str, address: str = "10.0.0.1"):
    communicator = WebsocketCommunicator(from_address(address), path, headers=[ORIGIN])
    connected, code = await communicator.connect(timeout=TIMEOUT)
    return communicator, connected, code


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@override_settings(CHAT_ROOMS_PER_HOUR=2)
@pytest.mark.parametrize("route", ["chat", "chat-sync"])
async def test_a_socket_past_the_room_limit_gets_an_error_frame_and_4430(channel_layer, route):
    sockets = []
    for name in ("one", "two"):
        socket, connected, _ = await open_socket(f"/ws/{route}/{name}/")
        assert connected
        sockets.append(socket)
    socket, connected, _ = await open_socket(f"/ws/{route}/three/")
    assert connected  # accepted, so that the browser sees the code
    error = await socket.receive_json_from(timeout=TIMEOUT)
    assert error["type"] == "error"
    assert error["code"] == "room_limit"
    assert await socket.receive_output(timeout=TIMEOUT) == {
        "type": "websocket.close",
        "code": limits.CLOSE_ROOM_LIMIT,
    }
    await socket.disconnect()
    again, connected, _ = await open_socket(f"/ws/{route}/one/")  # an existing room
    assert connected
    for each in (*sockets, again):
        await each.disconnect()
    assert not await Room.objects.filter(name="three").aexists()
    assert limits.CLOSE_ROOM_LIMIT in {code.code for code in registered()}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@override_settings(CHAT_ROOMS_PER_HOUR=1)
async def test_the_json_consumer_and_the_event_stream_keep_the_room_limit(channel_layer):
    socket, connected, _ = await open_socket("/ws/rooms/")
    assert connected
    await socket.send_json_to({"action": "join", "room": "made"})
    assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "joined"
    await socket.send_json_to({"action": "join", "room": "another"})
    assert (await socket.receive_json_from(timeout=TIMEOUT))["code"] == "room_limit"
    await socket.disconnect()


@pytest.mark.skipif(
    "WEBSOCKET_MAX_SOCKETS_PER_ADDRESS" in os.environ, reason="the environment sets the cap"
)
def test_the_per_address_socket_cap_is_on_by_default():
    assert base.WEBSOCKET_MAX_SOCKETS_PER_ADDRESS == 200


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@override_settings(WEBSOCKET_MAX_SOCKETS_PER_ADDRESS=3)  # the test settings turn it off
async def test_one_address_cannot_open_sockets_past_the_cap(channel_layer):
    sockets = []
    for _ in range(3):
        socket, connected, _ = await open_socket("/ws/chat/lobby/")
        assert connected
        sockets.append(socket)
    refused, connected, code = await open_socket("/ws/chat/lobby/")
    assert (connected, code) == (False, CLOSE_TOO_MANY_SOCKETS)
    other, connected, _ = await open_socket("/ws/chat/lobby/", address="10.0.0.2")
    assert connected
    for each in (*sockets, other, refused):
        await each.disconnect()
    report_figure("sockets per address: the 4th of a cap of 3 refused 4409 (before: no cap)")


@pytest.mark.django_db
def test_the_lobby_lists_only_rooms_with_visible_messages():
    services.room_get_or_create(name="empty")
    services.message_post(room_name="spoken", author=None, text="hello")
    hidden = services.message_post(room_name="hushed", author=None, text="spam")
    Message.objects.filter(pk=hidden.pk).update(hidden=True)
    assert [room.name for room in selectors.room_list_recent()] == ["spoken"]


def big_room(count: int = 50, size: int = 2000) -> None:
    room = services.room_get_or_create(name="big")
    Message.objects.bulk_create(
        Message(room=room, author_name="ann", text="\U0001f600" * size) for _ in range(count)
    )


def unbounded_history_size() -> int:
    room = Room.objects.get(name="big")
    messages = selectors.message_list_after(room=room, after_id=0, limit=50)
    return len(encode(history_frame(messages, "big")).encode())


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", ["chat", "chat-sync"])
async def test_a_history_reply_is_bounded_and_says_more_follows(channel_layer, settings, route):
    await sync_to_async(big_room)()
    socket, connected, _ = await open_socket(f"/ws/{route}/big/")
    assert connected
    opening = await socket.receive_from(timeout=TIMEOUT)
    assert len(opening.encode()) <= settings.CHAT_HISTORY_MAX_BYTES
    request = json.dumps({"action": "history", "after": 0})
    await socket.send_to(text_data=request)
    reply = await socket.receive_from(timeout=TIMEOUT)
    frame = json.loads(reply)
    assert len(reply.encode()) <= settings.CHAT_HISTORY_MAX_BYTES
    assert frame["more"] is True
    first_ids = [message["id"] for message in frame["messages"]]
    assert first_ids == sorted(first_ids)  # the oldest first: the client asks after the last
    await socket.disconnect()
    whole = await sync_to_async(unbounded_history_size)()
    report_figure(
        f"history ({route}): a {len(request)}-byte request got {len(reply.encode())} bytes, "
        f"{len(first_ids)} messages and more: true (unbounded, the page is {whole} bytes)"
    )


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@override_settings(CHAT_HISTORY_REQUESTS_PER_MINUTE=3, WEBSOCKET_RATE_LIMIT_BURST=100)
@pytest.mark.parametrize("route", ["chat", "chat-sync"])
async def test_history_requests_are_rate_limited_per_socket(channel_layer, route):
    socket, connected, _ = await open_socket(f"/ws/{route}/lobby/")
    assert connected
    await socket.receive_json_from(timeout=TIMEOUT)
    kinds = []
    for _ in range(5):
        await socket.send_json_to({"action": "history", "after": 0})
        frame = await socket.receive_json_from(timeout=TIMEOUT)
        kinds.append(frame.get("code", frame["type"]))
    assert kinds == ["history", "history", "history", "rate_limited", "rate_limited"]
    other, connected, _ = await open_socket(f"/ws/{route}/lobby/")  # its own allowance
    await other.receive_json_from(timeout=TIMEOUT)
    await other.send_json_to({"action": "history", "after": 0})
    assert (await other.receive_json_from(timeout=TIMEOUT))["type"] == "history"
    await socket.disconnect()
    await other.disconnect()


def test_the_per_process_window_counts_and_resets():
    with mock.patch("chat.limits.time.monotonic", return_value=100.0):
        assert [limits.window_hit("k", window=60) for _ in range(3)] == [1, 2, 3]
    with mock.patch("chat.limits.time.monotonic", return_value=161.0):
        assert limits.window_hit("k", window=60) == 1


@pytest.mark.services("REDIS_URL")
def test_the_redis_window_counts_atomically_and_always_expires(settings):
    """Many threads at once count exactly; a key left without an expiry gets one."""
    cache = RedisCache(settings.REDIS_URL, {"KEY_PREFIX": f"limits-{os.getpid()}"})
    key = "chat:limit:test"
    client = cache._cache.get_client(cache.make_and_validate_key(key), write=True)  # type: ignore[attr-defined]
    client.delete(cache.make_and_validate_key(key))
    counts: list[int] = []
    with mock.patch("chat.limits.cache", cache):

        def hit() -> None:
            for _ in range(50):
                counts.append(limits.window_hit(key, window=30))

        threads = [threading.Thread(target=hit) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted(counts) == list(range(1, 401))
        full = cache.make_and_validate_key(key)
        assert 0 < client.ttl(full) <= 30
        client.persist(full)  # as a key re-created by a plain INCR would be
        limits.window_hit(key, window=30)
        assert 0 < client.ttl(full) <= 30
        client.delete(full)
