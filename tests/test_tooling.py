"""The generated project's developer tools: pre-commit hooks (run directly, at the
versions the config pins, since pre-commit cannot fetch its hook repositories here),
the Makefile, the CI workflows against their schemas, mypy, and test coverage.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.generation import COVERING_COMBINATIONS, combo_id, generate, run, tool

# Each hook repository's PyPI package, which installs the same entry points.
HOOK_PACKAGES = {
    "https://github.com/pre-commit/pre-commit-hooks": "pre-commit-hooks",
    "https://github.com/tox-dev/pyproject-fmt": "pyproject-fmt",
    "https://github.com/adamchainz/django-upgrade": "django-upgrade",
    "https://github.com/astral-sh/ruff-pre-commit": "ruff",
    "https://github.com/djlint/djLint": "djlint",
}
# Each hook: the command its repository's .pre-commit-hooks.yaml runs, and the files
# pre-commit gives it (its types).
HOOKS = {
    "check-added-large-files": (["check-added-large-files", "--enforce-all"], "any"),
    "check-merge-conflict": (["check-merge-conflict"], "text"),
    "check-toml": (["check-toml"], "toml"),
    "check-yaml": (["check-yaml"], "yaml"),
    "debug-statements": (["debug-statement-hook"], "python"),
    "detect-private-key": (["detect-private-key"], "text"),
    "end-of-file-fixer": (["end-of-file-fixer"], "text"),
    "mixed-line-ending": (["mixed-line-ending"], "text"),
    "trailing-whitespace": (["trailing-whitespace-fixer"], "text"),
    "pyproject-fmt": (["pyproject-fmt"], "pyproject"),
    "django-upgrade": (["django-upgrade"], "python"),
    "ruff-check": (["ruff", "check", "--force-exclude"], "python"),
    "ruff-format": (["ruff", "format", "--force-exclude"], "python"),
    "djlint-reformat-django": (["djlint", "--reformat", "--profile=django"], "html"),
    "djlint-django": (["djlint", "--profile=django"], "html"),
}
# Tools the dev group pins to the same version as a hook, so `make lint` agrees with it.
PINNED_IN_DEV_GROUP = ("ruff", "djlint")
# What each CI must run, as Makefile targets (issue: lint, types, services, browser, audit).
CI_MUST_RUN = {"lint", "typecheck", "test-services", "test-browser", "audit"}
MAKE_CALL = re.compile(r"\bmake\s+([a-z][a-z0-9-]*)")
TARGET = re.compile(r"^([a-z][a-z0-9-]*):(?!=)", re.MULTILINE)


def hook_config(root: Path) -> dict:
    return yaml.safe_load((root / ".pre-commit-config.yaml").read_text())


def makefile_targets(root: Path) -> set[str]:
    return set(TARGET.findall((root / "Makefile").read_text()))


def ci_make_calls(path: Path) -> dict[str, list[str]]:
    """The make targets each CI job calls, in order."""
    config = yaml.safe_load(path.read_text())
    jobs: dict[str, list[str]] = {}
    if path.name == ".gitlab-ci.yml":
        for name, job in config.items():
            if isinstance(job, dict) and "script" in job:
                lines = [*job.get("before_script", []), *job["script"]]
                jobs[name] = [t for line in lines for t in MAKE_CALL.findall(line)]
    else:
        for name, job in config["jobs"].items():
            lines = [step["run"] for step in job["steps"] if "run" in step]
            jobs[name] = [t for line in lines for t in MAKE_CALL.findall(line)]
    return jobs


@pytest.fixture(scope="module")
def project(tmp_path_factory, uv_path) -> Path:
    """The default project (GitHub Actions), installed with `make install`."""
    root = generate(tmp_path_factory.mktemp("tooling"))
    installed = run(["make", "install"], cwd=root)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return root


@pytest.fixture(scope="module")
def gitlab_project(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("tooling-gitlab"), ci_tool="gitlab")


# pre-commit


def test_every_hook_has_a_direct_check_and_a_known_package(project):
    for repo in hook_config(project)["repos"]:
        assert repo["repo"] in HOOK_PACKAGES, f"no PyPI package known for {repo['repo']}"
        for hook in repo["hooks"]:
            assert hook["id"] in HOOKS, f"hook {hook['id']} is not run by these tests"


def test_dev_group_pins_the_hook_versions_of_ruff_and_djlint(project):
    revs = {
        HOOK_PACKAGES[repo["repo"]]: repo["rev"].removeprefix("v")
        for repo in hook_config(project)["repos"]
    }
    dev = tomllib.loads((project / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    pins = dict(line.split("==", 1) for line in dev if "==" in line)
    assert {name: pins.get(name) for name in PINNED_IN_DEV_GROUP} == {
        name: revs[name] for name in PINNED_IN_DEV_GROUP
    }


def files_of_type(root: Path, kind: str) -> list[str]:
    """The files pre-commit would pass to a hook of this type: the ones git tracks."""
    tracked = run(["git", "ls-files"], cwd=root).stdout.split()
    suffixes = {"python": (".py", ".pyi"), "yaml": (".yml", ".yaml"), "toml": (".toml",)}
    if kind == "any":
        return tracked
    if kind == "pyproject":
        return [name for name in tracked if Path(name).name == "pyproject.toml"]
    if kind == "html":
        return [name for name in tracked if name.endswith(".html")]
    if kind in suffixes:
        return [name for name in tracked if name.endswith(suffixes[kind])]
    return [name for name in tracked if is_text(root / name)]


def is_text(path: Path) -> bool:
    data = path.read_bytes()
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("combo", COVERING_COMBINATIONS, ids=combo_id)
def test_hooks_pass_at_their_pinned_versions(combo, tmp_path, uv_path):
    """Each hook's tool, installed from PyPI at the pinned version, with the config's
    arguments, on the files pre-commit would give it: it passes and changes nothing."""
    root = generate(tmp_path, **combo)
    assert run(["git", "init", "--quiet"], cwd=root).returncode == 0
    assert run(["git", "add", "--all"], cwd=root).returncode == 0
    failures = []
    ran = 0
    for repo in hook_config(root)["repos"]:
        package = f"{HOOK_PACKAGES[repo['repo']]}=={repo['rev'].removeprefix('v')}"
        for hook in repo["hooks"]:
            command, kind = HOOKS[hook["id"]]
            files = files_of_type(root, kind)
            assert files, f"{hook['id']}: no files of type {kind}"
            argv = [uv_path, "tool", "run", "--from", package, *command, *hook.get("args", [])]
            result = run([*argv, *files], cwd=root)
            ran += 1
            if result.returncode != 0:
                failures.append(f"{hook['id']} ({package}): {result.stdout}{result.stderr}"[:2000])
    changed = run(["git", "diff", "--stat"], cwd=root).stdout
    assert failures == []
    assert changed == "", f"hooks rewrote files:\n{changed}"
    assert ran == len(HOOKS)


# Makefile


def test_every_make_target_parses_and_is_listed_by_help(project):
    targets = makefile_targets(project)
    assert {"dev", "worker", "test", "test-services", "test-browser", "lint", "format"} <= targets
    assert {"typecheck", "bench", "migrations-check", "audit", "pre-commit"} <= targets
    for target in sorted(targets):
        dry = run(["make", "--dry-run", target], cwd=project)
        assert dry.returncode == 0, f"make -n {target}: {dry.stderr}"
    listed = run(["make", "help"], cwd=project).stdout
    assert sorted(t for t in targets if f"make {t} " not in listed) == []


def test_readme_names_only_existing_make_targets(project):
    named = set(MAKE_CALL.findall((project / "README.md").read_text()))
    assert named, "the README shows the make targets"
    assert sorted(named - makefile_targets(project)) == []


def test_make_lint_passes(project):
    result = run(["make", "lint"], cwd=project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_make_migrations_check_passes(project):
    result = run(["make", "migrations-check"], cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout


def test_audit_checks_the_locked_dependencies_strictly(project, uv_path):
    """pip-audit needs a vulnerability service this machine cannot reach, so it is not
    run here (the supply-chain tests check the floors instead). What is checked: the
    audit reads exactly the lock, with hashes, and fails on a package it cannot check."""
    dry = run(["make", "--dry-run", "audit"], cwd=project).stdout
    assert "uv export --frozen" in dry
    assert "pip-audit --strict --disable-pip --require-hashes" in dry
    assert "bandit -c pyproject.toml -r ." in dry
    exported = run(
        [uv_path, "export", "--frozen", "--all-groups", "--no-emit-project", "--quiet"],
        cwd=project,
    )
    assert exported.returncode == 0, exported.stderr
    assert re.search(r"^django==5\.2\.\d+ ", exported.stdout, re.MULTILINE)
    assert "--hash=sha256:" in exported.stdout


def test_make_bench_runs_the_benchmark_module(project):
    bench = project / "bench"
    if not bench.is_dir():
        pytest.skip("bench/ is not in this template yet")
    dry = run(["make", "--dry-run", "bench"], cwd=project).stdout
    module = re.search(r"python -m ([\w.]+)", dry)
    assert module, dry
    path = project.joinpath(*module[1].split("."))
    assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file(), module[1]


# CI


@pytest.mark.parametrize(
    ("which", "schema"),
    [("github", "vendor.github-workflows"), ("gitlab", "vendor.gitlab-ci")],
)
def test_ci_file_is_valid_against_its_schema_offline(which, schema, project, gitlab_project):
    path = (
        project / ".github/workflows/ci.yml"
        if which == "github"
        else gitlab_project / ".gitlab-ci.yml"
    )
    # Any download would go to a closed port and fail: the schema must be built in.
    offline = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    command = [tool("check-jsonschema"), "--builtin-schema", schema]
    valid = run([*command, str(path)], cwd=path.parent, env=offline)
    assert valid.returncode == 0, valid.stdout + valid.stderr

    # The same check fails on a broken copy, so it really validates.
    broken = path.parent / f"broken-{path.name}"
    shutil.copy(path, broken)
    text = broken.read_text()
    broken.write_text(
        text.replace("script:", "scripts:")
        if which == "gitlab"
        else text.replace("runs-on:", "runs_on:")
    )
    invalid = run([*command, str(broken)], cwd=path.parent, env=offline)
    broken.unlink()
    assert invalid.returncode != 0


@pytest.mark.parametrize("which", ["github", "gitlab"])
def test_ci_jobs_call_only_existing_make_targets(which, project, gitlab_project):
    root = project if which == "github" else gitlab_project
    path = root / (".github/workflows/ci.yml" if which == "github" else ".gitlab-ci.yml")
    jobs = ci_make_calls(path)
    assert jobs, "no jobs found"
    assert [name for name, calls in jobs.items() if not calls] == [], "a job calls no make target"
    called = {target for calls in jobs.values() for target in calls}
    assert sorted(called - makefile_targets(root)) == []
    assert sorted(CI_MUST_RUN - called) == []


# mypy (coverage: tests/test_recipes.py)


@pytest.mark.slow
@pytest.mark.parametrize("combo", COVERING_COMBINATIONS, ids=combo_id)
def test_mypy_passes(combo, tmp_path, shared_python):
    root = generate(tmp_path, **combo)
    result = run(
        [str(shared_python), "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache"), "."],
        cwd=root,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout
