"""The generated project's browser tier (``chat/tests/test_browser.py``) runs in a real
headless Chromium for the default answers: on SQLite, and on PostgreSQL with Redis
when this machine offers them (``.ci/run`` does).

The tier drives Debian's ``/usr/bin/chromium`` through ``/usr/bin/chromedriver``
(packages ``chromium`` and ``chromium-driver``, which ``.ci/run`` installs); without
them these tests are skipped, saying so.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests import tiers
from tests.generation import generate, generated_pytest, run

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("browser")]

SCREENSHOTS = ("chat-room-desktop.png", "chat-room-phone.png")
TIER_TIMEOUT = 900


@pytest.fixture(scope="module")
def browser_project(tmp_path_factory: pytest.TempPathFactory, uv_path: str) -> Path:
    tiers.BROWSER_TIER.skip_unless_available()
    root = generate(tmp_path_factory.mktemp("browser"))
    sync = run([uv_path, "sync", "--quiet"], cwd=root)
    assert sync.returncode == 0, sync.stderr
    return root


def run_tier(root: Path, uv_path: str, env: dict[str, str]) -> str:
    """Run the browser tier; return pytest's summary line after checking that it
    passed and that nothing but the Redis-only test was skipped. Prints the time."""
    for screenshot in SCREENSHOTS:
        (root / "test-artifacts" / screenshot).unlink(missing_ok=True)
    started = time.monotonic()
    result = run(
        generated_pytest(uv_path, root, "-m", "browser", "-rs"),
        cwd=root,
        env=env,
        timeout=TIER_TIMEOUT,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert re.search(r"\b\d+ passed\b", result.stdout), output[-3000:]
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("set REDIS_URL" in line for line in skips), skips
    for screenshot in SCREENSHOTS:
        png = root / "test-artifacts" / screenshot
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    summary = next(line for line in reversed(result.stdout.splitlines()) if " passed" in line)
    services = ", ".join(sorted(env)) or "SQLite, in-memory layer"
    print(f"browser tier ({services}): {elapsed:.1f} s; {summary}")
    return summary


def test_browser_tier_passes_on_sqlite(browser_project: Path, uv_path: str) -> None:
    summary = run_tier(browser_project, uv_path, {})
    assert " 1 skipped" in summary  # moderation needs a layer shared across processes


def test_browser_tier_passes_on_postgresql_and_redis(
    browser_project: Path, uv_path: str, services_env: dict[str, str]
) -> None:
    if "TEST_DATABASE_URL" not in services_env:
        pytest.skip("TEST_DATABASE_URL is not set (.ci/run sets it to the local PostgreSQL)")
    # The project's test settings name the test database test_<name>_<run id>, with a
    # fresh run id per run, so this run's database is its own.
    env = {"DATABASE_URL": services_env["TEST_DATABASE_URL"]}
    if "TEST_REDIS_URL" in services_env:
        env["REDIS_URL"] = services_env["TEST_REDIS_URL"]
    summary = run_tier(browser_project, uv_path, env)
    if "REDIS_URL" in env:
        assert " skipped" not in summary
