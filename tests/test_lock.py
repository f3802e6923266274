"""The generated project ships a uv.lock that agrees with its pyproject.toml.

The Dockerfile installs with ``uv sync --locked`` from a bind-mounted uv.lock, so a
fresh project must have one that is current from the first minute, and generation
stays offline: the template keeps the lock (``{{cookiecutter.project_slug}}/uv.lock``,
the project name rendered from the slug). After a change to the generated
pyproject.toml's dependencies, refresh it with:

    uvx cookiecutter --no-input -o /tmp/lock . && (cd /tmp/lock/my_channels_project && uv lock)
    # then copy uv.lock back, with its project name line as the template writes it

No option changes the dependencies, so one lock serves every answer; the test below
checks that on every value of every option.
"""

from __future__ import annotations

import tomllib

import pytest

from tests.generation import COVERING_COMBINATIONS, generate, run

ANSWERS = [*COVERING_COMBINATIONS, {"project_name": "Two__Words here"}]


def answers_id(answers: dict[str, str]) -> str:
    return "-".join(value.replace(" ", "_") for value in answers.values())


@pytest.mark.parametrize("answers", ANSWERS, ids=answers_id)
def test_generated_lock_is_current(tmp_path, uv_path, answers):
    """`uv lock --check` passes on the generated project, as `uv sync --locked` in the
    Dockerfile needs: for every option value, and for a slug whose package name uv
    normalises (``two__words_here`` is ``two-words-here`` in the lock)."""
    root = generate(tmp_path, **answers)
    check = run([uv_path, "lock", "--check"], cwd=root, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    lock = tomllib.loads((root / "uv.lock").read_text())
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    virtual = [package for package in lock["package"] if package.get("source") == {"virtual": "."}]
    assert len(virtual) == 1
    assert virtual[0]["version"] == project["version"]


def test_lock_check_can_fail(tmp_path, uv_path):
    """The check above fails once pyproject.toml and the lock disagree."""
    root = generate(tmp_path)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    line = '"whitenoise>=6.9,<7",'
    pyproject.write_text(text.replace(line, f'{line}\n  "six",', 1))
    assert pyproject.read_text() != text
    check = run([uv_path, "lock", "--check"], cwd=root, timeout=300)
    assert check.returncode != 0
