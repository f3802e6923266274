"""Production settings refuse to start without their secrets; checked in a fresh
interpreter so the test's own settings are untouched."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": "x" * 60,
    "DJANGO_ALLOWED_HOSTS": "chat.example.com",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "DATABASE_URL": "sqlite:///:memory:",
}


def clean_environ() -> dict[str, str]:
    """This process's environment without the variables the settings read."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))
    }


def run_check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = clean_environ()
    return subprocess.run(  # noqa: S603 - fixed arguments, our own manage.py
        [sys.executable, "manage.py", "check", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "REDIS_URL"])
def test_production_refuses_to_start_without(missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = run_check(env)
    assert result.returncode != 0
    assert f"Set the environment variable {missing}" in result.stderr
    assert "Traceback" in result.stderr or "ImproperlyConfigured" in result.stderr


def test_production_starts_with_its_environment():
    result = run_check(PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr


LOCAL_PROBE = """
import json, logging, django
django.setup()
from django.conf import settings
print(json.dumps({
    "debug": settings.DEBUG,
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "secret_key": settings.SECRET_KEY,
    "localhost_sockets": settings.WEBSOCKET_ALLOW_LOCALHOST,
    "django_handlers": len(logging.getLogger("django").handlers),
    "daphne_level": logging.getLogger("daphne").level,
}))
"""


def local_settings(env: dict[str, str]) -> dict[str, object]:
    clean = clean_environ()
    result = subprocess.run(  # noqa: S603 - fixed arguments, our own interpreter
        [sys.executable, "-c", LOCAL_PROBE],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings.local", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_local_settings_are_for_one_machine():
    local = local_settings({"DJANGO_SECRET_KEY": "from-dot-env-" + "k" * 40})
    assert local["debug"] is True
    assert local["allowed_hosts"] == ["localhost", "127.0.0.1", "[::1]"]
    assert local["secret_key"] == "from-dot-env-" + "k" * 40
    assert local["localhost_sockets"] is True
    # runserver's lines once each (through the root handler) and no daphne notices.
    assert local["django_handlers"] == 0
    assert local["daphne_level"] == logging.WARNING


def test_local_settings_fall_back_to_an_insecure_key_and_take_allowed_hosts():
    local = local_settings({"DJANGO_SECRET_KEY": "", "DJANGO_ALLOWED_HOSTS": "dev.test"})
    assert str(local["secret_key"]).startswith("django-insecure-")
    assert local["allowed_hosts"] == ["dev.test"]
