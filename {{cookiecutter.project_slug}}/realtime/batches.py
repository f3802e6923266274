"""Work handed in one item at a time and done many at a time: while one batch is
being done, the items that arrive wait for the next, so the batch grows with the
load and a lone item goes at once. The chat's message writer stores its messages
so, and the Redis layer sends its group messages so (one round trip for all).

One ``Batches`` belongs to one event loop (its futures do): keep one per loop with
``realtime.loops.PerLoop``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class Batches(Generic[Item, Outcome]):
    """``await Batches(run, limit).submit(item)``: the item's outcome, from
    ``run(items)``, which returns one outcome or exception for each of up to
    ``limit`` items, in order. An exception ``run`` raises is every item's."""

    def __init__(
        self,
        run: Callable[[list[Item]], Awaitable[list[Outcome | Exception]]],
        limit: int,
    ) -> None:
        self.run = run
        self.limit = limit
        self.waiting: list[tuple[Item, asyncio.Future[Outcome]]] = []
        self.running: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Outcome:
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, done))
        if self.running is None:
            self.running = asyncio.ensure_future(self.drain())
            # A task cancelled before it starts never runs its finally.
            self.running.add_done_callback(self.ended)
        return await done

    async def drain(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting[: self.limit], self.waiting[self.limit :]
                await self.one(batch)
        finally:
            self.stop()

    def ended(self, task: asyncio.Task[None]) -> None:
        if self.running is task:
            self.stop()

    def stop(self) -> None:
        self.running = None
        for _, done in self.waiting:
            done.cancel()  # only left when the loop is shutting down
        self.waiting.clear()

    async def one(self, batch: list[tuple[Item, asyncio.Future[Outcome]]]) -> None:
        try:
            outcomes = await self.run([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, done in batch:
                done.cancel()
            raise
        except Exception as error:  # noqa: BLE001 - the batch failed: each submitter hears of it
            for _, done in batch:
                if not done.done():
                    done.set_exception(error)
            return
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if done.done():
                continue  # its submitter went away; its item was done all the same
            if isinstance(outcome, Exception):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)
