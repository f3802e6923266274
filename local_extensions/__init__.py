"""Cookiecutter extensions of this template (``_extensions`` in cookiecutter.json).

Cookiecutter puts the template folder on ``sys.path`` while it generates, so this
package is found wherever the template was cloned. ``answers`` holds the rules for
the answers, shared by the derived defaults here and the pre-generation hook.
https://cookiecutter.readthedocs.io/en/stable/advanced/template_extensions.html
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment
from jinja2.ext import Extension

from local_extensions.answers import derive_slug


class ProjectSlugExtension(Extension):
    """The ``project_slug`` filter: a valid package name derived from a project name;
    and ``template_folder``, where this template lies (the hooks import ``answers``
    from it: cookiecutter's ``_repo_dir`` may be relative to a folder they cannot know)."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["project_slug"] = derive_slug
        environment.globals["template_folder"] = str(Path(__file__).resolve().parent.parent)
