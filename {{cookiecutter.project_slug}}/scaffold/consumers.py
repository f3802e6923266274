"""What ``manage.py startconsumer`` writes: a consumer module, its route, and a test.

Everything is checked before anything is written, so a refused name changes nothing.
The functions take the project root, so tests can run them on a copy.
"""

from __future__ import annotations

import ast
import keyword
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# Imports that are not the project's own, in the modules startconsumer edits.
THIRD_PARTY = frozenset({"asgiref", "channels", "django"})
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

Added by ``manage.py startconsumer``, on the real-time layer's building blocks
(``realtime/``): a socket that needs a signed-in user and has none, or
that is over a socket cap, is refused at the handshake; a client that floods is
refused (``rate_limited`` error frames) and then closed; a frame that is not a JSON
object within ``WEBSOCKET_FRAME_MAX_BYTES``, or a ``ClientError`` raised while handling
one, gets a typed error frame and the socket stays open; a failing channel layer
closes the socket with 4503.$group_doc

It answers each JSON object with ``{"type": "echo", "data": <the object>}``. Replace
``receive_json`` with your own handling, and keep it thin: call a function in
``services.py`` for anything it changes.
https://channels.readthedocs.io/en/stable/topics/consumers.html
"""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
$imports

class $cls(
    LayerFaultsMixin, $guards, JsonFramesMixin, FastDispatchMixin, AsyncJsonWebsocketConsumer
):
    # True: anonymous sockets are refused at the handshake (close code 4401).
    login_required = False

    async def connect(self) -> None:
        if await self.refused_at_handshake():
            return$join
        await self.accept()$live

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        if not content:
            raise ClientError("empty_object", "Send an object with at least one key.")
        await self.send_json({"type": "echo", "data": content})
''')

GROUP_DOC = """

Every socket is a member of one group, ``${name}_group()``, through the process's
fan-out (one group member per process, whatever the number of sockets): send a frame
to all of them, in every process, with ``await ${name}_broadcast(frame={...})``, or
``async_to_sync(${name}_broadcast)(frame={...})`` from a view."""

GROUP_FUNCTIONS = '''

def ${name}_group() -> str:
    """The group of every socket of this consumer. Name groups only here, from checked
    parts, e.g. group_name("$app", "user", user.pk) for one user's sockets."""
    return group_name("$app", "$name")


async def ${name}_broadcast(*, frame: dict[str, Any]) -> None:
    """Send a frame to every socket of the group, in every server process."""
    event = frame_event("$app.$name", frame)
    await get_channel_layer().group_send(${name}_group(), event)
'''

TEST_TEMPLATE = Template('''"""$cls through WebsocketCommunicator on the real ASGI app."""

from __future__ import annotations

import pytest
$test_imports
pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3


async def connected(make_communicator):
    communicator = make_communicator("/$path")
    ok, code = await communicator.connect(timeout=TIMEOUT)
    assert ok, code
    return communicator


async def test_echoes_json(channel_layer, make_communicator):
    communicator = await connected(make_communicator)
    try:
        await communicator.send_json_to({"hello": "$app"})
        reply = await communicator.receive_json_from(timeout=TIMEOUT)
        assert reply == {"type": "echo", "data": {"hello": "$app"}}
    finally:
        await communicator.disconnect()


async def test_a_bad_frame_gets_an_error_frame(channel_layer, make_communicator):
    communicator = await connected(make_communicator)
    try:
        await communicator.send_to(text_data="not json")
        error = await communicator.receive_json_from(timeout=TIMEOUT)
        assert (error["type"], error["code"]) == ("error", "invalid_json")
        await communicator.send_json_to({})
        error = await communicator.receive_json_from(timeout=TIMEOUT)
        assert error["code"] == "empty_object"
        # The socket stays open.
        await communicator.send_json_to({"again": True})
        assert (await communicator.receive_json_from(timeout=TIMEOUT))["type"] == "echo"
    finally:
        await communicator.disconnect()
$group_test''')

GROUP_TEST = """

async def test_a_broadcast_reaches_every_socket(channel_layer, make_communicator):
    first = await connected(make_communicator)
    second = await connected(make_communicator)
    try:
        await ${name}_broadcast(frame={"type": "notice", "text": "hi"})
        for communicator in (first, second):
            frame = await communicator.receive_json_from(timeout=TIMEOUT)
            assert frame == {"type": "notice", "text": "hi"}
    finally:
        await first.disconnect()
        await second.disconnect()
"""


def consumer_source(name: str, app: str, *, group: bool = False) -> str:
    imports = ["from realtime.dispatch import FastDispatchMixin"]
    if group:
        imports.append("from realtime.fanout import FanoutMixin")
    imports.append("from realtime.faults import LayerFaultsMixin")
    imports.append("from realtime.frames import ClientError, JsonFramesMixin")
    if group:
        imports.append("from realtime.groups import frame_event, group_name")
    else:
        imports.append("from realtime.guards import GuardsMixin")
    head = "\n".join(imports) + "\n"
    if group:
        head = "from channels.layers import get_channel_layer\n\n" + head
        head += Template(GROUP_FUNCTIONS).substitute(name=name, app=app)
    else:
        head = "\n" + head
    return CONSUMER_TEMPLATE.substitute(
        cls=class_name(name),
        path=route_path(name),
        name=name,
        app=app,
        imports=head,
        guards="FanoutMixin" if group else "GuardsMixin",
        group_doc=Template(GROUP_DOC).substitute(name=name) if group else "",
        join=(
            "\n        # The group's frames wait in the fan-out until fanout_live().\n"
            f"        await self.join_fanout({name}_group())"
        )
        if group
        else "",
        live="\n        await self.fanout_live()" if group else "",
    )


def consumer_test_source(name: str, app: str, *, group: bool = False) -> str:
    return TEST_TEMPLATE.substitute(
        cls=class_name(name),
        path=route_path(name),
        name=name,
        app=app,
        test_imports=(f"\nfrom {app}.consumers.{name} import {name}_broadcast\n" if group else ""),
        group_test=Template(GROUP_TEST).substitute(name=name) if group else "",
    )


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
    first_party = [
        node
        for node in imports
        if (node.module or "").split(".")[0] not in THIRD_PARTY | sys.stdlib_module_names
    ]
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
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if (
            any(isinstance(t, ast.Name) and t.id == variable for t in targets)
            and isinstance(node, ast.Assign | ast.AnnAssign)
            and isinstance(node.value, ast.List)
        ):
            lines = source.splitlines(keepends=True)
            closing = (node.end_lineno or node.lineno) - 1
            if node.lineno - 1 == closing:
                raise ScaffoldError(f"write {variable} over several lines to let me add to it")
            lines.insert(closing, f"    {entry},\n")
            return "".join(lines)
    raise ScaffoldError(f"no list named {variable} found")


def plan_consumer(root: Path, app: str, name: str, *, group: bool = False) -> Plan:
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
    plan.created[module] = consumer_source(name, app, group=group)
    tests = app_dir / "tests"
    for package in (tests, tests / "consumers"):
        if not (package / "__init__.py").exists():
            plan.created[package / "__init__.py"] = ""
    test_module = tests / "consumers" / f"test_{name}.py"
    if test_module.exists():
        raise ScaffoldError(f"{test_module.relative_to(root)} already exists.")
    plan.created[test_module] = consumer_test_source(name, app, group=group)

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
