"""Fixtures shared by every test module.

Consumer tests run the real ``config.asgi.application`` through Channels'
communicators, on the channel layer the settings choose (in-memory by default,
Redis when ``REDIS_URL`` is set).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from django.test import Client

from config.asgi import application

# The services tier: which tests run (marker ``services``), and the real processes
# they start.
pytest_plugins = ["chat.tests.servers"]

ORIGIN = (b"origin", b"http://localhost")
# Seconds join_chat waits for the handshake and for the history frame.
JOIN_TIMEOUT = 3

# Figures tests measure (inputs tried, origins refused, ...), printed after the run.
FIGURES: list[str] = []


def report_figure(line: str) -> None:
    FIGURES.append(line)


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's, plus: before the test database is dropped, close the
    connection that async tests' ORM calls left open on asgiref's shared thread
    (PostgreSQL refuses to drop a database someone is connected to)."""
    yield
    asyncio.run(sync_to_async(connections.close_all)())


@pytest_asyncio.fixture
async def channel_layer() -> AsyncIterator[object]:
    """The configured layer, emptied and closed after the test in the test's own loop."""
    channel_layers.backends.clear()
    layer = get_channel_layer()
    yield layer
    await layer.flush()
    channel_layers.backends.clear()


def session_cookie(user) -> tuple[bytes, bytes]:
    """A Cookie header carrying a fresh logged-in session for the user (sync code)."""
    client = Client()
    client.force_login(user)
    value = client.cookies[settings.SESSION_COOKIE_NAME].value
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={value}".encode())


@pytest.fixture
def make_user(django_user_model):
    def make(username: str = "ann", password: str = "correct horse battery"):  # noqa: S107 - test fixture
        return django_user_model.objects.create_user(username=username, password=password)

    return make


async def join_chat(
    make_communicator: Callable[..., WebsocketCommunicator],
    path: str = "/ws/chat/lobby/",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> WebsocketCommunicator:
    """A communicator connected to a chat room, past the room's history frame."""
    communicator = make_communicator(path, headers=headers)
    connected, code = await communicator.connect(timeout=JOIN_TIMEOUT)
    assert connected, code
    assert (await communicator.receive_json_from(timeout=JOIN_TIMEOUT))["type"] == "history"
    return communicator


@pytest.fixture
def make_communicator() -> Callable[..., WebsocketCommunicator]:
    """Build a communicator on the real ASGI app, with an allowed Origin by default."""

    def make(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
        return WebsocketCommunicator(application, path, headers=headers or [ORIGIN])

    return make
