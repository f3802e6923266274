"""Sockets joining a room, read from the database together: one query of the room and
its recent history for all the sockets of a process that join it at about the same
time, instead of one each.

Every ``database_sync_to_async`` call of a process runs on one thread, so when a
thousand sockets join at once (a reconnect after a deploy), a thousand room lookups
and history reads queue there one at a time; that queue set how long the last of
them waited (docs/benchmark.md). Here a socket asks its event loop's ``RoomOpener``
for the room, after it joined the room's fan-out. A socket that asks while no read
of that room is under way starts one; one that asks while a read is under way waits
for the next, which starts when that one ends and serves every socket that asked
meanwhile.

Why the next one, not the read under way: a socket's history must hold every
message stored before it joined the fan-out (what is stored after reaches it live,
through the fan-out, which holds it until the history is sent). A read that began
before the socket joined may miss a message stored in between; one that begins
after it joined cannot.

A room that does not exist yet is created by the first socket of the batch that
may create it (``limits.room_get_or_create_limited``: creating it is charged to its
creator's ``CHAT_ROOMS_PER_HOUR``); a socket refused that is refused alone, and the
others of the batch get the room the next one created.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async

from chat import limits, selectors
from chat.models import Message, Room
from realtime.loops import PerLoop

Opened = tuple[Room, list[Message]]


def rooms_open(
    *, name: str, history_length: int, requesters: list[tuple[Any, str | None]]
) -> list[Opened | Exception]:
    """Open the room for each ``(user, address)`` in turn, reading it and its history
    once: each requester's outcome, the room or ``limits.RoomLimitReached``."""
    room = selectors.room_get(name=name)
    outcomes: list[Room | Exception] = []
    for user, address in requesters:
        if room is None:
            try:
                room = limits.room_get_or_create_limited(name=name, user=user, address=address)
            except limits.RoomLimitReached as refused:
                outcomes.append(refused)
                continue
        outcomes.append(room)
    recent = [] if room is None else selectors.message_list_recent(room=room, limit=history_length)
    # Each socket its own list: a consumer may change it.
    return [o if isinstance(o, Exception) else (o, [*recent]) for o in outcomes]


Waiting = tuple["asyncio.Future[Opened]", Any, str | None]


class RoomOpener:
    """One event loop's reads of rooms being joined, one under way per room."""

    def __init__(self) -> None:
        # Per room: the read under way, and who waits for the next one.
        self.reading: dict[str, asyncio.Task[None]] = {}
        self.waiting: dict[str, list[Waiting]] = {}

    async def open(self, name: str, user: Any, address: str | None, history_length: int) -> Opened:
        opened: asyncio.Future[Opened] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(name, []).append((opened, user, address))
        if name not in self.reading:
            self.reading[name] = asyncio.ensure_future(self.serve(name, history_length))
        return await opened

    async def serve(self, name: str, history_length: int) -> None:
        """Open the room for everyone waiting, again while more arrived meanwhile."""
        try:
            while self.waiting.get(name):
                batch = self.waiting.pop(name)
                try:
                    outcomes = await database_sync_to_async(rooms_open)(
                        name=name,
                        history_length=history_length,
                        requesters=[(user, address) for _, user, address in batch],
                    )
                except asyncio.CancelledError:
                    for opened, _, _ in batch:
                        opened.cancel()
                    raise
                except Exception as error:  # noqa: BLE001 - every socket of the batch hears of it
                    outcomes = [error] * len(batch)
                for (opened, _, _), outcome in zip(batch, outcomes, strict=True):
                    if opened.done():
                        continue  # its socket went away meanwhile
                    if isinstance(outcome, Exception):
                        opened.set_exception(outcome)
                    else:
                        opened.set_result(outcome)
        finally:
            self.reading.pop(name, None)
            for opened, _, _ in self.waiting.pop(name, []):
                opened.cancel()  # only left when the loop is shutting down


# Each event loop's opener (a future belongs to the loop that made it).
OPENERS = PerLoop(RoomOpener)


async def room_open(*, name: str, user: Any, address: str | None, history_length: int) -> Opened:
    """The room (created if new, within its creator's limit: else
    ``limits.RoomLimitReached``) and its recent history, for a socket that has
    joined the room's fan-out."""
    return await OPENERS.get().open(name, user, address, history_length)
