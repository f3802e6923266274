"""The rules for the template's answers: which are refused and why, and the valid slug
derived from any project name.

Used by the ``project_slug`` filter (cookiecutter.json's default) and by
``hooks/pre_gen_project.py``, so that the derived default always passes the check.
Standard library only: generation works offline.
"""

from __future__ import annotations

import keyword
import re
import sys
import unicodedata
import zoneinfo
from collections.abc import Callable

# Modules the generated project imports (or whose name it uses as a package): a slug
# equal to one of these would shadow it. The standard library is added below.
SHADOWED_MODULES = frozenset(
    {
        "accounts",
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
        "realtime",
        "redis",
        "scaffold",
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

MAX_SLUG_LENGTH = 50
SLUG_RE = re.compile(r"^[a-z][a-z0-9_]*$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
DOMAIN_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class AnswerError(ValueError):
    """One refused answer; its message is the single line the user sees."""


def taken_name(slug: str) -> bool:
    """A keyword, or a module the project imports: valid syntax, refused all the same."""
    return (
        keyword.iskeyword(slug)
        or keyword.issoftkeyword(slug)
        or slug in SHADOWED_MODULES
        or slug in sys.stdlib_module_names
    )


def derive_slug(name: str) -> str:
    """A slug that check_slug accepts, for any name: accents folded to ASCII,
    apostrophes dropped, every other run of non-alphanumerics one underscore; a name
    with no letter or digit left becomes 'project', one that starts with a digit gets
    'project_' in front, and a keyword or taken module name '_project' after."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"['\u2019`]", "", ascii_name.lower())
    slug = re.sub(r"[^a-z0-9]+", "_", slug).strip("_") or "project"
    if slug[0].isdigit():
        slug = f"project_{slug}"
    slug = slug[:MAX_SLUG_LENGTH].rstrip("_")
    if taken_name(slug):
        slug = slug[: MAX_SLUG_LENGTH - len("_project")].rstrip("_") + "_project"
    return slug


def check_slug(slug: str) -> None:
    """A slug must be a lowercase identifier that shadows nothing the project imports."""
    if not SLUG_RE.match(slug) or not slug.isascii():
        raise AnswerError(
            f"project_slug {slug!r} is not a lowercase Python identifier: "
            "use letters a-z, digits and underscores, starting with a letter "
            f"(e.g. {derive_slug(slug)!r})."
        )
    if keyword.iskeyword(slug) or keyword.issoftkeyword(slug):
        raise AnswerError(
            f"project_slug {slug!r} is a Python keyword: choose another name "
            f"(e.g. '{slug}_project')."
        )
    if taken_name(slug):
        raise AnswerError(
            f"project_slug {slug!r} would shadow the module {slug!r} that the project "
            f"imports: choose another name (e.g. '{slug}_project')."
        )
    if len(slug) > MAX_SLUG_LENGTH:
        raise AnswerError(
            f"project_slug {slug!r} is {len(slug)} characters long: use {MAX_SLUG_LENGTH} or fewer."
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


def choice_check(field: str) -> Callable[[str], None]:
    """Choices passed on the command line bypass cookiecutter's own prompt."""

    def check(value: str) -> None:
        allowed = CHOICES[field]
        if value not in allowed:
            raise AnswerError(
                f"{field} {value!r} is not one of the choices: use one of {', '.join(allowed)}."
            )

    return check


CHECKS: dict[str, Callable[[str], None]] = {
    "project_name": check_project_name,
    "project_slug": check_slug,
    "email": check_email,
    "domain_name": check_domain,
    "timezone": check_timezone,
    **{field: choice_check(field) for field in CHOICES},
}


def refusals(context: dict[str, str]) -> dict[str, str]:
    """Every refused answer and its one-line reason, in prompt order."""
    found = {}
    for field, check in CHECKS.items():
        try:
            check(context[field])
        except AnswerError as error:
            found[field] = str(error)
    return found
