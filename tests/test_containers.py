"""The container tier: a generated project's images built and its stacks run on a real
Docker Engine, as a new user runs them (docs/deploying.md, the generated README).

- Development, on each ``database`` value: ``docker compose up --build --wait``;
  every service running and healthy (migrate exited 0); ``/chat/`` answers 200 on the
  published port; two WebSocket clients chat, the message is stored in the database,
  the worker moderates a message; ``docker compose down -v`` leaves nothing.
- Production (the default project), with the env its docs ask for (fresh secrets, a
  self-signed certificate): ``up --build --wait``; chat over wss through nginx, HTTP
  redirected to HTTPS, web as uid 10001; ``restart web`` and SIGTERM close the
  sockets with 1001/1012 and clients reconnect; Chromium through nginx, lobby to room,
  two windows, a message each way; ``down -v`` leaves nothing.
- Figures: build cold and warm, time to healthy, image sizes against the production
  image's budget (PRODUCTION_IMAGE_BUDGET_MB), printed and written to
  $CONTAINER_FIGURES (.ci/run prints it).

The project's Dockerfile and compose files run unchanged. The base images are
stand-ins built from Debian packages (tests/containers/), and one override file per
stack moves only the published ports, to free ports on 127.0.0.1: nothing else on
this machine is contacted. Skipped only when no Docker engine answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.containers import (
    LABEL,
    Stack,
    Standins,
    base_images,
    compose_problem,
    docker,
    engine_problem,
    image_size_mb,
    tier_lock,
    write_figures,
)
from tests.deploy_support import (
    filled_example,
    free_port,
    receive_until,
    request,
    self_signed_certificate,
    wait_until,
)
from tests.generation import generate

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("containers")]

SLUG = "my_channels_project"
HOST = "example.com"
# Seconds `up --wait` and each bounded wait below may take on a loaded CI machine.
UP_SECONDS = 300
BUILD_SECONDS = 900
# The production image: Python, the locked production dependencies and the code, and
# nothing else (no compiler, no uv, no caches, no dev tools). Measured 2026-12-02 on
# the Debian stand-in base: see the figures the tier prints.
PRODUCTION_IMAGE_BUDGET_MB = 450
# What the production image must not hold: build tools, uv, caches, dev dependencies.
NOT_IN_PRODUCTION = (
    "/usr/bin/gcc",
    "/usr/bin/cc",
    "/usr/bin/make",
    "/usr/local/bin/uv",
    "/root/.cache",
    "/opt/venv/bin/pytest",
    "/opt/venv/bin/ruff",
    "/opt/venv/bin/mypy",
    "/opt/venv/bin/coverage",
    "/opt/venv/bin/pip",
)
CLOSE_ON_RESTART = {1001, 1012}
# The commands the docs give, which the tier runs (with its project name and port
# override added, and a bound on --wait).
DEV_UP = "docker compose up --build --wait"
PRODUCTION_UP = (
    "docker compose -f compose.production.yaml --env-file .env.production up --build --wait"
)
DOWN = "docker compose down -v"
WAIT_BOUND = ("--wait-timeout", str(UP_SECONDS))
FIGURES: list[str] = []
WRITTEN: list[str] = []


def flush_figures() -> None:
    """Write the figures gathered since the last call."""
    write_figures(FIGURES[len(WRITTEN) :])
    WRITTEN[:] = FIGURES


# ---------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Standins:
    problem = engine_problem()
    if problem is not None:
        pytest.skip(f"container tier: {problem}")
    problem = compose_problem()
    assert problem is None, problem
    return Standins(workdir=tmp_path_factory.mktemp("standins"))


def new_stack(root: Path, files: list[str], ports: dict[str, list[str]], **kw: Any) -> Stack:
    """A compose project of its own name; an override beside (not in) the project moves
    the published ports of `ports` (service: ["127.0.0.1:<free>:<container port>"])."""
    lines = ["services:"]
    for service, published in ports.items():
        lines += [f"  {service}:", "    ports: !override"]
        lines += [f'      - "{port}"' for port in published]
    override = root.parent / f"ports-{secrets.token_hex(3)}.yaml"
    override.write_text("\n".join(lines) + "\n")
    return Stack(root, f"tier{secrets.token_hex(4)}", [*files, str(override)], **kw)


def service_states(stack: Stack) -> dict[str, list[tuple[str, str, int]]]:
    """Each service's containers as (state, health, exit code)."""
    states: dict[str, list[tuple[str, str, int]]] = {}
    for container in stack.containers():
        states.setdefault(container["Service"], []).append(
            (container["State"], container.get("Health", ""), container.get("ExitCode", 0))
        )
    return states


