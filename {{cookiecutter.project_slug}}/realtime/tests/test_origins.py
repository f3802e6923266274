"""The WebSocket origin check: exact scheme, host and port, one list for CSRF and sockets."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import override_settings

from realtime.origins import normalize_origin, origin_allowed
from realtime.testing import report_figure
from realtime.tests.app import application

TRUSTED = ["https://chat.example.com"]
HOSTILE = [
    "https://evil.test",  # another host
    "http://chat.example.com",  # http where https is configured
    "https://chat.example.com:8443",  # another port
    "https://chat.example.com.evil.test",  # look-alike suffix
    "https://evilchat.example.com",  # look-alike prefix
    "https://example.com",  # the parent domain
    "null",  # sandboxed iframes, file: pages
    "",  # empty
    None,  # no Origin header at all
    "https://chat.example.com/path",  # not an origin
    "https://user@chat.example.com",  # credentials in the origin
    "chat.example.com",  # no scheme
    "ws://chat.example.com",  # not a web page origin
    "https://chat.example.com:99999",  # invalid port
]


@pytest.mark.parametrize(
    ("origin", "normalized"),
    [
        ("https://Chat.Example.com", "https://chat.example.com:443"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("https://chat.example.com:443", "https://chat.example.com:443"),
        ("null", None),
        ("ftp://x.test", None),
    ],
)
def test_normalize(origin, normalized):
    assert normalize_origin(origin) == normalized


def test_only_the_exact_origin_passes():
    assert origin_allowed("https://chat.example.com", TRUSTED, allow_localhost=False)
    assert origin_allowed("https://chat.example.com:443", TRUSTED, allow_localhost=False)
    assert not origin_allowed("http://localhost:8000", TRUSTED, allow_localhost=False)
    assert origin_allowed("http://localhost:8000", TRUSTED, allow_localhost=True)
    assert origin_allowed("http://127.0.0.1:51234", [], allow_localhost=True)


def test_one_list_feeds_csrf_and_websockets():
    assert settings.CSRF_TRUSTED_ORIGINS is settings.TRUSTED_ORIGINS


def make_communicator(path, headers):
    return WebsocketCommunicator(application, path, headers=headers)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_hostile_origins_are_refused_at_the_handshake(channel_layer):
    refused = 0
    with override_settings(TRUSTED_ORIGINS=TRUSTED, WEBSOCKET_ALLOW_LOCALHOST=False):
        for origin in HOSTILE:
            headers = [] if origin is None else [(b"origin", origin.encode())]
            communicator = make_communicator("/ws/tests/lobby/", headers=headers or [(b"x", b"y")])
            connected, _ = await communicator.connect(timeout=3)
            await communicator.disconnect()
            assert not connected, origin
            refused += 1
        good = make_communicator("/ws/tests/lobby/", headers=[(b"origin", TRUSTED[0].encode())])
        connected, _ = await good.connect(timeout=3)
        await good.disconnect()
    assert connected
    report_figure(f"origins: {refused} of {len(HOSTILE)} hostile origins refused; trusted accepted")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_two_origin_headers_are_refused(channel_layer):
    headers = [(b"origin", b"http://localhost"), (b"origin", b"https://evil.test")]
    communicator = make_communicator("/ws/tests/lobby/", headers=headers)
    connected, _ = await communicator.connect(timeout=3)
    await communicator.disconnect()
    assert not connected
