"""Settings for the test suite: fast password hashing, a fixed key, and names that
are unique to this run, so parallel runs never share a database or Redis keys.

With no environment the tests run on SQLite and the in-memory layer; with
``DATABASE_URL`` and ``REDIS_URL`` set they run on PostgreSQL and Redis.
https://docs.djangoproject.com/en/5.2/topics/testing/overview/
"""

import os
import secrets
from typing import Any, cast

from config.env import env_list, env_str
from realtime.channel_layers import channel_layers

from .base import *  # noqa: F403 - the shared settings, changed below by name
from .base import CACHES, DATABASES, REDIS_URL, TEMPLATES

# A fixed key for tests only; production reads DJANGO_SECRET_KEY and refuses to start without.
SECRET_KEY = "test-only-secret-key-not-for-production"  # noqa: S105  # nosec B105

ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

# Live-server tests run on random localhost ports.
WEBSOCKET_ALLOW_LOCALHOST = True

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Template debugging on: coverage.py's Django template plugin measures templates only
# with it (pyproject.toml, [tool.coverage.run]).
cast("dict[str, Any]", TEMPLATES[0]["OPTIONS"])["debug"] = True

# One id per test run, shared with the subprocesses the run starts (a live server
# re-imports these settings): it names the test database and the Redis key prefix.
TEST_RUN_ID = os.environ.setdefault("TEST_RUN_ID", secrets.token_hex(4))

# Set explicitly: ChannelsLiveServerTestCase's server process otherwise derives the
# test database name from an already-prefixed name on PostgreSQL.
DATABASES["default"]["TEST"] = {
    "NAME": (
        None
        if DATABASES["default"]["ENGINE"].endswith("sqlite3")
        else f"test_{DATABASES['default']['NAME']}_{TEST_RUN_ID}"
    )
}

CACHES["default"]["KEY_PREFIX"] = f"testcache{TEST_RUN_ID}"

# CHANNEL_LAYER_KIND picks the Redis layer (redis or redis_pubsub): the services tier
# runs its servers on both. The Sentinel variables work here as in base.py.
CHANNEL_LAYERS = channel_layers(
    redis_url=REDIS_URL,
    kind=env_str("CHANNEL_LAYER_KIND", "{{ cookiecutter.channel_layer }}"),
    prefix=f"test{TEST_RUN_ID}",
    sentinel_hosts=env_list("REDIS_SENTINEL_HOSTS"),
    sentinel_master=env_str("REDIS_SENTINEL_MASTER", "mymaster"),
    sentinel_password=env_str("REDIS_SENTINEL_PASSWORD"),
)

# The suite's clients and servers all share loopback and run within minutes of one
# another: the limits counted per address are off here, and chat/tests/test_limits.py
# turns each on at base.py's value.
WEBSOCKET_MAX_SOCKETS_PER_ADDRESS = 0

# The example chat's worker channel: the Pub/Sub layer does not prefix named channels,
# so it is named after the run, and runs sharing one Redis never take each other's jobs.
CHAT_WORKER_CHANNEL = f"chat-worker-{TEST_RUN_ID}"
# Its limits counted per address, off here as the socket cap above is.
CHAT_HTTP_POSTS_PER_MINUTE = 0
CHAT_ROOMS_PER_HOUR = 0
