"""The newcomer's path, as written: a copy of this repository in a fresh folder with
nothing beside it, on a machine whose PATH has no uv.

- The template's own generation and deploy tests pass from there (nothing in the
  repository reads a file outside it).
- The README's commands work after the bootstrap: ``./dev new`` generates, the
  generated README's first block puts uv on PATH, its run command serves the chat,
  and the development server logs each request once, with no start-up notice.
- ``./dev demo`` names the folder it made, and refuses to replace a ``demo/`` that
  holds a file of the user's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.deploy_support import free_port
from tests.generation import (
    COVERING_COMBINATIONS,
    combo_id,
    project_env,
    template_repository,
)
from tests.tiers import port_answers

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fresh-clone")]

SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The repository's files in a folder of their own: <tmp>/alone/cookiecutter-channels."""
    return template_repository(tmp_path_factory.mktemp("alone") / "cookiecutter-channels")


@pytest.fixture(scope="module")
def no_uv_env(tmp_path_factory) -> dict[str, str]:
    """An environment with python3 and git but no uv on PATH, and a HOME of its own;
    uv's download cache stays the machine's (a cache, not configuration)."""
    bin_dir = tmp_path_factory.mktemp("bin")
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    (bin_dir / "git").symlink_to(shutil.which("git"))
    path = [str(bin_dir)] + [
        folder
        for folder in SYSTEM_PATH
        if not any((Path(folder) / name).exists() for name in ("uv", "uvx"))
    ]
    home = tmp_path_factory.mktemp("home")
    cache = os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")
    env = {**project_env(), "PATH": os.pathsep.join(path), "HOME": str(home)}
    env["UV_CACHE_DIR"] = cache
    for name in ("UV_PYTHON", "UV_PROJECT_ENVIRONMENT", "PYTHONHOME"):
        env.pop(name, None)
    assert subprocess.run(["bash", "-c", "command -v uv"], env=env, check=False).returncode != 0
    return env


def sh(script: str, cwd: Path, env: dict[str, str], timeout: float = 600):
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def code_blocks(markdown: str, heading: str) -> list[str]:
    """The ```sh blocks of one section of a README, in order."""
    section = markdown.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, re.S)


def get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status
    except OSError:
        return 0


def serve(args: list[str] | str, cwd: Path, env: dict[str, str], port: int, log: Path):
    """Start a server in its own process group; return it once it answers /chat/."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, shell=isinstance(args, str),
        )  # fmt: skip
    deadline = time.monotonic() + 300
    while get(port, "/chat/") != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise AssertionError(f"no server on {port}:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=5)


# The per-combination check for the covering set only: every option value is read
# there, and every combination is checked in this session already.
CLONE_SELECTION = " or ".join(
    ["not test_combination_generates_a_clean_project", *map(combo_id, COVERING_COMBINATIONS)]
)


def test_the_generation_and_deploy_tests_pass_in_a_clone_with_nothing_beside_it(clone, no_uv_env):
    """./dev test as a newcomer runs it: no uv on PATH (./dev installs it)."""
    assert sorted(path.name for path in clone.parent.iterdir()) == [clone.name]
    result = sh(
        "./dev test tests/test_generation.py tests/test_deploy.py -m 'not slow' "
        f"-k '{CLONE_SELECTION}' -p no:cacheprovider -q",
        cwd=clone,
        env=no_uv_env,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()
    assert any(re.search(r"\d+ passed", line) for line in summary[-15:]), summary[-15:]
    assert re.search(r"=+ tiers =+\nTEST_DATABASE_URL|=+ tiers =+\nembedded", result.stdout)


def test_the_readme_commands_work_on_a_machine_without_uv(clone, no_uv_env, tmp_path):
    env = no_uv_env
    generated = sh("./dev new --no-input -o out", cwd=clone, env=env)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    tools = clone / ".tools" / "bin"
    assert f'export PATH="{tools}:$PATH"' in generated.stdout + generated.stderr
    project = clone / "out" / "my_channels_project"
    assert "cd out/my_channels_project && uv run python manage.py migrate" in generated.stdout

    readme = (project / "README.md").read_text()
    bootstrap, run_it = code_blocks(readme, "Run it")[:2]
    assert "runserver" in run_it
    port = free_port()
    # The README's two blocks in one shell, the server on a port of the test's own.
    script = f"{bootstrap}\n{run_it.replace('runserver', f'runserver 127.0.0.1:{port}')}"
    server = serve(script, project, env, port, tmp_path / "runserver.log")
    try:
        assert (Path(env["HOME"]) / ".uv" / "bin" / "uv").exists()
        assert get(port, "/healthz") == 200
    finally:
        stop(server)
    log = (tmp_path / "runserver.log").read_text()
    assert len([line for line in log.splitlines() if "GET /healthz" in line]) == 1, log
    assert "HTTP/2" not in log
    assert "Warning" not in log


def test_dev_demo_names_its_folder_and_keeps_the_users_files(clone, tmp_path):
    env = project_env()
    port = free_port()
    env["PORT"] = str(port)
    server = serve(["./dev", "demo"], clone, env, port, tmp_path / "demo.log")
    stop(server)
    output = (tmp_path / "demo.log").read_text()
    assert "Generated demo/my_channels_project/ with the default answers" in output
    assert "cd my_channels_project" not in output
    assert "replaces that folder on its" in output

    mine = clone / "demo" / "my_channels_project" / "notes.txt"
    mine.write_text("my notes")
    refused = sh("./dev demo", cwd=clone, env=env, timeout=120)
    assert refused.returncode == 1
    assert "holds files it did not generate, or changed; nothing deleted" in refused.stderr
    assert "my_channels_project/notes.txt" in refused.stderr
    assert mine.read_text() == "my notes"

    mine.unlink()
    (clone / "demo" / "my_channels_project" / "manage.py").write_text("# changed\n")
    refused = sh("./dev demo", cwd=clone, env=env, timeout=120)
    assert refused.returncode == 1
    assert "my_channels_project/manage.py (changed)" in refused.stderr
    assert not port_answers(port)
