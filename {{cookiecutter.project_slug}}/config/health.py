"""Health endpoints for load balancers and container supervisors.

``/healthz``: the process answers (liveness). ``/readyz``: the database answers and
a message makes a round trip through the channel layer, each within a short
timeout; 503 otherwise (readiness).
A load balancer or supervisor probes by address, over plain HTTP: the first
middleware (``HealthProbeMiddleware``) answers these two paths before the host check
and the HTTPS redirect, so ``ALLOWED_HOSTS`` stays strict for everything else.
https://channels.readthedocs.io/en/stable/topics/channel_layers.html
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


async def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@database_sync_to_async
def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


# One readiness channel per process and layer, reused: a new channel per check would
# leave a subscription behind on every call with the Pub/Sub layer. A lock keeps two
# concurrent checks from reading each other's ping.
_readiness: dict[str, Any] = {"layer": None, "channel": None, "lock": None}


async def check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    if _readiness["layer"] is not layer:
        _readiness.update(layer=layer, channel=await layer.new_channel(), lock=asyncio.Lock())
    token = secrets.token_hex(8)
    async with _readiness["lock"]:
        await layer.send(_readiness["channel"], {"type": "readyz.ping", "token": token})
        # A ping left over from a check that timed out may arrive first: skip it.
        while (await layer.receive(_readiness["channel"])).get("token") != token:
            pass


async def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": check_database, "channel_layer": check_channel_layer}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            logger.warning("readiness check %s failed: %r", name, error)
            results[name] = "fail"
        else:
            results[name] = "ok"
    ready = all(value == "ok" for value in results.values())
    return JsonResponse(
        {"status": "ok" if ready else "fail", "checks": results}, status=200 if ready else 503
    )


Probe = Callable[[HttpRequest], Awaitable[JsonResponse]]
PROBES: dict[str, Probe] = {
    "/healthz": healthz,
    "/readyz": readyz,
}


class HealthProbeMiddleware:
    """Answers GET and HEAD on the probe paths whatever the Host header; any other
    request goes on through the middleware that validates it."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def probe(self, request: HttpRequest) -> Probe | None:
        if request.method not in ("GET", "HEAD"):
            return None
        return PROBES.get(request.path_info)

    def __call__(self, request: HttpRequest) -> Any:
        probe = self.probe(request)
        if self.is_async:
            return probe(request) if probe else self.get_response(request)
        return async_to_sync(probe)(request) if probe else self.get_response(request)
