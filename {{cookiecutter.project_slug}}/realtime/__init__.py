"""The project's real-time layer: the machinery any consumer builds on, apart from the
apps that use it.

- ``realtime.channel_layers``: the ``CHANNEL_LAYERS`` setting built from ``REDIS_URL``.
- ``realtime.layers``: the channel layer classes that setting names.
"""
