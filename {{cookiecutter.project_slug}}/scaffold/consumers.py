"""What ``manage.py startconsumer`` writes: a consumer module, its route, and a test.

Everything is checked before anything is written, so a refused name changes nothing.
The functions take the project root, so tests can run them on a copy.
"""

from __future__ import annotations

import ast
import keyword
import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
RESERVED = frozenset({"base", "faults", "refuse", "chat", "consumers", "routing", "tests"})


class ScaffoldError(ValueError):
    """The consumer cannot be added; the message says why and what would work."""


@dataclass
class Plan:
    """Files to create and files to change, computed before anything is written."""

    created: dict[Path, str] = field(default_factory=dict)
    changed: dict[Path, str] = field(default_factory=dict)


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + "Consumer"


def route_path(name: str) -> str:
    return f"ws/{name.replace('_', '-')}/"


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise ScaffoldError(
            f"{name!r} is not a valid consumer name: use lowercase letters, digits and "
            "underscores, starting with a letter, at most 40 characters (e.g. 'notifications')."
        )
    if keyword.iskeyword(name) or name in RESERVED:
        raise ScaffoldError(f"{name!r} is reserved: choose another name (e.g. '{name}_feed').")


CONSUMER_TEMPLATE = Template('''"""$cls: a JSON WebSocket consumer at ``/$path``.

Added by ``manage.py startconsumer $name``. It accepts every connection and answers
each JSON object with ``{"type": "echo", "data": <the object>}``; bad frames get a
typed error frame and the socket stays open. Replace ``receive_json`` with your own
handling, and keep it thin: call a function in ``services.py`` for anything it changes.
https://channels.readthedocs.io/en/stable/topics/consumers.html
"""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from realtime.frames import ClientError, encode, error_frame, parse_json_object


class $cls(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            content = parse_json_object(
                text_data, bytes_data, max_frame_bytes=settings.WEBSOCKET_FRAME_MAX_BYTES
            )
        except ClientError as error:
            await self.send_json(error_frame(error))
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        await self.send_json({"type": "echo", "data": content})

    @classmethod
    async def encode_json(cls, content: dict[str, Any]) -> str:
        return encode(content)
''')

TEST_TEMPLATE = Template('''"""$cls through WebsocketCommunicator on the real ASGI app."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3


async def test_${name}_echoes_json(channel_layer, make_communicator):
    communicator = make_communicator("/$path")
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    try:
        await communicator.send_json_to({"hello": "$app"})
        reply = await communicator.receive_json_from(timeout=TIMEOUT)
        assert reply == {"type": "echo", "data": {"hello": "$app"}}
        await communicator.send_to(text_data="not json")
        error = await communicator.receive_json_from(timeout=TIMEOUT)
        assert error["code"] == "invalid_json"
    finally:
        await communicator.disconnect()
''')


def consumer_source(name: str) -> str:
    return CONSUMER_TEMPLATE.substitute(cls=class_name(name), path=route_path(name), name=name)


def test_source(name: str, app: str) -> str:
    return TEST_TEMPLATE.substitute(cls=class_name(name), path=route_path(name), name=name, app=app)


ROUTING_TEMPLATE = Template('''"""WebSocket routes of the $app app, gathered by config/routing.py.

https://channels.readthedocs.io/en/stable/topics/routing.html
"""

from django.urls import re_path

websocket_urlpatterns = [
]
''')


def insert_import(source: str, line: str) -> str:
    """Add a ``from x import y`` line among the first-party imports, in sorted order."""
    module = line.split()[1]
    tree = ast.parse(source)
    imports = [
        node
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    ]
    if not imports:
        raise ScaffoldError("the routing module has no imports to place the consumer's after")
    lines = source.splitlines(keepends=True)
    first_party = [node for node in imports if (node.module or "").split(".")[0] != "django"]
    anchor = None
    for node in first_party:
        if (node.module or "") > module:
            anchor = node.lineno - 1
            break
    if anchor is None:
        last = first_party[-1] if first_party else imports[-1]
        anchor = last.end_lineno or last.lineno
        if not first_party:
            lines.insert(anchor, "\n")
            anchor += 1
    lines.insert(anchor, line + "\n")
    return "".join(lines)


