"""HTTP middleware of the project: the Content Security Policy header.

Django 5.2 has no built-in CSP; this sets the ``CONTENT_SECURITY_POLICY`` setting as
the header on every response that has none. The pages load scripts and styles only
from the site itself (no inline script), which the policy enforces in the browser.
https://developer.mozilla.org/docs/Web/HTTP/CSP
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if settings.CONTENT_SECURITY_POLICY and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = settings.CONTENT_SECURITY_POLICY
        return response
