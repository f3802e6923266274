"""Helpers for tests/test_deploy.py: reading compose files the way Compose does,
matching .dockerignore patterns, adapting nginx configs to this machine, and running
processes with bounded waits.

No Docker engine runs here, so these helpers do by hand the few things Compose and
Docker would do: interpolate ``${VAR}`` from the env file, merge ``env_file`` and
``environment``, and decide which files enter the build context.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import secrets
import shlex
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml


def compose_validator() -> jsonschema.protocols.Validator:
    """A validator for the official Compose schema as check-jsonschema ships it
    (``--builtin-schema vendor.compose-spec``): pinned by the lock, read from inside
    the environment, checked with the draft the schema names."""
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    return jsonschema.validators.validator_for(schema)(schema)


# ---------------------------------------------------------------------------------
# Compose files

INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    """A ``${VAR:?message}`` whose variable is unset: Compose refuses to start."""


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation, applied to every string in a loaded file."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        unset_or_empty = current is None or (op is not None and op.startswith(":") and not current)
        if op in ("-", ":-") and unset_or_empty:
            return arg
        if op in ("?", ":?") and unset_or_empty:
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    return INTERPOLATION.sub(replace, value)


def variables(value: Any) -> set[str]:
    """Every variable a compose file interpolates (``$$`` escapes excluded)."""
    if isinstance(value, dict):
        return set().union(*(variables(item) for item in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(variables(item) for item in value)) if value else set()
    if not isinstance(value, str):
        return set()
    return {
        match["braced"] or match["bare"]
        for match in INTERPOLATION.finditer(value)
        if not match["escaped"]
    }


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; comments and blank lines skipped (the env-file syntax Compose and
    systemd's EnvironmentFile share for plain values)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        env[key.strip()] = value.strip()
    return env


def filled_example(path: Path) -> dict[str, str]:
    """The example env file as a user fills it in: every empty value becomes a fresh
    random secret made by the command the file gives (letters, digits, - and _)."""
    return {key: value or secrets.token_urlsafe(50) for key, value in read_env_file(path).items()}


def as_dict(environment: Any) -> dict[str, str]:
    """A service's ``environment``, given as a mapping or as a list of KEY=VALUE."""
    if environment is None:
        return {}
    if isinstance(environment, dict):
        return {key: "" if value is None else str(value) for key, value in environment.items()}
    return dict(item.split("=", 1) for item in environment)


def env_file_paths(service: dict[str, Any]) -> list[str]:
    entries = service.get("env_file") or []
    if isinstance(entries, str | dict):
        entries = [entries]
    return [entry if isinstance(entry, str) else entry["path"] for entry in entries]


def service_environment(
    service: dict[str, Any], env_files: dict[str, dict[str, str]]
) -> dict[str, str]:
    """The container environment: env_file contents, then ``environment`` over them."""
    env: dict[str, str] = {}
    for path in env_file_paths(service):
        env.update(env_files[path])
    env.update(as_dict(service.get("environment")))
    return env


