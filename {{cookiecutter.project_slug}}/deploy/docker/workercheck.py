"""The worker container's health check: a round trip through its channel layer.

A worker serves no HTTP, so the image's ``/healthz`` check cannot speak for it.
This sends a message to a fresh channel of the layer the worker's settings choose
and reads it back: exit status 0 only when that layer answers within the timeout,
with the worker's own environment (``REDIS_URL``, its password and settings). The
in-memory layer fails the check: a worker on it would hear nothing from the web
processes. A worker whose layer connection breaks waits the outage out and catches
up from the database (chat/workers.py); this check makes a worker that cannot reach
Redis show as unhealthy meanwhile, and lets ``docker compose up --wait`` wait for it.

    python deploy/docker/workercheck.py

https://docs.docker.com/reference/compose-file/services/#healthcheck
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

# Seconds the round trip may take, once Django's settings and the layer are loaded
# (a loaded machine may take longer than that to start Python and import them).
TIMEOUT_SECONDS = 5


def crosses_processes(layer: Any) -> bool:
    return layer is not None and not any(
        "InMemory" in kind.__name__ for kind in type(layer).__mro__
    )


async def round_trip(layer: Any) -> dict[str, Any]:
    # A channel of its own: the worker's channel and its jobs are left alone. Its
    # connections end with this process.
    channel = await layer.new_channel("health.")
    await layer.send(channel, {"type": "health.check"})
    return await layer.receive(channel)


def main() -> int:
    # Run from the project root (the image's WORKDIR), whatever the caller's folder.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
    try:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if not crosses_processes(layer):
            raise RuntimeError(f"no channel layer that crosses processes: {layer!r}")
        message = asyncio.run(asyncio.wait_for(round_trip(layer), TIMEOUT_SECONDS))
        if message.get("type") != "health.check":
            raise RuntimeError(f"unexpected message {message!r}")
    except Exception as error:  # noqa: BLE001 - any failure means unhealthy
        print(f"unhealthy: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
