"""Server-sent events from the AsyncHttpConsumer at /chat/<room>/events/, through
HttpCommunicator (complete responses) and ApplicationCommunicator (the stream)."""

from __future__ import annotations

import contextlib
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import ApplicationCommunicator, HttpCommunicator
from django.conf import settings
from django.test import override_settings

from chat.consumers.events import sse_event
from chat.services import message_post
from config.asgi import application

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3
HOST = (b"host", b"localhost")


def http_scope(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "headers": [(b"host", b"localhost"), *(headers or [])],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
    }


class Stream:
    """An open event stream: the response start, then body chunks as they come."""

    def __init__(self, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.communicator = ApplicationCommunicator(application, http_scope(path, headers))

    async def open(self) -> dict:
        await self.communicator.send_input({"type": "http.request", "body": b""})
        return await self.communicator.receive_output(timeout=TIMEOUT)

    async def chunk(self) -> bytes:
        message = await self.communicator.receive_output(timeout=TIMEOUT)
        assert message["type"] == "http.response.body"
        assert message["more_body"] is True
        return message["body"]

    async def close(self) -> None:
        await self.communicator.send_input({"type": "http.disconnect"})
        with contextlib.suppress(Exception):
            await self.communicator.wait(timeout=TIMEOUT)


def post(room: str, text: str):
    return database_sync_to_async(message_post)(room_name=room, author=None, text=text)


async def test_the_stream_delivers_new_messages_as_events(channel_layer):
    stream = Stream("/chat/lobby/events/")
    try:
        start = await stream.open()
        assert start["status"] == 200
        assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
        assert await stream.chunk() == b": stream open\n\n"
        message = await post("lobby", "streamed")
        chunk = await stream.chunk()
        assert chunk.startswith(b"event: message\nid: %d\ndata: {" % message.pk)
        assert b'"message":"streamed"' in chunk
    finally:
        await stream.close()


async def test_last_event_id_resumes_after_the_missed_messages(channel_layer):
    first = await post("lobby", "seen")
    await post("lobby", "missed")
    stream = Stream("/chat/lobby/events/", [(b"last-event-id", str(first.pk).encode())])
    try:
        await stream.open()
        chunk = await stream.chunk()
        assert b'"message":"missed"' in chunk
        assert await stream.chunk() == b": stream open\n\n"
    finally:
        await stream.close()


async def read_events(stream: Stream) -> list[bytes]:
    """The stream's events until it says it is open."""
    events = []
    while (chunk := await stream.chunk()) != b": stream open\n\n":
        events.append(chunk)
    return events


async def resumed_after_missing(count: int) -> tuple[list, list[bytes]]:
    """Post one message, then ``count`` more; resume a stream after the first."""
    first = await post("lobby", "seen")
    missed = [await post("lobby", f"missed {n}") for n in range(count)]
    stream = Stream("/chat/lobby/events/", [(b"last-event-id", str(first.pk).encode())])
    try:
        await stream.open()
        return missed, await read_events(stream)
    finally:
        await stream.close()


@override_settings(CHAT_HISTORY_LENGTH=3)
async def test_a_resumed_stream_pages_in_everything_it_missed(channel_layer):
    missed, events = await resumed_after_missing(8)
    assert [event.split(b"\n")[1] for event in events] == [b"id: %d" % m.pk for m in missed]


@override_settings(CHAT_HISTORY_LENGTH=3)
async def test_past_its_pages_a_resumed_stream_says_where_the_gap_starts(
    channel_layer, monkeypatch
):
    monkeypatch.setattr("chat.consumers.events.RESYNC_PAGES", 2)
    missed, events = await resumed_after_missing(8)
    assert len(events) == 7
    assert [event.split(b"\n")[1] for event in events[:6]] == [b"id: %d" % m.pk for m in missed[:6]]
    gap = events[6].decode()
    assert gap.startswith("event: gap\ndata: ")
    assert json.loads(gap.split("data: ", 1)[1]) == {
        "type": "gap",
        "room": "lobby",
        "after": missed[5].pk,
    }


@override_settings(CHAT_HISTORY_LENGTH=3)
async def test_a_new_stream_sends_one_page_and_no_gap(channel_layer):
    for n in range(5):
        await post("lobby", f"old {n}")
    stream = Stream("/chat/lobby/events/")
    try:
        await stream.open()
        events = await read_events(stream)
    finally:
        await stream.close()
    assert len(events) == 3
    assert all(event.startswith(b"event: message\n") for event in events)


async def test_a_bad_room_is_a_404_response(channel_layer):
    response = await HttpCommunicator(
        application, "GET", "/chat/a.b/events/", headers=[HOST]
    ).get_response(timeout=TIMEOUT)
    assert response["status"] == 404


@override_settings(CHAT_REQUIRE_LOGIN=True)
async def test_login_required_applies_to_the_stream(channel_layer):
    response = await HttpCommunicator(
        application, "GET", "/chat/lobby/events/", headers=[HOST]
    ).get_response(timeout=TIMEOUT)
    assert response["status"] == 403


async def test_plain_django_routes_still_answer_through_the_http_router():
    communicator = HttpCommunicator(
        application, "GET", "/healthz", headers=[(b"host", b"localhost")]
    )
    response = await communicator.get_response(timeout=TIMEOUT)
    await communicator.wait(timeout=TIMEOUT)  # let Django close the request body file
    assert response["status"] == 200


async def test_sse_event_format():
    assert sse_event(event="message", data='{"a":1}', event_id=7) == (
        b'event: message\nid: 7\ndata: {"a":1}\n\n'
    )
    assert sse_event(event="moderated", data="{}") == b"event: moderated\ndata: {}\n\n"


async def stream_start(headers: list[tuple[bytes, bytes]], **scope: object) -> dict:
    """The response start of GET /chat/lobby/events/ with these headers (replacing the
    Host), and the stream closed again."""
    stream = Stream("/chat/lobby/events/")
    stream.communicator.scope.update(scope)
    stream.communicator.scope["headers"] = headers
    try:
        return await stream.open()
    finally:
        await stream.close()


async def test_the_stream_refuses_a_host_the_pages_refuse(channel_layer):
    start = await stream_start([(b"host", b"attacker.example")])
    assert start["status"] == 400


@override_settings(
    SECURE_SSL_REDIRECT=True,
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    SECURE_HSTS_SECONDS=3600,
)
async def test_the_stream_redirects_to_https_and_carries_the_pages_headers(channel_layer):
    plain = await stream_start([HOST])
    assert plain["status"] == 301
    assert dict(plain["headers"])[b"location"] == b"https://localhost/chat/lobby/events/"
    secure = await stream_start([HOST, (b"x-forwarded-proto", b"https")])
    assert secure["status"] == 200
    headers = dict(secure["headers"])
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"strict-transport-security"] == b"max-age=3600"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"x-frame-options"] == b"DENY"
    assert headers[b"referrer-policy"] == b"same-origin"
    assert headers[b"cross-origin-opener-policy"] == b"same-origin"
    assert headers[b"content-security-policy"] == settings.CONTENT_SECURITY_POLICY.encode()
