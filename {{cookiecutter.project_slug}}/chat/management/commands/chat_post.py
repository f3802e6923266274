"""``manage.py chat_post <room> <text>``: post a message into a room from outside any
consumer (cron jobs, deploy notices), through the same service the views use."""

from __future__ import annotations

from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.rooms import InvalidRoomName
from chat.services import message_post


class Command(BaseCommand):
    help = "Post a message into a chat room; members connected right now receive it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("room", help="room name, e.g. lobby")
        parser.add_argument("text", help="the message text")
        parser.add_argument("--as", dest="username", help="post as this user (default: anonymous)")

    def handle(
        self, *args: Any, room: str, text: str, username: str | None, **options: Any
    ) -> None:
        author = None
        if username:
            author = get_user_model().objects.filter(username=username).first()
            if author is None:
                raise CommandError(f"No user named {username!r}.")
        if not text.strip():
            raise CommandError("The message text is empty.")
        try:
            message = message_post(room_name=room, author=author, text=text.strip())
        except InvalidRoomName as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"Posted message {message.pk} to {room}.")
        if isinstance(get_channel_layer(), InMemoryChannelLayer):
            # That layer lives in this process: the server's sockets cannot hear it.
            self.stdout.write(
                "Stored, but not delivered live: the in-memory channel layer reaches this "
                "process only. Members see it in the room's history; set REDIS_URL to "
                "deliver to connected members."
            )
