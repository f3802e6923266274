"""WebSocket routes and worker channels of the chat app, gathered by ``config/routing.py``.

The room segment is matched loosely here and validated in the consumer, so that a
bad name is refused with its own close code rather than falling through to "not found".
https://channels.readthedocs.io/en/stable/topics/routing.html
"""

from django.urls import re_path

from chat import workers
from chat.consumers.chat import ChatConsumer
from chat.services import WORKER_CHANNEL

websocket_urlpatterns = [
    re_path(r"^ws/chat/(?P<room_name>[^/]+)/$", ChatConsumer.as_asgi()),
]

# Worker channels (``manage.py runworker chat-worker``) and their consumers.
channel_routes = {
    WORKER_CHANNEL: workers.ModerationConsumer.as_asgi(),
}
