"""No secret in code, image or history: the generated .env holds the only key, and it
is ignored by git and by Docker builds."""

from __future__ import annotations

import re

from tests.generation import generate, text_files


def env_secret(root) -> str:
    line = next(
        line
        for line in (root / ".env").read_text().splitlines()
        if line.startswith("DJANGO_SECRET_KEY=")
    )
    return line.split("=", 1)[1]


def test_the_secret_key_lives_only_in_the_ignored_env_file(tmp_path):
    root = generate(tmp_path, use_docker="y")
    secret = env_secret(root)
    assert len(secret) >= 50
    holders = [path.name for path, text in text_files(root) if secret in text]
    assert holders == [".env"]
    assert ".env\n" in (root / ".gitignore").read_text()
    dockerignore = (root / ".dockerignore").read_text().splitlines()
    assert ".env" in dockerignore or ".env*" in dockerignore


def test_two_generations_never_share_a_key(tmp_path):
    first = env_secret(generate(tmp_path / "a"))
    second = env_secret(generate(tmp_path / "b"))
    assert first != second


def test_settings_hold_no_literal_secret_outside_the_test_settings(tmp_path):
    root = generate(tmp_path)
    for path in sorted((root / "config" / "settings").glob("*.py")):
        for line in path.read_text().splitlines():
            if re.match(r"SECRET_KEY\s*=\s*[\"']", line):
                assert path.name in {"test.py", "local.py"}, f"{path.name}: {line}"
    local = (root / "config" / "settings" / "local.py").read_text()
    assert "django-insecure" in local  # the fallback says what it is
