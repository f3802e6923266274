"""Logging out on a real server whose Redis is down (a private redis-server, never
the shared one): the answer is the usual redirect, the session is gone, and once
Redis is back the old cookie signs no one in."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.parse
import urllib.request

import pytest
from django.conf import settings

from chat.tests.test_socket_caps import sign_in
from realtime.testing import report_figure
from realtime.testing.servers import (
    HTTP_TIMEOUT,
    AsgiServer,
    RedisServer,
    manage,
    running,
    server_env,
)

pytestmark = pytest.mark.services("REDIS_URL")

SESSION_EXISTS = """
from django.contrib.sessions.models import Session
print("EXISTS", Session.objects.filter(session_key={key!r}).exists())
"""


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def logout(server: AsgiServer, session_key: str) -> int:
    """POST the logout form as a browser would (session and CSRF cookies, the token in
    the form); the status."""
    token = secrets.token_hex(16)  # a CSRF cookie of the client's own, as Django allows
    cookies = f"{settings.SESSION_COOKIE_NAME}={session_key}; {settings.CSRF_COOKIE_NAME}={token}"
    request = urllib.request.Request(  # noqa: S310 - loopback http
        server.base_url + "/accounts/logout/",
        data=urllib.parse.urlencode({"csrfmiddlewaretoken": token}).encode(),
        headers={"Cookie": cookies},
    )
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_logout_with_redis_down_ends_the_session(servers_database, tmp_path):
    redis_server = RedisServer(tmp_path)
    with running(redis_server):
        env = server_env(database_url=servers_database, redis_url=redis_server.url)
        _, session_key = sign_in(env)
        with running(AsgiServer("web", env, tmp_path)) as (web,):
            redis_server.stop()
            assert logout(web, session_key) == 302, web.log()
            output = manage(["shell", "-c", SESSION_EXISTS.format(key=session_key)], env)
            assert "EXISTS False" in output
            assert "could not close the sockets of user" in web.log()
    report_figure("logout with Redis down on a real server: 302, session deleted (before: 500)")
