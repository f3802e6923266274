"""Fixtures shared by every test module: the real-time layer's pytest plugin
(``realtime/testing/``: communicators on the real ASGI application, the channel
layer, signed-in users, and the services tier's processes)."""

pytest_plugins = ["realtime.testing"]
