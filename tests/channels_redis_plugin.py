"""A pytest plugin that runs channels-redis' own tests on another layer class.

Loaded with ``-p channels_redis_plugin`` before channels-redis' test modules are
imported, it puts a subclass of the class ``CONFORMANCE_LAYER`` names ("module.Class")
in ``channels_redis.core.RedisChannelLayer``, where their
``from channels_redis.core import RedisChannelLayer`` finds it. The subclass changes
only where the layer connects: channels-redis' tests use databases 0 to 9 of
localhost:6379, which other test runs share; here database N is database
``CONFORMANCE_DB_OFFSET`` + N of the Redis ``CONFORMANCE_REDIS`` ("host:port") names,
and their Sentinel on localhost:26379 is the one ``CONFORMANCE_SENTINEL`` names.
Stock and project class get the same change, so their results compare.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import sys
import types
from typing import Any
from urllib.parse import urlsplit

import channels_redis.core

ADDRESS = os.environ["CONFORMANCE_REDIS"]
DB_OFFSET = int(os.environ["CONFORMANCE_DB_OFFSET"])
SENTINEL = os.environ.get("CONFORMANCE_SENTINEL", "")


def moved(host: Any) -> Any:
    """The same host on ADDRESS (a Sentinel entry: on SENTINEL) with its database
    shifted by DB_OFFSET."""
    if isinstance(host, str):
        parts = urlsplit(host)
        database = int(parts.path.strip("/") or 0)
        return f"{parts.scheme}://{ADDRESS}/{database + DB_OFFSET}"
    if isinstance(host, dict) and "sentinels" in host and SENTINEL:
        sentinel_host, _, port = SENTINEL.rpartition(":")
        return {
            **host,
            "sentinels": [(sentinel_host, int(port))],
            "db": host.get("db", 0) + DB_OFFSET,
        }
    raise AssertionError(f"no rule to move the host {host!r} to the test database")


def layer_class() -> type:
    module, _, name = os.environ["CONFORMANCE_LAYER"].rpartition(".")
    base = getattr(importlib.import_module(module), name)

    class RedisChannelLayer(base):  # type: ignore[valid-type, misc]
        def __init__(self, hosts: Any = None, *args: Any, **kwargs: Any) -> None:
            super().__init__([moved(host) for host in hosts or ["redis://"]], *args, **kwargs)

    return RedisChannelLayer


# channels-redis' tests use async-timeout, which redis-py no longer installs on
# Python 3.11+; asyncio.timeout does the same.
with contextlib.suppress(ImportError):
    import async_timeout  # noqa: F401
if "async_timeout" not in sys.modules:
    sys.modules["async_timeout"] = types.SimpleNamespace(timeout=asyncio.timeout)  # type: ignore[assignment]

channels_redis.core.RedisChannelLayer = layer_class()  # type: ignore[misc]
