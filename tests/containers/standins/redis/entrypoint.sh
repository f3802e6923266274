#!/bin/sh
# Like the official image's: options alone run redis-server with them.
set -eu
if [ "${1#-}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
  shift
  # Given first, so that an explicit --protected-mode later on the line wins.
  set -- redis-server --protected-mode no "$@"
fi
exec "$@"
