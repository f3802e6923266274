"""Child processes for tests and the benchmark: a process with its output in a log
file (started, checked, stopped within bounded waits), and the project's server
command as the Procfile's ``web:`` line gives it, on a socket handed over with
``--fd``.

Plain Python (no Django): the benchmark (``bench/``) runs it outside pytest.
"""

from __future__ import annotations

import shlex
import subprocess  # nosec B404 - starts the project's own programs, fixed commands
import sys
from collections.abc import Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# The command when the Procfile has no web line: uvicorn as the deploy files run it.
DEFAULT_COMMAND = "uvicorn --lifespan off config.asgi:application"
PROJECT_APP = "config.asgi:application"

# Options that say where to listen; server_args replaces them with a socket handed over.
BIND_OPTIONS = frozenset({"-b", "--bind", "-p", "--port", "--host", "-u", "--uds"})

# Seconds a process has to stop after SIGTERM, and again after SIGKILL.
STOP_TIMEOUT = 10.0


class Process:
    """A child process with its output in a log file: started, checked, stopped.

    The benchmark's servers and Redis (``bench/``), and the services tier's processes
    (``realtime/testing/servers.py`` builds on this class)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.pass_fds: tuple[int, ...] = ()

    def command(self) -> tuple[list[str], tuple[int, ...]]:
        """The command line, and file descriptors the child inherits."""
        return self.args, self.pass_fds

    def start(self) -> None:
        args, pass_fds = self.command()
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(  # noqa: S603  # nosec B603 - our own programs, no shell
                args,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=pass_fds,
                start_new_session=True,  # Ctrl-C in the terminal reaches the parent only
            )

    @property
    def pid(self) -> int | None:
        return None if self.popen is None else self.popen.pid

    def check_running(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}\n{self.log()}")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT``; the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=STOP_TIMEOUT)
        return self.popen.returncode

    def log(self, tail: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"--- {self.name}: no output"
        return f"--- {self.name} output (last {tail} characters):\n{text[-tail:]}"


def procfile_command() -> str:
    """The web command of the project's Procfile, or DEFAULT_COMMAND."""
    procfile = PROJECT_ROOT / "Procfile"
    if procfile.exists():
        for line in procfile.read_text().splitlines():
            if line.startswith("web:"):
                return line.removeprefix("web:").strip()
    return DEFAULT_COMMAND


def server_args(command: str, fd: int, app: str, extra: Sequence[str] = ()) -> list[str]:
    """The command with its listening options replaced by ``--fd``, run by this Python;
    ``extra`` options go before the application."""
    words = shlex.split(command)
    program, rest = words[0], words[1:]
    args: list[str] = []
    skip = False
    for word in rest:
        if skip:
            skip = False
            continue
        if word in BIND_OPTIONS:
            skip = True
            continue
        if word.split("=", 1)[0] in BIND_OPTIONS:
            continue
        args.append(app if word == PROJECT_APP else word)
    if app not in args:
        args.append(app)
    position = args.index(app)
    args[position:position] = [*extra, "--fd", str(fd)]
    return [sys.executable, "-m", Path(program).name, *args]
