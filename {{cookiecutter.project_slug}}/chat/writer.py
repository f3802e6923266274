"""The chat's new messages, stored in batches: one INSERT for all the messages that
arrived while the previous batch was being stored.

Channels runs every ``database_sync_to_async`` call of a process on one thread, so
the consumers' writes would queue there one at a time, each paying a hop to that
thread and back, a health check (``SELECT 1``, CONN_HEALTH_CHECKS), the INSERT and
a commit. Under load that thread, not the CPU, had set the pace of the whole chat
(docs/benchmark.md). Here a consumer hands its message to its event loop's
``MessageWriter`` and waits; the writer takes every message waiting, stores them at
once, and answers each sender with its stored message. A lone message is stored at
once: the writer never waits to fill a batch; batches form only while the database
is busy with the previous one.

What each message keeps:

- its own id, in the order the messages reached the writer;
- its own failure: a message the database refuses fails alone (the batch is then
  stored one by one), and its sender gets the error;
- on PostgreSQL, no hop to the database thread: the batch's INSERT runs on the
  event loop, over the loop's own async connection (``realtime.pginserts``), and
  commits by itself. On the thread, each round trip waited for the GIL while the
  loop wrote frames. A connection that broke is replaced, and the messages it
  failed are stored once more on the new one (``save_on_loop`` says what that can
  cost);
- elsewhere (SQLite), cleaned connections: the batch runs in
  ``database_sync_to_async``, which closes broken and expired connections before
  and after, and the health check runs once per batch instead of once per message;
- a sender that goes away while its batch is stored does not stop the batch.
https://docs.djangoproject.com/en/5.2/ref/models/querysets/#bulk-create
"""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async
from django.db import DatabaseError, IntegrityError, connection

from chat import selectors, services
from chat.models import Message
from realtime.batches import Batches
from realtime.loops import PerLoop
from realtime.pginserts import PostgresInserts

logger = logging.getLogger(__name__)

# Messages stored in one batch at most (one transaction; one INSERT on PostgreSQL,
# a few on SQLite, whose statements take fewer parameters); the rest go in the next.
MAX_BATCH = 500


class MessageWriter:
    """One event loop's queue of messages to store, stored in batches
    (``realtime.batches``)."""

    def __init__(self) -> None:
        # Looked up at each batch, not bound here: tests stand in for save_batch.
        self.batches: Batches[Message, Message] = Batches(
            lambda messages: self.save_batch(messages), MAX_BATCH
        )
        # Reading the backend's name does not connect.
        self.inserts = PostgresInserts() if connection.vendor == "postgresql" else None

    async def save(self, message: Message) -> Message:
        return await self.batches.submit(message)

    async def save_batch(self, messages: list[Message]) -> list[Message | Exception]:
        """Each message's outcome: stored on the loop (PostgreSQL), or on the
        database thread."""
        if self.inserts is not None:
            return await save_on_loop(self.inserts, messages)
        return await database_sync_to_async(services.messages_save)(messages=messages)


async def save_on_loop(
    inserts: PostgresInserts, messages: list[Message]
) -> list[Message | Exception]:
    """``services.messages_save`` on the loop's connection; messages its failure
    left unstored are stored once more on a new connection.

    What that second try can cost: if the connection broke after PostgreSQL had
    committed the INSERT but before its answer arrived, the first try did store
    the messages. One with a client_id is then found by it, as stored (the
    unique constraint refuses the copy); one without is stored twice.
    """
    outcomes = await insert(inserts, messages)
    failed = [i for i, outcome in enumerate(outcomes) if lost_with_connection(outcome)]
    if failed and inserts.broken:
        again = await insert(inserts, [messages[i] for i in failed], after_broken=True)
        for i, outcome in zip(failed, again, strict=True):
            outcomes[i] = outcome
    return outcomes


async def insert(
    inserts: PostgresInserts, messages: list[Message], *, after_broken: bool = False
) -> list[Message | Exception]:
    """One INSERT for all; if it fails, one by one, so that a message the database
    refuses fails alone (as ``services.messages_save``)."""
    if len(messages) > 1:
        try:
            return [*await inserts.insert(messages)]
        except Exception:  # noqa: BLE001 - each message is tried alone below, and fails alone
            logger.warning("storing %d messages at once failed; one by one now", len(messages))
            after_broken = after_broken or inserts.broken
    outcomes: list[Message | Exception] = []
    for message in messages:
        message.pk = None  # a failed INSERT stored none of them (one statement)
        try:
            outcomes.extend(await inserts.insert([message]))
        except IntegrityError as error:
            outcomes.append(await stored_before(message, error) if after_broken else error)
        except Exception as error:  # noqa: BLE001 - handed to this message's sender
            outcomes.append(error)
    return outcomes


def lost_with_connection(outcome: Message | Exception) -> bool:
    """A failure of the connection, not a refusal of the message."""
    return isinstance(outcome, DatabaseError) and not isinstance(outcome, IntegrityError)


async def stored_before(message: Message, error: IntegrityError) -> Message | Exception:
    """A message refused as a repeat after its connection broke: its own first try,
    committed before the answer was lost, if it carries a client_id to find it by."""
    if not message.client_id:
        return error
    found = await database_sync_to_async(selectors.message_get_by_client_id)(
        sender=message.sender_key, client_id=message.client_id
    )
    return error if found is None else found


# Each event loop's writer (a future belongs to the loop that made it).
WRITERS = PerLoop(MessageWriter)


async def save(message: Message) -> Message:
    """Store a new message (from ``services.message_new``) with the others waiting in
    this event loop, and return it with its id."""
    return await WRITERS.get().save(message)
