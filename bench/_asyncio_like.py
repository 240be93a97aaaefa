"""Benchmark bodies for asyncio-like runs (stock asyncio, and asyncio+uvloop).

Every body is an ``async def body(n)``: the event loop implementation is
chosen by :func:`run` through ``asyncio.Runner(loop_factory=...)``, so the
same code runs on the default loop and on uvloop.  Each body does the same
work as its namesake in ``_trio_like.py``; where asyncio has no exact
equivalent the closest primitive is used and the difference is noted.

As in ``_trio_like``, a body may return its own elapsed seconds (float) to
exclude set-up it does not want measured; otherwise it is timed as a whole.
"""

import asyncio
import time


def run(loop_factory, body, n):
    """Run ``body(n)`` on a fresh loop made by ``loop_factory``.

    ``loop_factory=None`` means asyncio's default loop.  Returns
    ``(elapsed_seconds, loop_type_name)``; the loop type is reported so that
    a run claiming to be uvloop can be checked to really be uvloop.
    """

    async def main():
        loop = type(asyncio.get_running_loop())
        t0 = time.perf_counter()
        own = await body(n)
        t1 = time.perf_counter()
        elapsed = own if own is not None else t1 - t0
        return elapsed, f"{loop.__module__}.{loop.__qualname__}"

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


async def _noop():
    pass


def _noop_sync():
    return None


async def spawn_join(n):
    async with asyncio.TaskGroup() as tg:
        for _ in range(n):
            tg.create_task(_noop())


async def checkpoints(n):
    # asyncio.sleep(0) is asyncio's "yield to the loop once".
    for _ in range(n):
        await asyncio.sleep(0)


async def timeout_scopes(n):
    for _ in range(n):
        async with asyncio.timeout(10):
            await asyncio.sleep(0)


async def sleep_1ms(n):
    async with asyncio.TaskGroup() as tg:
        for _ in range(n):
            tg.create_task(asyncio.sleep(0.001))


async def channel_unbuffered(n):
    # asyncio has no rendezvous (zero-capacity) channel; Queue(maxsize=1) is
    # the closest: the sender may run one item ahead of the receiver.
    queue = asyncio.Queue(maxsize=1)

    async def sender():
        for i in range(n):
            await queue.put(i)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(sender())
        for _ in range(n):
            await queue.get()


async def event_pingpong(n):
    # Same protocol as the trio-like version, but asyncio Events can be
    # cleared, so each side clears the Event it consumed instead of
    # replacing it.
    ping = asyncio.Event()
    pong = asyncio.Event()

    async def ponger():
        for _ in range(n):
            await ping.wait()
            ping.clear()
            pong.set()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(ponger())
        for _ in range(n):
            ping.set()
            await pong.wait()
            pong.clear()


async def to_thread(n):
    # asyncio.to_thread uses the loop's default ThreadPoolExecutor.
    for _ in range(n):
        await asyncio.to_thread(_noop_sync)


async def task_tree_10k(n):
    """asyncio's nearest: ``all_tasks()`` and each task's ``get_stack()``."""
    event = asyncio.Event()
    tasks = [asyncio.ensure_future(event.wait()) for _ in range(n)]
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    [(t.get_name(), t.get_stack()) for t in asyncio.all_tasks()]
    elapsed = time.perf_counter() - t0
    event.set()
    await asyncio.gather(*tasks)
    return elapsed
