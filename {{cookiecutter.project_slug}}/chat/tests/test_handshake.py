"""Refusals as a real client sees them: the server turns a close before accept() into an
HTTP 403 answer to the handshake, never a 500 or a traceback."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from realtime.testing.servers import FRAME_TIMEOUT, AsgiServer, running, server_env


@pytest.fixture(scope="module")
def server(servers_database, tmp_path_factory):
    env = server_env(database_url=servers_database, redis_url="")
    with running(AsgiServer("web", env, tmp_path_factory.mktemp("handshake"))) as (web,):
        yield web


def handshake_status(server: AsgiServer, path: str, origin: str | None = None) -> int:
    try:
        with connect(
            server.ws_url(path),
            origin=Origin(origin or server.origin),
            open_timeout=FRAME_TIMEOUT,
            close_timeout=FRAME_TIMEOUT,
        ) as ws:
            ws.recv(timeout=FRAME_TIMEOUT)  # the history frame
            return 101
    except InvalidStatus as error:
        return error.response.status_code


@pytest.mark.parametrize(
    "path",
    ["/ws/nowhere/", "/ws/chat/", "/ws/chat/a.b/", "/ws/chat/caf%C3%A9/", "/ws/chat/x/extra/"],
)
def test_unknown_paths_and_bad_rooms_get_403(server, path):
    assert handshake_status(server, path) == 403


def test_a_foreign_origin_gets_403(server):
    assert handshake_status(server, "/ws/chat/lobby/", origin="http://evil.test") == 403


def test_a_good_room_is_accepted_and_nothing_was_logged_as_an_error(server):
    assert handshake_status(server, "/ws/chat/lobby/") == 101
    log = server.log()
    assert "Traceback" not in log
    assert " 500 " not in log
