"""The worker container's health check (workercheck.py beside this file), run as the
container runs it: a process of its own with the worker's settings module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def check(**env: str) -> subprocess.CompletedProcess[str]:
    drop = ("DJANGO_SETTINGS_MODULE", "REDIS_URL", "DATABASE_URL")
    base = {key: value for key, value in os.environ.items() if key not in drop}
    return subprocess.run(
        [sys.executable, "deploy/docker/workercheck.py"],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings.local", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_in_memory_layer_is_unhealthy() -> None:
    """A worker on the in-memory layer would hear nothing from the web processes."""
    result = check()
    assert result.returncode == 1
    assert result.stderr.startswith("unhealthy: RuntimeError: no channel layer")


def test_an_unreachable_redis_is_unhealthy() -> None:
    result = check(REDIS_URL="redis://127.0.0.1:9/0")
    assert result.returncode == 1
    assert result.stderr.startswith("unhealthy: ")


@pytest.mark.services("REDIS_URL")
def test_a_reachable_redis_is_healthy() -> None:
    result = check(REDIS_URL=os.environ["REDIS_URL"])
    assert result.returncode == 0, result.stderr
