"""startconsumer's planning and writing, on a copy of the project in a temp folder."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from scaffold.consumers import (
    ScaffoldError,
    class_name,
    insert_before_catch_all,
    insert_import,
    plan_consumer,
    route_path,
)

NOTES_ROUTING = '''"""WebSocket routes of the notes app."""

from django.urls import re_path

from notes.consumers.feed import FeedConsumer

websocket_urlpatterns = [
    re_path(r"^ws/feed/$", FeedConsumer.as_asgi()),
]
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The parts of the project startconsumer reads and writes: config/routing.py, and
    an app ``notes`` with a consumer and routes of its own, gathered there."""
    root = tmp_path / "project"
    (root / "config").mkdir(parents=True)
    routing = (settings.BASE_DIR / "config" / "routing.py").read_text()
    routing = insert_import(routing, "from notes import routing as notes_routing")
    routing = insert_before_catch_all(routing, "*notes_routing.websocket_urlpatterns")
    (root / "config" / "routing.py").write_text(routing)
    notes = root / "notes"
    (notes / "consumers").mkdir(parents=True)
    for path in ("__init__.py", "apps.py", "consumers/__init__.py", "consumers/feed.py"):
        (notes / path).write_text("")
    (notes / "routing.py").write_text(NOTES_ROUTING)
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_names():
    assert class_name("live_scores") == "LiveScoresConsumer"
    assert route_path("live_scores") == "ws/live-scores/"


def test_the_command_adds_module_route_and_test(project, capsys):
    config_before = (project / "config" / "routing.py").read_text()
    with override_settings(BASE_DIR=project):
        call_command("startconsumer", "live_scores", "--app", "notes")
    out = capsys.readouterr().out
    module = project / "notes" / "consumers" / "live_scores.py"
    test = project / "notes" / "tests" / "consumers" / "test_live_scores.py"
    assert module.exists()
    assert test.exists()
    routing = (project / "notes" / "routing.py").read_text()
    assert "from notes.consumers.live_scores import LiveScoresConsumer\n" in routing
    assert 're_path(r"^ws/live-scores/$", LiveScoresConsumer.as_asgi()),' in routing
    for path in (module, test, project / "notes" / "routing.py"):
        ast.parse(path.read_text())
    source = module.read_text()
    # The real-time layer's building blocks, and no group without --group.
    assert "LayerFaultsMixin, GuardsMixin, JsonFramesMixin, FastDispatchMixin" in source
    assert "await self.refused_at_handshake()" in source
    assert "group" not in source.lower().replace("groups.", "")
    assert "created  notes/consumers/live_scores.py" in out
    assert "changed  notes/routing.py" in out
    assert "Next:" in out
    # config/routing.py already gathers the notes app's routes: left alone.
    assert (project / "config" / "routing.py").read_text() == config_before


def test_group_gives_the_consumer_a_named_group_and_a_broadcast(project):
    with override_settings(BASE_DIR=project):
        call_command("startconsumer", "alerts", "--app", "notes", "--group")
    source = (project / "notes" / "consumers" / "alerts.py").read_text()
    tree = ast.parse(source)
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "alerts_group" in functions
    assert 'return group_name("notes", "alerts")' in source
    assert "LayerFaultsMixin, FanoutMixin, JsonFramesMixin, FastDispatchMixin" in source
    assert "await self.join_fanout(alerts_group())" in source
    assert "await self.fanout_live()" in source
    test = (project / "notes" / "tests" / "consumers" / "test_alerts.py").read_text()
    assert "from notes.consumers.alerts import alerts_broadcast" in test
    assert "async def test_a_broadcast_reaches_every_socket(" in test
    ast.parse(test)


def test_a_new_app_gets_a_routing_module_and_is_gathered(project):
    app = project / "scores"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "apps.py").write_text("")
    with override_settings(BASE_DIR=project):
        call_command("startconsumer", "board", "--app", "scores")
    routing = (app / "routing.py").read_text()
    assert "from scores.consumers.board import BoardConsumer" in routing
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
        (["Bad-Name", "--app", "notes"], "is not a valid consumer name"),
        (["1feed", "--app", "notes"], "is not a valid consumer name"),
        (["x" * 41, "--app", "notes"], "is not a valid consumer name"),
        (["class", "--app", "notes"], "is reserved"),
        (["chat", "--app", "notes"], "is reserved"),
        (["board", "--app", "nowhere"], "No app 'nowhere'"),
        (["board"], "the following arguments are required: --app"),
    ],
)
def test_bad_names_are_refused_and_nothing_changes(project, args, message):
    before = snapshot(project)
    with override_settings(BASE_DIR=project), pytest.raises(CommandError, match=message):
        call_command("startconsumer", *args)
    assert snapshot(project) == before


def test_a_taken_name_is_refused_and_nothing_changes(project):
    before = snapshot(project)
    with override_settings(BASE_DIR=project), pytest.raises(CommandError, match="already exists"):
        call_command("startconsumer", "feed", "--app", "notes")
    assert snapshot(project) == before


def test_a_consumers_module_must_become_a_package_first(project):
    app = project / "legacy"
    app.mkdir()
    (app / "apps.py").write_text("")
    (app / "consumers.py").write_text("")
    with pytest.raises(ScaffoldError, match="turn it into a package"):
        plan_consumer(project, "legacy", "feed")
