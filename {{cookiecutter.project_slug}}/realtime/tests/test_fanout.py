"""realtime/fanout.py: a group's broadcasts reach every local socket through one group
member per process, in order, without one slow socket holding up the group."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest import mock

import pytest

from realtime import fanout
from realtime.closecodes import CLOSE_TOO_SLOW, CLOSE_UNAVAILABLE
from realtime.groups import group_name

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3
GROUP = group_name("tests", "fanout")


class Socket:
    """An ASGI ``send`` that records what it was sent; ``stuck`` makes frames wait
    forever, as a client that stopped reading does once the write buffer is full."""

    def __init__(self, name: str, *, stuck: bool = False, gone: bool = False) -> None:
        self.name = name
        self.stuck = stuck
        self.gone = gone
        self.frames: list[str] = []
        self.closed: list[int] = []
        self.changed = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.close":
            self.closed.append(message["code"])
        elif self.gone:
            raise ConnectionResetError("the client went away")
        elif self.stuck:
            await asyncio.Event().wait()
        else:
            self.frames.append(message["text"])
        self.changed.set()

    async def wait_for(self, condition, what: str) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


async def live_member(layer, socket: Socket, **options) -> fanout.Member:
    member = await fanout.join(layer, GROUP, socket.name, socket.send, **options)
    await fanout.go_live(member)
    return member


def broadcast(frame: str, sender: str | None = None) -> dict[str, Any]:
    event = {"type": "chat.message", "frame": frame}
    if sender is not None:
        event["sender"] = sender
    return event


async def test_one_group_member_per_room_and_process(channel_layer):
    added = mock.AsyncMock(side_effect=channel_layer.group_add)
    discarded = mock.AsyncMock(side_effect=channel_layer.group_discard)
    ann, bob = Socket("ann"), Socket("bob")
    with (
        mock.patch.object(channel_layer, "group_add", new=added),
        mock.patch.object(channel_layer, "group_discard", new=discarded),
    ):
        members = [await live_member(channel_layer, s) for s in (ann, bob)]
        assert len(added.await_args_list) == 1  # the fan-out's channel, once
        await channel_layer.group_send(GROUP, broadcast("hello"))
        for socket in (ann, bob):
            await socket.wait_for(lambda s=socket: s.frames == ["hello"], "the broadcast")
        for member in members:
            await fanout.leave(channel_layer, GROUP, member)
    assert {c.args for c in added.await_args_list} == {c.args for c in discarded.await_args_list}
    assert GROUP not in fanout.FANOUTS.get(channel_layer, {})


async def test_a_pending_member_gets_what_waited_before_anything_live(channel_layer):
    ann = Socket("ann")
    member = await fanout.join(channel_layer, GROUP, ann.name, ann.send)
    await channel_layer.group_send(GROUP, broadcast("during history"))
    room = fanout.FANOUTS[channel_layer][GROUP]
    for _ in range(300):  # up to TIMEOUT seconds
        if member.pending:
            break
        await asyncio.sleep(0.01)
    assert member.pending
    assert ann.frames == []  # held back: the consumer is still sending the history
    await ann.send({"type": "websocket.send", "text": "history"})
    await fanout.go_live(member)
    await channel_layer.group_send(GROUP, broadcast("live"))
    await ann.wait_for(lambda: len(ann.frames) == 3, "the live message")
    assert ann.frames == ["history", "during history", "live"]
    await fanout.leave(channel_layer, GROUP, member)
    assert room.reader is not None
    assert room.reader.done()


async def test_typing_skips_its_sender(channel_layer):
    ann, bob = Socket("ann"), Socket("bob")
    members = [await live_member(channel_layer, s) for s in (ann, bob)]
    await channel_layer.group_send(GROUP, broadcast("ann is typing", sender="ann"))
    await channel_layer.group_send(GROUP, broadcast("marker"))
    await ann.wait_for(lambda: ann.frames == ["marker"], "the marker")
    await bob.wait_for(lambda: bob.frames == ["ann is typing", "marker"], "both")
    for member in members:
        await fanout.leave(channel_layer, GROUP, member)


async def test_a_stuck_socket_is_closed_and_the_room_goes_on(channel_layer, monkeypatch):
    monkeypatch.setattr(fanout, "SEND_TIMEOUT", 0.2)
    stuck, ann = Socket("stuck", stuck=True), Socket("ann")
    members = [await live_member(channel_layer, s) for s in (stuck, ann)]
    await channel_layer.group_send(GROUP, broadcast("one"))
    await channel_layer.group_send(GROUP, broadcast("two"))
    await ann.wait_for(lambda: ann.frames == ["one", "two"], "both messages")
    await stuck.wait_for(lambda: stuck.closed == [CLOSE_TOO_SLOW], "the close")
    assert "stuck" not in fanout.FANOUTS[channel_layer][GROUP].members
    for member in members:
        await fanout.leave(channel_layer, GROUP, member)


async def test_a_socket_whose_send_fails_leaves_the_room(channel_layer):
    gone, ann = Socket("gone", gone=True), Socket("ann")
    members = [await live_member(channel_layer, s) for s in (gone, ann)]
    await channel_layer.group_send(GROUP, broadcast("one"))
    await channel_layer.group_send(GROUP, broadcast("two"))
    await ann.wait_for(lambda: ann.frames == ["one", "two"], "both messages")
    assert "gone" not in fanout.FANOUTS[channel_layer][GROUP].members
    assert not members[0].pending  # nothing kept for it either
    for member in members:
        await fanout.leave(channel_layer, GROUP, member)


class Flow:
    """A server's ``SEND_READY`` hint for one socket: ``ready()`` until ``full``; its
    sends wait while full, as uvicorn's do at the write buffer's high-water mark."""

    def __init__(self, socket: Socket) -> None:
        self.socket = socket
        self.writable = asyncio.Event()
        self.writable.set()
        self.sent_at_once = 0

    def ready(self) -> bool:
        return self.writable.is_set()

    async def send(self, message: dict[str, Any]) -> None:
        if self.writable.is_set():
            self.sent_at_once += 1
        await self.writable.wait()
        await self.socket.send(message)


async def test_a_socket_that_cannot_take_a_frame_holds_no_one_up(channel_layer, monkeypatch):
    monkeypatch.setattr(fanout, "SEND_TIMEOUT", 60)  # only the buffer's bound applies
    monkeypatch.setattr(fanout, "MEMBER_BUFFER_LIMIT", 10)
    full, ann = Socket("full"), Socket("ann")
    flows = [Flow(full), Flow(ann)]
    members = [await live_member(channel_layer, flow.socket, ready=flow.ready) for flow in flows]
    members[0].send = flows[0].send
    members[1].send = flows[1].send
    flows[0].writable.clear()
    for text in ("one", "two", "three", "four"):
        await channel_layer.group_send(GROUP, broadcast(text))
    await ann.wait_for(lambda: len(ann.frames) == 4, "every message")
    assert flows[1].sent_at_once == 4  # written at once, no task, no wait
    # Frames waited for the full socket until its buffer's bound (10 characters),
    # and then it was dropped, and closed once it could take the close.
    assert "full" not in fanout.FANOUTS[channel_layer][GROUP].members
    flows[0].writable.set()
    await full.wait_for(lambda: full.closed == [CLOSE_TOO_SLOW], "the close")
    for member in members:
        await fanout.leave(channel_layer, GROUP, member)


async def test_a_broadcast_is_encoded_once_for_the_sockets_that_take_encoded_frames(
    channel_layer,
):
    """Sockets whose server writes encoded frames get the same bytes, encoded once;
    one whose server declines (compression, closing) gets the frame through ASGI."""
    written: dict[str, list[bytes]] = {"ann": [], "bob": []}
    ann, bob, cy = Socket("ann"), Socket("bob"), Socket("cy")

    def writer(name: str, takes: bool):
        def write(frame: bytes) -> bool:
            written[name].append(frame)
            return takes

        return write

    members = [
        await live_member(channel_layer, ann, ready=lambda: True, write=writer("ann", True)),
        await live_member(channel_layer, bob, ready=lambda: True, write=writer("bob", False)),
        await live_member(channel_layer, cy, ready=lambda: True),
    ]
    with mock.patch.object(fanout, "encode_text_frame", wraps=fanout.encode_text_frame) as encode:
        await channel_layer.group_send(GROUP, broadcast("héllo"))
        await cy.wait_for(lambda: cy.frames == ["héllo"], "the frame through ASGI")
        await bob.wait_for(lambda: bob.frames == ["héllo"], "the declined frame through ASGI")
    assert encode.call_count == 1
    assert written["ann"] == written["bob"] == [b"\x81\x06" + "héllo".encode()]
    assert ann.frames == []  # written encoded, not sent again
    for member in members:
        await fanout.leave(channel_layer, GROUP, member)


async def test_a_room_whose_last_socket_was_dropped_mid_broadcast_leaves_its_group(
    channel_layer, monkeypatch
):
    monkeypatch.setattr(fanout, "SEND_TIMEOUT", 0.2)
    discarded = mock.AsyncMock(side_effect=channel_layer.group_discard)
    monkeypatch.setattr(channel_layer, "group_discard", discarded)
    stuck, gone = Socket("stuck", stuck=True), Socket("gone", gone=True)
    members = [await live_member(channel_layer, s) for s in (stuck, gone)]
    room = fanout.FANOUTS[channel_layer][GROUP]
    await channel_layer.group_send(GROUP, broadcast("one"))
    await stuck.wait_for(lambda: stuck.closed == [CLOSE_TOO_SLOW], "the close")
    assert room.members == {}  # both out of the group: one failed, one too slow
    for member in members:  # their consumers end, and leave
        await fanout.leave(channel_layer, GROUP, member)
    assert GROUP not in fanout.FANOUTS[channel_layer]
    assert [c.args for c in discarded.await_args_list] == [(GROUP, room.channel)]


async def test_a_dropped_socket_is_closed_through_its_consumer_once(channel_layer, monkeypatch):
    monkeypatch.setattr(fanout, "SEND_TIMEOUT", 0.2)
    stuck = Socket("stuck", stuck=True)
    closes: list[int] = []
    closed = asyncio.Event()

    async def close(code: int) -> None:
        closes.append(code)
        closed.set()

    member = await live_member(channel_layer, stuck, close=close)
    await channel_layer.group_send(GROUP, broadcast("one"))
    async with asyncio.timeout(TIMEOUT):
        await closed.wait()
    assert closes == [CLOSE_TOO_SLOW]
    assert stuck.closed == []  # not through the raw send
    await fanout.leave(channel_layer, GROUP, member)


class FailingLayer:
    """A layer whose receive fails once the fan-out reads, as Redis going away does."""

    def __init__(self) -> None:
        self.failed = asyncio.Event()
        self.added: list[tuple[str, str]] = []
        self.discarded: list[tuple[str, str]] = []
        self.channels = 0
        self.discard_fails = False

    async def new_channel(self) -> str:
        self.channels += 1
        return f"specific.test!fanout{self.channels}"

    async def group_add(self, group: str, channel: str) -> None:
        self.added.append((group, channel))

    async def group_discard(self, group: str, channel: str) -> None:
        if self.discard_fails:
            raise ConnectionError("Redis is still away")
        self.discarded.append((group, channel))

    async def receive(self, channel: str) -> dict[str, Any]:
        await self.failed.wait()
        raise ConnectionError("Redis went away")


async def test_a_failed_channel_closes_its_members_and_the_next_join_starts_over():
    layer = FailingLayer()
    ann, bob = Socket("ann"), Socket("bob")
    for socket in (ann, bob):
        await live_member(layer, socket)
    layer.failed.set()
    for socket in (ann, bob):
        await socket.wait_for(lambda s=socket: s.closed == [CLOSE_UNAVAILABLE], "4503")
    assert GROUP not in fanout.FANOUTS[layer]
    layer.failed = asyncio.Event()
    cid = await live_member(layer, Socket("cid"))
    # A new fan-out joined the group again, and took the failed one's channel out.
    assert layer.added == [(GROUP, "specific.test!fanout1"), (GROUP, "specific.test!fanout2")]
    assert layer.discarded == [(GROUP, "specific.test!fanout1")]
    assert not fanout.FAILED[layer][GROUP]
    await fanout.leave(layer, GROUP, cid)
    assert layer.discarded[-1] == (GROUP, "specific.test!fanout2")


async def test_a_failed_channel_that_cannot_be_discarded_yet_is_tried_by_the_next_fanout():
    layer = FailingLayer()
    ann = Socket("ann")
    await live_member(layer, ann)
    layer.failed.set()
    await ann.wait_for(lambda: ann.closed == [CLOSE_UNAVAILABLE], "4503")
    layer.failed, layer.discard_fails = asyncio.Event(), True
    bob = await live_member(layer, Socket("bob"))  # the join works, the discard not yet
    assert fanout.FAILED[layer][GROUP] == {"specific.test!fanout1"}
    layer.discard_fails = False
    await fanout.leave(layer, GROUP, bob)
    cid = await live_member(layer, Socket("cid"))
    assert (GROUP, "specific.test!fanout1") in layer.discarded
    assert not fanout.FAILED[layer][GROUP]
    await fanout.leave(layer, GROUP, cid)


async def test_a_join_long_after_the_last_add_refreshes_the_membership(monkeypatch):
    layer = FailingLayer()
    now = [1000.0]
    monkeypatch.setattr(fanout.GroupFanout, "clock", staticmethod(lambda: now[0]))
    members = [await live_member(layer, Socket("ann"))]
    now[0] += fanout.REFRESH_INTERVAL / 2
    members.append(await live_member(layer, Socket("bob")))
    assert len(layer.added) == 1
    now[0] += fanout.REFRESH_INTERVAL
    members.append(await live_member(layer, Socket("cid")))
    assert len(layer.added) == 2
    for member in members:
        await fanout.leave(layer, GROUP, member)
