"""startconsumer in a generated project: in a new app, with and without ``--group``,
the new consumers' tests are collected and pass (connect, a bad frame, and with a
group a broadcast reaching two sockets), and the project stays lint-clean; and the
tutorial's last chapter, followed as written, builds a feature whose tests pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.generation import generate, generated_pytest, run, tool


def collected(output: str) -> int:
    match = re.search(r"(\d+) tests? collected", output)
    assert match, output[-2000:]
    return int(match.group(1))


def manage(uv_path: str, root, *args: str):
    return run([uv_path, "run", "python", "manage.py", *args], cwd=root)


@pytest.mark.slow
def test_startconsumer_adds_consumers_whose_tests_pass(tmp_path, uv_path):
    root = generate(tmp_path)
    assert run([uv_path, "sync", "--quiet"], cwd=root).returncode == 0
    pytest_cmd = generated_pytest(uv_path, root, "-m", "not browser")
    before = collected(run([*pytest_cmd, "--collect-only", "-q"], cwd=root).stdout)

    assert manage(uv_path, root, "startapp", "feeds").returncode == 0
    added = manage(uv_path, root, "startconsumer", "updates", "--app", "feeds")
    assert added.returncode == 0, added.stderr
    assert "created  feeds/consumers/updates.py" in added.stdout
    assert "changed  config/routing.py" in added.stdout
    grouped = manage(uv_path, root, "startconsumer", "ticker", "--app", "feeds", "--group")
    assert grouped.returncode == 0, grouped.stderr

    refused = manage(uv_path, root, "startconsumer", "updates", "--app", "feeds")
    assert refused.returncode != 0
    assert "already exists" in refused.stderr

    follow_the_last_chapter(root, uv_path)

    for args in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        lint = run([tool("ruff"), *args], cwd=root)
        assert lint.returncode == 0, lint.stdout + lint.stderr

    # The new apps' tests, and config's (routing and the ASGI app); the whole suite
    # after startconsumer runs in test_recipes.py.
    result = run([*pytest_cmd, "-q", "-rA", "feeds", "notifications", "config"], cwd=root)
    assert result.returncode == 0, result.stdout[-5000:]
    # 5 tests of feeds' consumers, and the chapter's 2 (its generated ones replaced).
    assert collected(run([*pytest_cmd, "--collect-only", "-q"], cwd=root).stdout) == before + 7
    for test in (
        "test_updates.py::test_echoes_json",
        "test_updates.py::test_a_bad_frame_gets_an_error_frame",
        "test_ticker.py::test_echoes_json",
        "test_ticker.py::test_a_bad_frame_gets_an_error_frame",
        "test_ticker.py::test_a_broadcast_reaches_every_socket",
    ):
        assert f"PASSED feeds/tests/consumers/{test}" in result.stdout, test
    for test in (
        "test_a_notification_reaches_every_socket_of_its_user",
        "test_anonymous_sockets_are_refused",
    ):
        assert f"PASSED notifications/tests/consumers/test_alerts.py::{test}" in result.stdout


CHAPTER_COMMAND = re.compile(r"^uv run python manage\.py (start\w+ .*)$", re.M)
WRITTEN = re.compile(r"<!-- file: (?P<path>\S+) -->\n```python\n(?P<code>.*?)\n```", re.S)
URL_LINE = 'path("notifications/", include("notifications.urls")),'


def add_installed_app(root: Path, app: str) -> None:
    settings = root / "config" / "settings" / "base.py"
    text = settings.read_text()
    settings.write_text(text.replace('    "scaffold",\n', f'    "scaffold",\n    "{app}",\n', 1))


def follow_the_last_chapter(root: Path, uv_path: str) -> None:
    """docs/your-own-consumer.md, as written: its commands, the app in INSTALLED_APPS,
    each file it gives, and its route in config/urls.py."""
    chapter = (root / "docs" / "your-own-consumer.md").read_text()
    commands = CHAPTER_COMMAND.findall(chapter)
    assert [c.split()[0] for c in commands] == ["startapp", "startconsumer"], commands
    assert manage(uv_path, root, *commands[0].split()).returncode == 0
    add_installed_app(root, "notifications")
    added = manage(uv_path, root, *commands[1].split())
    assert added.returncode == 0, added.stderr
    for block in WRITTEN.finditer(chapter):
        (root / block["path"]).write_text(block["code"] + "\n")
    assert f"`{URL_LINE}`" in chapter
    urls = root / "config" / "urls.py"
    anchor = '    path("accounts/", include("accounts.urls")),\n'
    urls.write_text(urls.read_text().replace(anchor, f"{anchor}    {URL_LINE}\n", 1))
