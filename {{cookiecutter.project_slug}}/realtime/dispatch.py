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

And one thing for every socket, busy or idle: a consumer with
``channel_on_demand = True`` reads its own channel only from its first
``join_group`` (``realtime/guards.py`` calls ``listen_on_channel``), not from the
start. A chat socket whose room reaches it through the process's fan-out, and whose
visitor is not signed in, then holds no channel reader at all: no task, no queue in
the layer (about 4 KB of each idle socket's memory, docs/benchmark.md). Leave it
off for a consumer that others send to by its ``channel_name`` without a group.

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
    # Read the consumer's channel only once it joins a group (see the module's docstring).
    channel_on_demand: ClassVar[bool] = False

    channel_layer_alias: str
    base_send: Callable[[dict[str, Any]], Awaitable[None]]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        self.one_at_a_time = asyncio.Lock()
        self.pumps: list[asyncio.Task[None]] = []
        self.all_pumps = asyncio.get_running_loop().create_future()
        self.listening = False
        if self.channel_layer is not None:
            # Named before the first message is handled: handlers use the name.
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.start_pump(receive)
        if not self.channel_on_demand:
            await self.listen_on_channel()
        try:
            ended = await self.all_pumps
            with contextlib.suppress(StopConsumer):
                ended.result()
        finally:
            for task in self.pumps:
                task.cancel()
            # Collect every outcome (a cancelled read, a second error) without raising.
            await asyncio.gather(*self.pumps, return_exceptions=True)

    async def listen_on_channel(self) -> None:
        """Start reading the consumer's channel, once (``channel_on_demand``)."""
        if not self.listening and self.channel_layer is not None:
            self.listening = True
            self.start_pump(self.channel_receive)

    def start_pump(self, source: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        async def pump() -> None:
            while True:
                message = await source()
                async with self.one_at_a_time:
                    await self.dispatch(message)

        task = asyncio.ensure_future(pump())
        task.add_done_callback(self.pump_ended)
        self.pumps.append(task)

    def pump_ended(self, task: asyncio.Task[None]) -> None:
        """The first source to end (its pump returned or raised) ends the consumer."""
        if not self.all_pumps.done():
            self.all_pumps.set_result(task)

    async def dispatch(self, message: dict[str, Any]) -> None:
        event_type = message["type"]
        if event_type in self.skip_cleanup_for:
            await getattr(self, event_type.replace(".", "_"))(message)
        else:
            await super().dispatch(message)  # type: ignore[misc]

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' own, which also awaits ``aclose_old_connections()`` after the
        consumer's ``disconnect``: skipped too when ``websocket.disconnect`` is in
        ``skip_cleanup_for``."""
        if "websocket.disconnect" not in self.skip_cleanup_for:
            await super().websocket_disconnect(message)  # type: ignore[misc]
            return
        for group in getattr(self, "groups", None) or ():
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.disconnect(message["code"])  # type: ignore[attr-defined]
        raise StopConsumer
