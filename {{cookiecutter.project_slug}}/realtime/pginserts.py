"""New rows stored on PostgreSQL from the event loop, over a psycopg async connection
of the loop's own, without a hop to the database thread.

Channels runs every ``database_sync_to_async`` call of a process on one thread. A
batch stored there waits for the GIL after each round trip while the event loop is
busy writing frames, so under load the hop took many times the INSERT's own time
(docs/benchmark.md). ``PostgresInserts`` runs the INSERT on the loop instead, as one
more awaited socket.

What it keeps of Django: the SQL (the model's ``InsertQuery``, compiled by the
backend, as ``bulk_create`` compiles it), the connection's parameters (``DATABASES``,
``OPTIONS`` and ``assume_role`` included), the lifetime of a connection
(``CONN_MAX_AGE``), and the errors (``django.db.IntegrityError`` and the rest). What
it leaves out: signals (``bulk_create`` sends none either) and transactions. Each
INSERT commits by itself, so it cannot join a transaction a caller has open, and
rows it stores are not seen by an uncommitted transaction's snapshot on another
connection (tests that use it need ``transaction=True``, as any test whose
consumers reach the database does).

The SQL of a model's INSERT does not change from batch to batch: one row, or any
number through Django's ``UNNEST`` form (one array per column). Compiling it took 91
of the 267 µs of CPU a one-row batch cost (docs/benchmark.md), so each form is
compiled by Django once per model, and later batches only prepare their values, with
the fields' own ``pre_save`` and ``get_db_prep_save`` as the compiler calls them. The
first compile checks that those values are exactly the compiler's; a model for which
they are not (a field with its own placeholder, a form other than these two) is
compiled by Django for every batch, as is a batch holding an expression or a value
that is SQL of its own.

A connection that broke is replaced on the next insert; ``broken`` says whether the
last failure left it broken. ``close_all()`` closes every open one at once (tests,
before the test database is dropped).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg
from django.db import connections
from django.db.models import AutoField, Field, Model
from django.db.models.sql import InsertQuery
from psycopg import sql

M = TypeVar("M", bound=Model)

# Every instance with an open connection, for close_all().
OPEN: set[PostgresInserts] = set()

# A statement's key: its model, and 1 for one row or 0 for more (Django's UNNEST form,
# the same SQL for any number). Its value: the SQL, or None where Django compiles
# every batch because the values prepared here were not the compiler's.
StatementKey = tuple[type[Model], int]


class PostgresInserts:
    """One event loop's connection for INSERTs into the ``alias`` database."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self.connection: psycopg.AsyncConnection[Any] | None = None
        self.opened_at = 0.0
        self.statements: dict[StatementKey, str | None] = {}

    @property
    def broken(self) -> bool:
        """Whether the connection failed and is gone (the next insert opens one)."""
        return self.connection is not None and self.connection.broken

    async def insert(self, objs: Sequence[M]) -> list[M]:
        """Store new rows of one model with one INSERT ... RETURNING, committed at
        once, and set each object's primary key and state, as ``bulk_create`` does.
        Raises Django's errors: the database's (none stored) and ``ValueError`` for
        an object whose related object is unsaved."""
        if not objs:
            return []
        model = type(objs[0])
        meta = model._meta
        # bulk_create's steps for rows without a primary key (Django 5.2): defaults
        # filled in and related objects checked, then the INSERT.
        queryset(model, self.alias)._prepare_for_bulk_create(objs)
        statement, params = self.compiled(model, objs)
        wrapper = connections[self.alias]
        connection = await self.connect()
        with wrapper.wrap_database_errors:
            cursor = await connection.execute(statement, params)
            rows = await cursor.fetchall()
        if len(rows) != len(objs):
            raise RuntimeError(f"{len(rows)} rows came back from an INSERT of {len(objs)}")
        for obj, row in zip(objs, rows, strict=True):
            for value, field in zip(row, meta.db_returning_fields, strict=True):
                setattr(obj, field.attname, value)
            obj._state.adding = False
            obj._state.db = self.alias
        return list(objs)

    def compiled(self, model: type[Model], objs: Sequence[Model]) -> tuple[str, Sequence[Any]]:
        """The INSERT's SQL and parameters: the model's statement compiled before, or
        Django's compiler (which the first batch of each form checks against)."""
        key: StatementKey = (model, 1 if len(objs) == 1 else 0)
        fields = insert_fields(model)
        statement = self.statements.get(key)
        if statement is not None:
            params = prepared(fields, objs, self.alias, pre_save=True)
            if params is not None:
                return statement, params
        query = InsertQuery(model)
        query.insert_values(fields, list(objs))
        compiler = query.get_compiler(using=self.alias)
        compiler.returning_fields = model._meta.db_returning_fields
        [(statement, django_params)] = compiler.as_sql()
        if key not in self.statements:
            # The compiler ran each field's pre_save; the check reads what it left.
            ours = prepared(fields, objs, self.alias, pre_save=False)
            if ours is not None:
                same = ours == tuple(django_params)
                placeholders = any(hasattr(f, "get_placeholder") for f in fields)
                self.statements[key] = statement if same and not placeholders else None
        return statement, django_params

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        """The open connection; a new one if there is none, it broke or it is older
        than ``CONN_MAX_AGE``."""
        wrapper = connections[self.alias]
        max_age = wrapper.settings_dict["CONN_MAX_AGE"]
        connection = self.connection
        young = max_age is None or time.monotonic() - self.opened_at < max_age
        if connection is not None and not connection.closed and not connection.broken and young:
            return connection
        await self.close()
        params = wrapper.get_connection_params()  # no I/O: only reads the settings
        binds_on_server = not issubclass(params["cursor_factory"], psycopg.ClientCursor)
        params["cursor_factory"] = (
            psycopg.AsyncCursor if binds_on_server else psycopg.AsyncClientCursor
        )
        role = wrapper.settings_dict["OPTIONS"].get("assume_role")
        with wrapper.wrap_database_errors:
            connection = await psycopg.AsyncConnection.connect(**params, autocommit=True)
            if role:
                await connection.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        self.connection, self.opened_at = connection, time.monotonic()
        OPEN.add(self)
        return connection

    async def close(self) -> None:
        connection, self.connection = self.connection, None
        OPEN.discard(self)
        if connection is not None and not connection.closed:
            await connection.close()

    def close_now(self) -> None:
        """Close without an event loop (the one that opened it may be gone)."""
        connection, self.connection = self.connection, None
        OPEN.discard(self)
        if connection is not None and not connection.closed:
            connection.pgconn.finish()


