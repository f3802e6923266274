"""Every option combination generates a clean project; a covering set also passes
its own test suite."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests import tiers
from tests.generation import (
    ALL_COMBINATIONS,
    COVERING_COMBINATIONS,
    DEFAULTS,
    SERVICES_TIER_SOURCES,
    TEMPLATE_DIR,
    UNRENDERED,
    combo_id,
    generate,
    generated_pytest,
    run,
    services_tier_env,
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
    check_once(root, "djlint", DJLINT_READS, [tool("djlint"), "--check", "--lint", "."])
    check_once(
        root, "django", DJANGO_READS, [str(shared_python), "-c", CHECK_SCRIPT],
        env={"DJANGO_SETTINGS_MODULE": "config.settings.local", "PYTHONPATH": str(root)},
        says="checks-ok",
    )  # fmt: skip


# The files each slow check reads. Most answers change none of them (the Python files
# vary with database, channel_layer and use_docker only, the templates with nothing), so a check
# runs once per distinct content in each worker: the same inputs, the same outcome.
DJLINT_READS = {".html", "pyproject.toml"}
DJANGO_READS = {".py", ".html", ".env"}
# Digests of inputs a check passed on, in this worker.
PASSED: set[str] = set()
FRESH_SECRET = re.compile(rb"^DJANGO_SECRET_KEY=.*$", re.M)


def inputs_digest(root: Path, check: str, reads: set[str]) -> str:
    """One digest of a check's name and of every file it reads (by suffix or name), with
    .env's fresh secret key left out."""
    digest = hashlib.sha256(check.encode())
    for path in sorted(root.rglob("*")):
        if path.is_file() and (path.suffix in reads or path.name in reads):
            content = path.read_bytes()
            if path.name == ".env":
                content = FRESH_SECRET.sub(b"", content)
            digest.update(f"\0{path.relative_to(root)}\0".encode() + content)
    return digest.hexdigest()


