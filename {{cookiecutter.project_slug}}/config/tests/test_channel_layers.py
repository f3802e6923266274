import pytest

from config.channel_layers import IN_MEMORY_BACKEND, REDIS_BACKENDS, channel_layers


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


def test_group_expiry_outlives_the_servers_websocket_timeout():
    from config.channel_layers import GROUP_EXPIRY

    layer = channel_layers(redis_url="redis://h", kind="redis")["default"]["CONFIG"]
    assert layer["group_expiry"] == GROUP_EXPIRY >= 86400