@functools.cache
def queryset(model: type[Model], alias: str) -> Any:
    """The model's queryset on ``alias``, made once: ``_prepare_for_bulk_create``
    reads only its database, and ``using()`` copies the queryset on every call.
    Typed Any: the method is QuerySet's own, which django-stubs leaves out."""
    return model._default_manager.using(alias)


@functools.cache
def insert_fields(model: type[Model]) -> list[Field[Any, Any]]:
    """The columns bulk_create inserts for rows without a primary key (Django 5.2)."""
    return [
        f for f in model._meta.concrete_fields if not f.generated and not isinstance(f, AutoField)
    ]


def prepared(
    fields: Sequence[Field[Any, Any]], objs: Sequence[Model], alias: str, *, pre_save: bool
) -> tuple[Any, ...] | None:
    """The INSERT's parameters as Django's compiler makes them: each value through
    its field's ``pre_save`` (or as the object holds it) and ``get_db_prep_save``;
    one row's values in order, or for more rows one list per column (UNNEST). None
    for a batch holding an expression or a value with SQL of its own, which only the
    compiler places."""
    connection = connections[alias]
    rows = []
    for obj in objs:
        row = []
        for field in fields:
            value = field.pre_save(obj, add=True) if pre_save else getattr(obj, field.attname)
            if hasattr(value, "resolve_expression"):
                return None
            value = field.get_db_prep_save(value, connection=connection)
            if hasattr(value, "as_sql"):  # SQL of its own, which UNNEST cannot take
                return None
            row.append(value)
        rows.append(row)
    if len(rows) == 1:
        return tuple(rows[0])
    return tuple(list(column) for column in zip(*rows, strict=True))


def close_all() -> None:
    for inserts in list(OPEN):
        inserts.close_now()
