from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from chat.rooms import ROOM_NAME_MAX_LENGTH, ROOM_NAME_RE, room_group_name


class Room(models.Model):
    name = models.CharField(
        max_length=ROOM_NAME_MAX_LENGTH,
        unique=True,
        validators=[RegexValidator(ROOM_NAME_RE)],
    )
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def group_name(self) -> str:
        return room_group_name(self.name)


class Message(models.Model):
    room = models.ForeignKey(Room, related_name="messages", on_delete=models.CASCADE)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        related_name="chat_messages",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
    )
    # Kept beside the foreign key: anonymous senders have no user, and a deleted
    # user's messages keep the name they were sent under.
    author_name = models.CharField(max_length=150)
    text = models.TextField()
    created = models.DateTimeField(default=timezone.now)
    hidden = models.BooleanField(
        default=False, help_text="Hidden by moderation; not sent to clients."
    )
    # Empty until the worker has checked the message: the database, not the channel
    # layer, holds the moderation backlog (docs/worker.md).
    moderated_at = models.DateTimeField(null=True, blank=True)
    # Who sent it, for telling a client's retry from a new message: "user:<id>",
    # "session:<hash of the session key>", or empty (an anonymous sender with no session).
    sender_key = models.CharField(max_length=80, blank=True, default="")
    # The id the sending client gave the message (empty if none); one per sender.
    client_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["room", "id"], name="chat_message_room_id"),
            # The worker's backlog query; only the unmoderated rows are indexed.
            models.Index(
                fields=["id"],
                name="chat_message_unmoderated",
                condition=models.Q(moderated_at__isnull=True),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["sender_key", "client_id"],
                name="chat_message_client_id_once",
                condition=~models.Q(client_id=""),
            )
        ]

    def __str__(self) -> str:
        return f"{self.author_name}: {self.text[:40]}"
