"""Django's page checks for HTTP consumers: the host check, the HTTPS redirect and
the security headers.

An HTTP route served by a consumer (a server-sent event stream) is routed before
Django, so Django's middleware never sees it: without this it would answer any
``Host`` over plain HTTP with none of the pages' headers. ``PageChecksMixin``, put
before ``AsyncHttpConsumer``, answers a ``Host`` outside ``ALLOWED_HOSTS`` with 400,
and runs the request through the middleware named in ``HTTP_CONSUMER_MIDDLEWARE``
(those of ``MIDDLEWARE`` that only check a request and set headers:
``SecurityMiddleware``'s HTTPS redirect and HSTS, ``XFrameOptionsMiddleware``, the
project's CSP): a response of theirs other than 200 (the redirect) is sent instead,
and the headers they set are added to the consumer's response.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

# Where Django itself logs a refused host.
logger = logging.getLogger("django.security.DisallowedHost")


def page_checks(scope: dict[str, Any]) -> tuple[HttpResponse | None, list[tuple[bytes, bytes]]]:
    """(the response to send instead, or None; the headers to add to the consumer's)."""
    request = ASGIRequest(scope, io.BytesIO())
    try:
        request.get_host()
    except DisallowedHost as error:
        logger.warning("%s", error)
        return HttpResponse(b"Bad Request", status=400, content_type="text/plain"), []

    def respond(_request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    handler: Any = respond
    for path in reversed(settings.HTTP_CONSUMER_MIDDLEWARE):
        handler = import_string(path)(handler)
    response = handler(request)
    if response.status_code != 200:
        return response, []
    return None, [header for header in asgi_headers(response) if header[0] != b"content-type"]


def asgi_headers(response: HttpResponse) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.items()
    ]


async def send_response(send: Any, response: HttpResponse) -> None:
    headers = asgi_headers(response)
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})


class PageChecksMixin:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            answer, extra = page_checks(scope)
            if answer is not None:
                await send_response(send, answer)
                return
            send = with_headers(send, extra)
        await super().__call__(scope, receive, send)  # type: ignore[misc]


def with_headers(send: Any, extra: list[tuple[bytes, bytes]]) -> Any:
    """``send``, adding ``extra`` to the response's start where it lacks the header."""

    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            added = [header for header in extra if header[0] not in present]
            message = {**message, "headers": [*message.get("headers", []), *added]}
        await send(message)

    return sending
