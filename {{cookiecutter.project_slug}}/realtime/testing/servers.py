"""The services tier's support: which tests run, and the real processes they start.

A test marked ``services`` needs real services: ``@pytest.mark.services`` needs both
``DATABASE_URL`` and ``REDIS_URL``, ``@pytest.mark.services("REDIS_URL")`` only the
one it names. It is skipped, with a reason naming what is unset, when they are not
set; when they are set but do not answer, the run stops with an error instead.

The processes, each on a free loopback port with bounded waits and its output in a
log file that failures quote: ``AsgiServer`` (the Procfile's uvicorn serving
``config.asgi:application``), ``Worker`` (``manage.py runworker <channels>``),
``RedisServer`` (a private ``redis-server``, for tests that stop it) and
``RedisSentinel``. ``running()`` starts a set together and always stops them;
``WebSocketClient`` talks JSON frames to a server over a real WebSocket::

    def test_something(servers_database, tmp_path):
        env = server_env(database_url=servers_database, redis_url=settings.REDIS_URL)
        worker = Worker("worker", env, tmp_path, ("my-channel",))
        with running(AsgiServer("web", env, tmp_path), worker) as (web, worker):
            assert web.get("/readyz")[0] == 200

Servers run ``config.settings.test`` with this run's ``TEST_RUN_ID``, so they share
its Redis key prefix. They cannot share pytest-django's test database (SQLite's is in
memory, and every transactional test empties it), so the ``servers_database``
fixture gives them one of their own, migrated once per run. This module is a pytest
plugin (loaded by ``realtime.testing``), for any test that needs the project running
for real.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dj_database_url
import psycopg
import pytest
import redis
from django.conf import settings
from psycopg import sql
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from realtime.testing.processes import PROJECT_APP, procfile_command, server_args
from realtime.testing.processes import Process as BaseProcess

LOOPBACK = "127.0.0.1"
# Bounded waits, in seconds (stopping: processes.STOP_TIMEOUT). Start-up allows for
# importing Django on a busy 2-core box.
START_TIMEOUT = 60.0
HTTP_TIMEOUT = 5.0
# Longest wait for one WebSocket frame or handshake.
FRAME_TIMEOUT = 10.0
CONNECT_TIMEOUT = 3
POLL_INTERVAL = 0.05
SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL")


def env_str(name: str) -> str:
    return os.environ.get(name, "").strip()


# The Redis layer kinds the multi-process tests run their servers on: both unless
# SERVICES_LAYER_KINDS names some (the template's CI runs each project's own kind).
LAYER_KINDS = tuple(
    kind.strip()
    for kind in (env_str("SERVICES_LAYER_KINDS") or "redis,redis_pubsub").split(",")
    if kind.strip()
)

P = TypeVar("P", bound="Process")


# The tier: which tests run, and whether the services answer.


def services_skip_reason(item: pytest.Item) -> str | None:
    """Why a ``services`` test cannot run here (a variable it needs is unset), or None."""
    marker = item.get_closest_marker("services")
    if marker is None:
        return None
    unset = [name for name in marker.args or SERVICE_VARIABLES if not env_str(name)]
    if not unset:
        return None
    return f"services tier: {' and '.join(unset)} unset (see .env.example)"


def pytest_sessionstart(session: pytest.Session) -> None:
    """A services variable that is set must name a service that answers: stop the
    run loudly, rather than skip or time out test by test."""
    problems = unreachable_services()
    if problems:
        message = "services tier: " + "; ".join(problems)
        pytest.exit(message, returncode=pytest.ExitCode.TESTS_FAILED)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip a ``services`` test while a variable it needs is unset, naming it."""
    for item in items:
        reason = services_skip_reason(item)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def unreachable_services() -> list[str]:
    """A line for each service whose variable is set but which does not answer."""
    problems = []
    redis_url = env_str("REDIS_URL")
    if redis_url:
        client = redis.Redis.from_url(
            redis_url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
        )
        try:
            client.ping()
        except redis.RedisError as error:
            problems.append(f"REDIS_URL={redact(redis_url)} does not answer: {error}")
        finally:
            client.close()
    database_url = env_str("DATABASE_URL")
    if database_url and is_postgresql(database_url):
        try:
            postgres_connect(database_url).close()
        except psycopg.Error as error:
            problems.append(f"DATABASE_URL={redact(database_url)} does not answer: {error}")
    return problems


def is_postgresql(database_url: str) -> bool:
    return dj_database_url.parse(database_url)["ENGINE"].endswith(("postgresql", "postgis"))


def postgres_connect(database_url: str, dbname: str | None = None) -> psycopg.Connection:
    """A plain autocommit connection (not Django's) for administration in tests."""
    db = dj_database_url.parse(database_url)
    return psycopg.connect(
        host=db["HOST"] or LOOPBACK,
        port=db["PORT"] or 5432,
        user=db["USER"] or None,
        password=db["PASSWORD"] or None,
        dbname=dbname or db["NAME"],
        connect_timeout=CONNECT_TIMEOUT,
        autocommit=True,
    )