def assert_all_healthy(stack: Stack, services: set[str], replicas: dict[str, int]) -> None:
    states = service_states(stack)
    assert set(states) == services, states
    for service, containers in states.items():
        assert len(containers) == replicas.get(service, 1), (service, containers)
        for state, health, code in containers:
            if service == "migrate":
                assert (state, code) == ("exited", 0), (service, state, code)
            elif service == "nginx":
                assert state == "running", (service, state)
            else:
                assert (state, health) == ("running", "healthy"), (service, state, health)


def assert_nothing_left(stack: Stack) -> None:
    stack.down()
    assert stack.leftovers() == {"containers": [], "volumes": [], "networks": []}
    # Images a rebuild left untagged (ours carry the stand-ins' label): no pile-up
    # across runs. Tagged images and the build cache stay, for the next run.
    docker("image", "prune", "--force", "--filter", f"label={LABEL}", timeout=300)


async def open_clients(url: str, origin: str, count: int, tls: ssl.SSLContext | None, port: int):
    clients = []
    for _ in range(count):
        ws = await connect(
            url, host="127.0.0.1", port=port, ssl=tls, origin=origin, proxy=None,
            open_timeout=15,
        )  # fmt: skip
        await receive_until(ws, lambda f: f.get("type") == "history", "history")
        clients.append(ws)
    return clients


async def chat(url: str, origin: str, port: int, tls: ssl.SSLContext | None = None):
    """Two clients: a message each way, then one with a blocked word that the worker
    hides (both clients are told). Returns the texts sent and the hidden one's id."""
    first, second = await open_clients(url, origin, 2, tls, port)
    try:
        texts = []
        for sender, receiver in ((first, second), (second, first)):
            text = f"hello {secrets.token_hex(4)}"
            await sender.send(json.dumps({"message": text}))
            for ws in (sender, receiver):
                await receive_until(
                    ws, lambda f, t=text: f.get("type") == "message" and f.get("message") == t,
                    f"message {text}",
                )  # fmt: skip
            texts.append(text)
        blocked = f"this is spam {secrets.token_hex(4)}"
        await first.send(json.dumps({"message": blocked}))
        # The worker's verdict may reach a client before the message itself does.
        for ws in (first, second):
            await both_frames(ws, blocked)
        return texts, blocked
    finally:
        for ws in (first, second):
            await ws.close()


async def both_frames(ws: ClientConnection, text: str, timeout: float = 30) -> None:
    """Wait for the message frame with `text` and the worker's "moderated" frame for
    its id, in either order."""
    deadline = time.monotonic() + timeout
    message_id, moderated = None, set()
    while message_id is None or message_id not in moderated:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no message and moderation for {text!r} in {timeout:.0f} s")
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=remaining))
        except TimeoutError:
            continue
        if frame.get("type") == "message" and frame.get("message") == text:
            message_id = frame["id"]
        elif frame.get("type") == "moderated":
            moderated.add(frame.get("id"))


def stored_messages(stack: Stack, database: str, user: str) -> dict[str, bool]:
    """Each stored message's text and hidden flag, read inside the stack: with psql in
    the database container, or from the SQLite file in the web container's volume."""
    query = "SELECT text, hidden FROM chat_message"
    if database == "postgresql":
        out = stack.run(
            "exec", "-T", "db", "psql", "-U", user, "-d", SLUG, "-tA", "-F", "\t", "-c", query,
            timeout=60,
        ).stdout  # fmt: skip
        rows = [line.split("\t") for line in out.splitlines() if line]
        return {text: flag == "t" for text, flag in rows}
    script = (
        "import json, sqlite3; rows = sqlite3.connect('/data/db.sqlite3').execute("
        f"{query!r}).fetchall(); print(json.dumps(rows))"
    )
    out = stack.run("exec", "-T", "web", "python", "-c", script, timeout=60).stdout
    return {text: bool(hidden) for text, hidden in json.loads(out)}


# ---------------------------------------------------------------------------------
# Development


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_development_stack_comes_up_and_chats(standins, tmp_path, database):
    with tier_lock():
        development_stack(standins, tmp_path, database)
    flush_figures()


