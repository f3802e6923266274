"""realtime/pginserts.py on a real PostgreSQL: Django's SQL and errors over the loop's
own connection, which a kill or CONN_MAX_AGE replaces. Skipped, and says so, when
DATABASE_URL is not PostgreSQL."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, OperationalError, connection

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
