"""The tiers' summary at the end of a run, the default local services, and the
xdist groups that keep a tier's module on one worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests import tiers
from tests.generation import TEMPLATE_DIR


def pytest_run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest in a process of its own, with this one's Python and environment."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def test_a_service_answering_on_its_default_port_is_used(monkeypatch):
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            closed_port = closed.getsockname()[1]
        monkeypatch.setattr(
            tiers,
            "DEFAULT_SERVICES",
            (("TEST_A_URL", "a://here", port), ("TEST_B_URL", "b://absent", closed_port)),
        )
        environ = {"TEST_C_URL": "kept"}
        assert tiers.use_default_services(environ) == ["TEST_A_URL"]
    assert environ == {"TEST_C_URL": "kept", "TEST_A_URL": "a://here"}
    # A variable already set is the user's choice, whatever answers.
    assert tiers.use_default_services({"TEST_A_URL": "mine"}) == []


def test_each_skipped_tier_says_how_to_enable_it(monkeypatch):
    monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    monkeypatch.setenv("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setattr(tiers, "nginx_path", lambda: None)
    monkeypatch.setattr(tiers, "BROWSER", (TEMPLATE_DIR / "no-such-chromium",))
    lines = tiers.summary()
    assert lines[0] == "embedded (SQLite, in-memory layer): ran"
    services, nginx, browser = lines[1:4]
    assert services.startswith("services (PostgreSQL and Redis): skipped, TEST_DATABASE_URL unset")
    assert "to run it: start PostgreSQL on 127.0.0.1:5432" in services
    assert nginx.endswith("skipped, nginx is not installed; to run it: apt-get install nginx")
    assert "no-such-chromium not found; to run it: apt-get install chromium" in browser


def test_a_run_ends_with_the_tiers_it_ran_and_skipped():
    result = pytest_run(
        TEMPLATE_DIR, "-n", "0", "tests/test_tiers.py::test_each_skipped_tier_says_how_to_enable_it"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    section = result.stdout.split(" tiers ")[1]
    assert "embedded (SQLite, in-memory layer): ran" in section
    for tier in tiers.TIERS:
        assert tier.name in section


GROUPED = """
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("tier")


@pytest.mark.parametrize("n", range(8))
def test_grouped(n):
    Path(os.environ["RAN_ON"], str(n)).write_text(os.environ["PYTEST_XDIST_WORKER"])
"""


def test_an_xdist_group_runs_on_one_worker(tmp_path):
    """Our modules marked xdist_group (a tier's shared stack, image tags or browser) rely
    on `--dist loadgroup` keeping them on one worker; pytest 9.2 broke that silently."""
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    ran_on = tmp_path / "ran_on"
    ran_on.mkdir()
    result = pytest_run(
        tmp_path, "-n", "2", "--dist", "loadgroup", "test_grouped.py", RAN_ON=str(ran_on)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    workers = {path.name: path.read_text() for path in ran_on.iterdir()}
    assert len(workers) == 8, workers
    assert len(set(workers.values())) == 1, workers
