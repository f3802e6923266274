"""The chat's new messages, stored in batches: one INSERT and one commit for all the
messages that arrived while the previous batch was being stored.

Channels runs every ``database_sync_to_async`` call of a process on one thread, so
the consumers' writes queue there one at a time, and each pays a hop to that thread
and back, a health check (``SELECT 1``, CONN_HEALTH_CHECKS), the INSERT and a commit.
Under load that thread, not the CPU, set the pace of the whole chat
(docs/benchmark.md). Here a consumer hands its message to its event loop's
``MessageWriter`` and waits; the writer takes every message waiting, stores them with
``services.messages_save`` in one hop, and answers each sender with its stored
message. A lone message is stored at once, as before: the writer never waits to fill
a batch; batches form only while the database is busy with the previous one.

What each message keeps:

- its own id, in the order the messages reached the writer;
- its own failure: a message the database refuses fails alone (``messages_save``
  then stores the batch one by one), and its sender gets the error as before;
- cleaned connections: the batch runs in ``database_sync_to_async``, which closes
  broken and expired connections before and after, and the health check runs once
  per batch instead of once per message;
- a sender that goes away while its batch is stored does not stop the batch.
https://docs.djangoproject.com/en/5.2/ref/models/querysets/#bulk-create
"""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async

from chat import services
from chat.models import Message
from realtime.loops import PerLoop

# Messages stored in one batch at most (one transaction; one INSERT on PostgreSQL,
# a few on SQLite, whose statements take fewer parameters); the rest go in the next.
MAX_BATCH = 500

Waiting = tuple[Message, "asyncio.Future[Message]"]


class MessageWriter:
    """One event loop's queue of messages to store, and the task that stores them."""

    def __init__(self) -> None:
        self.waiting: list[Waiting] = []
        self.storing: asyncio.Task[None] | None = None

    async def save(self, message: Message) -> Message:
        stored: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.waiting.append((message, stored))
        if self.storing is None:
            self.storing = asyncio.ensure_future(self.store())
        return await stored

    async def store(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
                await self.store_batch(batch)
        finally:
            self.storing = None
            for _, stored in self.waiting:
                stored.cancel()  # only left when the loop is shutting down
            self.waiting.clear()

    async def store_batch(self, batch: list[Waiting]) -> None:
        try:
            outcomes = await database_sync_to_async(services.messages_save)(
                messages=[message for message, _ in batch]
            )
        except asyncio.CancelledError:
            for _, stored in batch:
                stored.cancel()
            raise
        except Exception as error:  # noqa: BLE001 - the hop itself failed: every sender hears of it
            for _, stored in batch:
                if not stored.done():
                    stored.set_exception(error)
            return
        for (_, stored), outcome in zip(batch, outcomes, strict=True):
            if stored.done():
                continue  # its sender went away; the message is stored all the same
            if isinstance(outcome, Exception):
                stored.set_exception(outcome)
            else:
                stored.set_result(outcome)


# Each event loop's writer (a future belongs to the loop that made it).
WRITERS = PerLoop(MessageWriter)


async def save(message: Message) -> Message:
    """Store a new message (from ``services.message_new``) with the others waiting in
    this event loop, and return it with its id."""
    return await WRITERS.get().save(message)
