"""startconsumer's planning and writing, on a copy of the project in a temp folder."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from scaffold.consumers import ScaffoldError, class_name, plan_consumer, route_path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The parts of the project startconsumer reads and writes."""
    root = tmp_path / "project"
    shutil.copytree(
        settings.BASE_DIR / "chat", root / "chat", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "config").mkdir()
    shutil.copy(settings.BASE_DIR / "config" / "routing.py", root / "config" / "routing.py")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_names():
    assert class_name("live_scores") == "LiveScoresConsumer"
    assert route_path("live_scores") == "ws/live-scores/"


def test_the_command_adds_module_route_and_test(project, capsys):
    with override_settings(BASE_DIR=project):
        call_command("startconsumer", "live_scores")
    out = capsys.readouterr().out
    module = project / "chat" / "consumers" / "live_scores.py"
    test = project / "chat" / "tests" / "consumers" / "test_live_scores.py"
    assert module.exists()
    assert test.exists()
    routing = (project / "chat" / "routing.py").read_text()
    assert "from chat.consumers.live_scores import LiveScoresConsumer\n" in routing
    assert 're_path(r"^ws/live-scores/$", LiveScoresConsumer.as_asgi()),' in routing
    for path in (module, test, project / "chat" / "routing.py"):
        ast.parse(path.read_text())
    assert "created  chat/consumers/live_scores.py" in out
    assert "changed  chat/routing.py" in out
    assert "Next:" in out
    # config/routing.py already gathers the chat app's routes: left alone.
    assert (project / "config" / "routing.py").read_text() == (
        settings.BASE_DIR / "config" / "routing.py"
    ).read_text()


def test_a_new_app_gets_a_routing_module_and_is_gathered(project):
    app = project / "scores"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "apps.py").write_text("")
    with override_settings(BASE_DIR=project):
        call_command("startconsumer", "feed", "--app", "scores")
    routing = (app / "routing.py").read_text()
    assert "from scores.consumers.feed import FeedConsumer" in routing
    config = (project / "config" / "routing.py").read_text()
    assert "from scores import routing as scores_routing" in config
    lines = config.splitlines()
    assert lines.index("    *scores_routing.websocket_urlpatterns,") < lines.index(
        '    re_path(r"", RefuseConsumer.as_asgi()),'
    )
    ast.parse(config)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad-Name"], "is not a valid consumer name"),
        (["1feed"], "is not a valid consumer name"),
        (["x" * 41], "is not a valid consumer name"),
        (["class"], "is reserved"),
        (["chat"], "is reserved"),
        (["feed", "--app", "nowhere"], "No app 'nowhere'"),
    ],
)
def test_bad_names_are_refused_and_nothing_changes(project, args, message):
    before = snapshot(project)
    with override_settings(BASE_DIR=project), pytest.raises(CommandError, match=message):
        call_command("startconsumer", *args)
    assert snapshot(project) == before


def test_a_taken_name_is_refused_and_nothing_changes(project):
    with override_settings(BASE_DIR=project):
        call_command("startconsumer", "feed")
    before = snapshot(project)
    with override_settings(BASE_DIR=project), pytest.raises(CommandError, match="already exists"):
        call_command("startconsumer", "feed")
    assert snapshot(project) == before


def test_a_consumers_module_must_become_a_package_first(project):
    app = project / "legacy"
    app.mkdir()
    (app / "apps.py").write_text("")
    (app / "consumers.py").write_text("")
    with pytest.raises(ScaffoldError, match="turn it into a package"):
        plan_consumer(project, "legacy", "feed")
