"""realtime/waiters.py against asyncio's own Queue and Event: the same generated
sequences of puts, gets, cancellations and loop turns, run on both, must be seen
the same way (what each getter received, which were cancelled, what is left)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.waiters import SocketEvent, SocketQueue

# One step of a scenario (``run``): put an item, start a getter, cancel the n-th
# getter, turn the loop once, or take an item without waiting.
QUEUE_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 99)),
        st.tuples(st.just("wait"), st.just(0)),
        st.tuples(st.just("cancel"), st.integers(0, 9)),
        st.tuples(st.just("turn"), st.just(0)),
        st.tuples(st.just("get_nowait"), st.just(0)),
    ),
    max_size=40,
)
EVENT_STEPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["set", "clear", "wait", "turn"]), st.just(0)),
        st.tuples(st.just("cancel"), st.integers(0, 9)),
    ),
    max_size=40,
)


def outcome(task: asyncio.Task[Any]) -> Any:
    if not task.done():
        return "waiting"
    if task.cancelled():
        return "cancelled"
    return task.result()


async def run(
    steps: list[tuple[str, int]], wait: Callable[[], Any], act: Callable[[str, int], Any]
) -> tuple[list[Any], list[Any]]:
    """Run a scenario: "wait" starts a task on ``wait()``, "cancel" cancels the n-th,
    "turn" lets the loop run once, anything else is ``act(step, value)``; what each
    task ended with and what each act returned."""
    tasks: list[asyncio.Task[Any]] = []
    acted: list[Any] = []
    for step, value in steps:
        if step == "wait":
            tasks.append(asyncio.ensure_future(wait()))
        elif step == "cancel":
            if value < len(tasks):
                tasks[value].cancel()
        elif step == "turn":
            await asyncio.sleep(0)
        else:
            acted.append(act(step, value))
    for _ in range(3):
        await asyncio.sleep(0)
    outcomes = [outcome(task) for task in tasks]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return outcomes, acted


async def run_queue(queue: Any, steps: list[tuple[str, int]]) -> dict[str, Any]:
    def act(step: str, value: int) -> Any:
        if step == "put":
            return queue.put_nowait(value)
        try:
            return queue.get_nowait()
        except asyncio.QueueEmpty:
            return "empty"

    getters, taken = await run(steps, queue.get, act)
    left = [queue.get_nowait() for _ in range(queue.qsize())]
    return {"getters": getters, "taken": taken, "left": left, "empty": queue.empty()}


async def run_event(event: Any, steps: list[tuple[str, int]]) -> dict[str, Any]:
    def act(step: str, value: int) -> Any:
        return event.set() if step == "set" else event.clear()

    waiters, _ = await run(steps, event.wait, act)
    return {"waiters": waiters, "is_set": event.is_set()}


@settings(max_examples=300, deadline=None)
@given(steps=QUEUE_STEPS)
def test_the_queue_is_seen_as_asyncio_queue_is(steps):
    expected = asyncio.run(run_queue(asyncio.Queue(), steps))
    assert asyncio.run(run_queue(SocketQueue(), steps)) == expected


@settings(max_examples=300, deadline=None)
@given(steps=EVENT_STEPS)
def test_the_event_is_seen_as_asyncio_event_is(steps):
    expected = asyncio.run(run_event(asyncio.Event(), steps))
    assert asyncio.run(run_event(SocketEvent(), steps)) == expected


@pytest.mark.asyncio
async def test_an_item_given_to_a_getter_cancelled_before_it_ran_goes_to_the_next():
    queue: SocketQueue[str] = SocketQueue()
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("item")  # wakes the first getter, which has not run yet
    first.cancel()
    assert await asyncio.wait_for(second, timeout=3) == "item"
    assert first.cancelled()


@pytest.mark.asyncio
async def test_a_long_burst_is_taken_in_order_and_leaves_nothing_held():
    queue: SocketQueue[int] = SocketQueue()
    for n in range(10_000):
        queue.put_nowait(n)
    assert [await queue.get() for _ in range(10_000)] == list(range(10_000))
    assert queue.empty()
    # What an idle socket keeps: an empty list, and no waiter.
    assert queue._items == []
    assert queue._waiters is None


@pytest.mark.asyncio
async def test_nothing_waits_on_an_event_that_is_set_or_after_the_wait():
    event = SocketEvent(is_set=True)
    assert await event.wait() is True
    event.clear()
    waiter = asyncio.ensure_future(event.wait())
    await asyncio.sleep(0)
    event.set()
    assert await asyncio.wait_for(waiter, timeout=3) is True
    assert event._waiters is None
