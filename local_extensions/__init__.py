"""Cookiecutter extensions of this template (``_extensions`` in cookiecutter.json).

Cookiecutter puts the template folder on ``sys.path`` while it generates, so this
package is found wherever the template was cloned. ``answers`` holds the rules for
the answers, shared by the derived defaults here and the pre-generation hook.
https://cookiecutter.readthedocs.io/en/stable/advanced/template_extensions.html
"""

from __future__ import annotations

from jinja2 import Environment
from jinja2.ext import Extension

from local_extensions.answers import derive_slug


class ProjectSlugExtension(Extension):
    """The ``project_slug`` filter: a valid package name derived from a project name."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["project_slug"] = derive_slug
