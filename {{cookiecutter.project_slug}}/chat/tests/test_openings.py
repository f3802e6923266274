"""chat/openings.py: sockets joining a room at once share one read of it, a socket
never gets a read that began before it asked, and a new room is created once."""

from __future__ import annotations

import asyncio
import threading
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.db import connection

from chat import limits, openings, services
from chat.models import Message, Room

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3
ANYONE = AnonymousUser()


def opening(name: str, address: str = "127.0.0.1"):
    return openings.room_open(name=name, user=ANYONE, address=address, history_length=50)


async def post(room: Room, text: str) -> int:
    message = await database_sync_to_async(services.message_create)(
        room=room, author=None, text=text
    )
    return message.pk


async def test_sockets_joining_at_once_share_one_read_each_with_its_own_history():
    room = await database_sync_to_async(services.room_get_or_create)(name="busy")
    first = await post(room, "before")
    with mock.patch.object(openings, "rooms_open", wraps=openings.rooms_open) as reads:
        results = await asyncio.wait_for(
            asyncio.gather(*(opening("busy") for _ in range(20))), TIMEOUT
        )
    # All twenty asked before the read began: one read for them all.
    assert reads.call_count == 1
    assert all(opened.pk == room.pk for opened, _ in results)
    assert all([m.pk for m in history] == [first] for _, history in results)
    results[0][1].clear()
    assert results[1][1]  # each socket its own list


async def test_a_socket_never_gets_a_read_that_began_before_it_asked():
    room = await database_sync_to_async(services.room_get_or_create)(name="late")
    read_done, release = threading.Event(), threading.Event()
    real = openings.rooms_open

    def held_first(**kwargs):
        outcome = real(**kwargs)
        if not read_done.is_set():
            read_done.set()
            release.wait(TIMEOUT)  # the first read stays under way
        return outcome

    with mock.patch.object(openings, "rooms_open", side_effect=held_first):
        early = asyncio.ensure_future(opening("late"))
        assert await asyncio.to_thread(read_done.wait, TIMEOUT)
        later = asyncio.ensure_future(opening("late"))
        await asyncio.sleep(0)  # asked while the first read is under way
        # Stored from another thread (the database thread is held by the read).
        stored = await sync_to_async(store_elsewhere, thread_sensitive=False)(room)
        release.set()
        (_, early_history), (_, later_history) = await asyncio.wait_for(
            asyncio.gather(early, later), TIMEOUT
        )
    assert stored.pk not in [m.pk for m in early_history]
    assert stored.pk in [m.pk for m in later_history]


def store_elsewhere(room: Room) -> Message:
    """A message stored on this thread's own connection, closed after."""
    try:
        return services.message_create(room=room, author=None, text="stored after the first read")
    finally:
        connection.close()


async def test_a_new_room_is_created_once_by_the_first_socket_allowed_to():
    refused = limits.RoomLimitReached()
    real = limits.room_get_or_create_limited

    def first_is_over_its_limit(**kwargs):
        if kwargs["address"] == "10.0.0.1":
            raise refused
        return real(**kwargs)

    with mock.patch.object(
        limits, "room_get_or_create_limited", side_effect=first_is_over_its_limit
    ) as opens:
        outcomes = await asyncio.gather(
            *(opening("fresh", address=f"10.0.0.{n}") for n in range(1, 6)),
            return_exceptions=True,
        )
    assert outcomes[0] is refused
    rooms = {outcome[0].pk for outcome in outcomes[1:] if isinstance(outcome, tuple)}
    assert len(rooms) == 1
    assert await Room.objects.filter(name="fresh").acount() == 1
    # Tried by the refused socket, created by the next; the rest read it.
    tried = [call.kwargs["address"] for call in opens.call_args_list]
    assert tried == ["10.0.0.1", "10.0.0.2"]
