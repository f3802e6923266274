"""Signal receivers of the chat app, connected in ``ChatConfig.ready``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from chat import services


@receiver(user_logged_out, dispatch_uid="chat.close_sockets_on_logout")
def close_sockets_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Logging out over HTTP closes that user's open WebSockets, in every process."""
    if user is not None and user.pk is not None:
        services.user_sockets_close(user_id=user.pk)
