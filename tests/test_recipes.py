"""The generated README's recipes, followed as written on a fresh project, end in a
project that passes ``make lint typecheck test``: a new app with ``startapp``, a
consumer in it with ``startconsumer --app``, and the deploy chapter's
``collectstatic``, which must not change what coverage measures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.generation import generate, generated_pytest, make_checks, run

COVERAGE_FLOOR = 90.0
STARTAPP = "uv run python manage.py startapp notes"
STARTCONSUMER = "uv run python manage.py startconsumer updates --app notes"
COLLECTSTATIC = "manage.py collectstatic --noinput"


def shell(command: str, root: Path, uv_path: str):
    """A README command as the user types it, with uv as the tests have it."""
    args = command.split()
    args[0] = uv_path if args[0] == "uv" else args[0]
    return run(args, cwd=root)


def add_installed_app(root: Path, app: str) -> None:
    """What the README asks by hand: the app in INSTALLED_APPS, after the last one."""
    settings = root / "config" / "settings" / "base.py"
    text = settings.read_text()
    head, sep, tail = text.partition("INSTALLED_APPS = [\n")
    body, close, rest = tail.partition("\n]\n")
    settings.write_text(f'{head}{sep}{body}\n    "{app}",{close}{rest}')


@pytest.mark.slow
def test_the_readme_recipes_end_in_a_project_that_passes_its_checks(tmp_path, uv_path):
    root = generate(tmp_path)
    readme = (root / "README.md").read_text()
    deploying = (root / "docs" / "deploying.md").read_text()
    for command in (STARTAPP, STARTCONSUMER):
        assert f"`{command}`" in readme, command
    assert COLLECTSTATIC in deploying
    assert run([uv_path, "sync", "--quiet"], cwd=root).returncode == 0

    result = shell(STARTAPP, root, uv_path)
    assert result.returncode == 0, result.stderr
    add_installed_app(root, "notes")
    result = shell(STARTCONSUMER, root, uv_path)
    assert result.returncode == 0, result.stdout + result.stderr
    result = run([uv_path, "run", "python", *COLLECTSTATIC.split()], cwd=root)
    assert result.returncode == 0, result.stderr
    # django_coverage_plugin takes .txt files for templates: admin's LICENSE.txt are here.
    assert any((root / "staticfiles").rglob("*.txt"))

    total = make_checks(root)
    print(f"generated project line coverage (with the recipes): {total}%")
    assert total >= COVERAGE_FLOOR
    report = run([str(root / ".venv/bin/coverage"), "report", "--no-skip-covered"], cwd=root)
    assert "templates/base.html" in report.stdout  # templates are measured
    assert "staticfiles/" not in report.stdout
    assert "notes/apps.py" in report.stdout


@pytest.mark.slow
def test_one_test_file_shows_its_result_without_a_coverage_table(tmp_path, uv_path):
    root = generate(tmp_path)
    result = run([*generated_pytest(uv_path, root, "-q", "config/tests/test_docs.py")], cwd=root)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "coverage:" not in result.stdout
    assert "TOTAL" not in result.stdout
