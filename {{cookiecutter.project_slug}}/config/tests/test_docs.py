"""The tutorial in docs/ cannot drift from the code: every excerpt must appear, line
for line, in the file it names; every path and link it gives must exist; the README
links the chapters in order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
DOCS = ROOT / "docs"
CHAPTERS = [
    "first-run.md",
    "consumers.md",
    "routing.md",
    "asgi.md",
    "channel-layers.md",
    "sessions-and-auth.md",
    "database.md",
    "worker.md",
    "testing.md",
    "deploying.md",
    "scaling.md",
    "your-own-consumer.md",
]
EXCERPT_RE = re.compile(
    r"<!-- excerpt: (?P<path>\S+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S
)
FENCE_RE = re.compile(r"^```(\w*)$", re.M)
PATH_RE = re.compile(
    r"`((?:chat|config|accounts|realtime|scaffold|templates|deploy|bench|docs)/[\w./<>-]*)`"
)
LINK_RE = re.compile(r"\]\(([\w-]+\.md)(?:#[\w-]+)?\)")


def doc_files() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def test_every_chapter_exists():
    assert [name for name in CHAPTERS if not (DOCS / name).exists()] == []


def test_the_readme_links_the_chapters_in_order():
    readme = (ROOT / "README.md").read_text()
    positions = [readme.find(f"(docs/{name})") for name in CHAPTERS]
    assert -1 not in positions, [n for n, p in zip(CHAPTERS, positions, strict=True) if p == -1]
    assert positions == sorted(positions)


def test_each_chapter_is_numbered_and_links_the_next():
    for number, name in enumerate(CHAPTERS, start=1):
        lines = (DOCS / name).read_text().rstrip().splitlines()
        assert lines[0].startswith(f"# {number}. "), f"{name}: {lines[0]!r}"
        following = CHAPTERS[number] if number < len(CHAPTERS) else None
        last = lines[-1]
        if following is None:
            assert not last.startswith("Next:"), f"{name} is the last chapter"
        else:
            assert last.startswith("Next: ["), f"{name}: {last!r}"
            assert f"]({following})" in last, f"{name}: {last!r}"


@pytest.mark.parametrize("doc", doc_files(), ids=lambda path: path.name)
def test_excerpts_match_the_source(doc):
    text = doc.read_text()
    excerpts = list(EXCERPT_RE.finditer(text))
    for match in excerpts:
        source = ROOT / match["path"]
        assert source.exists(), f"{doc.name}: {match['path']} does not exist"
        assert match["code"] in source.read_text(), (
            f"{doc.name}: an excerpt no longer matches {match['path']}:\n{match['code']}"
        )
    python_blocks = [m for m in FENCE_RE.finditer(text) if m.group(1) == "python"]
    marked_python = [m for m in excerpts if m["lang"] == "python"]
    assert len(python_blocks) == len(marked_python), (
        f"{doc.name}: every python block must be an excerpt with a source marker"
    )


@pytest.mark.parametrize("doc", doc_files(), ids=lambda path: path.name)
def test_paths_and_links_exist(doc):
    text = doc.read_text()
    missing = [
        path
        for path in PATH_RE.findall(text)
        if "<" not in path and not (ROOT / path.rstrip(".,")).exists()
    ]
    assert missing == []
    broken = [link for link in LINK_RE.findall(text) if not (DOCS / link).exists()]
    assert broken == []


def test_the_checker_catches_drift(tmp_path):
    # A guard on the guard: an excerpt that is not in its source does not match.
    sample = "<!-- excerpt: chat/rooms.py -->\n```python\ndef not_in_the_source():\n```"
    match = EXCERPT_RE.search(sample)
    assert match is not None
    assert match["code"] not in (ROOT / "chat" / "rooms.py").read_text()
