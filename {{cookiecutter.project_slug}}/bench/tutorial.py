"""The Channels tutorial's chat as published, the benchmark's baseline.

The consumer of the tutorial's part 3 (an ``AsyncWebsocketConsumer`` that joins a
room group, re-sends what it receives to the group, and JSON-encodes each event
for its client), routed the same way, so that ``bench.chatbench --target
tutorial`` measures the starting point this project's chat grew from. It stores
nothing, validates nothing and has no limits: do not deploy it.
https://channels.readthedocs.io/en/stable/tutorial/part_3.html

    daphne bench.tutorial:application   (with DJANGO_SETTINGS_MODULE=bench.settings)
"""

import json
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

# Set up Django before importing anything that imports models (the auth middleware).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402 - needs Django set up
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402


class TutorialChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, close_code):
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive(self, text_data):
        message = json.loads(text_data)["message"]
        await self.channel_layer.group_send(
            self.room_group_name, {"type": "chat.message", "message": message}
        )

    async def chat_message(self, event):
        await self.send(text_data=json.dumps({"message": event["message"]}))


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(
                URLRouter(
                    [re_path(r"ws/chat/(?P<room_name>\w+)/$", TutorialChatConsumer.as_asgi())]
                )
            )
        ),
    }
)
