"""The benchmark a generated project ships: its documented command runs for a moment
and prints sane figures, as a table and as JSON lines. Never a timing threshold."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.generation import generate, run


@pytest.mark.slow
def test_chatbench_runs_in_a_generated_project(tmp_path, uv_path):
    root = generate(tmp_path)
    assert run([uv_path, "sync", "--quiet"], cwd=root).returncode == 0
    readme = (root / "README.md").read_text()
    assert "uv run python -m bench.chatbench" in readme
    assert (root / "docs" / "benchmark.md").exists()

    out = tmp_path / "bench.jsonl"
    result = run(
        [
            *(uv_path, "run", "python", "-m", "bench.chatbench"),
            *("--modes", "saturate,storm", "--clients", "5", "--senders", "2"),
            *("--duration", "0.5", "--storm", "30", "--jsonl", str(out)),
        ],
        cwd=root,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "saturate" in result.stdout
    assert "storm" in result.stdout
    meta, *rows = (json.loads(line) for line in out.read_text().splitlines())
    assert meta["kind"] == "meta"
    assert meta["server_command"].startswith(("daphne", "uvicorn"))
    # Production's topology by default: the Redis layer and the worker, where Redis is.
    if shutil.which("redis-server"):
        assert (meta["layer"], meta["worker"]) == ("redis", True)
    else:
        assert (meta["layer"], meta["worker"]) == ("memory", False)

    by_server = {(r["mode"], r["server"]): r for r in rows}
    assert set(by_server) == {(m, s) for m in ("saturate", "storm") for s in ("project", "bare")}
    project = by_server["saturate", "project"]
    assert project["deliveries"] == project["sent"] * 5 > 0
    assert project["loss"] == 0
    assert project["p50_ms"] <= project["p99_ms"] <= project["max_ms"]
    assert project["x_bare"]["deliveries_per_s"] > 0
    assert f"({project['x_bare']['deliveries_per_s']:.2f}x)" in result.stdout
    for server in ("project", "bare"):
        storm = by_server["storm", server]
        assert (storm["connected"], storm["failed_connects"], storm["delivered"]) == (30, 0, 30)
