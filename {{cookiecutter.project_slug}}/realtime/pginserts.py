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

A connection that broke is replaced on the next insert; ``broken`` says whether the
last failure left it broken. ``close_all()`` closes every open one at once (tests,
before the test database is dropped).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg
from django.db import connections
from django.db.models import AutoField, Model
from django.db.models.sql import InsertQuery
from psycopg import sql

M = TypeVar("M", bound=Model)

# Every instance with an open connection, for close_all().
OPEN: set[PostgresInserts] = set()


class PostgresInserts:
    """One event loop's connection for INSERTs into the ``alias`` database."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self.connection: psycopg.AsyncConnection[Any] | None = None
        self.opened_at = 0.0

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
        # bulk_create's steps and columns for rows without a primary key (Django 5.2):
        # defaults filled in and related objects checked, then the INSERT. Both
        # methods are QuerySet's own; django-stubs leaves private ones out.
        model._default_manager.using(self.alias)._prepare_for_bulk_create(objs)  # type: ignore[attr-defined]
        fields = [
            f for f in meta.concrete_fields if not f.generated and not isinstance(f, AutoField)
        ]
        query = InsertQuery(model)
        query.insert_values(fields, list(objs))
        compiler = query.get_compiler(using=self.alias)
        compiler.returning_fields = meta.db_returning_fields
        [(statement, params)] = compiler.as_sql()
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


def close_all() -> None:
    for inserts in list(OPEN):
        inserts.close_now()
