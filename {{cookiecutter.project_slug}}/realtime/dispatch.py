"""A cheaper dispatch loop for async consumers that carry a group's messages.

Channels' ``AsyncConsumer`` does two costly things for every message, one
delivery of a group broadcast included (docs/benchmark.md has the figures):

- ``dispatch`` awaits ``aclose_old_connections()``, a hop to the database thread
  and back, before every handler, so that its ORM calls never use a connection the
  database dropped or one older than CONN_MAX_AGE. Calls made through
  ``database_sync_to_async`` get that anyway: it cleans before and after each call,
  on the thread that runs it. Only Django's async ORM
  (``await Model.objects.aget(...)``) does not clean, and needs the hop.
  ``FastDispatchMixin`` skips it for the message types in ``skip_cleanup_for``:
  handlers that make no ORM call, or make every one through
  ``database_sync_to_async``. Every other message keeps it.
- ``await_many_dispatch`` wraps each next read of the client and of the channel
  layer in a new task and waits on both with ``asyncio.wait``. Here one
  long-lived task reads each source; a lock keeps handlers one at a time, in
  arrival order, as before.

Put it after the mixins that wrap ``__call__`` and before the Channels base class:
``class MyConsumer(LayerFaultsMixin, GuardsMixin, FastDispatchMixin,
AsyncWebsocketConsumer)``.
https://channels.readthedocs.io/en/stable/topics/consumers.html
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer


class FastDispatchMixin:
    """``AsyncConsumer.__call__`` and ``dispatch`` with less work per message."""

    # Message types whose handlers make no ORM call, or make each one through
    # database_sync_to_async (a handler's name is the type with "_" for ".").
    skip_cleanup_for: ClassVar[frozenset[str]] = frozenset()

    channel_layer_alias: str
    base_send: Callable[[dict[str, Any]], Awaitable[None]]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        sources = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        one_at_a_time = asyncio.Lock()

        async def pump(source: Callable[[], Awaitable[dict[str, Any]]]) -> None:
            while True:
                message = await source()
                async with one_at_a_time:
                    await self.dispatch(message)

        tasks = [asyncio.ensure_future(pump(source)) for source in sources]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                with contextlib.suppress(StopConsumer):
                    task.result()
        finally:
            for task in tasks:
                task.cancel()
            # Collect every outcome (a cancelled read, a second error) without raising.
            await asyncio.gather(*tasks, return_exceptions=True)

    async def dispatch(self, message: dict[str, Any]) -> None:
        event_type = message["type"]
        if event_type in self.skip_cleanup_for:
            await getattr(self, event_type.replace(".", "_"))(message)
        else:
            await super().dispatch(message)  # type: ignore[misc]
