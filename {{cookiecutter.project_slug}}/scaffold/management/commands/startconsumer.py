"""``manage.py startconsumer <name> --app <app> [--group]``: add a consumer module on
the real-time layer's building blocks, its route in the app's
``websocket_urlpatterns`` (and the app's routes in ``config/routing.py``), and a
passing test, in the project's style. ``--group`` puts every socket in one group
through the fan-out, with the function that names it and one that broadcasts to it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scaffold.consumers import ScaffoldError, apply, class_name, plan_consumer, route_path


class Command(BaseCommand):
    help = "Add a WebSocket consumer, its route and its test to an app."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="module name of the consumer, e.g. notifications")
        parser.add_argument("--app", required=True, help="the app to add it to, e.g. notes")
        parser.add_argument(
            "--group",
            action="store_true",
            help="every socket joins one group; write its name and broadcast functions",
        )

    def handle(self, *args: Any, name: str, app: str, group: bool, **options: Any) -> None:
        root = settings.BASE_DIR
        try:
            plan = plan_consumer(root, app, name, group=group)
        except ScaffoldError as error:
            raise CommandError(str(error)) from None
        apply(plan)
        for path in plan.created:
            self.stdout.write(f"created  {path.relative_to(root)}")
        for path in plan.changed:
            self.stdout.write(f"changed  {path.relative_to(root)}")
        self.stdout.write(
            f"\n{class_name(name)} answers at /{route_path(name)}. Next:\n"
            f"  1. edit {app}/consumers/{name}.py: replace receive_json with your handling\n"
            f"     (put what it changes in {app}/services.py, what it reads in selectors.py);\n"
            f"  2. edit {app}/tests/consumers/test_{name}.py to test what you built;\n"
            "  3. run: uv run pytest\n"
        )
