"""chat/writer.py: messages that arrive together are stored by one INSERT, in order,
each with its own id and its own failure, on connections cleaned once per batch."""

from __future__ import annotations

import asyncio
import threading
from unittest import mock

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from django.db import OperationalError, connection

from chat import services, writer
from chat.models import Message, Room

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3


@pytest_asyncio.fixture
async def room() -> Room:
    return await database_sync_to_async(services.room_get_or_create)(name="writer")


class Batches:
    """The size of every batch the writer stores. After ``hold()`` the next batch
    stays on the database thread, as a slow INSERT would, until ``release()``."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.released = threading.Event()
        self.released.set()
        self.entered = threading.Event()
        self.real_save = services.messages_save

    def save(self, *, messages):
        self.sizes.append(len(messages))
        self.entered.set()
        assert self.released.wait(TIMEOUT), "the test never released the batch"
        return self.real_save(messages=messages)

    def hold(self) -> None:
        self.released.clear()
        self.entered.clear()

    async def held(self) -> None:
        """Wait until a batch is on the database thread, held there."""
        assert await asyncio.to_thread(self.entered.wait, TIMEOUT)

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def batches():
    recorder = Batches()
    with mock.patch.object(services, "messages_save", recorder.save):
        yield recorder


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


async def test_a_database_without_multi_row_returning_stores_one_by_one(room):
    features = type(connection.features)
    with (
        mock.patch.object(
            features, "can_return_rows_from_bulk_insert", new_callable=mock.PropertyMock
        ) as can_return,
        mock.patch.object(Message.objects, "bulk_create") as bulk_create,
    ):
        can_return.return_value = False
        stored = await asyncio.gather(*(writer.save(new(room, f"m{i}")) for i in range(3)))
    bulk_create.assert_not_called()
    assert all(m.pk is not None for m in stored)
    assert await stored_texts(room) == ["m0", "m1", "m2"]


async def test_a_failed_hop_reaches_every_sender_and_the_writer_goes_on(room):
    def broken(*, messages):
        raise OperationalError("the database went away")

    with mock.patch.object(services, "messages_save", broken):
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


async def test_connections_are_cleaned_once_per_batch_not_per_message(room):
    # database_sync_to_async closes old connections before and after each call.
    with mock.patch("channels.db.close_old_connections") as cleanups:
        await asyncio.gather(*(writer.save(new(room, f"m{i}")) for i in range(10)))
    assert cleanups.call_count == 2  # before and after the one batch
