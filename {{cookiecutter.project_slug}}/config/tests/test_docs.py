"""The tutorial in docs/ cannot drift from the code: every excerpt must appear, line
for line, in the file it names; every path and link it gives must exist; the README
links the chapters in order. The tutorial walks through the example chat: once the
chat is removed (README, "Removing the example chat"), what it says about ``chat/`` and
the chat's benchmark ``bench/`` is no longer checked, and everything else still is."""

from __future__ import annotations

import ast
import re
import shutil
from importlib import import_module
from pathlib import Path

import pytest
from django.conf import settings

from realtime import closecodes
from scaffold.consumers import plan_consumer

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
# The last chapter's code is not in the project until the reader writes it: what
# startconsumer writes, checked against what it would write; whole files the reader
# writes, checked here to parse (the template's tests run them in a generated project).
GENERATED_RE = re.compile(
    r"<!-- startconsumer: (?P<path>\S+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S
)
WRITTEN_RE = re.compile(r"<!-- file: (?P<path>\S+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)\n```", re.S)
STARTCONSUMER_RE = re.compile(
    r"manage\.py startconsumer (?P<name>\w+) --app (?P<app>\w+)(?P<group> --group)?"
)
FENCE_RE = re.compile(r"^```(\w*)$", re.M)
PATH_RE = re.compile(
    r"`((?:chat|config|accounts|realtime|scaffold|templates|deploy|bench|docs)/[\w./<>-]*)`"
)
LINK_RE = re.compile(r"\]\(([\w-]+\.md)(?:#[\w-]+)?\)")
# The example chat and its benchmark, while they are part of the project.
EXAMPLE_PARTS = ("chat/", "bench/")
EXAMPLE_REMOVED = not (ROOT / "chat").exists()


def checked(path: str) -> bool:
    return not (EXAMPLE_REMOVED and path.startswith(EXAMPLE_PARTS))


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
        if not checked(match["path"]):
            continue
        source = ROOT / match["path"]
        assert source.exists(), f"{doc.name}: {match['path']} does not exist"
        assert match["code"] in source.read_text(), (
            f"{doc.name}: an excerpt no longer matches {match['path']}:\n{match['code']}"
        )
    python_blocks = [m for m in FENCE_RE.finditer(text) if m.group(1) == "python"]
    marked = [*excerpts, *GENERATED_RE.finditer(text), *WRITTEN_RE.finditer(text)]
    marked_python = [m for m in marked if m["lang"] == "python"]
    assert len(python_blocks) == len(marked_python), (
        f"{doc.name}: every python block must be an excerpt with a source marker"
    )


@pytest.mark.parametrize("doc", doc_files(), ids=lambda path: path.name)
def test_paths_and_links_exist(doc):
    text = doc.read_text()
    missing = [
        path
        for path in PATH_RE.findall(text)
        if "<" not in path and checked(path) and not (ROOT / path.rstrip(".,")).exists()
    ]
    assert missing == []
    broken = [link for link in LINK_RE.findall(text) if not (DOCS / link).exists()]
    assert broken == []


def test_the_checker_catches_drift(tmp_path):
    # A guard on the guard: an excerpt that is not in its source does not match.
    sample = "<!-- excerpt: realtime/groups.py -->\n```python\ndef not_in_the_source():\n```"
    match = EXCERPT_RE.search(sample)
    assert match is not None
    assert match["code"] not in (ROOT / "realtime" / "groups.py").read_text()
    assert checked("realtime/groups.py")


def test_the_last_chapters_code_is_what_startconsumer_writes(tmp_path):
    chapter = (DOCS / "your-own-consumer.md").read_text()
    command = STARTCONSUMER_RE.search(chapter)
    assert command, "the chapter runs startconsumer"
    app, name = command["app"], command["name"]
    (tmp_path / app).mkdir()
    (tmp_path / app / "apps.py").write_text("")
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "routing.py", tmp_path / "config" / "routing.py")
    plan = plan_consumer(tmp_path, app, name, group=bool(command["group"]))
    written = {str(path.relative_to(tmp_path)): text for path, text in plan.created.items()}
    generated = list(GENERATED_RE.finditer(chapter))
    assert generated
    for match in generated:
        assert match["path"] in written, match["path"]
        assert match["code"] in written[match["path"]], (
            f"startconsumer no longer writes this into {match['path']}:\n{match['code']}"
        )
    for match in WRITTEN_RE.finditer(chapter):
        assert match["path"].startswith(f"{app}/"), match["path"]
        ast.parse(match["code"])


def test_every_registered_close_code_is_in_the_consumers_chapter():
    import_module(settings.ASGI_APPLICATION.rpartition(".")[0])  # every app's consumers
    rows = re.findall(r"^\| (\d{4}) \|", (DOCS / "consumers.md").read_text(), re.M)
    registered = [str(code.code) for code in closecodes.registered()]
    assert [code for code in registered if code not in rows] == []
