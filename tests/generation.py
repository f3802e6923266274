"""Generating projects from the template, for the tests.

Every option combination, a covering subset for the slower checks, and the
commands that run a generated project's own tools.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from cookiecutter.main import cookiecutter

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
OPTIONS = {
    key: value
    for key, value in json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text()).items()
    if isinstance(value, list) and not key.startswith("_")
}
DEFAULTS = {key: values[0] for key, values in OPTIONS.items()}
ALL_COMBINATIONS = [
    dict(zip(OPTIONS, values, strict=True)) for values in itertools.product(*OPTIONS.values())
]
# Every value of every option at least once, and every database x channel_layer pair.
COVERING_COMBINATIONS = [
    DEFAULTS,
    {
        "database": "sqlite",
        "channel_layer": "redis_pubsub",
        "use_docker": "n",
        "ci_tool": "gitlab",
        "open_source_license": "BSD-3-Clause",
    },
    {
        "database": "postgresql",
        "channel_layer": "redis_pubsub",
        "use_docker": "n",
        "ci_tool": "none",
        "open_source_license": "Apache-2.0",
    },
    {
        "database": "sqlite",
        "channel_layer": "redis",
        "use_docker": "y",
        "ci_tool": "none",
        "open_source_license": "not open source",
    },
]
UNRENDERED = re.compile(r"{{-?\s*cookiecutter[.|]|{%-?\s*(raw|endraw)\s*-?%}|_cookiecutter")


def combo_id(combo: dict[str, str]) -> str:
    return "-".join(combo[key].replace(" ", "_") for key in OPTIONS)


def generate(output_dir: Path, **answers: Any) -> Path:
    """Generate a project with the given answers (defaults for the rest); return its root."""
    path = cookiecutter(
        str(TEMPLATE_DIR), no_input=True, output_dir=str(output_dir), extra_context=answers
    )
    return Path(path)


def text_files(root: Path):
    for path in sorted(root.rglob("*")):
        if path.is_file() and ".venv" not in path.parts:
            try:
                yield path, path.read_text()
            except UnicodeDecodeError:
                continue


def tool(name: str) -> str:
    """A command-line tool installed in the template's own environment."""
    return str(Path(sys.executable).parent / name)


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; the caller asserts on the result."""
    return subprocess.run(
        args,
        cwd=cwd,
        env={**project_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def generated_pytest(uv_path: str, root: Path, *args: str) -> list[str]:
    """The command that runs a generated project's own pytest.

    Each run gets its own --basetemp beside the project. Left to pytest's shared
    /tmp/pytest-of-<user>/, concurrent runs (xdist workers, each with a generated
    suite) clean up each other's numbered directories at session end; a removal that
    races becomes a PytestWarning, which the generated suite's filterwarnings=error
    turns into a failure after every test has passed."""
    basetemp = pytest_basetemp(root)
    return [uv_path, "run", "pytest", "-p", "no:cacheprovider", f"--basetemp={basetemp}", *args]


def pytest_basetemp(root: Path) -> Path:
    """The private pytest --basetemp of a generated project's runs (generated_pytest)."""
    return root.parent / "pytest-basetemp"


def make_checks(root: Path) -> float:
    """``make lint typecheck test`` in a generated project (``test`` enforces the coverage
    floor); fails quoting the output; the total line coverage it reports."""
    pytest_args = f"PYTEST_ARGS=-p no:cacheprovider -q --basetemp={pytest_basetemp(root)}"
    checks = run(["make", "lint", "typecheck", "test", pytest_args], cwd=root, timeout=1200)
    assert checks.returncode == 0, (checks.stdout + checks.stderr)[-6000:]
    total = re.search(r"Total coverage: ([\d.]+)%", checks.stdout)
    assert total, checks.stdout[-3000:]
    return float(total[1])


# Variables that choose a generated project's services; a test passes them explicitly
# (services_tier_env), so none leaks in from the developer's shell.
SERVICE_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "CHANNEL_LAYER_KIND",
    "REDIS_SENTINEL_HOSTS",
    "REDIS_SENTINEL_MASTER",
    "REDIS_SENTINEL_PASSWORD",
)
# The machine's services for the services tier (.ci/run exports them), and the
# variables the generated project reads them from.
SERVICES_TIER_SOURCES = {"TEST_DATABASE_URL": "DATABASE_URL", "TEST_REDIS_URL": "REDIS_URL"}


def project_env() -> dict[str, str]:
    """The environment a generated project's commands run in: ours, minus anything
    that would point it at another project's virtualenv or services."""
    drop = ("VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "PYTHONPATH", "TEST_RUN_ID")
    drop += SERVICE_VARIABLES
    return {key: value for key, value in os.environ.items() if key not in drop}


def services_tier_env(combo: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """``DATABASE_URL`` and ``REDIS_URL`` for a generated suite's services tier, from
    ``TEST_DATABASE_URL`` and ``TEST_REDIS_URL``; and the names of those that are unset.

    Each generated suite gives its run a fresh ``TEST_RUN_ID`` (project_env drops ours),
    which names its test database and prefixes its Redis keys, so runs that share
    these services do not see each other's data. (Not quite: the Pub/Sub layer does
    not prefix the worker's channel name, so concurrent runs' workers on that layer
    hear each other's jobs; the generated docs/scaling.md says so.)
    """
    env = {
        target: os.environ[source]
        for source, target in SERVICES_TIER_SOURCES.items()
        if os.environ.get(source)
    }
    unset = [source for source in SERVICES_TIER_SOURCES if not os.environ.get(source)]
    if combo is not None:
        # The project's own choices: its layer kind in and across processes, and for
        # SQLite projects no DATABASE_URL, so that path runs on real SQLite files.
        env["CHANNEL_LAYER_KIND"] = env["SERVICES_LAYER_KINDS"] = combo["channel_layer"]
        if combo["database"] == "sqlite":
            env.pop("DATABASE_URL", None)
            unset = [name for name in unset if name != "TEST_DATABASE_URL"]
    return env, unset


# Git, with no user or system configuration, for the tests that make repositories.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
    # No user or system git configuration (signing, hooks, default branch) applies.
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path) -> str:
    result = run(["git", *args], cwd=cwd, env=GIT_ENV)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def template_repository(destination: Path) -> Path:
    """This template's files (tracked, and new ones not ignored) as a fresh git repo."""
    listed = git("ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=TEMPLATE_DIR)
    for name in sorted(set(filter(None, listed.split("\0")))):
        source = TEMPLATE_DIR / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git("init", "--quiet", "--initial-branch=main", cwd=destination)
    git("add", "--all", cwd=destination)
    git("commit", "--quiet", "--message=template v1", cwd=destination)
    return destination
