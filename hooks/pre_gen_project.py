"""Refuse bad answers before any file is written.

Cookiecutter renders this file with Jinja and runs it before generation; a non-zero
exit stops generation. Standard library only: generation must work offline.
The checks are plain functions so that ``tests/test_hooks.py`` can call them.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
import zoneinfo

# Modules the generated project imports (or whose name it uses as a package): a slug
# equal to one of these would shadow it. The standard library is added below.
SHADOWED_MODULES = frozenset(
    {
        "asgiref",
        "autobahn",
        "bench",
        "channels",
        "channels_redis",
        "chat",
        "config",
        "conftest",
        "daphne",
        "dj_database_url",
        "django",
        "docs",
        "hiredis",
        "httptools",
        "hypothesis",
        "msgpack",
        "psycopg",
        "pytest",
        "redis",
        "selenium",
        "static",
        "templates",
        "test",
        "tests",
        "twisted",
        "uvicorn",
        "uvloop",
        "websockets",
    }
)

CHOICES = {
    "database": ("postgresql", "sqlite"),
    "channel_layer": ("redis", "redis_pubsub"),
    "use_docker": ("y", "n"),
    "ci_tool": ("github", "gitlab", "none"),
    "open_source_license": ("MIT", "BSD-3-Clause", "Apache-2.0", "not open source"),
}

SLUG_RE = re.compile(r"^[a-z][a-z0-9_]*$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
DOMAIN_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class AnswerError(ValueError):
    """One refused answer; its message is the single line the user sees."""


def check_slug(slug: str) -> None:
    """A slug must be a lowercase identifier that shadows nothing the project imports."""
    if not SLUG_RE.match(slug) or not slug.isascii():
        raise AnswerError(
            f"project_slug {slug!r} is not a lowercase Python identifier: "
            "use letters a-z, digits and underscores, starting with a letter "
            "(e.g. 'my_chat')."
        )
    if keyword.iskeyword(slug) or keyword.issoftkeyword(slug):
        raise AnswerError(
            f"project_slug {slug!r} is a Python keyword: choose another name "
            f"(e.g. '{slug}_project')."
        )
    if slug in SHADOWED_MODULES or slug in sys.stdlib_module_names:
        raise AnswerError(
            f"project_slug {slug!r} would shadow the module {slug!r} that the project "
            f"imports: choose another name (e.g. '{slug}_project')."
        )
    if len(slug) > 50:
        raise AnswerError(
            f"project_slug {slug!r} is {len(slug)} characters long: use 50 or fewer."
        )


def check_project_name(name: str) -> None:
    """The name appears in page titles; it must not be empty."""
    if not name.strip():
        raise AnswerError(
            f"project_name {name!r} is empty: give the project a name (e.g. 'Team Chat')."
        )


def check_email(email: str) -> None:
    """Refuse plainly malformed addresses (no '@', spaces, no dot in the domain)."""
    if not EMAIL_RE.match(email):
        raise AnswerError(
            f"email {email!r} is not an email address: use the form 'name@example.com'."
        )


def check_domain(domain: str) -> None:
    """A bare host name: dotted labels of letters, digits and hyphens, no scheme or path."""
    labels = domain.lower().split(".")
    if (
        len(domain) > 253
        or len(labels) < 2
        or not all(DOMAIN_LABEL_RE.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise AnswerError(
            f"domain_name {domain!r} is not a domain name: use a bare host such as "
            "'chat.example.com' (no scheme, port or path)."
        )


def check_timezone(name: str) -> None:
    """The zone must exist in the IANA database Python ships with."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise AnswerError(
            f"timezone {name!r} is not an IANA time zone: use a name such as 'UTC' "
            "or 'Europe/Berlin'."
        ) from None


def check_choice(field: str, value: str) -> None:
    """Choices passed on the command line bypass cookiecutter's own prompt."""
    allowed = CHOICES[field]
    if value not in allowed:
        raise AnswerError(
            f"{field} {value!r} is not one of the choices: use one of {', '.join(allowed)}."
        )


def check_answers(context: dict[str, str]) -> None:
    """Run every check; the first failure raises AnswerError."""
    check_project_name(context["project_name"])
    check_slug(context["project_slug"])
    check_email(context["email"])
    check_domain(context["domain_name"])
    check_timezone(context["timezone"])
    for field in CHOICES:
        check_choice(field, context[field])


def main(context: dict[str, str]) -> int:
    try:
        check_answers(context)
    except AnswerError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Rendered by cookiecutter: the answers as a JSON object.
    sys.exit(main(json.loads(r"""{{ cookiecutter | jsonify }}""")))
