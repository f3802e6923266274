"""The template suite's tiers: what each needs from this machine, whether it is here,
and how to provide it when it is not.

Tests skip with ``Tier.skip_unless_available()``; ``conftest.py`` prints every tier's
state at the end of a run, and points the services tier at PostgreSQL and Redis when
they answer on their default local ports (as ``.ci/run`` does).
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

# The machine's services, on their default local ports: (variable, URL, port).
DEFAULT_SERVICES = (
    ("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres", 5432),
    ("TEST_REDIS_URL", "redis://127.0.0.1:6379/0", 6379),
)
BROWSER = (Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver"))


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def use_default_services(environ: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """Set each unset TEST_* service variable whose service answers on its default
    local port; return the variables set."""
    found = []
    for variable, url, port in DEFAULT_SERVICES:
        if not environ.get(variable) and port_answers(port):
            environ[variable] = url
            found.append(variable)
    return found


@dataclass(frozen=True)
class Tier:
    name: str
    # None when the tier can run; else what is missing.
    missing: Callable[[], str | None]
    enable: str

    def skip_unless_available(self) -> None:
        missing = self.missing()
        if missing is not None:
            pytest.skip(f"{self.name} tier: {missing} ({self.enable})")

    def line(self) -> str:
        missing = self.missing()
        if missing is None:
            return f"{self.name}: ran"
        return f"{self.name}: skipped, {missing}; to run it: {self.enable}"


def _services_missing() -> str | None:
    unset = [variable for variable, _, _ in DEFAULT_SERVICES if not os.environ.get(variable)]
    return f"{' and '.join(unset)} unset and nothing answers on the default port" if unset else None


def _nginx_missing() -> str | None:
    return None if nginx_path() else "nginx is not installed"


def _browser_missing() -> str | None:
    absent = [str(path) for path in BROWSER if not path.is_file()]
    return f"{', '.join(absent)} not found" if absent else None


def _engine_missing() -> str | None:
    from tests.containers import engine_problem  # runs `docker info`: only when asked

    return engine_problem()


def nginx_path() -> str | None:
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx",) if Path(path).exists()), None
    )


SERVICES = Tier(
    "services (PostgreSQL and Redis)",
    _services_missing,
    "start PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379, or set "
    "TEST_DATABASE_URL and TEST_REDIS_URL",
)
NGINX = Tier("nginx (the native production topology)", _nginx_missing, "apt-get install nginx")
BROWSER_TIER = Tier(
    "browser (headless Chromium)", _browser_missing, "apt-get install chromium chromium-driver"
)
CONTAINERS = Tier(
    "containers (a real Docker Engine)",
    _engine_missing,
    "apt-get install docker.io and start dockerd (.ci/run does both)",
)
TIERS = [SERVICES, NGINX, BROWSER_TIER, CONTAINERS]


def summary() -> list[str]:
    return ["embedded (SQLite, in-memory layer): ran", *(tier.line() for tier in TIERS)]
