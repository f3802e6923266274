"""Supply chain checks that work offline.

``pip-audit`` needs a vulnerability database this machine cannot reach (it would skip
every package and still report nothing found), so instead: the generated project's
dependency floors must exclude releases with known advisories, and ``bandit`` must
find nothing in the generated code, or each finding must be silenced with its reason.
"""

from __future__ import annotations

import json
import re
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.generation import generate, run, tool

# Releases that later security releases fixed; the floors must exclude each.
ADVISORY_RELEASES = {
    "daphne": ["4.2.1", "4.2.0", "4.1.2"],  # fixed in 4.2.2
    "django": [
        "5.2.6",  # CVE-2025-59681, fixed in 5.2.7
        "5.2.7",  # CVE-2025-64459, fixed in 5.2.8
        "5.2.8",  # CVE-2025-64460 and CVE-2025-13372, fixed in 5.2.9
    ],
}
# Releases the floors must still allow (the range is not accidentally empty).
CURRENT = {"daphne": "4.2.3", "django": "5.2.19", "channels": "4.3.2"}
NOSEC_RE = re.compile(r"#\s*nosec\b(.*)$")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("supply"))


@pytest.fixture(scope="module")
def requirements(project) -> dict[str, Requirement]:
    data = tomllib.loads((project / "pyproject.toml").read_text())
    parsed = [Requirement(line) for line in data["project"]["dependencies"]]
    return {requirement.name.lower(): requirement for requirement in parsed}


@pytest.mark.parametrize(
    ("package", "version"),
    [(package, version) for package, versions in ADVISORY_RELEASES.items() for version in versions],
)
def test_floors_exclude_releases_with_advisories(requirements, package, version):
    assert not requirements[package].specifier.contains(version), (
        f"{package} {requirements[package].specifier} admits {version}, which has an advisory"
    )


@pytest.mark.parametrize(("package", "version"), sorted(CURRENT.items()))
def test_floors_admit_current_releases(requirements, package, version):
    assert requirements[package].specifier.contains(version)


def test_django_stays_on_the_5_2_lts(requirements):
    assert not requirements["django"].specifier.contains("6.0")


def test_bandit_finds_nothing_in_the_generated_code(project):
    # Test code asserts by design (the test helpers in realtime/testing/ and
    # deploy/docker's test module too); the virtualenv is not ours.
    excluded = "./.venv,./conftest.py,*/tests/*,./realtime/testing/*,*/test_*.py"
    result = run([tool("bandit"), "-r", ".", "-x", excluded, "-f", "json", "-q"], cwd=project)
    report = json.loads(result.stdout)
    findings = [
        f"{item['filename']}:{item['line_number']} {item['test_id']} {item['issue_text']}"
        for item in report["results"]
    ]
    assert findings == []
    assert report["metrics"]["_totals"]["loc"] > 1000  # it really read the project


def test_every_nosec_names_the_check_and_gives_a_reason(project):
    unexplained = []
    for path in sorted(project.rglob("*.py")):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            match = NOSEC_RE.search(line)
            if not match:
                continue
            named = re.search(r"B\d{3}", match.group(1))
            inline = re.sub(r"B\d{3}[, ]*", "", match.group(1)).strip(" -:")
            previous = lines[number - 1].strip() if number else ""
            # The reason follows the check's id, or is the comment on the line above.
            reasoned = len(inline.split()) >= 3 or (
                previous.startswith("#") and len(previous.split()) >= 4
            )
            if not (named and reasoned):
                unexplained.append(f"{path.relative_to(project)}:{number + 1}")
    assert unexplained == []