# Waiting, ports and URLs.


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, what: str, log: Callable[[], str] = str
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{log()}")
        time.sleep(POLL_INTERVAL)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def with_query(url: str, **params: str) -> str:
    """The URL with these query parameters set (``client_name`` for Redis,
    ``application_name`` for PostgreSQL: they name a process's connections)."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in params]
    query.extend(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def project_root() -> Path:
    return Path(settings.BASE_DIR)


def server_env(
    *, database_url: str, redis_url: str, layer_kind: str | None = None, **extra: str
) -> dict[str, str]:
    """The environment of a server or worker of this test run (``layer_kind``: redis
    or redis_pubsub, else the test settings' default)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        TEST_RUN_ID=settings.TEST_RUN_ID,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    if layer_kind is not None:
        env["CHANNEL_LAYER_KIND"] = layer_kind
    return env


def manage(
    args: list[str], env: dict[str, str], *, succeed: bool = True, timeout: float = 120
) -> str:
    """Run ``manage.py`` with the arguments; its output. Fails quoting the output if
    it did not exit 0 (or, with ``succeed=False``, if it did)."""
    result = subprocess.run(  # noqa: S603 - our own manage.py, arguments from the tests
        [sys.executable, "manage.py", *args],
        cwd=project_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    assert (result.returncode == 0) == succeed, f"manage.py {' '.join(args)}:\n{output}"
    return output


# Processes.


class Process(BaseProcess):
    """A child process (``processes.Process``: started, stopped, its log), plus:
    waiting until it is ready, and its exit code."""

    def start(self) -> None:
        assert self.popen is None or self.popen.poll() is not None, f"{self.name} is running"
        super().start()

    def is_ready(self) -> bool:
        return True

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        def ready() -> bool:
            if self.exit_code is not None:
                raise AssertionError(f"{self.name} exited with {self.exit_code}\n{self.log()}")
            return self.is_ready()

        wait_until(ready, timeout=timeout, what=f"{self.name} to be ready", log=self.log)

    @property
    def exit_code(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def wait_exit(self, timeout: float) -> int:
        """The exit code, once the process ends by itself within ``timeout``."""
        assert self.popen is not None, f"{self.name} was never started"
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout:g}s\n{self.log()}"
            ) from None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} exit={self.exit_code}>"


class AsgiServer(Process):
    """The server the project deploys, as the ``Procfile``'s ``web:`` line starts it
    (uvicorn serving ``config.asgi:application``), on a socket bound here to a free
    port and handed over (``--fd``): no other program can take the port in between.
    ``args`` are more server options. Each ``start()`` binds a new port."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path, *args: str) -> None:
        super().__init__(name, list(args), env, log_dir)
        self.sock: socket.socket | None = None
        self.port = 0

    def command(self) -> tuple[list[str], tuple[int, ...]]:
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        fd = self.sock.fileno()
        return server_args(procfile_command(), fd, PROJECT_APP, self.args), (fd,)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def origin(self) -> str:
        """An Origin header the WebSocket origin check accepts."""
        return self.base_url

    def ws_url(self, path: str) -> str:
        return f"ws://{LOOPBACK}:{self.port}{path}"

    def get(self, path: str, timeout: float = HTTP_TIMEOUT) -> tuple[int, Any]:
        """GET a path: the status and the JSON (or text) body; 4xx and 5xx included."""
        url = self.base_url + path
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback http
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def is_ready(self) -> bool:
        try:
            return self.get("/healthz", timeout=1)[0] == 200
        except OSError:
            return False

    def stop(self) -> int | None:
        try:
            return super().stop()
        finally:
            if self.sock is not None:
                self.sock.close()
                self.sock = None


class Worker(Process):
    """``manage.py runworker`` on the given channels.

    Its Redis connections carry a client name, so that it counts as ready once it is
    reading its channel (RedisChannelLayer's BZPOPMIN) or subscribed to it (the
    Pub/Sub layer, which would drop a job sent any earlier).
    """

    def __init__(
        self, name: str, env: dict[str, str], log_dir: Path, channels: tuple[str, ...]
    ) -> None:
        self.redis_url = env["REDIS_URL"]
        self.client_name = f"{name}-{settings.TEST_RUN_ID}-{time.monotonic_ns()}"
        env = {**env, "REDIS_URL": with_query(self.redis_url, client_name=self.client_name)}
        command = [sys.executable, "manage.py", "runworker", *channels]
        super().__init__(name, command, env, log_dir)

    def is_ready(self) -> bool:
        client = redis.Redis.from_url(self.redis_url, socket_timeout=HTTP_TIMEOUT)
        try:
            clients = client.client_list()
        except redis.RedisError:
            return False
        finally:
            client.close()
        return any(
            entry.get("name") == self.client_name
            and (entry.get("cmd") == "bzpopmin" or int(entry.get("sub", 0)) > 0)
            for entry in clients
        )


class RedisServer(Process):
    """A private ``redis-server`` on a free port, for tests that stop and restart it.

    Never the shared Redis: a fault test must not take Redis away from other runs.
    ``stop()`` then ``start()`` brings it back on the same port, empty.
    """

    def __init__(self, log_dir: Path, name: str = "redis") -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError(
                "These tests start a private redis-server, which is not on PATH: "
                "install Redis (e.g. apt install redis-server) or unset REDIS_URL."
            )
        self.port = free_port()
        data_dir = log_dir / f"{name}-data"
        data_dir.mkdir(exist_ok=True)
        command = [binary, "--port", str(self.port), "--bind", LOOPBACK]
        command += ["--save", "", "--appendonly", "no", "--dir", str(data_dir)]
        super().__init__(name, command, {"PATH": os.environ.get("PATH", "")}, log_dir)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def is_ready(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


class RedisSentinel(Process):
    """A private Redis Sentinel (``redis-server --sentinel``) watching ``master``
    under the name ``master_name``; ready once it names the master's address."""

    def __init__(self, master: RedisServer, log_dir: Path, master_name: str = "mymaster") -> None:
        self.master_name = master_name
        self.port = free_port()
        config = log_dir / f"sentinel-{self.port}.conf"
        config.write_text(
            f"port {self.port}\nbind {LOOPBACK}\ndir {log_dir}\n"
            f"sentinel monitor {master_name} {LOOPBACK} {master.port} 1\n"
        )
        command = [master.args[0], str(config), "--sentinel"]
        super().__init__(f"sentinel-{self.port}", command, master.env, log_dir)

    def is_ready(self) -> bool:
        client = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=1)
        try:
            return bool(client.sentinel_get_master_addr_by_name(self.master_name))
        except redis.RedisError:
            return False
        finally:
            client.close()


