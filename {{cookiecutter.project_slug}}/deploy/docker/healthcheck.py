"""The container health check: ask the server in this container for ``/healthz``.

Run by the Dockerfile's ``HEALTHCHECK`` (and so by compose's ``service_healthy``
conditions). It sends what nginx would send in production: the site's first allowed
host name (the production settings refuse any other ``Host``) and
``X-Forwarded-Proto: https`` (so the HTTPS redirect does not answer instead).
Exit status 0 means healthy. Standard library only.

    python deploy/docker/healthcheck.py [path] [port]

https://docs.docker.com/reference/dockerfile/#healthcheck
"""

from __future__ import annotations

import http.client
import os
import sys

DEFAULT_PATH = "/healthz"
DEFAULT_PORT = 8000
TIMEOUT_SECONDS = 4


def host_header() -> str:
    """The first concrete host in DJANGO_ALLOWED_HOSTS ("localhost" when unset)."""
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(","):
        host = host.strip().lstrip(".")
        if host and host != "*":
            return host
    return "localhost"


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else DEFAULT_PATH
    port = int(argv[2]) if len(argv) > 2 else DEFAULT_PORT
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_SECONDS)
    try:
        connection.request(
            "GET", path, headers={"Host": host_header(), "X-Forwarded-Proto": "https"}
        )
        status = connection.getresponse().status
    except OSError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"unhealthy: {path} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
