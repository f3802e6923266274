"""Signal receivers of the chat app, connected in ``ChatConfig.ready``.

A user's sockets close, in every process, when the user logs out over HTTP, changes
password or is deactivated: through the user's group (``services.user_sockets_close``).
That is best effort: with the channel layer down, logging out still ends the session,
and each socket's own session check (``realtime/guards.py``,
``WEBSOCKET_SESSION_CHECK_SECONDS``) closes it once it no longer signs its user in.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from chat import services

logger = logging.getLogger(__name__)

# The user fields whose change ends the user's sessions (the password) or sign-in.
REVOKING_FIELDS = ("password", "is_active")


def close_user_sockets(user_id: int) -> None:
    """Best effort: a failing layer is logged, never raised into a logout or a save."""
    try:
        services.user_sockets_close(user_id=user_id)
    except Exception as error:  # noqa: BLE001 - the session checks close them later
        logger.warning("could not close the sockets of user %s now: %r", user_id, error)


@receiver(user_logged_out, dispatch_uid="chat.close_sockets_on_logout")
def close_sockets_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Logging out over HTTP closes that user's open WebSockets, in every process."""
    if user is not None and user.pk is not None:
        close_user_sockets(user.pk)


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="chat.user_revoking_change")
def note_revoking_change(
    sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any
) -> None:
    """Note, before a user is saved, whether its password or active flag changes."""
    instance._chat_revokes = False
    if instance.pk is None:
        return
    if update_fields is not None and not set(update_fields) & set(REVOKING_FIELDS):
        return  # a save of other fields only: each login's last_login, say
    before = sender._default_manager.filter(pk=instance.pk).values(*REVOKING_FIELDS).first()
    if before is None:
        return
    instance._chat_revokes = before["password"] != instance.password or (
        before["is_active"] and not instance.is_active
    )


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="chat.user_revoked")
def close_sockets_on_revoking_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A password change or a deactivation closes the user's sockets once saved."""
    if getattr(instance, "_chat_revokes", False):
        user_id = instance.pk
        transaction.on_commit(lambda: close_user_sockets(user_id))
