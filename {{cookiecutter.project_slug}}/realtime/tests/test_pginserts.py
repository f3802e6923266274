"""realtime/pginserts.py on a real PostgreSQL: Django's SQL and errors over the loop's
own connection, which a kill or CONN_MAX_AGE replaces; each model's statement
compiled once, and by Django every time where the values prepared here would not be
the compiler's. Skipped, and says so, when DATABASE_URL is not PostgreSQL."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, OperationalError, connection
from django.db.models import Value
from django.db.models.functions import Lower

from realtime import pginserts

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("PostgresInserts is for PostgreSQL; DATABASE_URL is not PostgreSQL")


@database_sync_to_async
def names() -> list[str]:
    return list(Group.objects.order_by("pk").values_list("name", flat=True))


@database_sync_to_async
def terminate_backend(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


def backend_pid(inserts: pginserts.PostgresInserts) -> int:
    assert inserts.connection is not None
    return inserts.connection.info.backend_pid


async def test_rows_are_stored_at_once_with_their_ids_as_bulk_create_sets_them():
    inserts = pginserts.PostgresInserts()
    groups = await inserts.insert([Group(name="a"), Group(name="b")])
    assert [g.name for g in groups] == ["a", "b"]
    assert groups[0].pk < groups[1].pk
    assert all(not g._state.adding and g._state.db == "default" for g in groups)
    assert await names() == ["a", "b"]  # committed: another connection sees them
    await inserts.close()


async def test_the_errors_are_djangos_and_nothing_of_a_refused_insert_is_stored():
    inserts = pginserts.PostgresInserts()
    await inserts.insert([Group(name="taken")])
    with pytest.raises(IntegrityError):
        await inserts.insert([Group(name="new"), Group(name="taken")])
    assert await names() == ["taken"]
    assert not inserts.broken  # a refusal leaves the connection working
    await inserts.insert([Group(name="new")])
    await inserts.close()


async def test_each_form_is_compiled_once_and_serves_batches_of_any_size(monkeypatch):
    compiles = []
    real = pginserts.InsertQuery

    def counted(model):
        compiles.append(model)
        return real(model)

    monkeypatch.setattr(pginserts, "InsertQuery", counted)
    inserts = pginserts.PostgresInserts()
    for batch in (["a"], ["b", "c"], ["d"], ["e", "f", "g", "h", "i", "j", "k"], ["l", "m"]):
        await inserts.insert([Group(name=name) for name in batch])
    assert compiles == [Group, Group]  # one row, then more: Django's UNNEST form
    assert "UNNEST" in (inserts.statements[Group, 0] or "")
    assert await names() == list("abcdefghijklm")
    await inserts.close()


async def test_a_batch_holding_an_expression_is_compiled_by_django():
    inserts = pginserts.PostgresInserts()
    await inserts.insert([Group(name="plain")])
    await inserts.insert([Group(name=Lower(Value("LOWERED")))])
    await inserts.insert([Group(name="x"), Group(name=Lower(Value("Y")))])
    assert (Group, 0) not in inserts.statements  # an expression's batch decides nothing
    await inserts.insert([Group(name="z"), Group(name=Lower(Value("Z2")))])
    await inserts.insert([Group(name="w"), Group(name="v")])
    assert await names() == ["plain", "lowered", "x", "y", "z", "z2", "w", "v"]
    assert isinstance(inserts.statements[Group, 0], str)
    await inserts.close()


class Shouted:
    """A prepared value that is SQL of its own, as Django's compiler places it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def as_sql(self, compiler, connection):
        return "UPPER(%s)", [self.text]


async def test_a_batch_whose_prepared_value_is_sql_is_compiled_by_django(monkeypatch):
    name = Group._meta.get_field("name")
    prep = name.get_db_prep_save
    monkeypatch.setattr(
        name,
        "get_db_prep_save",
        lambda value, connection: Shouted(value) if value[0] == "!" else prep(value, connection),
    )
    inserts = pginserts.PostgresInserts()
    for batch in (["a"], ["b", "c"], ["!d"], ["e", "!f"], ["g", "h"]):
        await inserts.insert([Group(name=n) for n in batch])
    assert await names() == ["a", "b", "c", "!D", "e", "!F", "g", "h"]
    await inserts.close()


async def test_a_field_with_its_own_placeholder_is_compiled_for_every_batch(monkeypatch):
    name = Group._meta.get_field("name")
    # Django asks a field for its placeholder per value, so no SQL is kept for it.
    monkeypatch.setattr(name, "get_placeholder", lambda *_: "UPPER(%s)", raising=False)
    inserts = pginserts.PostgresInserts()
    for batch in (["a"], ["b"], ["c", "d"], ["e", "f"]):
        await inserts.insert([Group(name=n) for n in batch])
    assert inserts.statements == {(Group, 1): None, (Group, 0): None}
    assert await names() == list("ABCDEF")
    await inserts.close()


async def test_pre_save_runs_once_a_batch_and_the_objects_hold_what_was_stored(monkeypatch):
    user_model = get_user_model()
    joined = user_model._meta.get_field("date_joined")
    monkeypatch.setattr(joined, "auto_now_add", True)  # its pre_save sets it to now
    inserts = pginserts.PostgresInserts()
    users = []
    for batch in (["u1"], ["u2"], ["u3", "u4"], ["u5", "u6"]):  # each form checked, then kept
        users += await inserts.insert([user_model(username=n) for n in batch])
    stored = await database_sync_to_async(
        lambda: dict(user_model.objects.values_list("pk", "date_joined"))
    )()
    assert {u.pk: u.date_joined for u in users} == stored
    assert all(isinstance(v, str) for v in inserts.statements.values())
    await inserts.close()


async def test_an_unsaved_related_object_is_refused_before_the_insert():
    inserts = pginserts.PostgresInserts()
    with pytest.raises(ValueError, match="unsaved related object"):
        await inserts.insert([Permission(name="p", codename="p", content_type=ContentType())])
    assert inserts.connection is None  # refused before it connected


async def test_a_killed_connection_fails_one_insert_and_the_next_opens_a_new_one():
    inserts = pginserts.PostgresInserts()
    await inserts.insert([Group(name="before")])
    old = backend_pid(inserts)
    await terminate_backend(old)
    with pytest.raises(OperationalError):
        await inserts.insert([Group(name="lost")])
    assert inserts.broken
    await inserts.insert([Group(name="after")])
    assert backend_pid(inserts) != old
    assert await names() == ["before", "after"]
    await inserts.close()


async def test_a_connection_older_than_conn_max_age_is_replaced(monkeypatch):
    inserts = pginserts.PostgresInserts()
    await inserts.insert([Group(name="one")])
    old = backend_pid(inserts)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    await inserts.insert([Group(name="two")])
    assert backend_pid(inserts) != old
    await inserts.close()


async def test_close_all_closes_every_open_connection_without_a_loop():
    opened = [pginserts.PostgresInserts() for _ in range(2)]
    for i, inserts in enumerate(opened):
        await inserts.insert([Group(name=f"g{i}")])
    connections = [inserts.connection for inserts in opened]
    pginserts.close_all()
    assert all(c is not None and c.closed for c in connections)
    assert all(inserts.connection is None for inserts in opened)
    assert not pginserts.OPEN
