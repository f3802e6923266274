"""Writes: the actions the consumers, views, management commands and worker share.

Each is a keyword-only function named ``<entity>_<action>``. Synchronous; async
callers wrap them in ``database_sync_to_async``.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import re
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chat import selectors
from chat.models import Message, Room
from chat.protocol import message_frame, moderated_frame, typing_frame
from chat.rooms import user_group_name, validate_room_name
from realtime.frames import encode
from realtime.loops import PerLoop

logger = logging.getLogger(__name__)

ANONYMOUS_NAME = "anonymous"
# Messages the worker claims and checks in one transaction at most.
MODERATION_BATCH = 100
# The worker's channel (CHAT_WORKER_CHANNEL, "chat-worker" unless set):
# ``manage.py runworker chat-worker`` consumes it.
WORKER_CHANNEL = settings.CHAT_WORKER_CHANNEL
# Seconds between the starts of two moderation checks that wake-ups ask for, at
# most: the worker merges the wake-ups in between (chat/workers.py), and each
# process sends one at most this often (WorkerWakeUps).
WAKE_UP_INTERVAL = 0.1

Author = AbstractBaseUser | AnonymousUser | None


def room_get_or_create(*, name: str) -> Room:
    room, _ = Room.objects.get_or_create(name=validate_room_name(name))
    return room


def author_name(author: Author) -> str:
    """The name shown on a sender's messages."""
    if author is not None and author.is_authenticated:
        return author.get_username()
    return ANONYMOUS_NAME


def sender_key(*, author: Author, session: Any = None) -> str:
    """Who sends, for telling a client's retry from a new message: the user, else the
    session (hashed: its key is a credential), else nobody in particular (client ids
    are random enough to tell those senders apart)."""
    if author is not None and author.is_authenticated:
        return f"user:{author.pk}"
    session_key = getattr(session, "session_key", None)
    if session_key:
        return "session:" + hashlib.sha256(session_key.encode()).hexdigest()[:64]
    return ""


def message_new(
    *, room: Room, author: Author, text: str, sender: str = "", client_id: str = ""
) -> Message:
    """A message not yet stored: ``message_create`` stores one, ``messages_save``
    (through chat/writer.py) many at once. ``sender`` (from ``sender_key``) and the
    client's ``client_id`` make a retry of the same message fail the unique
    constraint instead of storing it twice."""
    signed_in = author is not None and author.is_authenticated
    return Message(
        room=room,
        # Typing only: a signed-in author is the user model, but request.user is typed
        # AbstractBaseUser, which django-stubs cannot narrow to it.
        author=author if signed_in else None,  # type: ignore[misc]
        author_name=author_name(author),
        text=text,
        sender_key=sender,
        client_id=client_id,
    )


def message_create(
    *, room: Room, author: Author, text: str, sender: str = "", client_id: str = ""
) -> Message:
    message = message_new(room=room, author=author, text=text, sender=sender, client_id=client_id)
    message.save(force_insert=True)
    return message


def message_create_once(
    *, room: Room, author: Author, text: str, sender: str = "", client_id: str = ""
) -> tuple[Message, bool]:
    """Store a message; with a ``client_id`` already stored for this sender, return
    that message instead. The message, and whether it is new."""
    if client_id:
        stored = selectors.message_get_by_client_id(sender=sender, client_id=client_id)
        if stored is not None:
            return stored, False
    message = message_new(room=room, author=author, text=text, sender=sender, client_id=client_id)
    try:
        with transaction.atomic():
            message.save(force_insert=True)
    except IntegrityError:
        stored = selectors.message_get_by_client_id(sender=sender, client_id=client_id)
        if not client_id or stored is None:
            raise
        return stored, False  # the same retry, stored by another process meanwhile
    return message, True


async def message_save_once(
    *, room: Room, author: Author, text: str, sender: str = "", client_id: str = ""
) -> tuple[Message, bool]:
    """``message_create_once`` for the async consumers, through the batched writer
    (chat/writer.py): the message, and whether it is new (False: a retry of a
    message this sender's client already stored).

    No lookup comes first: a retry is rare, and the unique constraint
    ``chat_message_client_id_once`` refuses it, so only then is the stored copy
    looked up. A lookup before every message had been one more hop to the
    database thread per message (docs/benchmark.md)."""
    from chat import writer

    message = message_new(room=room, author=author, text=text, sender=sender, client_id=client_id)
    try:
        return await writer.save(message), True
    except IntegrityError:
        if not client_id:
            raise
        stored = await database_sync_to_async(selectors.message_get_by_client_id)(
            sender=sender, client_id=client_id
        )
        if stored is None:
            raise
        return stored, False


