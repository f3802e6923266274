"""chat/services.py's store of new messages on the database thread (the writer's
batches on SQLite and MySQL): several in one INSERT, and one refused message fails
alone, in autocommit and inside a transaction."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import IntegrityError, connection, transaction

from chat import services
from chat.models import Message, Room


@pytest.fixture
def room(db) -> Room:
    return services.room_get_or_create(name="services")


def new(room: Room, text: str, client_id: str = "") -> services.Message:
    return services.message_new(room=room, author=None, text=text, sender="s", client_id=client_id)


@pytest.mark.django_db
def test_a_database_without_multi_row_returning_stores_one_by_one(room):
    features = type(connection.features)
    with (
        mock.patch.object(
            features, "can_return_rows_from_bulk_insert", new_callable=mock.PropertyMock
        ) as can_return,
        mock.patch.object(Message.objects, "bulk_create") as bulk_create,
    ):
        can_return.return_value = False
        stored = services.messages_save(messages=[new(room, f"m{i}") for i in range(3)])
    bulk_create.assert_not_called()
    assert all(isinstance(m, Message) and m.pk is not None for m in stored)
    assert list(Message.objects.values_list("text", flat=True)) == ["m0", "m1", "m2"]


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
