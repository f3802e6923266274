from django.conf import settings
from django.db import models


class WebSocketTicket(models.Model):
    """A short-lived, single-use ticket a non-browser client presents when it opens a
    WebSocket. Only a hash of the ticket is stored; the ticket itself is shown once."""

    digest = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, related_name="websocket_tickets", on_delete=models.CASCADE
    )
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(db_index=True)
    used = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"ticket for {self.user} until {self.expires:%Y-%m-%d %H:%M:%S}"
