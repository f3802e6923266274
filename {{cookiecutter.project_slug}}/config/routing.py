"""Every app's WebSocket routes and worker channels, gathered in one place.

Each app exposes ``routing.websocket_urlpatterns``; add yours to the list below.
A final catch-all refuses unknown paths at the handshake (HTTP 403) instead of
raising inside the router.
https://channels.readthedocs.io/en/stable/topics/routing.html
"""

from django.urls import re_path

from chat import routing as chat_routing
from chat.consumers.refuse import RefuseConsumer

websocket_urlpatterns = [
    *chat_routing.websocket_urlpatterns,
    re_path(r"", RefuseConsumer.as_asgi()),
]

channel_routes = {
    **chat_routing.channel_routes,
}