def development_stack(standins: Standins, tmp_path: Path, database: str) -> None:
    root = generate(tmp_path, database=database)
    standins.ensure(base_images(root))
    port = free_port()
    stack = new_stack(root, ["compose.yaml"], {"web": [f"127.0.0.1:{port}:8000"]})
    try:
        up = stack.timed(*DEV_UP.split()[2:], *WAIT_BOUND, timeout=BUILD_SECONDS)
        services = {"migrate", "web", "worker", "redis"} | (
            {"db"} if database == "postgresql" else set()
        )
        assert_all_healthy(stack, services, {})

        page = request(port, "127.0.0.1", "/chat/")
        assert page.status == 200
        origin = f"http://127.0.0.1:{port}"
        room = f"tier-{secrets.token_hex(3)}"
        texts, blocked = asyncio.run(chat(f"ws://127.0.0.1:{port}/ws/chat/{room}/", origin, port))
        stored = stored_messages(stack, database, "postgres")
        assert {text: stored.get(text) for text in texts} == dict.fromkeys(texts, False)
        assert stored.get(blocked) is True, "the worker hid the message in the database"
        size = image_size_mb(f"{SLUG}:development")
        FIGURES.append(
            f"containers: development ({database}): `up --build --wait` {up:.1f} s to healthy "
            f"(build included; stand-ins {standins.seconds:.1f} s, "
            f"built {standins.built or 'none'}); "
            f"image {SLUG}:development {size:.0f} MB"
        )
    except BaseException:
        print(stack.logs())
        raise
    finally:
        assert_nothing_left(stack)


# ---------------------------------------------------------------------------------
# Production


class Production:
    """The default project's production stack, up for the tests below."""

    def __init__(self, root: Path, stack: Stack, http_port: int, https_port: int) -> None:
        self.root, self.stack = root, stack
        self.http_port, self.https_port = http_port, https_port
        self.tls = ssl.create_default_context(cafile=str(root / "certs" / "fullchain.pem"))
        self.origin = f"https://{HOST}:{https_port}"

    def ws_url(self, room: str) -> str:
        return f"wss://{HOST}:{self.https_port}/ws/chat/{room}/"

    def web_starts(self) -> dict[str, str]:
        """Each web container's id and the time it last started."""
        ids = self.stack.run("ps", "--all", "--quiet", "web", timeout=60).stdout.split()
        started = docker("inspect", "--format", "{{.Id}} {{.State.StartedAt}}", *ids, timeout=60)
        return dict(line.split() for line in started.stdout.splitlines())

    def wait_healthy(self) -> None:
        wait_until(
            lambda: all(
                (state, health) == ("running", "healthy")
                for state, health, _ in service_states(self.stack)["web"]
            ),
            timeout=UP_SECONDS, what="both web replicas to be healthy again", step=1,
        )  # fmt: skip


@contextmanager
def production_stack(standins: Standins, folder: Path) -> Iterator[Production]:
    root = generate(folder)
    standins.ensure(base_images(root))
    http_port, https_port = free_port(), free_port()
    # The env docs/deploying.md asks for: the example with every empty value a fresh
    # secret; the public origin carries the port this test publishes on.
    env = filled_example(root / ".env.production.example")
    env["DJANGO_TRUSTED_ORIGINS"] = f"https://{HOST}:{https_port}"
    (root / ".env.production").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    (root / "certs" / "acme").mkdir(parents=True)
    self_signed_certificate(root / "certs", HOST)
    stack = new_stack(
        root, ["compose.production.yaml"],
        {"nginx": [f"127.0.0.1:{http_port}:80", f"127.0.0.1:{https_port}:443"]},
        env_file=".env.production",
    )  # fmt: skip
    try:
        cold = stack.timed("build", "--no-cache", timeout=BUILD_SECONDS)
        views = root / "chat" / "views.py"
        views.write_text(views.read_text() + "\n# A code change, for the warm build.\n")
        warm = stack.timed("build", timeout=BUILD_SECONDS)
        up = stack.timed(*PRODUCTION_UP.split()[6:], *WAIT_BOUND, timeout=BUILD_SECONDS)
        FIGURES.append(
            f"containers: production build cold (--no-cache; uv's download cache kept) "
            f"{cold:.1f} s, warm after a code change {warm:.1f} s; "
            f"`up --build --wait` {up:.1f} s to healthy"
        )
        yield Production(root, stack, http_port, https_port)
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.down()


def test_production_stack_end_to_end(standins, tmp_path):
    """The production stack, one `up` for every check (each in its function below):
    healthy and hardened, HTTPS and wss through nginx, a restart and SIGTERM of web,
    Chromium through nginx, and `down -v` leaving nothing."""
    with tier_lock(), production_stack(standins, tmp_path / "production") as production:
        check_healthy_and_hardened(production)
        check_https_and_wss(production)
        for how in ("restart", "SIGTERM"):
            check_web_restart_closes_sockets_for_reconnect(production, how)
        check_chat_in_chromium(production, tmp_path)
        assert_nothing_left(production.stack)
    flush_figures()