class WebSocketClient:
    """A client on a real WebSocket (the websockets library's sync client), speaking
    JSON frames. Like a browser it sends no pings of its own; it answers the
    server's. Its background thread keeps reading, so a socket can stay open across
    a test."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    def frame(self, kind: str | None = None, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        """The next frame (of this ``type``, if given: any other is a failure)."""
        data = json.loads(self.ws.recv(timeout=timeout))
        assert kind is None or data.get("type") == kind, f"expected a {kind} frame, got {data}"
        return data

    def send_json(self, content: dict[str, Any]) -> None:
        self.ws.send(json.dumps(content))

    def close_code(self, timeout: float) -> int | None:
        """Wait (bounded) for the server to close the socket; its close code. Fails if
        a frame arrives or the socket is still open after ``timeout``."""
        try:
            data = self.ws.recv(timeout=timeout)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        raise AssertionError(f"expected the socket to close, got a frame: {data!r}")


@contextlib.contextmanager
def websocket(server: AsgiServer, path: str) -> Iterator[ClientConnection]:
    """A real WebSocket to a path of a server, with an Origin the server accepts."""
    with connect(
        server.ws_url(path),
        origin=Origin(server.origin),
        open_timeout=FRAME_TIMEOUT,
        close_timeout=FRAME_TIMEOUT,
        ping_interval=None,
    ) as ws:
        yield ws


@contextlib.contextmanager
def running(*processes: P, timeout: float = START_TIMEOUT) -> Iterator[tuple[P, ...]]:
    """Start the processes together, wait (bounded) until each is ready, and stop them
    all on the way out, in reverse order, whatever happened."""
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.wait_ready(timeout)
        yield processes
    finally:
        for process in reversed(processes):
            process.stop()


# Fixtures.


@pytest.fixture(scope="session")
def servers_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``DATABASE_URL`` for server processes: migrated once per run, removed after.

    PostgreSQL (``DATABASE_URL`` set): a database named after the run, beside the
    test database. Otherwise a SQLite file in a temporary folder.
    """
    database_url = env_str("DATABASE_URL")
    if not database_url or not is_postgresql(database_url):
        path = tmp_path_factory.mktemp("servers-db") / "db.sqlite3"
        url = f"sqlite:///{path}"
        manage(["migrate", "--no-input", "-v", "0"], server_env(database_url=url, redis_url=""))
        yield url
        return
    name = f"test_servers_{settings.TEST_RUN_ID}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with postgres_connect(database_url) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urllib.parse.urlsplit(database_url)
    url = urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    try:
        manage(["migrate", "--no-input", "-v", "0"], server_env(database_url=url, redis_url=""))
        yield url
    finally:
        with postgres_connect(database_url) as admin:
            admin.execute(drop)
