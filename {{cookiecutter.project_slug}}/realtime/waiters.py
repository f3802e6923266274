"""``asyncio.Queue`` and ``asyncio.Event`` as a WebSocket connection uses them, without
what they hold while nobody waits.

An idle socket keeps uvicorn's receive queue and its "writable" event for its whole
life. ``asyncio.Queue`` holds four deques (its items, its getters, its putters and
the event behind ``join()``) and ``asyncio.Event`` one: an empty deque is about 760
bytes, so 3.8 KB of every idle socket (docs/benchmark.md). These keep a plain list,
and a waiter only while someone waits. ``realtime.wsprotocol`` puts them in place of
uvicorn's; the methods it calls behave as asyncio's: FIFO, getters served in the
order they came, an item handed to a getter that is cancelled before it runs goes to
the next one, and a cancelled wait leaves the others waiting.
"""

from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Waiters:
    """The futures of the tasks waiting, in the order they came; a list only while
    one waits."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] | None = None

    def _new_waiter(self) -> asyncio.Future[None]:
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        return waiter

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        if self._waiters is not None and waiter in self._waiters:
            self._waiters.remove(waiter)
            if not self._waiters:
                self._waiters = None

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not self._waiters:
                self._waiters = None
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)


class SocketQueue(Waiters, Generic[T]):
    """An unbounded FIFO: ``put_nowait``, ``get``, ``get_nowait``, ``empty``, ``qsize``."""

    __slots__ = ("_head", "_items")

    def __init__(self) -> None:
        super().__init__()
        self._items: list[Any] = []
        # The first item not yet taken: taking one is O(1), and the list is dropped
        # once every item is taken (a burst of small frames queues thousands).
        self._head = 0

    def qsize(self) -> int:
        return len(self._items) - self._head

    def empty(self) -> bool:
        return self._head == len(self._items)

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        self._wake_next()

    def get_nowait(self) -> T:
        if self.empty():
            raise asyncio.QueueEmpty
        item: T = self._items[self._head]
        self._head += 1
        if self._head == len(self._items):
            self._items.clear()  # frees its storage too
            self._head = 0
        else:
            self._items[self._head - 1] = None  # freed now, not when the list is
        return item

    async def get(self) -> T:
        while self.empty():
            getter = self._new_waiter()
            try:
                await getter
            except BaseException:
                getter.cancel()
                self._forget(getter)
                if not self.empty() and not getter.cancelled():
                    # Woken for an item, then cancelled: the next getter takes it.
                    self._wake_next()
                raise
        return self.get_nowait()


class SocketEvent(Waiters):
    """A flag to wait for: ``set``, ``clear``, ``is_set``, ``wait``."""

    __slots__ = ("_set",)

    def __init__(self, *, is_set: bool = False) -> None:
        super().__init__()
        self._set = is_set

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if not self._set:
            self._set = True
            self._wake_all()

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = self._new_waiter()
        try:
            await waiter
        finally:
            self._forget(waiter)
        return True
