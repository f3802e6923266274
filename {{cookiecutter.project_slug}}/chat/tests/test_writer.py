"""chat/writer.py: messages that arrive together are stored by one INSERT, in order,
each with its own id and its own failure, on connections cleaned once per batch."""

from __future__ import annotations

import asyncio
import contextlib
from unittest import mock

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from django.db import IntegrityError, OperationalError, connection

from chat import services, writer
from chat.models import Message, Room

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("road"),
]

TIMEOUT = 3


@pytest_asyncio.fixture
async def room() -> Room:
    return await database_sync_to_async(services.room_get_or_create)(name="writer")


class Batches:
    """The size of every batch the writer stores. After ``hold()`` the next batch
    waits before it is stored, as a slow INSERT would, until ``release()``."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.released = asyncio.Event()
        self.released.set()
        self.entered = asyncio.Event()
        self.real_save = writer.MessageWriter.save_batch

    async def save(self, message_writer, messages):
        self.sizes.append(len(messages))
        self.entered.set()
        await asyncio.wait_for(self.released.wait(), TIMEOUT)
        return await self.real_save(message_writer, messages)

    def hold(self) -> None:
        self.released.clear()
        self.entered.clear()

    async def held(self) -> None:
        """Wait until a batch is being stored, held there."""
        await asyncio.wait_for(self.entered.wait(), TIMEOUT)

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def batches():
    recorder = Batches()
    with mock.patch.object(writer.MessageWriter, "save_batch", autospec=True) as save:
        save.side_effect = recorder.save
        yield recorder


class StandInInserts:
    """``realtime.pginserts.PostgresInserts``' interface over the ORM, for the road on
    the loop where the database is not PostgreSQL: the writer's side is the same,
    and the connection's failure is made here (``kill``)."""

    def __init__(self) -> None:
        self.connection = object()
        self.broken = False
        self.killed = False

    async def insert(self, objs):
        if self.broken:  # the next insert opens a new connection
            self.connection, self.broken = object(), False
        if self.killed:
            self.killed, self.broken = False, True
            raise OperationalError("server closed the connection unexpectedly")
        return await database_sync_to_async(lambda: list(Message.objects.bulk_create(objs)))()


@pytest.fixture(params=["on the loop", "on the database thread"])
def road(request):
    """Each test runs both ways a batch can be stored: on the loop (on PostgreSQL its
    own connection, elsewhere ``StandInInserts``), and on the database thread."""
    on_loop = request.param == "on the loop"
    real_init = writer.MessageWriter.__init__

    def init(self):
        real_init(self)
        if not on_loop:
            self.inserts = None
        elif self.inserts is None:
            self.inserts = StandInInserts()

    with mock.patch.object(writer.MessageWriter, "__init__", init):
        yield request.param


ON_THE_LOOP = pytest.mark.parametrize("road", ["on the loop"], indirect=True)
ON_THE_THREAD = pytest.mark.parametrize("road", ["on the database thread"], indirect=True)


def new(room: Room, text: str) -> Message:
    return services.message_new(room=room, author=None, text=text)


async def stored_texts(room: Room) -> list[str]:
    return await database_sync_to_async(
        lambda: list(Message.objects.filter(room=room).values_list("text", flat=True))
    )()


async def test_messages_sent_together_are_stored_by_one_insert_in_their_order(room, batches):
    lone = await writer.save(new(room, "first"))
    together = await asyncio.gather(*(writer.save(new(room, f"m{i}")) for i in range(5)))
    assert batches.sizes == [1, 5]
    assert lone.pk is not None
    assert [m.text for m in together] == [f"m{i}" for i in range(5)]
    ids = [lone.pk] + [m.pk for m in together]
    assert ids == sorted(ids)
    assert len(set(ids)) == 6
    assert await stored_texts(room) == ["first"] + [f"m{i}" for i in range(5)]


async def test_messages_wait_while_a_batch_is_stored_and_go_in_the_next(room, batches):
    batches.hold()
    first = asyncio.ensure_future(writer.save(new(room, "first")))
    await batches.held()
    later = [asyncio.ensure_future(writer.save(new(room, f"m{i}"))) for i in range(3)]
    await asyncio.sleep(0.05)
    assert batches.sizes == [1]
    assert not any(task.done() for task in later)
    batches.release()
    stored = await asyncio.gather(first, *later)
    assert batches.sizes == [1, 3]
    assert [m.text for m in stored] == ["first", "m0", "m1", "m2"]


async def test_a_batch_holds_at_most_max_batch_messages(room, batches, monkeypatch):
    monkeypatch.setattr(writer, "MAX_BATCH", 2)
    await asyncio.gather(*(writer.save(new(room, f"m{i}")) for i in range(5)))
    assert batches.sizes == [2, 2, 1]
    assert await stored_texts(room) == [f"m{i}" for i in range(5)]


async def test_a_batch_larger_than_one_statement_takes_is_stored_whole_in_order(room, batches):
    # SQLite takes 999 parameters per statement: 166 messages; bulk_create splits.
    stored = await asyncio.gather(*(writer.save(new(room, f"m{i}")) for i in range(300)))
    assert batches.sizes == [300]
    ids = [m.pk for m in stored]
    assert ids == sorted(ids)
    assert await stored_texts(room) == [f"m{i}" for i in range(300)]