def command_list(command: Any) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def healthcheck_command(service: dict[str, Any]) -> list[str] | None:
    """The executable form of a healthcheck ``test``; None when there is none."""
    check = service.get("healthcheck") or {}
    if check.get("disable"):
        return None
    test = check.get("test")
    if test is None:
        return None
    if isinstance(test, str):
        return ["sh", "-c", test]
    kind, *rest = test
    if kind == "NONE":
        return None
    return ["sh", "-c", rest[0]] if kind == "CMD-SHELL" else rest


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Each dependency and its condition (a list means service_started)."""
    entries = service.get("depends_on") or {}
    if isinstance(entries, list):
        return dict.fromkeys(entries, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in entries.items()}


# ---------------------------------------------------------------------------------
# Dockerfile and .dockerignore


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kind, args in self.instructions if kind == keyword]


def dockerfile_stages(text: str) -> list[Stage]:
    """Stages with their instructions; continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(image=parts[0], name=name))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def dockerignore_patterns(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip("/")
    out = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
        elif pattern.startswith("**", index):
            out += ".*"
            index += 2
        elif pattern[index] == "*":
            out += "[^/]*"
            index += 1
        elif pattern[index] == "?":
            out += "[^/]"
            index += 1
        elif pattern[index] == "[":
            end = pattern.index("]", index)
            out += pattern[index : end + 1]
            index = end + 1
        else:
            out += re.escape(pattern[index])
            index += 1
    return re.compile(out + r"\Z")


def dockerignored(patterns: list[str], relative: str) -> bool:
    """Whether Docker leaves this path out of the build context: the last matching
    pattern wins, ``!`` re-includes, and a pattern that matches a folder excludes
    everything below it."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern[1:] if negated else pattern)
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


# ---------------------------------------------------------------------------------
# nginx


def replace_exactly(text: str, old: str, new: str, count: int) -> str:
    """Replace a line the test must adapt, failing if it is not there exactly `count`
    times: every other line of the shipped config reaches nginx unchanged."""
    found = text.count(old)
    assert found == count, f"expected {count} x {old!r} in the shipped config, found {found}"
    return text.replace(old, new)


def nginx_main_config(prefix: Path, site: Path) -> Path:
    """An nginx.conf that any user can run: pid, logs and temp files in `prefix`,
    one worker, and the site included in the http block as the images include
    conf.d/*.conf. When the test runs as root, workers stay root so that they can
    read the static files in the test's private temporary folder."""
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / name).mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    sendfile on;
    include {site};
}}
"""
    )
    return conf


def nginx_command(nginx: str, prefix: Path, conf: Path, *args: str) -> list[str]:
    return [nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log"), *args]


def self_signed_certificate(folder: Path, host: str) -> tuple[Path, Path]:
    """A throwaway certificate for `host`, standing in for the user's real one."""
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    result = subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}",
            "-keyout", str(key), "-out", str(cert),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return cert, key


# ---------------------------------------------------------------------------------
# Processes, ports and bounded waits


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, step: float = 0.2):
    """Poll `check` until it is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None


class Processes:
    """Processes a test starts, each logging to a file; `stop_all` ends each one by
    its own process group, politely first, within a bounded time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Process] = []

    def start(self, name: str, args: list[str], *, cwd: Path, env: dict[str, str]) -> Process:
        log = self.folder / f"{name}.log"
        with log.open("wb") as handle:
            popen = subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(name, popen, log)
        self.started.append(process)
        return process

    def stop_all(self, timeout: float = 15) -> None:
        for process in reversed(self.started):
            if process.running():
                os.killpg(process.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in reversed(self.started):
            try:
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait(timeout=5)

    def report(self) -> str:
        return "\n".join(
            f"--- {process.name} (exit {process.popen.poll()}) ---\n{process.output()[-3000:]}"
            for process in self.started
        )


# ---------------------------------------------------------------------------------
# HTTP through the test's nginx


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


@contextmanager
def tls_socket(port: int, server_name: str, context: ssl.SSLContext) -> Iterator[ssl.SSLSocket]:
    """TLS to 127.0.0.1:port, presenting `server_name` (SNI) as a browser would."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock = context.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise
    with sock:
        yield sock


def request(
    port: int,
    host: str,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    tls: ssl.SSLContext | None = None,
) -> Response:
    """One HTTP request to 127.0.0.1:port for `host` (Host header and, over TLS, SNI)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if tls is not None:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            try:
                connection.sock = tls.wrap_socket(raw, server_hostname=host)
            except BaseException:
                raw.close()
                raise
        connection.request(method, path, body=body, headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        return Response(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


async def receive_until(
    ws: Any, wanted: Callable[[dict[str, Any]], bool], what: str, timeout: float = 10
) -> dict[str, Any]:
    """The first JSON frame on a WebSocket that `wanted` accepts, within `timeout`
    seconds and 50 frames."""
    deadline = time.monotonic() + timeout
    for _ in range(50):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=remaining))
        except TimeoutError:
            break
        if wanted(frame):
            return frame
    raise AssertionError(f"no frame for {what} within {timeout:.0f} s")
