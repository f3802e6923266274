"""One object per running event loop, for machinery that holds asyncio futures and
tasks (a future belongs to the loop that made it): the chat's message writer, its
room openings and its worker wake-ups each keep one per loop, and a loop that ends
(``async_to_sync`` runs each call in one of its own) takes its object with it."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """``PerLoop(factory).get()``: the running loop's object, made on first use."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self.factory = factory
        self.objects: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        found = self.objects.get(loop)
        if found is None:
            found = self.objects[loop] = self.factory()
        return found
