"""The update path: a project made with ``cruft create`` takes a later template commit
with ``cruft update``, and keeps its own changes.

Everything is local: the template is a git repository made here from this working
tree, and cruft clones it from its path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.generation import GIT_ENV, git, run, template_repository, tool

USER_NOTE = "\n## Our team\n\nNotes the template knows nothing about.\n"
TEMPLATE_EDITORCONFIG = "\n[*.md]\ntrim_trailing_whitespace = false\n"
TEMPLATE_README_LINE = "Updated from the template: this line came with cruft update."


def cruft(*args: str, cwd: Path):
    return run([tool("cruft"), *args], cwd=cwd, env=GIT_ENV)


def head(repository: Path) -> str:
    return git("rev-parse", "HEAD", cwd=repository).strip()


@pytest.fixture(scope="module")
def updated(tmp_path_factory):
    """Create a project at template v1, change it, update it to v2. Returns the
    paths, the commits and the outputs of each step for the tests to inspect."""
    root = tmp_path_factory.mktemp("update")
    template = template_repository(root / "template")
    first = head(template)

    created = cruft(
        "create", str(template), "--no-input", "--output-dir", str(root / "out"), cwd=root
    )
    assert created.returncode == 0, created.stdout + created.stderr
    project = root / "out" / "my_channels_project"
    secret_before = (project / ".env").read_text()
    git("init", "--quiet", "--initial-branch=main", cwd=project)
    git("add", "--all", cwd=project)
    git("commit", "--quiet", "--message=generated", cwd=project)

    # The user's change: a section at the end of the README.
    with (project / "README.md").open("a") as readme:
        readme.write(USER_NOTE)
    git("commit", "--quiet", "--all", "--message=our notes", cwd=project)

    # The template's change: a new .editorconfig section, and a line at the top of the
    # README, the file the user also changed.
    slug_dir = template / "{{cookiecutter.project_slug}}"
    with (slug_dir / ".editorconfig").open("a") as editorconfig:
        editorconfig.write(TEMPLATE_EDITORCONFIG)
    readme = slug_dir / "README.md"
    title, rest = readme.read_text().split("\n", 1)
    readme.write_text(f"{title}\n\n{TEMPLATE_README_LINE}\n{rest}")
    git("commit", "--quiet", "--all", "--message=template v2", cwd=template)
    second = head(template)

    check_before = cruft("check", cwd=project)
    update = cruft("update", "--skip-apply-ask", cwd=project)
    check_after = cruft("check", cwd=project)
    return {
        "project": project,
        "first": first,
        "second": second,
        "secret_before": secret_before,
        "check_before": check_before,
        "update": update,
        "check_after": check_after,
    }


def test_the_project_records_the_template_commit_it_came_from(updated):
    assert updated["first"] != updated["second"]
    assert updated["check_before"].returncode != 0
    assert "out of date" in updated["check_before"].stdout


def test_update_applies_the_later_template_commit(updated):
    result = updated["update"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    project = updated["project"]
    assert (project / ".editorconfig").read_text().endswith(TEMPLATE_EDITORCONFIG)
    assert TEMPLATE_README_LINE in (project / "README.md").read_text()
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == updated["second"]
    assert updated["check_after"].returncode == 0, updated["check_after"].stdout


def test_update_keeps_the_users_changes_and_secret(updated):
    project = updated["project"]
    readme = (project / "README.md").read_text()
    assert readme.endswith(USER_NOTE)
    assert readme.count(TEMPLATE_README_LINE) == 1
    # The per-project .env (a fresh secret key) is skipped by [tool.cruft] in pyproject.toml.
    assert (project / ".env").read_text() == updated["secret_before"]
    leftovers = [path.name for path in project.rglob("*") if path.suffix in {".rej", ".orig"}]
    assert leftovers == []
