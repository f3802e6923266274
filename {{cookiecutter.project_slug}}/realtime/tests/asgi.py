"""The real-time layer's test application (``realtime/tests/app.py``) as a server
loads it, for the services tier's real processes (``servers.py``): Django's HTTP
application for the health probes, and the test consumers for WebSockets."""

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

# Django is set up before the test application's modules, which import models.
http = get_asgi_application()

from realtime.tests.app import application as websocket  # noqa: E402

application = ProtocolTypeRouter({"http": http, "websocket": websocket})
