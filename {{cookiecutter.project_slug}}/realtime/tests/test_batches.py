"""realtime/batches.py: items handed in one at a time, done in batches that grow
with the load, each submitter answered with its own item's outcome."""

from __future__ import annotations

import asyncio

import pytest

from realtime.batches import Batches

TIMEOUT = 3


class Recorder:
    """A ``run`` that records its batches and can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(items)
        await self.release.wait()
        return [ValueError(item) if item < 0 else item * 10 for item in items]


@pytest.mark.asyncio
async def test_a_lone_item_goes_at_once_and_the_ones_that_wait_go_together():
    run = Recorder()
    batches = Batches(run, limit=3)
    assert await asyncio.wait_for(batches.submit(1), TIMEOUT) == 10
    run.release.clear()
    first = asyncio.ensure_future(batches.submit(2))
    await asyncio.sleep(0)  # the batch of [2] is under way, held
    others = [asyncio.ensure_future(batches.submit(n)) for n in range(3, 8)]
    await asyncio.sleep(0)
    run.release.set()
    assert await asyncio.wait_for(asyncio.gather(first, *others), TIMEOUT) == [
        20,
        30,
        40,
        50,
        60,
        70,
    ]
    # Those that arrived meanwhile, in order, at most ``limit`` a batch.
    assert run.batches == [[1], [2], [3, 4, 5], [6, 7]]
    assert batches.running is None


@pytest.mark.asyncio
async def test_an_items_failure_is_its_own_and_a_batchs_failure_is_everyones():
    run = Recorder()
    batches = Batches(run, limit=10)
    outcomes = await asyncio.gather(
        batches.submit(1), batches.submit(-1), batches.submit(2), return_exceptions=True
    )
    assert outcomes[0] == 10
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[2] == 20

    async def broken(items: list[int]) -> list[int | Exception]:
        raise ConnectionError("gone")

    broken_batches = Batches(broken, limit=10)
    failed = await asyncio.gather(
        broken_batches.submit(1), broken_batches.submit(2), return_exceptions=True
    )
    assert [type(outcome) for outcome in failed] == [ConnectionError, ConnectionError]
    # And the next item is tried again.
    broken_batches.run = Recorder()
    assert await broken_batches.submit(3) == 30


@pytest.mark.asyncio
async def test_a_submitter_that_goes_away_does_not_stop_its_batch():
    run = Recorder()
    run.release.clear()
    batches = Batches(run, limit=10)
    leaving = asyncio.ensure_future(batches.submit(1))
    staying = asyncio.ensure_future(batches.submit(2))
    await asyncio.sleep(0)
    leaving.cancel()
    run.release.set()
    assert await asyncio.wait_for(staying, TIMEOUT) == 20
    assert run.batches == [[1, 2]]


@pytest.mark.asyncio
@pytest.mark.parametrize("started", [False, True], ids=["before it starts", "while it runs"])
async def test_a_cancelled_batch_cancels_its_submitters_and_those_waiting(started):
    run = Recorder()
    run.release.clear()
    batches = Batches(run, limit=1)
    submitted = [asyncio.ensure_future(batches.submit(n)) for n in range(3)]
    await asyncio.sleep(0)
    if started:
        await asyncio.sleep(0)
        assert run.batches == [[0]]
    assert batches.running is not None
    batches.running.cancel()  # as a loop that shuts down does
    outcomes = await asyncio.gather(*submitted, return_exceptions=True)
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes)
    assert batches.running is None
    assert batches.waiting == []
