"""Benchmark bodies for trio-like libraries (trio itself, and ringtrio).

Every body is an ``async def body(lib, n)`` that takes the library *module*
as its first argument and only uses names that ringtrio mirrors from trio
(``open_nursery``, ``lowlevel.checkpoint``, ``move_on_after``, ``sleep``,
``open_memory_channel``, ``Event``, ``to_thread.run_sync``).  The very same
function therefore runs for ``trio`` and for ``ringtrio``.

A body normally returns ``None`` and is timed as a whole by :func:`run`.  A
body that has setup it does not want measured (a listening socket, a load
generator subprocess, ...) may instead return its own elapsed seconds as a
float, which :func:`run` then uses.
"""

import importlib
import time


def run(lib, body, n):
    """Run ``body(lib, n)`` under ``lib.run`` and return elapsed seconds.

    Only the body is timed, with ``time.perf_counter`` inside the run loop:
    interpreter start-up, imports and run-loop set-up/tear-down are excluded.
    """

    async def main():
        t0 = time.perf_counter()
        own = await body(lib, n)
        t1 = time.perf_counter()
        return own if own is not None else t1 - t0

    return lib.run(main)


def backend_of(lib):
    """ringtrio: the backend its runs use ("io_uring" or "epoll")."""

    async def name():
        return lib.lowlevel.current_backend().name

    return lib.run(name)


async def _noop():
    pass


def _noop_sync():
    return None


async def spawn_join(lib, n):
    async with lib.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(_noop)


async def checkpoints(lib, n):
    checkpoint = lib.lowlevel.checkpoint
    for _ in range(n):
        await checkpoint()


async def timeout_scopes(lib, n):
    checkpoint = lib.lowlevel.checkpoint
    move_on_after = lib.move_on_after
    for _ in range(n):
        with move_on_after(10):
            await checkpoint()


async def _sleep_1ms(lib):
    await lib.sleep(0.001)


async def sleep_1ms(lib, n):
    async with lib.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(_sleep_1ms, lib)


async def channel_unbuffered(lib, n):
    send_channel, receive_channel = lib.open_memory_channel(0)

    async def sender():
        async with send_channel:
            for i in range(n):
                await send_channel.send(i)

    async with lib.open_nursery() as nursery:
        nursery.start_soon(sender)
        async with receive_channel:
            for _ in range(n):
                await receive_channel.receive()


async def event_pingpong(lib, n):
    # trio Events cannot be cleared, so each side replaces the Event it has
    # just consumed with a fresh one *before* signalling the other side.
    # The one-element lists are shared mutable slots.
    ping = [lib.Event()]
    pong = [lib.Event()]

    async def ponger():
        for _ in range(n):
            await ping[0].wait()
            ping[0] = lib.Event()
            pong[0].set()

    async with lib.open_nursery() as nursery:
        nursery.start_soon(ponger)
        for _ in range(n):
            ping[0].set()
            await pong[0].wait()
            pong[0] = lib.Event()


async def to_thread(lib, n):
    run_sync = lib.to_thread.run_sync
    for _ in range(n):
        await run_sync(_noop_sync)


async def task_tree_10k(lib, n):
    """One snapshot of ``n`` parked tasks (Event waiters), timed alone:
    ringtrio's ``lowlevel.task_tree()``; for trio, the walk it offers
    (``current_root_task()``, ``child_nurseries``, ``child_tasks``, each
    task's ``iter_await_frames()``), which gives names and frames only."""
    event = lib.Event()
    snapshot = getattr(lib.lowlevel, "task_tree", None)
    if snapshot is None:

        def snapshot():
            found = []
            stack = [lib.lowlevel.current_root_task()]
            while stack:
                task = stack.pop()
                found.append((task.name, [f.f_lineno for f, _ in task.iter_await_frames()]))
                for nursery in task.child_nurseries:
                    stack.extend(nursery.child_tasks)
            return found

    testing = importlib.import_module(f"{lib.__name__}.testing")
    async with lib.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(event.wait)
        await testing.wait_all_tasks_blocked()
        t0 = time.perf_counter()
        snapshot()
        elapsed = time.perf_counter() - t0
        event.set()
    return elapsed
