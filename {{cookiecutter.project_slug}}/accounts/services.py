"""Writes of the accounts app: issuing and redeeming WebSocket tickets.

A ticket lets a client that cannot send the session cookie (a script, a mobile app)
open a WebSocket as a signed-in user: it asks ``POST /accounts/ticket/`` over an
authenticated HTTP session, then presents the ticket once, within seconds.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from accounts.models import WebSocketTicket


def ticket_digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode("utf-8")).hexdigest()


def ticket_issue(*, user: AbstractBaseUser) -> tuple[str, int]:
    """A new ticket for the user, and how many seconds it stays valid."""
    ttl = settings.WEBSOCKET_TICKET_TTL_SECONDS
    ticket = secrets.token_urlsafe(32)
    WebSocketTicket.objects.create(
        digest=ticket_digest(ticket),
        # Typing only: the caller's user is the user model, but request.user is typed
        # AbstractBaseUser, which django-stubs cannot narrow to it.
        user=user,  # type: ignore[misc]
        expires=timezone.now() + timedelta(seconds=ttl),
    )
    WebSocketTicket.objects.filter(expires__lt=timezone.now() - timedelta(hours=1)).delete()
    return ticket, ttl


def ticket_redeem(*, ticket: str) -> AbstractBaseUser | None:
    """The ticket's user if it is known, unexpired and unused; it is then used up.

    The update is one conditional statement, so two connections racing with the same
    ticket cannot both succeed.
    """
    if not ticket or len(ticket) > 100:
        return None
    now = timezone.now()
    tickets = WebSocketTicket.objects.filter(
        digest=ticket_digest(ticket), used__isnull=True, expires__gt=now
    )
    user_id = tickets.values_list("user_id", flat=True).first()
    if user_id is None or tickets.update(used=now) != 1:
        return None
    return get_user_model().objects.filter(pk=user_id, is_active=True).first()