def messages_save(*, messages: Sequence[Message]) -> list[Message | Exception]:
    """Store new messages, in order, and give each its outcome: the saved message,
    or the error that kept it from being stored.

    Several messages go in one INSERT (``bulk_create``: one transaction, split into
    a few statements on SQLite; a savepoint inside a caller's transaction). If it
    fails, the messages are stored one by one, so that a message the database
    refuses (a retry's repeated client_id, say) fails alone and the others are
    stored. A database that cannot return the new ids from a multi-row INSERT
    (MySQL) stores them one by one.
    """
    if len(messages) > 1 and connection.features.can_return_rows_from_bulk_insert:
        try:
            with transaction.atomic():
                return [*Message.objects.bulk_create(messages)]
        except Exception:  # noqa: BLE001 - each message is tried alone below, and fails alone
            logger.warning("storing %d messages at once failed; one by one now", len(messages))
    outcomes: list[Message | Exception] = []
    for message in messages:
        message.pk = None  # a failed INSERT stored none of them (one statement or transaction)
        try:
            # Inside a transaction a failed INSERT needs its own savepoint, or the
            # transaction is broken for the messages after it; outside, the INSERT
            # commits alone, one round trip.
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                message.save(force_insert=True)
        except Exception as error:  # noqa: BLE001 - handed to this message's sender
            outcomes.append(error)
        else:
            outcomes.append(message)
    return outcomes


def message_event(*, message: Message, room: Room) -> dict[str, Any]:
    """The channel-layer event that delivers a stored message to a room's members."""
    return {
        "type": "chat.message",
        "id": message.pk,
        "frame": encode(message_frame(message, room.name)),
    }


def typing_event(*, room: Room, author: Author, sender_channel: str) -> dict[str, Any]:
    """A "someone is typing" event; the sender's own channel skips it."""
    return {
        "type": "chat.typing",
        "frame": encode(typing_frame(room.name, author_name(author))),
        "sender": sender_channel,
    }


class WorkerWakeUps:
    """The worker's wake-ups from one event loop, sent off the sender's path.

    A wake-up carries no work of its own: the message waits in the database for
    moderation (``moderated_at`` empty) whether it arrives or not, and the worker
    checks everything waiting on each one. So one wake-up is sent at a time, at most
    every ``WAKE_UP_INTERVAL``: messages published meanwhile ask for one more, sent
    once that interval has passed. A busy room costs the layer a few wake-ups a
    second instead of one per message, and no sender waits for them (the wake-up had
    been a third of a message's time in the consumer, docs/benchmark.md). A full
    channel (the worker down or behind) is logged once when it starts and once when
    it ends; a failed send once per outage.
    """

    full = False
    failed = False

    def __init__(self) -> None:
        self.sending: asyncio.Task[None] | None = None
        self.again = False
        self.latest = 0

    def wake(self, message_id: int) -> None:
        self.latest = message_id
        if self.sending is None:
            self.sending = asyncio.ensure_future(self.send_all())
        else:
            self.again = True

    async def send_all(self) -> None:
        try:
            while True:
                self.again = False
                sent_at = asyncio.get_running_loop().time()
                try:
                    await worker_wake_up(message_id=self.latest)
                except Exception as error:  # noqa: BLE001 - a hint lost; the worker's sweep finds the message
                    if not WorkerWakeUps.failed:
                        WorkerWakeUps.failed = True
                        logger.warning("could not wake the worker up: %r", error)
                    return
                WorkerWakeUps.failed = False
                # The worker starts a check at most every WAKE_UP_INTERVAL and merges
                # the wake-ups meanwhile: sending them sooner would only cost Redis.
                await asyncio.sleep(sent_at + WAKE_UP_INTERVAL - asyncio.get_running_loop().time())
                if not self.again:
                    return
        finally:
            self.sending = None


# Each event loop's wake-ups (a task belongs to the loop that made it).
WAKE_UPS = PerLoop(WorkerWakeUps)


async def worker_wake_up(*, message_id: int) -> None:
    """Send the worker one wake-up now (``message_publish`` sends them through
    ``WorkerWakeUps``)."""
    try:
        await get_channel_layer().send(
            WORKER_CHANNEL, {"type": "chat.moderate", "message_id": message_id}
        )
    except ChannelFull:
        if not WorkerWakeUps.full:
            WorkerWakeUps.full = True
            logger.warning(
                "the worker's channel %s is full: the worker is down or behind; "
                "new messages wait in the database for it",
                WORKER_CHANNEL,
            )
    else:
        if WorkerWakeUps.full:
            WorkerWakeUps.full = False
            logger.info("the worker's channel %s takes wake-ups again", WORKER_CHANNEL)