async def test_a_message_the_database_refuses_fails_alone(room):
    unsaved_room = Room(name="never-stored")  # storing a message in it raises ValueError
    outcomes = await asyncio.gather(
        writer.save(new(room, "before")),
        writer.save(new(unsaved_room, "refused")),
        writer.save(new(room, "after")),
        return_exceptions=True,
    )
    before, refused, after = outcomes
    assert isinstance(refused, ValueError)
    assert isinstance(before, Message)
    assert isinstance(after, Message)
    assert (before.text, after.text) == ("before", "after")
    assert await stored_texts(room) == ["before", "after"]


async def test_a_failed_hop_reaches_every_sender_and_the_writer_goes_on(room):
    async def broken(self, messages):
        raise OperationalError("the database went away")

    with mock.patch.object(writer.MessageWriter, "save_batch", broken):
        outcomes = await asyncio.gather(
            *(writer.save(new(room, f"lost{i}")) for i in range(3)), return_exceptions=True
        )
    assert all(isinstance(outcome, OperationalError) for outcome in outcomes)
    assert (await writer.save(new(room, "next"))).text == "next"


async def test_a_sender_that_goes_away_does_not_stop_its_batch(room, batches):
    batches.hold()
    leaving = asyncio.ensure_future(writer.save(new(room, "sent, then gone")))
    staying = asyncio.ensure_future(writer.save(new(room, "stays")))
    await batches.held()
    assert batches.sizes == [2]
    leaving.cancel()
    batches.release()
    assert (await staying).text == "stays"
    assert await stored_texts(room) == ["sent, then gone", "stays"]


@ON_THE_THREAD
async def test_connections_are_cleaned_once_per_batch_not_per_message(room):
    # database_sync_to_async closes old connections before and after each call.
    with mock.patch("channels.db.close_old_connections") as cleanups:
        await asyncio.gather(*(writer.save(new(room, f"m{i}")) for i in range(10)))
    assert cleanups.call_count == 2  # before and after the one batch


@database_sync_to_async
def terminate_backend(pid: int) -> None:
    """Kill a connection on the server's side, as a restart or an operator would."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


async def kill(inserts) -> None:
    """The writer's connection dies: on PostgreSQL for real; the stand-in's next
    insert fails as a dead connection's does."""
    if isinstance(inserts, StandInInserts):
        inserts.killed = True
    else:
        await terminate_backend(inserts.connection.info.backend_pid)


@ON_THE_LOOP
async def test_messages_failed_by_a_killed_connection_are_stored_on_a_new_one(room):
    first = await writer.save(new(room, "before"))
    inserts = writer.WRITERS.get().inserts
    assert inserts is not None
    old_connection = inserts.connection
    await kill(inserts)
    stored = await asyncio.gather(*(writer.save(new(room, f"m{i}")) for i in range(3)))
    assert [m.text for m in stored] == ["m0", "m1", "m2"]
    assert inserts.connection is not old_connection
    assert first.pk < stored[0].pk
    assert await stored_texts(room) == ["before", "m0", "m1", "m2"]


@ON_THE_LOOP
async def test_a_retried_message_already_stored_is_found_by_its_client_id(room):
    """The connection broke after the commit, before the answer: the second try is
    refused by the unique constraint and answered with the stored copy."""
    inserts = writer.WRITERS.get().inserts
    assert inserts is not None
    real_insert = inserts.insert
    calls = []

    async def committed_then_broken(objs):
        calls.append(len(objs))
        stored = await real_insert(objs)
        if len(calls) == 1:
            await kill(inserts)
            with contextlib.suppress(OperationalError):
                await real_insert(objs)  # the connection notices it is gone
            raise OperationalError("the answer was lost")
        return stored

    message = services.message_new(room=room, author=None, text="hi", sender="s", client_id="c")
    with mock.patch.object(inserts, "insert", committed_then_broken):
        saved = await writer.save(message)
    assert calls == [1, 1]
    assert saved.client_id == "c"
    assert saved.pk is not None
    assert await stored_texts(room) == ["hi"]


@ON_THE_LOOP
async def test_a_refusal_after_a_broken_connection_without_a_client_id_stays_an_error(room):
    """Without a client_id nothing finds the first try's row: ``stored_before``
    hands the refusal back instead of looking anything up."""
    with mock.patch.object(writer.selectors, "message_get_by_client_id") as lookup:
        outcome = await writer.stored_before(new(room, "no id"), IntegrityError("repeat"))
    assert isinstance(outcome, IntegrityError)
    lookup.assert_not_called()


@ON_THE_LOOP
async def test_a_refusal_on_a_working_connection_is_not_tried_again(room):
    inserts = writer.WRITERS.get().inserts
    assert inserts is not None
    calls = []

    async def refused(objs):
        calls.append(len(objs))
        raise OperationalError("canceling statement due to statement timeout")

    with mock.patch.object(inserts, "insert", refused):
        outcome = await asyncio.gather(writer.save(new(room, "no")), return_exceptions=True)
    assert isinstance(outcome[0], OperationalError)
    assert calls == [1]  # not broken: no second try
