"""The generated project's Redis channel layer passes channels-redis' own tests.

The suite comes from the PyPI sdist of the channels-redis version the generated
project installs, and runs twice on the Redis of ``TEST_REDIS_URL`` (its Sentinel
tests on a private redis-server and Sentinel): on channels-redis'
``RedisChannelLayer`` and on the project's (``realtime.layers.RedisChannelLayer``),
through ``tests/channels_redis_plugin.py``.
Every test that passes on the stock class must pass on ours; a difference would be
a documented decision in ``realtime/layers.py`` and in DOCUMENTED_DIFFERENCES here.
The in-memory layer's conformance suite is the project's own
(``realtime/tests/test_layer_conformance.py``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

import pytest

from tests.generation import run

TESTS_DIR = Path(__file__).resolve().parent
STOCK = "channels_redis.core.RedisChannelLayer"
OURS = "realtime.layers.RedisChannelLayer"
# The modules that exercise the layer class, and how many of their tests the stock
# class passes at least (so that a suite that did not really run fails). Its other
# modules test its serializers and hashing (no layer class) and the Pub/Sub layer
# (the project uses the stock one).
SUITES = {"tests/test_core.py": 20, "tests/test_sentinel.py": 20}
# What channels-redis' Sentinel tests expect of their Sentinel.
SENTINEL_MASTER = "sentinel"
SENTINEL_PASSWORD = "channels_redis"  # noqa: S105 - the test suite's own fixed password
READY_TIMEOUT = 30
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sentinel_knows_its_master(port: int, master_port: int) -> bool:
    """The Sentinel answers, and names the master's address (plain RESP, no client)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(
                f"AUTH {SENTINEL_PASSWORD}\r\n"
                f"SENTINEL get-master-addr-by-name {SENTINEL_MASTER}\r\n".encode()
            )
            reply = b""
            deadline = time.monotonic() + 1
            while str(master_port).encode() not in reply and time.monotonic() < deadline:
                reply += sock.recv(4096)
            return str(master_port).encode() in reply
    except OSError:
        return False


@contextlib.contextmanager
def private_sentinel(where: Path) -> Iterator[tuple[str, str]]:
    """A private redis-server and a Sentinel watching it, as channels-redis' Sentinel
    tests expect (master name, Sentinel password); yields their host:port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH: the Sentinel tests start their own")
    master_port, sentinel_port = free_port(), free_port()
    config = where / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {where}\n"
        f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master_port} 1\n"
        f"requirepass {SENTINEL_PASSWORD}\n"
    )
    master = [binary, "--port", str(master_port), "--bind", "127.0.0.1"]
    master += ["--save", "", "--appendonly", "no", "--dir", str(where)]
    with (where / "redis.log").open("w") as log:
        processes = [
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            for command in (master, [binary, str(config), "--sentinel"])
        ]
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while not sentinel_knows_its_master(sentinel_port, master_port):
                assert time.monotonic() < deadline, (where / "redis.log").read_text()
                time.sleep(0.2)
            yield f"127.0.0.1:{master_port}", f"127.0.0.1:{sentinel_port}"
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def run_suite(
    layer: str, module: str, suite: Path, project: Path, env: dict[str, str], out: Path
) -> dict[str, str]:
    junit = out / f"{layer}.xml"
    result = run(
        [
            str(project / ".venv" / "bin" / "pytest"),
            *("-c", str(suite / "setup.cfg"), "--rootdir", str(suite)),
            *("-p", "channels_redis_plugin", "-p", "no:cacheprovider", "-p", "no:randomly"),
            *("-q", f"--junitxml={junit}", module),
        ],
        cwd=suite,
        env={
            **env,
            "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), str(project)]),
            "CONFORMANCE_LAYER": layer,
            "CONFORMANCE_DB_OFFSET": str(DB_OFFSET),
        },
        timeout=600,
    )
    assert junit.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    return outcomes(junit)


@pytest.mark.parametrize("module", sorted(SUITES), ids=lambda module: Path(module).stem)
def test_our_redis_layer_passes_channels_redis_own_tests(
    module, channels_redis_suite, project_root, services_env, tmp_path
):
    if "TEST_REDIS_URL" not in services_env:
        pytest.skip("TEST_REDIS_URL is unset: channels-redis' tests need a Redis")
    address = urlsplit(services_env["TEST_REDIS_URL"])
    with contextlib.ExitStack() as stack:
        env = {"CONFORMANCE_REDIS": f"{address.hostname}:{address.port or 6379}"}
        if "sentinel" in module:
            # All on the private server, so this module and test_core.py do not
            # share databases when they run at once.
            master, sentinel = stack.enter_context(private_sentinel(tmp_path))
            env.update(CONFORMANCE_REDIS=master, CONFORMANCE_SENTINEL=sentinel)
        stock, ours = (
            run_suite(layer, module, channels_redis_suite, project_root, env, tmp_path)
            for layer in (STOCK, OURS)
        )
    for layer, result in (("stock", stock), ("ours", ours)):
        counts = Counter(result.values())
        print(f"{module} on {layer}: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
    passed_stock = {name for name, outcome in stock.items() if outcome == "passed"}
    assert len(passed_stock) >= SUITES[module], f"the stock class passed too few: {stock}"
    assert set(ours) == set(stock)
    diverging = {name for name in passed_stock if ours[name] != "passed"}
    assert diverging == set(DOCUMENTED_DIFFERENCES), {name: ours[name] for name in diverging}
    docstrings = (project_root / "realtime" / "layers.py").read_text()
    assert [name for name in DOCUMENTED_DIFFERENCES if name not in docstrings] == []