def check_healthy_and_hardened(production: Production) -> None:
    stack = production.stack
    assert_all_healthy(stack, {"migrate", "web", "worker", "nginx", "redis", "db"}, {"web": 2})
    # Web runs as the image's non-root user, on a read-only root.
    for index in (1, 2):
        uid = stack.run("exec", "-T", "--index", str(index), "web", "id", "-u", timeout=60)
        assert uid.stdout.strip() == "10001"
    # The production image: within its budget, and without build tools or caches.
    image = f"{SLUG}:production"
    size = image_size_mb(image)
    nginx_size = image_size_mb(f"{SLUG}:nginx")
    found = docker(
        "run", "--rm", "--entrypoint", "sh", image, "-c",
        " ".join(f"test -e {path} && echo {path};" for path in NOT_IN_PRODUCTION) + " true",
        timeout=120,
    ).stdout.split()  # fmt: skip
    assert found == []
    FIGURES.append(
        f"containers: image {image} {size:.0f} MB (budget {PRODUCTION_IMAGE_BUDGET_MB} MB), "
        f"{SLUG}:nginx {nginx_size:.0f} MB"
    )
    assert size <= PRODUCTION_IMAGE_BUDGET_MB


def check_https_and_wss(production: Production) -> None:
    redirect = request(production.http_port, HOST, "/chat/")
    assert redirect.status == 301
    assert redirect.header("Location") == [f"https://{HOST}/chat/"]
    page = request(production.https_port, HOST, "/chat/", tls=production.tls)
    assert page.status == 200
    assert len(page.header("Strict-Transport-Security")) == 1
    healthz = request(production.https_port, HOST, "/healthz", tls=production.tls)
    assert json.loads(healthz.body) == {"status": "ok"}
    room = f"tier-{secrets.token_hex(3)}"
    texts, blocked = asyncio.run(
        chat(production.ws_url(room), production.origin, production.https_port, production.tls)
    )
    db_user = SLUG
    stored = stored_messages(production.stack, "postgresql", db_user)
    assert all(stored.get(text) is False for text in texts)
    assert stored.get(blocked) is True


async def closes_and_reconnects(production: Production, action) -> list[int]:
    """Open four sockets through nginx (spread over both replicas), run `action` (in a
    thread), and return the close codes they got; then a new pair chats."""
    room = f"tier-{secrets.token_hex(3)}"
    clients = await open_clients(
        production.ws_url(room), production.origin, 4, production.tls, production.https_port
    )
    codes = []
    try:
        task = asyncio.create_task(asyncio.to_thread(action))
        for ws in clients:
            await asyncio.wait_for(ws.wait_closed(), timeout=60)
            codes.append(ws.close_code)
        await task
    finally:
        for ws in clients:
            await ws.close()
    await asyncio.to_thread(production.wait_healthy)
    await chat(production.ws_url(room), production.origin, production.https_port, production.tls)
    return codes


def check_web_restart_closes_sockets_for_reconnect(production: Production, how: str) -> None:
    """`docker compose restart web`, and SIGTERM to uvicorn in each web container
    (their restart policy brings them back): every socket is closed with 1001 or 1012,
    which the client reconnects after, and a new pair of clients chats once web is
    healthy again."""
    stack = production.stack

    def action() -> None:
        before = production.web_starts()
        if how == "restart":
            stack.run("restart", "web", timeout=120)
        else:
            # SIGTERM from inside, as a supervisor or the kernel would send it (`docker
            # kill` counts as a manual stop, after which no restart policy applies):
            # uvicorn exits and `restart: unless-stopped` brings the container back.
            for index in (1, 2):
                stack.run("exec", "-T", "--index", str(index), "web", "sh", "-c", "kill -TERM 1",
                          timeout=60)  # fmt: skip
        wait_until(
            lambda: all(
                production.web_starts().get(key) not in (None, value)
                for key, value in before.items()
            ),
            timeout=120, what="both web containers to start again", step=1,
        )  # fmt: skip

    codes = asyncio.run(closes_and_reconnects(production, action))
    assert set(codes) <= CLOSE_ON_RESTART, codes


