"""chat/services.py's stores of new messages: several in one INSERT, committed
alone where Django runs in autocommit; one refused message fails alone."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from chat import services
from chat.models import Message, Room

COMPARED = ("room_id", "author_id", "author_name", "text", "sender_key", "client_id", "hidden")


@pytest.fixture
def room(db) -> Room:
    return services.room_get_or_create(name="services")


def new(room: Room, text: str, client_id: str = "") -> services.Message:
    return services.message_new(room=room, author=None, text=text, sender="s", client_id=client_id)


def stored(messages) -> list[tuple]:
    rows = Message.objects.filter(pk__in=[m.pk for m in messages]).order_by("pk")
    return [tuple(getattr(m, f) for f in COMPARED) for m in rows]


@pytest.mark.django_db(transaction=True)
def test_in_autocommit_a_batch_is_one_insert_and_no_transaction(room):
    with (
        mock.patch.object(connection, "set_autocommit", wraps=connection.set_autocommit) as begin,
        mock.patch.object(Message.objects, "bulk_create") as bulk_create,
        CaptureQueriesContext(connection) as queries,
    ):
        saved = services.messages_insert(messages=[new(room, f"m{i}") for i in range(3)])
    bulk_create.assert_not_called()
    begin.assert_not_called()  # atomic() would turn autocommit off: BEGIN ... COMMIT
    assert len(queries) == 1
    assert queries[0]["sql"].upper().startswith("INSERT")
    ids = [m.pk for m in saved]
    assert ids == sorted(ids)
    assert None not in ids
    assert all(not m._state.adding and m._state.db == "default" for m in saved)


@pytest.mark.django_db(transaction=True)
def test_the_one_insert_stores_what_bulk_create_stores(room):
    ours = services.messages_insert(messages=[new(room, "a"), new(room, "b")])
    theirs = Message.objects.bulk_create([new(room, "a"), new(room, "b")])
    assert stored(ours) == stored(theirs)
    created = Message.objects.filter(pk__in=[m.pk for m in ours]).values_list("created", flat=True)
    assert all(created)  # the defaults bulk_create fills in are filled in too


@pytest.mark.django_db
def test_inside_a_transaction_a_batch_goes_through_bulk_create(room):
    with mock.patch.object(
        Message.objects, "bulk_create", wraps=Message.objects.bulk_create
    ) as bulk_create:
        saved = services.messages_insert(messages=[new(room, "a"), new(room, "b")])
    bulk_create.assert_called_once()
    assert [m.text for m in saved] == ["a", "b"]


@pytest.mark.parametrize("autocommit", [True, False], ids=["autocommit", "in a transaction"])
def test_a_repeated_client_id_fails_alone_and_the_others_are_stored(autocommit, request):
    request.getfixturevalue("transactional_db" if autocommit else "db")
    room = services.room_get_or_create(name="services")
    first = services.message_create(room=room, author=None, text="x", sender="s", client_id="k")
    batch = [new(room, "before"), new(room, "again", "k"), new(room, "after")]
    before, again, after = services.messages_save(messages=batch)
    assert isinstance(again, IntegrityError)
    assert isinstance(before, Message)
    assert isinstance(after, Message)
    texts = list(Message.objects.order_by("pk").values_list("text", flat=True))
    assert texts == ["x", "before", "after"]
    assert Message.objects.get(client_id="k").pk == first.pk
    if not autocommit:
        assert transaction.get_connection().in_atomic_block
        assert Message.objects.count() == 3  # the test's transaction still works
