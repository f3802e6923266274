"""The environment helpers (``config/env.py``), and ``.env.example`` documenting every
variable the settings read.

The settings read the environment only through the ``env_*`` helpers (and
``dj_database_url``, which reads ``DATABASE_URL``), so the variables they read can
be found in the source without running it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_required,
    env_str,
    load_dotenv,
)

ROOT = Path(__file__).resolve().parents[2]
HELPERS = frozenset(
    {"env_str", "env_bool", "env_int", "env_float", "env_list", "env_required", "getenv"}
)
ENVIRON_METHODS = frozenset({"get", "setdefault", "pop"})
# A documented variable: "NAME=value" or "# NAME=value" at the start of a line.
DOCUMENTED = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def constant_name(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def is_os_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def reads_environ(func: ast.expr) -> bool:
    """``os.environ.get``, ``.setdefault`` or ``.pop``."""
    return (
        isinstance(func, ast.Attribute)
        and func.attr in ENVIRON_METHODS
        and is_os_environ(func.value)
    )


def database_url_variable(node: ast.Call) -> str | None:
    """``dj_database_url.config()`` reads DATABASE_URL, unless ``env=`` names another."""
    func = node.func
    if not (
        isinstance(func, ast.Attribute)
        and func.attr == "config"
        and getattr(func.value, "id", "") == "dj_database_url"
    ):
        return None
    env = next((keyword.value for keyword in node.keywords if keyword.arg == "env"), None)
    return constant_name(env) or "DATABASE_URL"


def variables_read(source: str) -> set[str]:
    """Names of the environment variables a module reads with a literal name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        name = None
        if isinstance(node, ast.Call):
            func = node.func
            callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if node.args and (callee in HELPERS or reads_environ(func)):
                name = constant_name(node.args[0])
            else:
                name = database_url_variable(node)
        elif isinstance(node, ast.Subscript) and is_os_environ(node.value):
            name = constant_name(node.slice)
        if name:
            names.add(name)
    return names


def settings_modules() -> list[Path]:
    config = ROOT / "config"
    return sorted([*config.glob("*.py"), *(config / "settings").glob("*.py")])


def read_by_settings() -> dict[str, list[str]]:
    """Each variable the settings and config modules read, with where."""
    found: dict[str, list[str]] = {}
    for path in settings_modules():
        for name in variables_read(path.read_text()):
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def documented() -> set[str]:
    return set(DOCUMENTED.findall((ROOT / ".env.example").read_text()))


def test_the_scan_finds_the_variables_the_settings_read():
    read = read_by_settings()
    # Spot checks, so that a scan that finds nothing cannot pass the test below.
    assert {"DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL"} <= set(read)
    assert len(read) >= 10


def test_the_scan_recognises_every_way_of_reading():
    source = (
        "import os, dj_database_url\n"
        'A = env_str("A")\nB = env_int("B", default=1)\nC = os.environ["C"]\n'
        'D = os.environ.get("D")\nE = dj_database_url.config()\n'
        'F = dj_database_url.config(env="F")\nG = os.getenv("G")\nH = len("H")\n'
    )
    assert variables_read(source) == {"A", "B", "C", "D", "DATABASE_URL", "F", "G"}


def test_env_example_documents_every_variable_the_settings_read():
    undocumented = {
        name: where
        for name, where in sorted(read_by_settings().items())
        if name not in documented()
    }
    assert undocumented == {}, "add these to .env.example, with a comment saying what they do"


def test_env_example_documents_no_variable_nothing_reads():
    code = "\n".join(
        path.read_text()
        for path in ROOT.rglob("*.py")
        if ".venv" not in path.parts and path != Path(__file__).resolve()
    )
    stale = sorted(name for name in documented() if f'"{name}"' not in code)
    assert stale == [], "documented in .env.example but read nowhere"


# The helpers themselves.


def test_env_str_strips_and_defaults(monkeypatch):
    monkeypatch.setenv("TEST_ENV_VALUE", "  text  ")
    assert env_str("TEST_ENV_VALUE") == "text"
    monkeypatch.delenv("TEST_ENV_VALUE")
    assert env_str("TEST_ENV_VALUE", "fallback") == "fallback"


def test_env_required_names_the_missing_variable_and_the_hint(monkeypatch):
    monkeypatch.delenv("TEST_ENV_VALUE", raising=False)
    with pytest.raises(ImproperlyConfigured, match="TEST_ENV_VALUE: a hint"):
        env_required("TEST_ENV_VALUE", "a hint")
    monkeypatch.setenv("TEST_ENV_VALUE", "set")
    assert env_required("TEST_ENV_VALUE", "a hint") == "set"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), (" yes ", True), ("on", True), ("0", False), ("off", False)],
)
def test_env_bool_reads_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("TEST_ENV_VALUE", raw)
    assert env_bool("TEST_ENV_VALUE", default=not expected) is expected


def test_env_bool_refuses_anything_else_and_defaults_when_unset(monkeypatch):
    monkeypatch.setenv("TEST_ENV_VALUE", "maybe")
    with pytest.raises(ImproperlyConfigured, match="not a boolean"):
        env_bool("TEST_ENV_VALUE", default=False)
    monkeypatch.delenv("TEST_ENV_VALUE")
    assert env_bool("TEST_ENV_VALUE", default=True) is True


@pytest.mark.parametrize(
    ("reader", "good", "value"), [(env_int, "42", 42), (env_float, "2.5", 2.5)]
)
def test_numbers_parse_default_when_blank_and_refuse_text(monkeypatch, reader, good, value):
    monkeypatch.setenv("TEST_ENV_VALUE", good)
    assert reader("TEST_ENV_VALUE", default=7) == value
    monkeypatch.setenv("TEST_ENV_VALUE", " ")
    assert reader("TEST_ENV_VALUE", default=7) == 7
    monkeypatch.setenv("TEST_ENV_VALUE", "many")
    with pytest.raises(ImproperlyConfigured, match="TEST_ENV_VALUE='many'"):
        reader("TEST_ENV_VALUE", default=7)


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.setenv("TEST_ENV_VALUE", " a, b ,,c ,")
    assert env_list("TEST_ENV_VALUE") == ["a", "b", "c"]
    monkeypatch.delenv("TEST_ENV_VALUE")
    assert env_list("TEST_ENV_VALUE", "x,y") == ["x", "y"]


def test_load_dotenv_fills_only_what_is_unset(monkeypatch, tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# a comment\n\nTEST_ENV_A=plain\nTEST_ENV_B=\"quoted value\"\nTEST_ENV_C='single'\n"
        "TEST_ENV_KEEP=from-file\nnot an assignment\n"
    )
    for name in ("TEST_ENV_A", "TEST_ENV_B", "TEST_ENV_C"):
        # Set, then unset: monkeypatch then removes what load_dotenv sets.
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("TEST_ENV_KEEP", "from-shell")
    load_dotenv(dotenv)
    assert env_str("TEST_ENV_A") == "plain"
    assert env_str("TEST_ENV_B") == "quoted value"
    assert env_str("TEST_ENV_C") == "single"
    assert env_str("TEST_ENV_KEEP") == "from-shell"
    load_dotenv(tmp_path / "missing.env")  # a missing file is not an error
