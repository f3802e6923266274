#!/bin/sh
# Like the official image's: on an empty PGDATA, create the cluster with POSTGRES_USER
# (default postgres) as superuser and POSTGRES_PASSWORD as its password, and the
# database POSTGRES_DB (default: the user's name); then run the server as postgres,
# listening on every address with password authentication.
set -eu
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ "$1" = postgres ]; then
  shift
  : "${POSTGRES_USER:=postgres}"
  : "${POSTGRES_DB:=$POSTGRES_USER}"
  : "${PGDATA:=/var/lib/postgresql/data}"
  export PGDATA
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
      echo "Database is uninitialized and superuser password is not specified (POSTGRES_PASSWORD)" >&2
      exit 1
    fi
    pwfile="$(mktemp)"
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    chown postgres "$pwfile"
    as_postgres initdb --username="$POSTGRES_USER" --pwfile="$pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
      printf 'CREATE DATABASE "%s";\n' "$POSTGRES_DB" \
        | as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "PostgreSQL init process complete; ready for start up."
  fi
  exec setpriv --reuid=postgres --regid=postgres --init-groups \
    postgres -c listen_addresses='*' "$@"
fi
exec "$@"