def check_chat_in_chromium(production: Production, tmp_path: Path) -> None:
    """Chromium through nginx (example.com mapped to 127.0.0.1, the self-signed
    certificate accepted): the lobby opens a room, two windows, a message each way;
    after `restart web`, the page's client reconnects by itself and still chats."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        # Said in the figures, not a skip: the stack's other checks have run.
        FIGURES.append("containers: Chromium check NOT RUN: no chromium or chromedriver")
        return

    def browser() -> Any:
        options = Options()
        options.binary_location = chromium
        for flag in (
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--host-resolver-rules=MAP {HOST} 127.0.0.1, MAP * ~NOTFOUND",
            "--ignore-certificate-errors", "--no-first-run", "--disable-extensions",
            f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}",
        ):  # fmt: skip
            options.add_argument(flag)
        return webdriver.Chrome(service=Service(driver_path), options=options)

    windows = [browser(), browser()]
    try:
        room = f"tier-{secrets.token_hex(3)}"
        for window in windows:
            window.get(f"https://{HOST}:{production.https_port}/chat/")
            field = WebDriverWait(window, 30).until(
                lambda w: w.find_element(By.ID, "room-name-input")
            )
            field.send_keys(room)
            window.find_element(By.ID, "room-name-submit").click()
            WebDriverWait(window, 30).until(
                lambda w: (
                    w.find_element(By.ID, "connection-state").get_attribute("data-state") == "open"
                )
            )
            assert window.current_url.endswith(f"/chat/{room}/")

        def say_and_see(sender: Any, receiver: Any) -> None:
            text = f"hello {secrets.token_hex(4)}"
            box = sender.find_element(By.ID, "chat-message-input")
            box.send_keys(text)
            sender.find_element(By.ID, "chat-message-submit").click()
            for window in (sender, receiver):
                WebDriverWait(window, 30).until(
                    lambda w, t=text: t in w.find_element(By.ID, "chat-log").text
                )

        say_and_see(windows[0], windows[1])
        say_and_see(windows[1], windows[0])
        production.stack.run("restart", "web", timeout=120)
        production.wait_healthy()
        for window in windows:
            WebDriverWait(window, 90).until(
                lambda w: (
                    w.find_element(By.ID, "connection-state").get_attribute("data-state") == "open"
                )
            )
        say_and_see(windows[0], windows[1])
    except BaseException:
        for window in windows:
            print(window.current_url, window.page_source[:3000])
        raise
    finally:
        for window in windows:
            window.quit()


@pytest.mark.parametrize("use_docker", ["y", "n"])
def test_docs_give_the_commands_the_tier_runs(tmp_path, use_docker):
    """The README, the first-run chapter and docs/deploying.md give the compose paths
    as the tier runs them, with --wait; without Docker files, no compose command."""
    root = generate(tmp_path, use_docker=use_docker)
    readme = (root / "README.md").read_text()
    first_run = (root / "docs" / "first-run.md").read_text()
    deploying = (root / "docs" / "deploying.md").read_text()
    if use_docker == "n":
        assert "docker compose" not in readme + first_run
        return
    assert DEV_UP in readme
    assert DOWN in readme
    assert DEV_UP in first_run
    assert "make dev" in first_run
    assert DEV_UP in deploying
    assert PRODUCTION_UP in deploying
    assert "up -d" not in deploying


def test_stand_in_images_are_named_from_the_project_files(tmp_path):
    """The images the stand-ins replace are read from the files, not written here."""
    root = generate(tmp_path)
    images = base_images(root)
    dockerfile = (root / "Dockerfile").read_text()
    compose = (root / "compose.production.yaml").read_text()
    assert set(images) == {"python", "uv", "nginx", "redis", "postgres"}
    for kind in ("python", "uv", "nginx"):
        assert f"FROM {images[kind]} " in dockerfile
    for kind in ("redis", "postgres"):
        assert f"image: {images[kind]}\n" in compose


@pytest.mark.parametrize("channel_layer", ["redis", "redis_pubsub"])
def test_worker_health_check_needs_its_channel_layer(shared_python, tmp_path, channel_layer):
    """deploy/docker/workercheck.py, run natively on each Redis layer: healthy with a
    reachable Redis, unhealthy with none listening and with the in-memory layer."""
    root = generate(tmp_path, channel_layer=channel_layer)
    env = {"DJANGO_SETTINGS_MODULE": "config.settings.local", "PATH": "/usr/bin:/bin"}
    cases = {
        "unreachable": ({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, 1),
        "in-memory": ({}, 1),
    }
    if os.environ.get("TEST_REDIS_URL"):
        cases["reachable"] = ({"REDIS_URL": os.environ["TEST_REDIS_URL"]}, 0)
    for name, (extra, expected) in cases.items():
        result = subprocess.run(
            [str(shared_python), "deploy/docker/workercheck.py"],
            cwd=root, env={**env, **extra}, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert result.returncode == expected, (name, result.stderr)
        if expected:
            assert result.stderr.startswith("unhealthy: "), (name, result.stderr)
