"""A group's broadcasts, received once per server process and written to each of its
local sockets.

Without this, every socket is a member of its group: a broadcast to a group of C
sockets wakes C consumers, each through its channel's queue, its task and Channels'
dispatch, only to send a frame the publisher already encoded. That was most of the
server's CPU per delivery (docs/benchmark.md). Here one channel per process and
group, the ``GroupFanout``, is the group's member; it receives each event that
carries a ``frame`` (``realtime.groups.frame_event``) once and hands that frame to
every local member's ASGI ``send`` in turn. Members on other processes, and
consumers that joined the group themselves, are reached as before, through the
channel layer; an event without a ``frame`` does not reach a fan-out's members.

``FanoutMixin`` is the consumer's side: ``join_fanout(group)`` before ``accept()``,
``fanout_live()`` once the socket has sent what must come first (a history, say),
and the socket leaves every fan-out when the consumer ends, however it ends.

What each socket still gets, as with a group membership of its own:

- order: a member joins before it reads what comes first and stays *pending*
  until it has sent it (``go_live``); events meanwhile wait in its buffer, so a
  socket sees, say, the history, then the live messages;
- no frame of its own: an event whose ``sender`` is a member's channel skips it;
- no group held up by a slow socket: sends to members never wait on each other.
  A member whose socket can take a frame now (the server says so: uvicorn as
  ``realtime/wsprotocol.py`` runs it, through the ``SEND_READY`` scope extension)
  is written to at once; otherwise the frame waits in the member's own buffer,
  which a task of its own writes out in order. A member whose buffer outgrows
  ``MEMBER_BUFFER_LIMIT``, or whose one send waits longer than ``SEND_TIMEOUT`` (its
  client reads too slowly), is dropped from the group and closed with
  ``CLOSE_TOO_SLOW``; its client reconnects and resyncs. The server without the
  extension (daphne, a test's communicator) has every send go through the buffer;
- the last one out: the fan-out leaves its group when its last local socket
  leaves, whether that socket was still a member or had been dropped or failed
  mid-broadcast;
- failure: when the fan-out's channel fails (Redis down), its members are closed
  with ``CLOSE_UNAVAILABLE``, like any socket whose layer fails, and the next
  socket that joins starts a new fan-out. That one, once it has joined the group
  (Redis is back), takes the failed fan-out's channel out of it: left there, the
  channel would be sent every broadcast, unread, until ``GROUP_EXPIRY``;
- expiry: the layer forgets a group member after ``GROUP_EXPIRY``; a fan-out lives
  as long as its group has local sockets, so it re-adds its channel when a member
  joins more than ``REFRESH_INTERVAL`` after the last time. Every socket is closed
  within ``WEBSOCKET_MAX_AGE`` (realtime/lifetime.py), so a fan-out older than that
  has seen a join since, well within the expiry.

The fan-out's group membership is added with the first local member and discarded
with the last.
https://channels.readthedocs.io/en/stable/topics/channel_layers.html#groups
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from realtime.closecodes import CLOSE_TOO_SLOW, CLOSE_UNAVAILABLE
from realtime.guards import GuardsMixin

# The scope extension through which a server says whether a socket's send would
# return at once, and writes an encoded frame: {SEND_READY: {"ready": ..., "write": ...}}.
from realtime.wsprotocol import SEND_READY, encode_text_frame

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Close = Callable[[int], Awaitable[None]]

# Seconds one send to a member may wait (its client reads too slowly for the
# server's write buffer) before the member is dropped.
SEND_TIMEOUT = 2.0
# Characters of frames that may wait for one member before it is dropped.
MEMBER_BUFFER_LIMIT = 512 * 1024
# Seconds after which a join re-adds the fan-out's channel to its group; far below
# realtime/channel_layers.py's GROUP_EXPIRY (a day).
REFRESH_INTERVAL = 3600.0


class Member:
    """One local socket of a group: its channel name (to skip its own events), its
    ASGI ``send`` (and ``ready``, whether a send would return at once), how to close
    it, and the frames waiting for it while it is pending or behind a slow send."""

    __slots__ = (
        "channel_name",
        "close",
        "fanout",
        "left",
        "live",
        "pending",
        "pending_size",
        "ready",
        "send",
        "write",
        "writer",
    )

    def __init__(
        self,
        fanout: GroupFanout,
        channel_name: str,
        send: Send,
        close: Close | None = None,
        ready: Callable[[], bool] | None = None,
        write: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.fanout = fanout
        self.channel_name = channel_name
        self.send = send
        self.close = close
        self.ready = ready
        self.write = write
        self.live = False
        self.left = False
        # Made on first use: most members never wait (an empty deque is 600 bytes).
        self.pending: deque[dict[str, Any]] | None = None
        self.pending_size = 0
        self.writer: asyncio.Task[None] | None = None

    def take(self) -> dict[str, Any]:
        if not self.pending:
            raise IndexError("no frame waits for this member")
        message = self.pending.popleft()
        self.pending_size -= len(message["text"])
        return message


class GroupFanout:
    """The process's one member of a group, forwarding to local sockets."""

    clock = staticmethod(time.monotonic)

    def __init__(self, layer: Any, group: str) -> None:
        self.layer = layer
        self.group = group
        self.members: dict[str, Member] = {}
        # Members joined and not yet left, dropped or failed ones included: the
        # fan-out leaves its group when the last of them leaves.
        self.joined = 0
        self.channel = ""
        self.added_at = float("-inf")
        self.started: asyncio.Future[None] = asyncio.ensure_future(self.start())
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.add()
        self.reader = asyncio.ensure_future(self.read())
        await self.discard_failed()

    async def discard_failed(self) -> None:
        """Take the channels of this group's failed fan-outs out of it."""
        failed = FAILED.get(self.layer, {}).get(self.group, set())
        for channel in list(failed):
            try:
                await self.layer.group_discard(self.group, channel)
            except Exception:  # noqa: BLE001 - kept for the next fan-out to try
                logger.info("could not discard failed fan-out %s of %s yet", channel, self.group)
            else:
                failed.discard(channel)

    async def add(self) -> None:
        await self.layer.group_add(self.group, self.channel)
        self.added_at = self.clock()

    async def read(self) -> None:
        try:
            while True:
                await self.deliver(await self.layer.receive(self.channel))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - every member must hear of it
            logger.warning("fan-out for %s failed, closing its sockets: %r", self.group, error)
            forget(self)
            FAILED.setdefault(self.layer, {}).setdefault(self.group, set()).add(self.channel)
            for member in list(self.members.values()):
                self.discard(member)
                close_soon(member, CLOSE_UNAVAILABLE)

    async def deliver(self, event: dict[str, Any]) -> None:
        """Hand the event's frame to every member but its sender, never waiting on one."""
        frame = event.get("frame")
        if frame is None:
            return  # nothing for the sockets: not a frame_event
        message = {"type": "websocket.send", "text": frame}
        encoded: bytes | None = None
        sender = event.get("sender")
        for member in list(self.members.values()):
            if member.channel_name == sender:
                continue
            if member.live and member.writer is None and member.ready and member.ready():
                # The server says this send returns at once: no task, no wait; and,
                # where it can, takes the frame encoded once for every socket.
                if member.write is not None:
                    if encoded is None:
                        encoded = encode_text_frame(frame)
                    if member.write(encoded):
                        continue
                try:
                    await member.send(message)
                except Exception:  # noqa: BLE001 - the socket closed under us
                    self.discard(member)
            else:
                self.buffer(member, message)

    def buffer(self, member: Member, message: dict[str, Any]) -> None:
        """Keep the frame for the member; its writer sends what waits, in order."""
        if member.pending is None:
            member.pending = deque()
        member.pending.append(message)
        member.pending_size += len(message["text"])
        if member.pending_size > MEMBER_BUFFER_LIMIT:
            self.drop(member)
        elif member.live and member.writer is None:
            member.writer = asyncio.ensure_future(self.write(member))

    async def write(self, member: Member) -> None:
        """Send what waits for a member, one frame at a time, each within SEND_TIMEOUT."""
        try:
            while member.pending:
                message = member.take()
                async with asyncio.timeout(SEND_TIMEOUT):
                    await member.send(message)
        except TimeoutError:
            self.drop(member)
        except Exception:  # noqa: BLE001 - the socket closed under us; its consumer leaves
            self.discard(member)
        finally:
            member.writer = None

    def discard(self, member: Member) -> None:
        """Take a member out of the group: nothing more is sent or kept for it."""
        if self.members.get(member.channel_name) is member:
            del self.members[member.channel_name]
        member.live = False
        member.pending = None
        member.pending_size = 0
        if member.writer is not None and member.writer is not asyncio.current_task():
            member.writer.cancel()

    def drop(self, member: Member) -> None:
        """A member too slow to take its group's frames: out of the group, and closed."""
        self.discard(member)
        logger.info("socket %s too slow for group %s, closing it", member.channel_name, self.group)
        close_soon(member, CLOSE_TOO_SLOW)

    async def stop(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader
        if self.channel:
            await self.layer.group_discard(self.group, self.channel)


def close_soon(member: Member, code: int) -> None:
    """Close a member's socket without waiting for it (its send may be stuck), through
    its consumer when it has one, so that the socket is closed only once."""
    if member.close is not None:
        closing = member.close(code)
    else:
        closing = member.send({"type": "websocket.close", "code": code})
    task = asyncio.ensure_future(closing)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    CLOSING.add(task)
    task.add_done_callback(CLOSING.discard)


# Tasks closing sockets or abandoned fan-outs, kept until done (the event loop holds
# only weak references).
CLOSING: set[asyncio.Future[None]] = set()
# Each layer's fan-outs by group; a layer belongs to one event loop.
FANOUTS: weakref.WeakKeyDictionary[Any, dict[str, GroupFanout]] = weakref.WeakKeyDictionary()
# Each layer's channels of failed fan-outs, by group, until they are out of it.
FAILED: weakref.WeakKeyDictionary[Any, dict[str, set[str]]] = weakref.WeakKeyDictionary()


def forget(fanout: GroupFanout) -> None:
    groups = FANOUTS.get(fanout.layer, {})
    if groups.get(fanout.group) is fanout:
        del groups[fanout.group]


def abandon(fanout: GroupFanout) -> None:
    """Forget a fan-out that failed to start or has no one left to join it, and take
    it out of its group once it has started (best effort: the layer may be down)."""
    forget(fanout)
    if fanout.joined > 0:
        return  # others still wait on it; the last of them to leave stops it

    async def stop() -> None:
        with contextlib.suppress(BaseException):
            await fanout.started
            await fanout.stop()

    task = asyncio.ensure_future(stop())
    CLOSING.add(task)
    task.add_done_callback(CLOSING.discard)


async def join(
    layer: Any,
    group: str,
    channel_name: str,
    send: Send,
    *,
    close: Close | None = None,
    ready: Callable[[], bool] | None = None,
    write: Callable[[bytes], bool] | None = None,
) -> Member:
    """Add a socket to its group's fan-out in this process, pending until ``go_live``.
    ``close(code)`` closes the socket (default: a close message through ``send``);
    ``ready()`` says whether ``send`` would return at once, and ``write(frame)``
    writes an encoded frame if it can (``SEND_READY``)."""
    groups = FANOUTS.setdefault(layer, {})
    fanout = groups.get(group)
    if fanout is None:
        fanout = groups[group] = GroupFanout(layer, group)
    fanout.joined += 1
    try:
        await asyncio.shield(fanout.started)
        if fanout.clock() - fanout.added_at > REFRESH_INTERVAL:
            await fanout.add()
    except BaseException:
        fanout.joined -= 1
        started = fanout.started
        if fanout.joined <= 0 or (started.done() and started.exception() is not None):
            abandon(fanout)
        raise
    member = fanout.members[channel_name] = Member(fanout, channel_name, send, close, ready, write)
    return member


async def go_live(member: Member) -> None:
    """Send what waited for the member, then deliver to it directly."""
    while member.pending:
        await member.send(member.take())
    member.live = True


async def leave(layer: Any, group: str, member: Member) -> None:
    """Remove a socket from its group's fan-out; the last one out ends it, whether
    it was still a member or had been dropped or failed on the way."""
    fanout = member.fanout
    if member.left:
        return
    member.left = True
    fanout.discard(member)
    fanout.joined -= 1
    if fanout.joined <= 0:
        forget(fanout)
        try:
            await fanout.stop()
        except Exception:
            # Still in the group (the layer is down): the group's next fan-out takes it out.
            FAILED.setdefault(fanout.layer, {}).setdefault(fanout.group, set()).add(fanout.channel)
            raise


class FanoutMixin(GuardsMixin):
    """A socket's groups through this process's fan-out: ``join_fanout(group)`` before
    ``accept()``, then ``fanout_live()`` once what must come first is sent. Use it in
    place of ``GuardsMixin`` (it is one), after ``LayerFaultsMixin``."""

    base_send: Send

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Coroutine[Any, Any, None]:
        self.fanout_members: dict[str, Member] = {}
        # The consumer's coroutine, not awaited here: none of this mixin's is kept
        # while the socket is open (docs/benchmark.md, memory per idle socket).
        return super().__call__(scope, receive, send)

    async def join_fanout(self, group: str) -> None:
        """Join the group's fan-out; its frames wait until ``fanout_live()``."""
        server = self.scope.get("extensions", {}).get(SEND_READY, {})
        self.fanout_members[group] = await join(
            self.channel_layer,
            group,
            self.channel_name,
            self.base_send,
            close=self.close_socket,
            ready=server.get("ready"),
            write=server.get("write"),
        )

    async def fanout_live(self) -> None:
        """Send what waited for this socket, then deliver its groups' frames directly."""
        for member in list(self.fanout_members.values()):
            await go_live(member)

    async def close_socket(self, code: int) -> None:
        await self.close(code=code)  # type: ignore[attr-defined]

    async def leave_fanout(self, group: str) -> None:
        member = self.fanout_members.pop(group, None)
        if member is not None:
            await leave(self.channel_layer, group, member)

    async def release_everything(self) -> None:
        for group in list(self.fanout_members):
            # Best effort, as for the groups: with the layer down there is nothing to leave.
            with contextlib.suppress(Exception):
                await self.leave_fanout(group)
        await super().release_everything()
