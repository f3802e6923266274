"""The WebSocket origin check: an exact match on scheme, host and port.

Channels' ``AllowedHostsOriginValidator`` compares only the host with
``ALLOWED_HOSTS``, so ``http://`` where the site is ``https://``, or another port,
would pass; its ``OriginValidator`` checks a port only where the pattern names one,
so ``https://example.com`` lets ``https://example.com:8443`` through. Here the
``Origin`` header must equal one of ``TRUSTED_ORIGINS`` (the
``DJANGO_TRUSTED_ORIGINS`` environment variable, the same list that feeds
``CSRF_TRUSTED_ORIGINS``). With ``WEBSOCKET_ALLOW_LOCALHOST`` (development and
tests) any port on localhost and 127.0.0.1 is also accepted. A missing, empty or
``null`` origin is refused: browsers always send one; other clients must set it.
A refused handshake is closed before it is accepted: the client sees HTTP 403.
https://channels.readthedocs.io/en/stable/topics/security.html
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(origin: str) -> str | None:
    """``scheme://host:port`` in lower case with the port made explicit, or None."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}"


def origin_allowed(origin: str, trusted: list[str], *, allow_localhost: bool) -> bool:
    normalized = normalize_origin(origin)
    if normalized is None:
        return False
    if normalized in {normalize_origin(entry) for entry in trusted}:
        return True
    host = normalized.split("://", 1)[1].rsplit(":", 1)[0]
    return allow_localhost and host in LOCAL_HOSTS


class TrustedOriginValidator:
    """ASGI middleware: refuse a WebSocket whose Origin is not exactly trusted.

    ``__call__`` returns the inner application's coroutine rather than awaiting it,
    as ``realtime.lifetime.WebSocketLifetimeMiddleware`` does, and for the same
    reason."""

    _asgi_single_callable = True  # an ASGI 3 app, though __call__ is a plain def

    def __init__(self, application: Any) -> None:
        self.application = application

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        origins = [value for name, value in scope.get("headers", []) if name == b"origin"]
        origin = origins[0].decode("latin-1") if len(origins) == 1 else ""
        if scope["type"] == "websocket" and origin_allowed(
            origin, settings.TRUSTED_ORIGINS, allow_localhost=settings.WEBSOCKET_ALLOW_LOCALHOST
        ):
            return self.application(scope, receive, send)
        denier = WebsocketDenier()
        return denier(scope, receive, send)
