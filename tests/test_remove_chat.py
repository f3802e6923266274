"""The example chat is removable: on a generated project, the README's "Removing the
example chat" steps, followed as written, leave a project whose production settings
pass ``check --deploy``, whose migrations are complete, and which passes ``make lint
typecheck test`` with the coverage floor; nothing left imports the chat."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.generation import generate, make_checks, run

# What the README's section asks for, in its own words (the test fails if they change).
SECTION = "## Removing the example chat"
HOME_UNTIL_YOURS = 'RedirectView.as_view(pattern_name="admin:index")'
MY_WORKER = "my-worker"


def cut(path: Path, *snippets: str) -> None:
    """Delete each snippet from the file; each must be there exactly once."""
    text = path.read_text()
    for snippet in snippets:
        assert text.count(snippet) == 1, f"{path.name}: {snippet!r}"
        text = text.replace(snippet, "")
    path.write_text(text)


def cut_from(path: Path, marker: str, *, to_end: bool = False) -> None:
    """Delete the comment line that starts with ``marker`` and what follows it: to the
    next blank line (a block), or to the end of the file."""
    lines = path.read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(marker))
    end = len(lines) if to_end else start
    while not to_end and end < len(lines) and lines[end].strip():
        end += 1
    kept = lines[:start] + lines[end:]
    path.write_text("".join(kept).rstrip("\n") + "\n")


def remove_chat(root: Path, uv_path: str) -> None:
    """The README's steps, in its order."""
    readme = (root / "README.md").read_text()
    section = readme[readme.index(SECTION) :]
    assert "rm -r chat bench" in section
    shutil.rmtree(root / "chat")
    shutil.rmtree(root / "bench")
    # 1. Settings.
    settings = root / "config" / "settings"
    cut(settings / "base.py", '    "chat",\n')
    cut_from(settings / "base.py", "# The example chat's own settings", to_end=True)
    cut_from(settings / "test.py", "# The example chat's worker channel")
    # 2. URLs: the chat's pages go, and home is the admin until there is a page.
    assert HOME_UNTIL_YOURS in section
    urls = root / "config" / "urls.py"
    cut(urls, '    path("chat/", include("chat.urls")),\n')
    text = urls.read_text()
    home = re.search(r"    # The home page: .*\n    path\(\"\", RedirectView.*\n", text)
    assert home, text
    urls.write_text(text.replace(home[0], f'    path("", {HOME_UNTIL_YOURS}, name="home"),\n'))
    # 3. Routing.
    cut(
        root / "config" / "routing.py",
        "from chat import routing as chat_routing\n",
        "    *chat_routing.websocket_urlpatterns,\n",
        "    *chat_routing.http_urlpatterns,\n",
        "    **chat_routing.channel_routes,\n",
    )
    # 4. The chat's variables.
    cut_from(root / ".env.example", "# The example chat")
    # 5. The base page's icon and stylesheet from the chat's static files.
    base_html = root / "templates" / "base.html"
    text = base_html.read_text()
    for tag in (
        r"<link rel=\"icon\"[^>]*chat/img/logo\.svg[^>]*>",
        r"<link rel=\"stylesheet\" href=\"\{% static 'chat/css/chat\.css' %\}\">",
        r"<img src=\"\{% static 'chat/img/logo\.svg' %\}\"[^>]*>",
    ):
        text = re.sub(r"\s*" + tag, "", text)
    assert "chat/" not in text, text
    base_html.write_text(text)
    # 6. The worker runs a channel of yours.
    assert "runworker chat-worker" in section
    for path in [root / "Procfile", root / "Makefile", *(root / "deploy").rglob("*")]:
        if path.is_file() and "runworker chat-worker" in path.read_text():
            path.write_text(path.read_text().replace("chat-worker", MY_WORKER))
    for path in root.glob("compose*.yaml"):
        path.write_text(path.read_text().replace('"chat-worker"', f'"{MY_WORKER}"'))
    # 7. What the edits leave: unused imports, empty lists.
    assert "uv run ruff check --fix . && uv run ruff format ." in section
    for args in (["check", "--fix"], ["format"]):
        fixed = run([uv_path, "run", "ruff", *args, "--no-cache", "."], cwd=root)
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr


def production_env(root: Path) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "x" * 60 + "-removal-test-only-" + root.name,
        "DJANGO_ALLOWED_HOSTS": "example.com",
        "DJANGO_TRUSTED_ORIGINS": "https://example.com",
        "DATABASE_URL": "postgres://user@127.0.0.1:5432/db",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    }


@pytest.mark.slow
def test_the_documented_removal_leaves_a_project_that_passes_its_checks(tmp_path, uv_path):
    root = generate(tmp_path)
    assert run([uv_path, "sync", "--quiet"], cwd=root).returncode == 0
    remove_chat(root, uv_path)

    python_files = [p for p in root.rglob("*.py") if ".venv" not in p.parts]
    importing = [
        str(p.relative_to(root))
        for p in python_files
        if re.search(r"^\s*(from chat[. ]|import chat\b)", p.read_text(), re.M)
    ]
    assert importing == []

    python = str(root / ".venv" / "bin" / "python")
    deploy = run(
        [python, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=root,
        env=production_env(root),
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    migrations = run([python, "manage.py", "makemigrations", "--check", "--dry-run"], cwd=root)
    assert migrations.returncode == 0, migrations.stdout + migrations.stderr

    print(f"generated project line coverage without the chat: {make_checks(root)}%")
