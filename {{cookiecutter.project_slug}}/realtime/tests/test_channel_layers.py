import json
import os
import subprocess
import sys

import pytest
from channels_redis.utils import create_pool
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.sentinel import SentinelConnectionPool

from realtime.channel_layers import IN_MEMORY_BACKEND, REDIS_BACKENDS, channel_layers
from realtime.testing.servers import RedisSentinel, RedisServer, running, server_env


def test_no_redis_url_means_in_memory():
    assert channel_layers(redis_url="", kind="redis")["default"]["BACKEND"] == IN_MEMORY_BACKEND


@pytest.mark.parametrize("kind", sorted(REDIS_BACKENDS))
def test_redis_url_selects_the_chosen_layer(kind):
    layer = channel_layers(redis_url="redis://h:6379/1", kind=kind, prefix="p")["default"]
    assert layer["BACKEND"] == REDIS_BACKENDS[kind]
    assert layer["CONFIG"]["hosts"][0]["address"] == "redis://h:6379/1"
    assert layer["CONFIG"]["prefix"] == "p"


def test_unknown_kind_is_an_error():
    with pytest.raises(KeyError):
        channel_layers(redis_url="redis://h", kind="carrier-pigeon")


def test_encryption_keys_are_passed_when_set():
    layer = channel_layers(redis_url="redis://h", kind="redis", encryption_keys=["k1", "k2"])
    assert layer["default"]["CONFIG"]["symmetric_encryption_keys"] == ["k1", "k2"]
    plain = channel_layers(redis_url="redis://h", kind="redis", encryption_keys=[])
    assert "symmetric_encryption_keys" not in plain["default"]["CONFIG"]


def test_group_expiry_outlives_the_longest_websocket(settings):
    from realtime.channel_layers import GROUP_EXPIRY

    layer = channel_layers(redis_url="redis://h", kind="redis")["default"]["CONFIG"]
    assert layer["group_expiry"] == GROUP_EXPIRY >= 86400
    assert 0 < settings.WEBSOCKET_MAX_AGE < GROUP_EXPIRY


SENTINEL_ENV = {
    "REDIS_URL": "redis://:master-secret@mymaster/3",
    "REDIS_SENTINEL_HOSTS": "10.0.0.11:26379, sentinel-b, [fd00::13]:26380",
    "REDIS_SENTINEL_MASTER": "chat-master",
    "REDIS_SENTINEL_PASSWORD": "sentinel-secret",
}


def test_the_settings_configure_sentinel_from_the_environment():
    """config.settings.base read in a fresh process with the Sentinel variables set."""
    script = (
        "import json; from config.settings import base; "
        "host = base.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]; "
        "print(json.dumps({k: v for k, v in host.items() if k != 'retry'}))"
    )
    env = {**os.environ, **SENTINEL_ENV}
    result = subprocess.run(  # noqa: S603 - this Python, a fixed script
        [sys.executable, "-c", script],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    host = json.loads(result.stdout)
    assert "address" not in host
    assert host["master_name"] == "chat-master"
    assert host["sentinels"] == [["10.0.0.11", 26379], ["sentinel-b", 26379], ["fd00::13", 26380]]
    assert host["sentinel_kwargs"]["password"] == "sentinel-secret"
    assert (host["password"], host["db"]) == ("master-secret", 3)


@pytest.mark.parametrize("kind", sorted(REDIS_BACKENDS))
def test_a_sentinel_host_becomes_a_sentinel_connection_pool(kind):
    layer = channel_layers(
        redis_url="redis://:pw@ignored/1",
        kind=kind,
        sentinel_hosts=["127.0.0.1:26379"],
        sentinel_master="chat-master",
    )["default"]
    pool = create_pool(layer["CONFIG"]["hosts"][0])  # what channels-redis does; no I/O
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "chat-master"
    assert pool.connection_kwargs["password"] == "pw"
    assert pool.connection_kwargs["db"] == 1


@pytest.mark.parametrize(
    ("redis_url", "hosts"),
    [("", ["127.0.0.1:26379"]), ("redis://h/0", ["h:port"]), ("redis://h/0", [":26379"])],
)
def test_a_bad_sentinel_setting_is_refused(redis_url, hosts):
    with pytest.raises(ImproperlyConfigured, match="REDIS_SENTINEL_HOSTS"):
        channel_layers(redis_url=redis_url, kind="redis", sentinel_hosts=hosts)


ROUND_TRIP = """
import asyncio, django
django.setup()
from channels.layers import get_channel_layer

async def round_trip():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "sentinel.ping"})
    print(await asyncio.wait_for(layer.receive(channel), timeout=10))

asyncio.run(round_trip())
"""


@pytest.mark.services("REDIS_URL")
@pytest.mark.parametrize("kind", sorted(REDIS_BACKENDS))
def test_the_layer_finds_redis_through_a_real_sentinel(kind, tmp_path):
    """A private redis-server and a Sentinel watching it; a process whose environment
    names only the Sentinel does a channel-layer round trip."""
    master = RedisServer(tmp_path)
    with running(master):
        sentinel = RedisSentinel(master, tmp_path, master_name="chat-master")
        with running(sentinel):
            env = server_env(
                database_url="sqlite:///:memory:",
                redis_url="redis://chat-master/0",  # a name, not a host: only db 0 is used
                layer_kind=kind,
                REDIS_SENTINEL_HOSTS=f"127.0.0.1:{sentinel.port}",
                REDIS_SENTINEL_MASTER="chat-master",
            )
            result = subprocess.run(  # noqa: S603 - this Python, a fixed script
                [sys.executable, "-c", ROUND_TRIP],
                cwd=settings.BASE_DIR,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
    assert result.stdout.strip() == "{'type': 'sentinel.ping'}", result.stdout + result.stderr
