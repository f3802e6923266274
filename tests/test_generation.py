"""Every option combination generates a clean project; a covering set also passes
its own test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.generation import (
    ALL_COMBINATIONS,
    COVERING_COMBINATIONS,
    UNRENDERED,
    combo_id,
    generate,
    run,
    text_files,
    tool,
)

CHECK_SCRIPT = """
import django
django.setup()
from django.core.management import call_command
call_command("check", fail_level="WARNING")
call_command("makemigrations", check=True, dry_run=True, verbosity=0)
print("checks-ok")
"""


def expected_paths(combo: dict[str, str]) -> tuple[set[str], set[str]]:
    """Paths that must exist, and paths that must not, for these answers."""
    present = {"manage.py", "config/asgi.py", ".env", ".env.example", "README.md"}
    absent = {"_licenses", "deploy/compose"}
    docker = {"Dockerfile", ".dockerignore", "compose.yaml", "compose.production.yaml"}
    (present if combo["use_docker"] == "y" else absent).update(docker)
    ci = {"github": ".github/workflows/ci.yml", "gitlab": ".gitlab-ci.yml"}
    for ci_tool, path in ci.items():
        (present if combo["ci_tool"] == ci_tool else absent).add(path)
    if combo["open_source_license"] == "not open source":
        absent.add("LICENSE")
    else:
        present.add("LICENSE")
    return present, absent


@pytest.mark.parametrize("combo", ALL_COMBINATIONS, ids=combo_id)
def test_combination_generates_a_clean_project(combo, tmp_path, shared_python):
    root = generate(tmp_path, **combo)

    leftovers = [str(path) for path, text in text_files(root) if UNRENDERED.search(text)]
    assert leftovers == []

    present, absent = expected_paths(combo)
    assert [p for p in sorted(present) if not (root / p).exists()] == []
    assert [p for p in sorted(absent) if (root / p).exists()] == []

    lint = run([tool("ruff"), "check", "--no-cache", "."], cwd=root)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run([tool("ruff"), "format", "--check", "--no-cache", "."], cwd=root)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    djlint = run([tool("djlint"), "--check", "--lint", "."], cwd=root)
    assert djlint.returncode == 0, djlint.stdout + djlint.stderr

    checks = run(
        [str(shared_python), "-c", CHECK_SCRIPT],
        cwd=root,
        env={"DJANGO_SETTINGS_MODULE": "config.settings.local", "PYTHONPATH": str(root)},
    )
    assert checks.returncode == 0, checks.stdout + checks.stderr
    assert "checks-ok" in checks.stdout


@pytest.mark.slow
@pytest.mark.parametrize("combo", COVERING_COMBINATIONS, ids=combo_id)
def test_generated_project_passes_its_own_tests(combo, tmp_path, uv_path):
    root = generate(tmp_path, **combo)
    sync = run([uv_path, "sync", "--quiet"], cwd=root)
    assert sync.returncode == 0, sync.stderr
    result = run([uv_path, "run", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_default_project_name_gives_a_valid_slug(tmp_path):
    root = generate(tmp_path)
    assert root.name == "my_channels_project"
    assert Path(root / "manage.py").exists()