def check_once(
    root: Path,
    check: str,
    reads: set[str],
    args: list[str],
    env: dict[str, str] | None = None,
    says: str = "",
) -> None:
    """Run a check in a generated project, which must exit 0 and print ``says``, unless
    it passed in this worker on the same inputs."""
    inputs = inputs_digest(root, check, reads)
    if inputs in PASSED:
        return
    result = run(args, cwd=root, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert says in result.stdout, result.stdout
    PASSED.add(inputs)


def test_a_checks_inputs_digest_changes_with_what_it_reads_only(tmp_path):
    root = generate(tmp_path)
    before = inputs_digest(root, "django", DJANGO_READS)
    env = root / ".env"
    env.write_text(
        re.sub(r"(?m)^DJANGO_SECRET_KEY=.*$", "DJANGO_SECRET_KEY=another", env.read_text())
    )
    (root / "README.md").write_text("not read by the checks")
    assert inputs_digest(root, "django", DJANGO_READS) == before
    templates = inputs_digest(root, "djlint", DJLINT_READS)
    for path in ("config/urls.py", "templates/base.html", ".env"):
        changed = root / path
        original = changed.read_text()
        changed.write_text(original + "\n# changed\n")
        assert inputs_digest(root, "django", DJANGO_READS) != before, path
        djlint_reads_it = path.endswith(".html")
        assert (inputs_digest(root, "djlint", DJLINT_READS) != templates) == djlint_reads_it, path
        changed.write_text(original)
    assert inputs_digest(root, "django", DJANGO_READS) == before


def embedded_combinations() -> list[dict[str, str]]:
    """The combinations whose suite runs with no services. In that mode a project runs
    on SQLite and the in-memory layer whatever its answers, so when the services tier
    runs every covering combination's suite (the same tests, on the answers' own
    database and layer), the defaults' embedded run is the one left to do."""
    return [DEFAULTS] if tiers.SERVICES.missing() is None else COVERING_COMBINATIONS


@pytest.mark.slow
@pytest.mark.parametrize("combo", embedded_combinations(), ids=combo_id)
def test_generated_project_passes_its_own_tests(combo, tmp_path, uv_path):
    root = generate(tmp_path, **combo)
    sync = run([uv_path, "sync", "--quiet"], cwd=root)
    assert sync.returncode == 0, sync.stderr
    # The browser tier runs in test_browser_tier.py, for the default combination.
    result = run(generated_pytest(uv_path, root, "-q", "-m", "not browser"), cwd=root)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    # With no services the services tier is skipped, and the summary says why.
    assert SERVICES_SKIPPED.search(result.stdout), result.stdout[-5000:]


# A services-tier module's skip line in pytest's -ra summary, naming the variable.
SERVICES_SKIPPED = re.compile(
    r"^SKIPPED \[\d+\] chat/tests/test_cross_process\.py:\d+: services tier: REDIS_URL unset",
    re.M,
)
# The services tier's own modules: each of their tests must have run and passed.
SERVICES_MODULES = ("chat.tests.test_cross_process", "chat.tests.test_faults")
SERVICES_TIER_TIMEOUT = 1800


def junit_outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """Each test of a pytest JUnit report: its outcome and, if skipped, the reason."""
    outcomes = {}
    tree = ElementTree.parse(report)  # noqa: S314 - the report our own pytest run wrote
    for case in tree.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome, reason = "passed", ""
        for kind in ("failure", "error", "skipped"):
            element = case.find(kind)
            if element is not None:
                outcome, reason = kind, element.get("message", "")
        outcomes[name] = (outcome, reason)
    return outcomes


@pytest.mark.slow
@pytest.mark.parametrize("combo", COVERING_COMBINATIONS, ids=combo_id)
def test_generated_project_passes_its_services_tier(combo, tmp_path, uv_path):
    """The generated suite on PostgreSQL and Redis: the same tests, plus the services
    tier (many processes, faults). The browser tier is test_browser_tier.py's."""
    env, unset = services_tier_env(combo)
    if unset:
        pytest.skip(f"services tier not run: {' and '.join(unset)} unset (.ci/run exports them)")
    root = generate(tmp_path, **combo)
    sync = run([uv_path, "sync", "--quiet"], cwd=root)
    assert sync.returncode == 0, sync.stderr
    report = tmp_path / "services.xml"
    started = time.monotonic()
    # Coverage is the embedded run's business; here it would only slow the processes.
    pytest_args = ("-q", "-m", "not browser", "--no-cov", f"--junitxml={report}")
    result = run(
        generated_pytest(uv_path, root, *pytest_args),
        cwd=root,
        env=env,
        timeout=SERVICES_TIER_TIMEOUT,
    )
    elapsed = time.monotonic() - started
    output = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    outcomes = junit_outcomes(report)
    # A SQLite project's tier runs without DATABASE_URL: only PostgreSQL-only tests skip.
    allowed = "DATABASE_URL unset" if combo["database"] == "sqlite" else None
    tier_skips = [
        name
        for name, (_, reason) in outcomes.items()
        if "services tier" in reason and not (allowed and allowed in reason)
    ]
    assert tier_skips == [], output
    tier = {
        name: outcome
        for name, (outcome, reason) in outcomes.items()
        if name.startswith(SERVICES_MODULES) and not (allowed and allowed in reason)
    }
    assert tier, output
    assert set(tier.values()) == {"passed"}, tier
    summary = next(line for line in reversed(result.stdout.splitlines()) if " passed" in line)
    print(f"services tier ({combo_id(combo)}): {elapsed:.0f} s; {summary}")


def test_ci_exports_the_services_tier_variables():
    """.ci/run checks both services answer (starting one that does not), then exports
    the URLs the services-tier tests read."""
    script = (TEMPLATE_DIR / ".ci" / "run").read_text()
    exports = dict(re.findall(r'^export (TEST_\w+_URL)="([^"]+)"$', script, re.M))
    assert exports == {
        "TEST_DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
        "TEST_REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    assert set(exports) == set(SERVICES_TIER_SOURCES)
    checked = max(script.rindex("pg_isready -h 127.0.0.1"), script.rindex("redis-cli -h 127.0.0.1"))
    assert checked < script.index("export TEST_DATABASE_URL")


def test_default_project_name_gives_a_valid_slug(tmp_path):
    root = generate(tmp_path)
    assert root.name == "my_channels_project"
    assert Path(root / "manage.py").exists()