def append_to_list(source: str, variable: str, entry: str) -> str:
    """Add an entry as the last element of the module-level list ``variable``."""
    tree = ast.parse(source)
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == variable for t in node.targets)
            and isinstance(node.value, ast.List)
        ):
            lines = source.splitlines(keepends=True)
            closing = (node.end_lineno or node.lineno) - 1
            if node.lineno - 1 == closing:
                raise ScaffoldError(f"write {variable} over several lines to let me add to it")
            lines.insert(closing, f"    {entry},\n")
            return "".join(lines)
    raise ScaffoldError(f"no list named {variable} found")


def plan_consumer(root: Path, app: str, name: str) -> Plan:
    """Everything startconsumer would write, or ScaffoldError if it must not."""
    check_name(name)
    app_dir = root / app
    if not (app_dir / "apps.py").exists():
        raise ScaffoldError(f"No app {app!r} in {root}: create it with manage.py startapp first.")
    if (app_dir / "consumers.py").exists():
        raise ScaffoldError(
            f"{app}/consumers.py is a module: turn it into a package "
            f"({app}/consumers/__init__.py) so each consumer has a module of its own."
        )
    module = app_dir / "consumers" / f"{name}.py"
    if module.exists():
        raise ScaffoldError(f"{module.relative_to(root)} already exists: choose another name.")
    cls = class_name(name)
    plan = Plan()
    routing = app_dir / "routing.py"
    config_routing = root / "config" / "routing.py"
    routing_source = (
        routing.read_text() if routing.exists() else ROUTING_TEMPLATE.substitute(app=app)
    )
    if cls in routing_source or f'"^{route_path(name)}$"' in routing_source:
        raise ScaffoldError(f"{app}/routing.py already routes {cls}: choose another name.")
    for other in sorted(root.glob("*/routing.py")):
        if f"^{route_path(name)}$" in other.read_text():
            raise ScaffoldError(
                f"/{route_path(name)} is already routed in {other.relative_to(root)}."
            )

    if not (app_dir / "consumers" / "__init__.py").exists():
        plan.created[app_dir / "consumers" / "__init__.py"] = f'"""Consumers of the {app} app."""\n'
    plan.created[module] = consumer_source(name)
    tests = app_dir / "tests"
    for package in (tests, tests / "consumers"):
        if not (package / "__init__.py").exists():
            plan.created[package / "__init__.py"] = ""
    test_module = tests / "consumers" / f"test_{name}.py"
    if test_module.exists():
        raise ScaffoldError(f"{test_module.relative_to(root)} already exists.")
    plan.created[test_module] = test_source(name, app)

    routing_source = insert_import(routing_source, f"from {app}.consumers.{name} import {cls}")
    routing_source = append_to_list(
        routing_source,
        "websocket_urlpatterns",
        f're_path(r"^{route_path(name)}$", {cls}.as_asgi())',
    )
    (plan.changed if routing.exists() else plan.created)[routing] = routing_source

    config_source = config_routing.read_text()
    if (
        f"{app}.routing" not in config_source
        and f"import routing as {app}_routing" not in config_source
    ):
        config_source = insert_import(config_source, f"from {app} import routing as {app}_routing")
        config_source = insert_before_catch_all(
            config_source, f"*{app}_routing.websocket_urlpatterns"
        )
        plan.changed[config_routing] = config_source
    return plan


def insert_before_catch_all(source: str, entry: str) -> str:
    """Add an entry to config/routing.py's websocket_urlpatterns before the catch-all."""
    marker = '    re_path(r"", RefuseConsumer.as_asgi()),\n'
    if marker not in source:
        return append_to_list(source, "websocket_urlpatterns", entry)
    return source.replace(marker, f"    {entry},\n{marker}", 1)


def apply(plan: Plan) -> None:
    for path, text in {**plan.created, **plan.changed}.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
