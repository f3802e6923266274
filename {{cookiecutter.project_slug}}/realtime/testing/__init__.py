"""The real-time layer's test helpers, as a pytest plugin.

Load it in the root ``conftest.py`` with ``pytest_plugins = ["realtime.testing"]``.
It gives every test module:

- after every test, the event loops' own database connections closed
  (``realtime.pginserts``: the test's loop is gone, and each test opens its own);
- the fixtures ``channel_layer`` (the configured layer, emptied and closed after the
  test in the test's own loop), ``make_communicator`` (a ``WebsocketCommunicator``
  on the project's ASGI application, ``settings.ASGI_APPLICATION``, with an allowed
  ``Origin`` by default) and ``make_user``;
- ``ORIGIN``, ``session_cookie(user)`` (a Cookie header for a signed-in session) and
  ``report_figure(line)`` (figures printed after the run), to import;
- the services tier, from ``realtime.testing.servers``: the ``services`` marker's
  skips, the real server, worker and Redis processes, and ``servers_database``.

Consumer tests run the real application through Channels' communicators, on the
channel layer the settings choose (in-memory by default, Redis when ``REDIS_URL`` is
set).
https://channels.readthedocs.io/en/stable/topics/testing.html
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
from django.utils.module_loading import import_string

from realtime import pginserts

# The services tier: which tests run (marker ``services``), and the real processes
# they start.
pytest_plugins = ["realtime.testing.servers"]

ORIGIN = (b"origin", b"http://localhost")

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
    pginserts.close_all()


@pytest.fixture(autouse=True)
def _loop_connections_closed():
    """The connections the test's event loops opened for INSERTs, closed after it."""
    yield
    pginserts.close_all()


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


@pytest.fixture
def make_communicator() -> Callable[..., WebsocketCommunicator]:
    """Build a communicator on the real ASGI app, with an allowed Origin by default."""
    application = import_string(settings.ASGI_APPLICATION)

    def make(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
        return WebsocketCommunicator(application, path, headers=headers or [ORIGIN])

    return make
