"""Every app's WebSocket routes, streaming HTTP routes and worker channels, gathered
in one place.

Each app exposes ``routing.websocket_urlpatterns`` (and, if it streams over HTTP,
``routing.http_urlpatterns``); add yours to the lists below. HTTP paths no consumer
claims go to Django (``config/asgi.py``).
A final catch-all refuses unknown paths at the handshake (HTTP 403) instead of
raising inside the router.
https://channels.readthedocs.io/en/stable/topics/routing.html
"""

from django.urls import URLPattern, re_path

from chat import routing as chat_routing
from realtime.refuse import RefuseConsumer

websocket_urlpatterns: list[URLPattern] = [
    *chat_routing.websocket_urlpatterns,
    re_path(r"", RefuseConsumer.as_asgi()),
]

http_urlpatterns: list[URLPattern] = [
    *chat_routing.http_urlpatterns,
]

channel_routes: dict[str, object] = {
    **chat_routing.channel_routes,
}
