"""Shape the generated project to the answers, write its local secret, say what next.

Cookiecutter runs this inside the new project folder after rendering it. Every
optional file lives in the template and is removed here when an answer does not
need it, so that no shared file carries blocks of template conditionals. Standard library only.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from pathlib import Path

# Files and folders that exist only for one answer, relative to the project root.
DOCKER_FILES = (
    "Dockerfile",
    ".dockerignore",
    "deploy/docker",
    "deploy/nginx/compose.conf",
)
CI_FILES = {
    "github": (".github",),
    "gitlab": (".gitlab-ci.yml",),
}
# Compose files per production database live in deploy/compose/<database>/.
COMPOSE_DIR = "deploy/compose"
LICENSE_DIR = "_licenses"
SECRET_KEY_PLACEHOLDER = "DJANGO_SECRET_KEY="  # noqa: S105 (a variable name, not a secret)


def remove(root: Path, relative: str) -> None:
    """Delete a file or folder below root; a missing one is not an error."""
    path = root / relative
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def unused_paths(context: dict[str, str]) -> list[str]:
    """Every path the answers do not need."""
    paths: list[str] = []
    if context["use_docker"] == "n":
        paths.extend(DOCKER_FILES)
    for tool, files in CI_FILES.items():
        if tool != context["ci_tool"]:
            paths.extend(files)
    return paths


def place_license(root: Path, choice: str) -> None:
    """Move the chosen license text to LICENSE and drop the others."""
    source = root / LICENSE_DIR / f"{choice}.txt"
    if source.exists():
        source.replace(root / "LICENSE")
    remove(root, LICENSE_DIR)


def place_compose_files(root: Path, context: dict[str, str]) -> None:
    """Move the compose files for the chosen database to the project root."""
    chosen = root / COMPOSE_DIR / context["database"]
    if context["use_docker"] == "y" and chosen.is_dir():
        for path in sorted(chosen.iterdir()):
            path.replace(root / path.name)
    remove(root, COMPOSE_DIR)


def new_secret_key() -> str:
    """A fresh key for the local .env; never the same twice."""
    return secrets.token_urlsafe(50)


def write_env(root: Path) -> None:
    """Copy .env.example to .env, filling in a fresh DJANGO_SECRET_KEY."""
    lines = (root / ".env.example").read_text().splitlines()
    out = []
    for line in lines:
        if line.startswith(SECRET_KEY_PLACEHOLDER):
            line = f"{SECRET_KEY_PLACEHOLDER}{new_secret_key()}"
        out.append(line)
    env = root / ".env"
    env.write_text("\n".join(out) + "\n")
    env.chmod(0o600)


def shown_path(root: Path) -> str:
    """The project folder as the user's shell reaches it: relative to the folder they
    ran cookiecutter in (the shell's PWD; cookiecutter itself changes folder)."""
    here = os.environ.get("PWD")
    if here:
        try:
            return str(root.resolve().relative_to(Path(here).resolve()))
        except ValueError:
            pass
    return str(root.resolve())


def next_steps(context: dict[str, str], where: str) -> str:
    return (
        f"\nCreated {where}/ ({context['project_name']}).\n\n"
        "Run it (SQLite and the in-memory channel layer, no services needed):\n"
        f"    cd {where} && uv run python manage.py migrate && uv run python manage.py runserver\n"
        "    then open http://127.0.0.1:8000/chat/\n\n"
        "Test it:\n"
        f"    cd {where} && make test\n"
    )


def main(context: dict[str, str], root: Path) -> int:
    for relative in unused_paths(context):
        remove(root, relative)
    place_compose_files(root, context)
    place_license(root, context["open_source_license"])
    write_env(root)
    print(next_steps(context, shown_path(root)))
    return 0


if __name__ == "__main__":
    # Rendered by cookiecutter: the answers as a JSON object.
    sys.exit(main(json.loads(r"""{{ cookiecutter | jsonify }}"""), Path.cwd()))
