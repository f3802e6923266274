"""config/asgi.py: the WebSocket stack is the real-time layer's, at the settings."""

from __future__ import annotations

from django.conf import settings

from config.asgi import application
from realtime.lifetime import WebSocketLifetimeMiddleware


def test_websockets_are_closed_at_the_setting():
    outer = application.application_mapping["websocket"]
    assert isinstance(outer, WebSocketLifetimeMiddleware)
    assert outer.max_age == settings.WEBSOCKET_MAX_AGE
