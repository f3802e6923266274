"""``manage.py runworker <channel> ...``: Channels' command, running
``chat.workers.ModerationWorker``, which outlives channel layer outages and catches up
the chat's moderation from the database (docs/worker.md). The chat app comes before
``channels`` in ``INSTALLED_APPS``, so this command is the one Django finds."""

from __future__ import annotations

from channels.management.commands import runworker

from chat.workers import ModerationWorker


class Command(runworker.Command):
    help = (
        "Run a worker on the given channels; it waits out channel layer outages "
        "and catches up the chat's moderation from the database."
    )
    worker_class = ModerationWorker
