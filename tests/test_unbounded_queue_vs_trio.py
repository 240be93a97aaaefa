"""lowlevel.UnboundedQueue, run under trio and under ringtrio and compared.

Each scenario is a function of the library under test (``lib`` is ``trio``
or ``ringtrio``) that returns what it observed; ``same_under_both`` asserts
the two observations are equal.  trio is the oracle: its queue is
deprecated (it warns when made) but public, and ported code may use it.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any

import pytest

import ringtrio

from _differential import same_under_both

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*UnboundedQueue:trio.TrioDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*UnboundedQueue:ringtrio.TrioDeprecationWarning"),
]


def _queue(lib: ModuleType) -> Any:
    return lib.lowlevel.UnboundedQueue()


async def _put_get_and_inspect(lib: ModuleType) -> list[Any]:
    seen: list[Any] = []
    q = _queue(lib)
    seen.append(("new", q.empty(), q.qsize(), repr(q)))
    q.put_nowait("hi")
    seen.append(("get_batch", await q.get_batch()))
    try:
        q.get_batch_nowait()
    except lib.WouldBlock:
        seen.append("empty: WouldBlock")
    for i in (1, 2, 3):
        q.put_nowait(i)
    seen.append(("three", q.qsize(), q.empty(), repr(q)))
    seen.append(("get_batch_nowait", q.get_batch_nowait()))
    q.put_nowait(None)
    stats = q.statistics()
    seen.append(("stats", stats.qsize, stats.tasks_waiting, type(stats).__name__))
    # The batch is the caller's: later puts do not show up in it.
    batch = q.get_batch_nowait()
    q.put_nowait(4)
    seen.append(("batch kept", batch, q.get_batch_nowait()))
    return seen


def test_put_get_and_inspect_as_trio() -> None:
    assert same_under_both(_put_get_and_inspect) == [
        ("new", True, 0, "<UnboundedQueue holding 0 items>"),
        ("get_batch", ["hi"]),
        "empty: WouldBlock",
        ("three", 3, False, "<UnboundedQueue holding 3 items>"),
        ("get_batch_nowait", [1, 2, 3]),
        ("stats", 1, 0, "UnboundedQueueStatistics"),
        ("batch kept", [None], [4]),
    ]


async def _consumers_get_batches(lib: ModuleType) -> list[Any]:
    # A parked consumer gets what was put before it ran, as one batch;
    # get_batch and async iteration alike.
    seen: list[Any] = []
    q = _queue(lib)

    async def by_get_batch() -> None:
        while True:
            seen.append(await q.get_batch())

    async def by_iteration() -> None:
        async for batch in q:
            seen.append(batch)

    for consumer in (by_get_batch, by_iteration):
        async with lib.open_nursery() as nursery:
            nursery.start_soon(consumer)
            await lib.testing.wait_all_tasks_blocked()
            stats = q.statistics()
            seen.append(("waiting", stats.qsize, stats.tasks_waiting))
            q.put_nowait(10)
            q.put_nowait(11)
            await lib.testing.wait_all_tasks_blocked()
            q.put_nowait(12)
            await lib.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    return seen


def test_consumers_get_batches_as_trio() -> None:
    assert same_under_both(_consumers_get_batches) == [("waiting", 0, 1), [10, 11], [12]] * 2


async def _fairness(lib: ModuleType) -> list[Any]:
    # Items put while a consumer waits are its: get_batch_nowait may not
    # take them first.  Two waiting readers take turns.
    seen: list[Any] = []
    q = _queue(lib)

    async def get_one() -> None:
        seen.append(("waiter got", await q.get_batch()))

    async with lib.open_nursery() as nursery:
        nursery.start_soon(get_one)
        await lib.testing.wait_all_tasks_blocked()
        q.put_nowait(3)
        q.put_nowait(4)
        seen.append(("reserved", q.empty(), q.qsize()))
        try:
            q.get_batch_nowait()
        except lib.WouldBlock:
            seen.append("nowait: WouldBlock")

    async def reader(name: str) -> None:
        while True:
            seen.append((name, await q.get_batch()))

    async with lib.open_nursery() as nursery:
        nursery.start_soon(reader, "a")
        await lib.testing.wait_all_tasks_blocked()
        nursery.start_soon(reader, "b")
        await lib.testing.wait_all_tasks_blocked()
        for i in range(6):
            q.put_nowait(i)
            await lib.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    return seen


def test_fairness_as_trio() -> None:
    assert same_under_both(_fairness) == [
        ("reserved", False, 2),
        "nowait: WouldBlock",
        ("waiter got", [3, 4]),
        ("a", [0]),
        ("b", [1]),
        ("a", [2]),
        ("b", [3]),
        ("a", [4]),
        ("b", [5]),
    ]


async def _no_spurious_wakeups(lib: ModuleType) -> list[Any]:
    # Two waiters, ten puts: only the first waiter wakes, with all ten.
    seen: list[Any] = []
    q = _queue(lib)

    async def getter(i: int) -> None:
        seen.append((i, await q.get_batch()))

    async with lib.open_nursery() as nursery:
        nursery.start_soon(getter, 1)
        await lib.testing.wait_all_tasks_blocked()
        nursery.start_soon(getter, 2)
        await lib.testing.wait_all_tasks_blocked()
        for i in range(10):
            q.put_nowait(i)
        await lib.testing.wait_all_tasks_blocked()
        seen.append(("still waiting", q.statistics().tasks_waiting))
        nursery.cancel_scope.cancel()
    return seen


def test_no_spurious_wakeups_as_trio() -> None:
    assert same_under_both(_no_spurious_wakeups) == [(1, list(range(10))), ("still waiting", 1)]


async def _checkpoints_and_cancellation(lib: ModuleType) -> list[Any]:
    seen: list[Any] = []
    q = _queue(lib)
    # A ready batch is still a checkpoint (and a schedule point).
    q.put_nowait(None)
    with lib.testing.assert_checkpoints():
        await q.get_batch()
    q.put_nowait(None)
    with lib.testing.assert_checkpoints():
        async for _ in q:
            break
    # In a cancelled scope get_batch raises before taking anything.
    q.put_nowait("kept")
    with lib.CancelScope() as scope:
        scope.cancel()
        await q.get_batch()
    seen.append(("cancelled first", scope.cancelled_caught, q.qsize()))
    seen.append(("then", q.get_batch_nowait()))
    # A consumer cancelled while it waits leaves the lot; later items go to
    # the next consumer or caller.
    async with lib.open_nursery() as nursery:
        inner = lib.CancelScope()

        async def waiter() -> None:
            with inner:
                await q.get_batch()
            seen.append(("waiter cancelled", inner.cancelled_caught))

        nursery.start_soon(waiter)
        await lib.testing.wait_all_tasks_blocked()
        inner.cancel()
        await lib.testing.wait_all_tasks_blocked()
    seen.append(("waiting after", q.statistics().tasks_waiting))
    q.put_nowait("after")
    seen.append(("nowait", q.get_batch_nowait()))
    # A consumer woken with the batch keeps it even if cancelled before it
    # runs: the cancel arrives at its next checkpoint.
    async with lib.open_nursery() as nursery:
        woken = lib.CancelScope()

        async def woken_waiter() -> None:
            with woken:
                seen.append(("woken got", await q.get_batch()))
                await lib.lowlevel.checkpoint()
            seen.append(("woken then cancelled", woken.cancelled_caught))

        nursery.start_soon(woken_waiter)
        await lib.testing.wait_all_tasks_blocked()
        q.put_nowait("mine")
        woken.cancel()
    seen.append(("left", q.qsize()))
    return seen


def test_checkpoints_and_cancellation_as_trio() -> None:
    assert same_under_both(_checkpoints_and_cancellation) == [
        ("cancelled first", True, 1),
        ("then", ["kept"]),
        ("waiter cancelled", True),
        ("waiting after", 0),
        ("nowait", ["after"]),
        ("woken got", ["mine"]),
        ("woken then cancelled", True),
        ("left", 0),
    ]


async def _made_and_typed(lib: ModuleType) -> list[Any]:
    # Deprecated: one TrioDeprecationWarning that names the class and the
    # replacement, pointing at the caller's line.  Final, generic.
    seen: list[Any] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lib.lowlevel.UnboundedQueue()
    seen.append(
        [
            (
                w.category.__name__,
                "UnboundedQueue" in str(w.message),
                "open_memory_channel(math.inf)" in str(w.message),
                w.filename == __file__,
            )
            for w in caught
        ]
    )
    q = lib.lowlevel.UnboundedQueue[int]()
    q.put_nowait(1)
    seen.append(("generic", q.get_batch_nowait()))
    try:

        class Sub(lib.lowlevel.UnboundedQueue):  # type: ignore[misc]
            pass

    except TypeError:
        seen.append("subclass: TypeError")
    return seen


def test_made_and_typed_as_trio() -> None:
    assert same_under_both(_made_and_typed) == [
        [("TrioDeprecationWarning", True, True, True)],
        ("generic", [1]),
        "subclass: TypeError",
    ]


def test_statistics_are_frozen() -> None:
    async def main() -> None:
        stats = _queue(ringtrio).statistics()
        with pytest.raises(AttributeError):
            stats.qsize = 3

    ringtrio.run(main)
