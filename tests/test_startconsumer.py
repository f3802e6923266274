"""startconsumer in a generated project: the new consumer's test is collected, passes,
and the project stays lint-clean."""

from __future__ import annotations

import re

import pytest

from tests.generation import generate, generated_pytest, run, tool


def collected(output: str) -> int:
    match = re.search(r"(\d+) tests? collected", output)
    assert match, output[-2000:]
    return int(match.group(1))


@pytest.mark.slow
def test_startconsumer_adds_a_consumer_whose_test_passes(tmp_path, uv_path):
    root = generate(tmp_path)
    assert run([uv_path, "sync", "--quiet"], cwd=root).returncode == 0
    pytest_cmd = generated_pytest(uv_path, root, "-m", "not browser")
    before = collected(run([*pytest_cmd, "--collect-only", "-q"], cwd=root).stdout)

    added = run([uv_path, "run", "python", "manage.py", "startconsumer", "notifications"], cwd=root)
    assert added.returncode == 0, added.stderr
    assert "created  chat/consumers/notifications.py" in added.stdout

    refused = run(
        [uv_path, "run", "python", "manage.py", "startconsumer", "notifications"], cwd=root
    )
    assert refused.returncode != 0
    assert "already exists" in refused.stderr

    for args in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        lint = run([tool("ruff"), *args], cwd=root)
        assert lint.returncode == 0, lint.stdout + lint.stderr

    result = run([*pytest_cmd, "-q", "-rA"], cwd=root)
    assert result.returncode == 0, result.stdout[-5000:]
    assert collected(run([*pytest_cmd, "--collect-only", "-q"], cwd=root).stdout) == before + 1
    assert (
        "PASSED chat/tests/consumers/test_notifications.py::test_notifications_echoes_json"
        in result.stdout
    )
