"""Tickets leak nowhere: one presented from a refused origin is used up, and one in
the query string never reaches the server's access log (``realtime/logredact.py``)."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from websockets.exceptions import InvalidStatus

from accounts.services import ticket_issue
from config.asgi import application
from realtime.closecodes import CLOSE_BAD_TICKET
from realtime.logredact import RedactTicketFilter
from realtime.testing import ORIGIN, report_figure
from realtime.testing.servers import AsgiServer, running, server_env, websocket

TIMEOUT = 3


async def handshake(query: str, origin: tuple[bytes, bytes]):
    communicator = WebsocketCommunicator(application, f"/ws/chat/lobby/{query}", headers=[origin])
    connected, code = await communicator.connect(timeout=TIMEOUT)
    await communicator.disconnect()
    return connected, code


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_ticket_refused_for_its_origin_is_used_up(channel_layer, make_user):
    user = await database_sync_to_async(make_user)("ann")
    ticket, _ = await database_sync_to_async(ticket_issue)(user=user)
    connected, _ = await handshake(f"?ticket={ticket}", (b"origin", b"https://attacker.example"))
    assert not connected
    # The same ticket from a trusted origin: already used.
    connected, code = await handshake(f"?ticket={ticket}", ORIGIN)
    assert (connected, code) == (False, CLOSE_BAD_TICKET)
    report_figure("ticket refused for its origin: replayed from a trusted one, refused 4403")


def test_the_filter_redacts_the_ticket_and_nothing_else():
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "WebSocket %s" %d',
        ("127.0.0.1:5000", "/ws/chat/lobby/?a=1&ticket=SECRET-value_1&b=2", 403), None,
    )  # fmt: skip
    assert RedactTicketFilter().filter(record)
    assert record.getMessage() == (
        '127.0.0.1:5000 - "WebSocket /ws/chat/lobby/?a=1&ticket=[redacted]&b=2" 403'
    )


def test_the_access_log_is_filtered_in_logging():
    loggers = cast("dict[str, Any]", settings.LOGGING)["loggers"]
    assert loggers["uvicorn.access"] == {"filters": ["redact_ticket"], "propagate": True}
    assert loggers["uvicorn.error"] == {"filters": ["redact_ticket"]}  # WebSocket lines


@pytest.mark.services("REDIS_URL")
def test_the_servers_access_log_never_holds_a_ticket(servers_database, tmp_path):
    """uvicorn as the Procfile runs it: a WebSocket with a ticket in its query string
    (refused or not, the line is written) is logged with the value redacted."""
    env = server_env(database_url=servers_database, redis_url=settings.REDIS_URL)
    secret = "tkt-" + "q" * 40
    with running(AsgiServer("web", env, tmp_path)) as (web,):
        for path in (f"/ws/chat/lobby/?ticket={secret}", f"/ws/chat/lobby/?x=1&ticket={secret}"):
            with pytest.raises(InvalidStatus), websocket(web, path):
                pass  # a made-up ticket: refused at the handshake, and logged
        assert web.get("/healthz?ticket=" + secret)[0] == 200
        log = web.log(tail=200_000)
    assert secret not in log
    assert "/ws/chat/lobby/?ticket=[redacted]" in log  # the access log is on, filtered
    assert "/healthz?ticket=[redacted]" in log
    report_figure("access log: 0 ticket values in uvicorn's log (before: every ?ticket= logged)")
