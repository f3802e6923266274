"""WebSocket routes and worker channels of the chat app, gathered by ``config/routing.py``.

The room segment is matched loosely here and validated in the consumer, so that a
bad name is refused with its own close code rather than falling through to "not found".
https://channels.readthedocs.io/en/stable/topics/routing.html
"""

from channels.auth import AuthMiddlewareStack
from django.urls import re_path

from chat import workers
from chat.consumers.chat import ChatConsumer
from chat.consumers.events import RoomEventsConsumer
from chat.consumers.rooms_json import RoomsJsonConsumer
from chat.consumers.sync_chat import SyncChatConsumer
from chat.services import WORKER_CHANNEL

websocket_urlpatterns = [
    re_path(r"^ws/chat/(?P<room_name>[^/]+)/$", ChatConsumer.as_asgi()),
    re_path(r"^ws/chat-sync/(?P<room_name>[^/]+)/$", SyncChatConsumer.as_asgi()),
    re_path(r"^ws/rooms/$", RoomsJsonConsumer.as_asgi()),
]

# HTTP routes served by consumers rather than Django views (streaming responses).
# Each wraps its own AuthMiddlewareStack, so plain Django requests skip the lookup.
http_urlpatterns = [
    re_path(
        r"^chat/(?P<room_name>[^/]+)/events/$",
        AuthMiddlewareStack(RoomEventsConsumer.as_asgi()),
    ),
]

# Worker channels (``manage.py runworker chat-worker``) and their consumers.
channel_routes = {
    WORKER_CHANNEL: workers.ModerationConsumer.as_asgi(),
}
