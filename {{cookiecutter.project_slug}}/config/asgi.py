"""The ASGI application: HTTP to Django, WebSockets to the apps' consumers, and
channel-layer messages to background workers.

Servers load ``config.asgi:application`` (uvicorn in production, daphne under
``runserver``); workers start
with ``manage.py runworker <channel>``.
https://docs.djangoproject.com/en/5.2/howto/deployment/asgi/
https://channels.readthedocs.io/en/stable/topics/routing.html
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

# Set up Django (settings, app registry) before importing anything that imports
# models: the consumers and routing modules below do.
django_asgi_app = get_asgi_application()

# Imported after setup (E402): these import models.
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from accounts.services import ticket_redeem  # noqa: E402
from config.routing import channel_routes, http_urlpatterns, websocket_urlpatterns  # noqa: E402
from realtime.auth import TicketAuthMiddleware, WebSocketAuthMiddlewareStack  # noqa: E402
from realtime.lifetime import WebSocketLifetimeMiddleware  # noqa: E402
from realtime.origins import TrustedOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": URLRouter([*http_urlpatterns, re_path(r"", django_asgi_app)]),
        # The ticket is redeemed before the origin check, so that a refused use uses it up.
        "websocket": WebSocketLifetimeMiddleware(
            TicketAuthMiddleware(
                TrustedOriginValidator(
                    WebSocketAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
                ),
                redeem=ticket_redeem,
            )
        ),
        "channel": ChannelNameRouter(channel_routes),
    }
)
