"""``manage.py startapp <name>``: Django's command with this project's app template.

Django's own stubs import names they do not use (``admin``, ``models``, ``TestCase``),
which ``make lint`` refuses; ``scaffold/app_template/`` holds the same files as
one-line placeholders, with a ``tests/`` package as the suite's layout expects. Pass
``--template`` to use another.
https://docs.djangoproject.com/en/5.2/ref/django-admin/#startapp
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.commands import startapp

APP_TEMPLATE = Path(__file__).resolve().parents[2] / "app_template"


class Command(startapp.Command):
    # Django's startapp.Command.handle takes **options only; the stubs give it
    # TemplateCommand's positional signature.
    def handle(self, **options: Any) -> None:  # type: ignore[override]
        options["template"] = options.get("template") or str(APP_TEMPLATE)
        super().handle(**options)
