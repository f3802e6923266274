"""The generated project's Redis channel layer passes channels-redis' own tests.

The suite comes from the PyPI sdist of the channels-redis version the generated
project installs, and runs twice on the Redis of ``TEST_REDIS_URL``: on
channels-redis' ``RedisChannelLayer`` and on the project's
(``realtime.layers.RedisChannelLayer``), through ``tests/channels_redis_plugin.py``.
Every test that passes on the stock class must pass on ours; a difference would be
a documented decision in ``realtime/layers.py`` and in DOCUMENTED_DIFFERENCES here.
The in-memory layer's conformance suite is the project's own
(``realtime/tests/test_layer_conformance.py``).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

import pytest

from tests.generation import run

TESTS_DIR = Path(__file__).resolve().parent
STOCK = "channels_redis.core.RedisChannelLayer"
OURS = "realtime.layers.RedisChannelLayer"
# The modules that exercise the layer class. channels-redis' other modules test its
# serializers and hashing (no layer class), the Pub/Sub layer (the project uses the
# stock one) and Sentinel (they need a Sentinel on localhost:26379).
SUITE = ["tests/test_core.py"]
# channels-redis' tests use databases 0-9; here they are databases 6-15.
DB_OFFSET = 6
# Tests that pass on the stock class and fail on ours on purpose, with the reason
# that realtime/layers.py gives. None so far.
DOCUMENTED_DIFFERENCES: dict[str, str] = {}
VERSION_SCRIPT = "from importlib.metadata import version; print(version('channels-redis'))"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def project_root(shared_python: Path) -> Path:
    return shared_python.parent.parent.parent


@pytest.fixture(scope="session")
def channels_redis_suite(shared_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """channels-redis' sdist, of the version the project installs, unpacked."""
    where = tmp_path_factory.mktemp("channels-redis-sdist")
    version = run([str(shared_python), "-c", VERSION_SCRIPT], cwd=where).stdout.strip()
    assert version, "the generated project does not install channels-redis"
    download = run(
        [
            *(str(shared_python), "-m", "pip", "download", "--quiet", "--no-deps"),
            *("--no-binary", ":all:", f"channels-redis=={version}", "-d", str(where)),
        ],
        cwd=where,
        timeout=300,
    )
    assert download.returncode == 0, download.stdout + download.stderr
    (archive,) = where.glob("channels_redis-*.tar.gz")
    with tarfile.open(archive) as sdist:
        sdist.extractall(where, filter="data")
    root = where / f"channels_redis-{version}"
    assert (root / "tests" / "test_core.py").exists(), "the sdist no longer ships tests/"
    return root


def outcomes(junit: Path) -> dict[str, str]:
    """Each test's outcome in a junit XML report: passed, failed, skipped or xfailed."""
    result = {}
    # S314: the report our own pytest run just wrote, not untrusted input.
    for case in ElementTree.parse(junit).iter("testcase"):  # noqa: S314
        name = case.get("name", "")
        if case.find("failure") is not None or case.find("error") is not None:
            result[name] = "failed"
        elif (skipped := case.find("skipped")) is not None:
            result[name] = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
        else:
            result[name] = "passed"
    return result


def run_suite(layer: str, suite: Path, project: Path, redis_url: str, out: Path) -> dict[str, str]:
    address = urlsplit(redis_url)
    junit = out / f"{layer}.xml"
    result = run(
        [
            str(project / ".venv" / "bin" / "pytest"),
            *("-c", str(suite / "setup.cfg"), "--rootdir", str(suite)),
            *("-p", "channels_redis_plugin", "-p", "no:cacheprovider", "-p", "no:randomly"),
            *("-q", f"--junitxml={junit}", *SUITE),
        ],
        cwd=suite,
        env={
            "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(project)]),
            "CONFORMANCE_LAYER": layer,
            "CONFORMANCE_REDIS": f"{address.hostname}:{address.port or 6379}",
            "CONFORMANCE_DB_OFFSET": str(DB_OFFSET),
        },
        timeout=600,
    )
    assert junit.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    return outcomes(junit)


def test_our_redis_layer_passes_channels_redis_own_tests(
    channels_redis_suite, project_root, services_env, tmp_path
):
    if "TEST_REDIS_URL" not in services_env:
        pytest.skip("TEST_REDIS_URL is unset: channels-redis' tests need a Redis")
    redis_url = services_env["TEST_REDIS_URL"]
    stock = run_suite(STOCK, channels_redis_suite, project_root, redis_url, tmp_path)
    ours = run_suite(OURS, channels_redis_suite, project_root, redis_url, tmp_path)
    passed_stock = {name for name, outcome in stock.items() if outcome == "passed"}
    assert len(passed_stock) >= 20, f"the stock class passed too few of the suite: {stock}"
    assert set(ours) == set(stock)
    diverging = {name for name in passed_stock if ours[name] != "passed"}
    assert diverging == set(DOCUMENTED_DIFFERENCES), {name: ours[name] for name in diverging}
    docstrings = (project_root / "realtime" / "layers.py").read_text()
    assert [name for name in DOCUMENTED_DIFFERENCES if name not in docstrings] == []
