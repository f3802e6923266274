"""The production settings pass Django's deployment checklist with the environment
docs/deploying.md documents: ``.env.production.example`` with its empty values
filled in, plus the URLs it gives for running without compose. Checked in a fresh
interpreter so the test's own settings are untouched.

https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/
"""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / ".env.production.example"
ASSIGNMENT = re.compile(r"^(?P<commented># )?(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
SECRET_WORDS = ("SECRET", "PASSWORD", "TOKEN", "KEY")


def example_lines() -> list[tuple[bool, str, str]]:
    """(commented, key, value) for every KEY=VALUE line of the example file."""
    found = []
    for line in EXAMPLE.read_text().splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            found.append((bool(match["commented"]), match["key"], match["value"]))
    return found


def documented_environment() -> dict[str, str]:
    """What a user sets by following the example: every value, a fresh secret where
    the example leaves one empty, and the URLs of the "without compose" lines (their
    PASSWORD placeholder filled like any other secret)."""
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.production"}
    for commented, key, value in example_lines():
        if commented and not key.endswith("_URL"):
            continue
        password = secrets.token_urlsafe(32)
        env[key] = value.replace("PASSWORD", password) if value else secrets.token_urlsafe(50)
    return env


def run_manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "CHANNEL_LAYER", "CHAT_"))
    }
    return subprocess.run(  # noqa: S603 - fixed arguments, our own manage.py
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_example_holds_no_secret():
    secret_values = {
        key: value
        for commented, key, value in example_lines()
        if not commented and any(word in key for word in SECRET_WORDS) and value
    }
    assert secret_values == {}


def test_every_required_variable_is_in_the_example():
    source = (ROOT / "config" / "settings" / "production.py").read_text()
    required = set(re.findall(r'env_required\(\s*"([A-Z0-9_]+)"', source))
    documented = {key for _, key, _ in example_lines()}
    assert required, "production.py requires no variable: the pattern above is stale"
    assert required - documented == set()


def test_deploy_check_passes_with_the_documented_environment():
    result = run_manage(documented_environment(), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_deploy_check_fails_when_a_documented_value_is_weakened():
    """The check above can fail: HSTS off is a finding at WARNING level."""
    env = {**documented_environment(), "DJANGO_SECURE_HSTS_SECONDS": "0"}
    result = run_manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W004" in result.stdout + result.stderr
