"""Fixtures for the template's tests: a shared virtualenv with the generated
project's dependencies, so that checks over every combination need not install."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests import tiers
from tests.generation import generate, run


def pytest_configure(config: pytest.Config) -> None:
    # Before xdist starts its workers, which inherit the environment.
    found = tiers.use_default_services()
    config.stash[FOUND_SERVICES] = found


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    terminalreporter.section("tiers")
    for variable in config.stash.get(FOUND_SERVICES, []):
        terminalreporter.write_line(f"{variable}: found on its default local port")
    for line in tiers.summary():
        terminalreporter.write_line(line)


FOUND_SERVICES = pytest.StashKey[list[str]]()


def uv() -> str:
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is not on PATH: run the tests through ./dev test, which installs it")
    return found


@pytest.fixture(scope="session")
def shared_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with the default project's dependencies installed (all options share them)."""
    root = generate(tmp_path_factory.mktemp("shared"))
    result = run([uv(), "sync", "--quiet"], cwd=root)
    assert result.returncode == 0, result.stderr
    python = root / ".venv" / "bin" / "python"
    assert python.exists()
    return python


@pytest.fixture(scope="session")
def uv_path() -> str:
    return uv()


@pytest.fixture
def services_env() -> dict[str, str]:
    """DATABASE_URL and REDIS_URL for the services tier, when this machine offers them."""
    return {
        key: os.environ[key]
        for key in ("TEST_DATABASE_URL", "TEST_REDIS_URL")
        if os.environ.get(key)
    }
