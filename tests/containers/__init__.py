"""The container tier's machinery: a Docker Engine, stand-in base images, compose stacks.

No container registry is reachable where the tier runs, so the base images that the
generated Dockerfile and compose files name are built here from Debian packages
(``debootstrap --variant=minbase bookworm``, ``docker import``, then one small
Dockerfile per image under ``standins/``) and tagged with exactly the names those
files use, read from the files. Each stand-in carries a label with the hash of its
recipe (its folder, its parent's hash, the files it is given); a run rebuilds only
the ones whose recipe changed. The stand-ins are fixtures of the template, never part
of a generated project, whose Dockerfile and compose files run unchanged.

Every command here has a timeout; a stack is always taken down with its volumes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.deploy_support import dockerfile_stages, load_yaml

STANDINS = Path(__file__).resolve().parent / "standins"
# Debian's CLI: BuildKit built in (DOCKER_BUILDKIT=1), no buildx plugin needed.
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker")
DOCKER_ENV = {"DOCKER_BUILDKIT": "1", "COMPOSE_PROGRESS": "plain"}
LABEL = "org.cookiecutter-channels.standin-recipe"
ROOTFS = "cookiecutter-channels-standin/rootfs:bookworm"
BASE = "cookiecutter-channels-standin/base:bookworm"
SUITE = "bookworm"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# The recipe folder for each kind of base image, by the image's repository name.
RECIPES = {
    "python": "python",
    "uv": "uv",
    "nginx": "nginx",
    "redis": "redis",
    "postgres": "postgres",
}


def docker(
    *args: str, timeout: float, check: bool = True, cwd: Path | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run the Docker CLI with BuildKit on; fail with its output unless told not to."""
    assert DOCKER is not None
    result = subprocess.run(
        [DOCKER, *args],
        cwd=cwd,
        env={**os.environ, **DOCKER_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result


def engine_problem() -> str | None:
    """Why no engine can be used here, or None when one answers."""
    if DOCKER is None:
        return "no docker CLI on this machine (.ci/run installs docker.io and starts dockerd)"
    try:
        info = docker("info", "--format", "{{.ServerVersion}}", timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer within 30 s"
    if info.returncode != 0:
        return f"no Docker engine answers ({info.stderr.strip()[:200]}); .ci/run starts one"
    return None


def compose_problem() -> str | None:
    """Why `docker compose` (v2, the CLI plugin) cannot run, or None."""
    version = docker("compose", "version", "--short", timeout=30, check=False)
    if version.returncode != 0:
        return f"no Compose v2 plugin: {version.stderr.strip()[:200]} (.ci/run installs it)"
    return None


@contextmanager
def tier_lock(timeout: float = 2400) -> Iterator[None]:
    """One stack at a time on this engine, across xdist workers and test sessions:
    stacks of the same project share image tags, and two at once on two cores would
    only slow each other past their health checks' bounds."""
    path = Path(tempfile.gettempdir()) / "cookiecutter-channels-container-tier.lock"
    with path.open("a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    message = f"another container stack held {path} for {timeout:.0f} s"
                    raise AssertionError(message) from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------
# Stand-in base images


def digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()[:32]


def folder_digest(folder: Path) -> bytes:
    return b"".join(
        path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    )


def image_label(image: str) -> str | None:
    found = docker(
        "image", "inspect", "--format", f'{{{{ index .Config.Labels "{LABEL}" }}}}', image,
        timeout=30, check=False,
    )  # fmt: skip
    return found.stdout.strip() if found.returncode == 0 else None


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (deb822 or one-line sources)."""
    texts = [
        path.read_text()
        for path in [
            Path("/etc/apt/sources.list"),
            *sorted(Path("/etc/apt/sources.list.d").glob("*")),
        ]
        if path.is_file()
    ]
    for text in texts:
        for stanza in text.split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, flags=re.MULTILINE)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, flags=re.MULTILINE)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    return "http://deb.debian.org/debian"


@dataclass
class Standins:
    """Builds (or finds) the stand-ins; records what it did and how long it took."""

    workdir: Path
    built: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def ensure_rootfs(self) -> str:
        mirror = debian_mirror()
        recipe = digest(f"debootstrap --variant=minbase {SUITE} {mirror}".encode())
        if image_label(ROOTFS) == recipe:
            return recipe
        if shutil.which("debootstrap") is None:
            raise AssertionError("debootstrap is not installed (.ci/run installs it)")
        target = self.workdir / "rootfs"
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", SUITE, str(target), mirror],
            capture_output=True, text=True, timeout=1200, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        # What debootstrap downloaded is not part of the system.
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (target / cache).glob("*"):
                if path.is_file():
                    path.unlink()
        with subprocess.Popen(["tar", "-C", str(target), "-c", "."], stdout=subprocess.PIPE) as tar:
            docker("import", "--change", f"LABEL {LABEL}={recipe}", "-", ROOTFS,
                   timeout=600, stdin=tar.stdout)  # fmt: skip
        shutil.rmtree(target, ignore_errors=True)
        self.built.append(ROOTFS)
        return recipe

    def build(self, tag: str, recipe_dir: Path, parent: str, files: dict[str, Path]) -> str:
        """Build one stand-in from its folder plus `files` (name in context: source)."""
        recipe = digest(
            parent.encode(),
            folder_digest(recipe_dir),
            *(name.encode() + source.read_bytes() for name, source in sorted(files.items())),
        )
        if image_label(tag) == recipe:
            return recipe
        context = Path(tempfile.mkdtemp(dir=self.workdir))
        shutil.copytree(recipe_dir, context, dirs_exist_ok=True)
        for name, source in files.items():
            shutil.copy2(source, context / name)
        docker("build", "--label", f"{LABEL}={recipe}", "-t", tag, str(context), timeout=1200)
        shutil.rmtree(context, ignore_errors=True)
        self.built.append(tag)
        return recipe

    def ensure(self, images: dict[str, str]) -> None:
        """Every image in `images` (kind: name) present, as its recipe says; `built`
        and `seconds` say what this call built and how long it took."""
        started = time.monotonic()
        self.built = []
        base = self.build(
            BASE, STANDINS / "base", self.ensure_rootfs(), {"ca-certificates.crt": HOST_CA_BUNDLE}
        )
        for kind, image in sorted(images.items()):
            files: dict[str, Path] = {}
            parent = base
            if kind == "uv":
                files = uv_binaries(image.rsplit(":", 1)[1], self.workdir)
                parent = ""
            self.build(image, STANDINS / RECIPES[kind], parent, files)
        if self.built:
            # The stand-ins these replaced, now untagged.
            docker("image", "prune", "--force", "--filter", f"label={LABEL}", timeout=300)
        self.seconds = time.monotonic() - started


def uv_binaries(version: str, workdir: Path) -> dict[str, Path]:
    """uv and uvx from the PyPI wheel of this uv version (installed by uv, cached)."""
    uv = shutil.which("uv")
    assert uv is not None, "uv is not on PATH"
    script = "import uv; print(uv.find_uv_bin())"
    found = subprocess.run(
        [uv, "run", "--no-project", "--quiet", "--with", f"uv=={version}", "python", "-c", script],
        cwd=workdir, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    binary = Path(found.stdout.strip().splitlines()[-1])
    version_out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert version_out.split()[1] == version, version_out
    return {"uv": binary, "uvx": binary.with_name("uvx")}


def base_images(root: Path) -> dict[str, str]:
    """The images a generated project's Dockerfile and compose files pull, by kind
    (python, uv, nginx, redis, postgres), read from those files."""
    stages = dockerfile_stages((root / "Dockerfile").read_text())
    names = {stage.name for stage in stages}
    refs = {stage.image for stage in stages if stage.image not in names}
    for compose in sorted(root.glob("compose*.yaml")):
        services = load_yaml(compose)["services"]
        built = {service.get("image") for service in services.values() if "build" in service}
        refs |= {
            service["image"]
            for service in services.values()
            if "build" not in service and service.get("image") not in built
        }
    images: dict[str, str] = {}
    for ref in sorted(refs):
        kind = ref.rsplit(":", 1)[0].rsplit("/", 1)[-1]
        assert kind in RECIPES, f"no stand-in recipe for {ref} (tests/containers/standins/)"
        assert images.setdefault(kind, ref) == ref, f"two {kind} images: {images[kind]}, {ref}"
    return images


# ---------------------------------------------------------------------------------
# Compose stacks


@dataclass
class Stack:
    """One compose project: the generated files, unchanged, plus an override file that
    only moves published ports to free ones on 127.0.0.1."""

    root: Path
    name: str
    files: list[str]
    env_file: str | None = None

    def command(self, *args: str) -> list[str]:
        assert DOCKER is not None
        line = [DOCKER, "compose", "-p", self.name]
        for file in self.files:
            line += ["-f", file]
        if self.env_file:
            line += ["--env-file", self.env_file]
        return [*line, *args]

    def run(
        self, *args: str, timeout: float, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return docker(*self.command(*args)[1:], timeout=timeout, check=check, cwd=self.root)

    def timed(self, *args: str, timeout: float) -> float:
        started = time.monotonic()
        self.run(*args, timeout=timeout)
        return time.monotonic() - started

    def containers(self) -> list[dict[str, Any]]:
        listed = self.run("ps", "--all", "--format", "json", timeout=60).stdout
        return [json.loads(line) for line in listed.splitlines() if line.strip()]

    def down(self) -> None:
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=180,
                 check=False)  # fmt: skip

    def logs(self) -> str:
        """The services' last log lines, and each container's last health checks."""
        logs = self.run("logs", "--no-color", "--tail", "200", timeout=60, check=False).stdout
        ids = self.run("ps", "--all", "--quiet", timeout=60, check=False).stdout.split()
        if ids:
            health = docker(
                "inspect", "--format", "{{.Name}} {{json .State.Health}}", *ids,
                timeout=60, check=False,
            )  # fmt: skip
            logs += "\nhealth checks:\n" + health.stdout
        return logs

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, volumes and networks still labelled with this project."""
        label = f"label=com.docker.compose.project={self.name}"
        found = {}
        for kind, args in (
            ("containers", ("ps", "--all", "--quiet", "--filter", label)),
            ("volumes", ("volume", "ls", "--quiet", "--filter", label)),
            ("networks", ("network", "ls", "--quiet", "--filter", label)),
        ):
            found[kind] = docker(*args, timeout=60).stdout.split()
        return found


def image_size_mb(image: str) -> float:
    size = docker("image", "inspect", "--format", "{{.Size}}", image, timeout=30).stdout
    return int(size.strip()) / 1e6


def write_figures(lines: list[str]) -> None:
    """Print the tier's figures, and append them to $CONTAINER_FIGURES when set (.ci/run
    prints that file after the suite, since pytest keeps a passing test's output)."""
    text = "\n".join(lines) + "\n"
    print(text, file=sys.stderr)
    target = os.environ.get("CONTAINER_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(text)