async def message_publish(*, message: Message, room: Room, wait: bool = False) -> None:
    """Deliver a stored message to the room's members and wake the worker up.

    The wake-up leaves after the broadcast, without the caller waiting for it
    (``WorkerWakeUps``); ``wait=True`` sends it before returning, for a caller whose
    event loop ends with the call (``async_to_sync``: views, commands, sync
    consumers), which would cancel it."""
    await get_channel_layer().group_send(room.group_name, message_event(message=message, room=room))
    if not settings.CHAT_MODERATION_ENABLED:
        return
    if wait:
        await worker_wake_up(message_id=message.pk)
        return
    WAKE_UPS.get().wake(message.pk)


def message_post(*, room_name: str, author: Author, text: str) -> Message:
    """Store a message and publish it (for sync callers: views, commands)."""
    room = room_get_or_create(name=room_name)
    message = message_create(room=room, author=author, text=text)
    async_to_sync(message_publish)(message=message, room=room, wait=True)
    return message


def blocked_word(text: str) -> str | None:
    """The first blocked word the text contains as a whole word, if any."""
    for word in settings.CHAT_BLOCKED_WORDS:
        if re.search(rf"\b{re.escape(word)}\b", text, flags=re.IGNORECASE):
            return word
    return None


def messages_moderate_pending(*, limit: int = MODERATION_BATCH) -> tuple[int, list[Message]]:
    """Claim up to ``limit`` messages still waiting for moderation, oldest first,
    check them, hide those with a blocked word, and tell their rooms.

    How many were claimed, and the hidden ones. A message is claimed by one worker
    once: on PostgreSQL the batch is locked with ``SELECT ... FOR UPDATE SKIP LOCKED``
    (another worker takes the next rows), elsewhere each row by an UPDATE that only
    matches while ``moderated_at`` is empty. A worker killed before its claim commits
    leaves the batch waiting for the next one; rooms are told after the commit.
    """
    now = timezone.now()
    pending = Message.objects.filter(moderated_at__isnull=True).order_by("id")
    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            claimed = list(
                pending.select_for_update(skip_locked=True, of=("self",))
                .select_related("room")
                .only("id", "text", "hidden", "room__name")[:limit]
            )
            hidden = [m for m in claimed if not m.hidden and blocked_word(m.text) is not None]
            Message.objects.filter(pk__in=[m.pk for m in claimed]).update(moderated_at=now)
            Message.objects.filter(pk__in=[m.pk for m in hidden]).update(hidden=True)
    else:
        candidates = list(
            pending.select_related("room").only("id", "text", "hidden", "room__name")[:limit]
        )
        claimed, hidden = [], []
        for message in candidates:
            outcome = message_claim(message=message, now=now)
            if outcome is not None:
                claimed.append(message)
                if outcome:
                    hidden.append(message)
    for message in hidden:
        message.hidden = True
        message_hidden_announce(message=message)
    return len(claimed), hidden


def message_claim(*, message: Message, now: datetime.datetime) -> bool | None:
    """Mark one waiting message as moderated, hidden if it contains a blocked word,
    by an UPDATE that only matches while no one else has: None if someone had,
    else whether it is hidden now."""
    hide = not message.hidden and blocked_word(message.text) is not None
    changes: dict[str, Any] = {"moderated_at": now, **({"hidden": True} if hide else {})}
    if not Message.objects.filter(pk=message.pk, moderated_at__isnull=True).update(**changes):
        return None
    return hide


def messages_moderate_backlog(*, batches: int = 10, limit: int = MODERATION_BATCH) -> int:
    """Moderate waiting messages, batch after batch, until none wait or ``batches``
    are done (the worker then takes its next wake-up; the rest wait for it). How
    many were checked."""
    checked = 0
    for _ in range(batches):
        count, _ = messages_moderate_pending(limit=limit)
        checked += count
        if count < limit:
            break
    return checked


def message_moderate(*, message_id: int) -> Message | None:
    """Check one message now, if no worker has yet: hide it if it contains a blocked
    word and tell its room. The message if it was hidden."""
    message = Message.objects.select_related("room").filter(pk=message_id).first()
    if message is None or not message_claim(message=message, now=timezone.now()):
        return None  # no such message, checked already, or nothing to hide
    message.hidden = True
    message_hidden_announce(message=message)
    return message


def message_hidden_announce(*, message: Message) -> None:
    """Tell the message's room that moderation hid it (the clients remove it)."""
    room = message.room
    async_to_sync(get_channel_layer().group_send)(
        room.group_name,
        {"type": "chat.moderated", "frame": encode(moderated_frame(message, room.name))},
    )
    logger.info("message %s in %s hidden by moderation", message.pk, room.name)


def user_sockets_close(*, user_id: int) -> None:
    """Close every WebSocket the user has open, in every process (on HTTP logout)."""
    async_to_sync(get_channel_layer().group_send)(user_group_name(user_id), {"type": "chat.logout"})
