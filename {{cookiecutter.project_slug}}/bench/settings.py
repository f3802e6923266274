"""Settings of a server that ``bench.chatbench`` starts: the base settings as
production runs them (DEBUG off, exact WebSocket origins), on loopback, with the
channel layer chosen on chatbench's command line.

Not for deployment: production settings require ``REDIS_URL``, and a benchmark
also measures the in-memory layer. chatbench passes every value below in the
server's environment.
https://docs.djangoproject.com/en/5.2/topics/settings/
"""

from config.env import env_bool, env_list, env_str
from config.settings.base import *  # noqa: F403 - the shared settings, changed below by name
from config.settings.base import REDIS_URL
from realtime.channel_layers import channel_layers

SECRET_KEY = env_str("DJANGO_SECRET_KEY")

ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

TRUSTED_ORIGINS = env_list("DJANGO_TRUSTED_ORIGINS")
CSRF_TRUSTED_ORIGINS = TRUSTED_ORIGINS

# The benchmark's thousands of clients share loopback and open many rooms: the limits
# counted per address would refuse most of them.
WEBSOCKET_MAX_SOCKETS_PER_ADDRESS = 0
CHAT_ROOMS_PER_HOUR = 0

# The layers as channels-redis ships them, for the tutorial's baseline.
STOCK_BACKENDS = {
    "redis": "channels_redis.core.RedisChannelLayer",
    "redis_pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}

CHANNEL_LAYER_KIND = env_str("CHANNEL_LAYER_KIND", "{{ cookiecutter.channel_layer }}")
CHANNEL_LAYERS = channel_layers(
    redis_url=REDIS_URL,
    kind=CHANNEL_LAYER_KIND,
    prefix=env_str("CHANNEL_LAYER_PREFIX", "bench"),
)
if env_bool("BENCH_TUTORIAL_LAYER", default=False):
    # The Channels tutorial's layer as published: the stock backend and its address,
    # every other option at its default (bench/tutorial.py serves its consumer).
    CHANNEL_LAYERS = {
        "default": (
            {
                "BACKEND": STOCK_BACKENDS[CHANNEL_LAYER_KIND],
                "CONFIG": {
                    "hosts": [REDIS_URL],
                    "prefix": env_str("CHANNEL_LAYER_PREFIX", "bench"),
                },
            }
            if REDIS_URL
            else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
        )
    }

if env_str("BENCH_HOPS_FILE"):
    # chatbench --hops: the app that stamps each message on its way (bench/hops.py).
    INSTALLED_APPS = [*INSTALLED_APPS, "bench.apps.BenchConfig"]  # noqa: F405 - from base
