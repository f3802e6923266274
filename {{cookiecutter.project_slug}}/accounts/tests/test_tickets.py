"""WebSocket tickets for non-browser clients: issued over an authenticated session,
redeemed once, within their lifetime, through the real-time layer's
TicketAuthMiddleware with this app's ticket_redeem (as config/asgi.py wires it)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import WebSocketTicket
from accounts.services import ticket_digest, ticket_issue, ticket_redeem
from realtime.auth import TicketAuthMiddleware, WebSocketAuthMiddlewareStack
from realtime.closecodes import CLOSE_BAD_TICKET
from realtime.testing import ORIGIN
from realtime.tests.app import routes

# The WebSocket stack of config/asgi.py, redeeming with this app's ticket_redeem, in
# front of the real-time layer's test consumer (which says hello with the user's name).
APPLICATION = WebSocketAuthMiddlewareStack(TicketAuthMiddleware(routes, redeem=ticket_redeem))

TIMEOUT = 3


@pytest.mark.django_db
def test_the_endpoint_issues_a_ticket_to_a_signed_in_session(make_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("ann"))
    client.get(reverse("login"))  # sets the CSRF cookie, as a browser page load does
    token = client.cookies["csrftoken"].value
    response = client.post(reverse("websocket-ticket"), HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201
    body = response.json()
    assert len(body["ticket"]) >= 40
    assert body["expires_in"] == 30
    stored = WebSocketTicket.objects.get()
    assert stored.digest == ticket_digest(body["ticket"])
    assert body["ticket"] not in stored.digest


@pytest.mark.django_db
def test_the_endpoint_refuses_anonymous_get_and_cross_site_requests(make_user):
    assert Client().post(reverse("websocket-ticket")).status_code == 403
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("ann"))
    assert client.get(reverse("websocket-ticket")).status_code == 405
    assert client.post(reverse("websocket-ticket")).status_code == 403  # no CSRF token
    assert not WebSocketTicket.objects.exists()


@pytest.mark.django_db
def test_redeem_rules(make_user):
    user = make_user("ann")
    ticket, _ = ticket_issue(user=user)
    assert ticket_redeem(ticket="forged-" + ticket[7:]) is None
    assert ticket_redeem(ticket="") is None
    assert ticket_redeem(ticket="x" * 500) is None
    assert ticket_redeem(ticket=ticket) == user
    assert ticket_redeem(ticket=ticket) is None  # single use
    expired, _ = ticket_issue(user=user)
    WebSocketTicket.objects.filter(digest=ticket_digest(expired)).update(
        expires=timezone.now() - timedelta(seconds=1)
    )
    assert ticket_redeem(ticket=expired) is None
    inactive, _ = ticket_issue(user=user)
    user.is_active = False
    user.save()
    assert ticket_redeem(ticket=inactive) is None


async def open_socket(*, query="", headers=()):
    communicator = WebsocketCommunicator(
        APPLICATION, f"/ws/tests/tickets/{query}", headers=[ORIGIN, *headers]
    )
    connected, code = await communicator.connect(timeout=TIMEOUT)
    return communicator, connected, code


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("presentation", ["query", "header"])
async def test_a_valid_ticket_signs_the_socket_in(channel_layer, make_user, presentation):
    user = await database_sync_to_async(make_user)("ann")
    ticket, _ = await database_sync_to_async(ticket_issue)(user=user)
    if presentation == "query":
        communicator, connected, _ = await open_socket(query=f"?ticket={ticket}")
    else:
        header = (b"authorization", f"Ticket {ticket}".encode())
        communicator, connected, _ = await open_socket(headers=[header])
    try:
        assert connected
        hello = await communicator.receive_json_from(timeout=TIMEOUT)
        assert hello == {"type": "hello", "user": "ann"}
    finally:
        await communicator.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["expired", "reused", "forged"])
async def test_a_bad_ticket_is_refused_at_the_handshake(channel_layer, make_user, kind):
    user = await database_sync_to_async(make_user)("ann")
    ticket, _ = await database_sync_to_async(ticket_issue)(user=user)
    if kind == "expired":
        await WebSocketTicket.objects.filter(digest=ticket_digest(ticket)).aupdate(
            expires=timezone.now() - timedelta(seconds=1)
        )
    elif kind == "reused":
        first, connected, _ = await open_socket(query=f"?ticket={ticket}")
        assert connected
        await first.disconnect()
    else:
        ticket = ticket[:-4] + "AAAA"
    communicator, connected, code = await open_socket(query=f"?ticket={ticket}")
    assert not connected
    assert code == CLOSE_BAD_TICKET
    await communicator.disconnect()
