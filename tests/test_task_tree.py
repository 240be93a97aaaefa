"""lowlevel.task_tree(): the snapshot of a run, built from known situations.

Each test sets up tasks whose waits are known (a server with idle
connections, a file read inside a deadline, a buffer group with a multishot
receive, tasks on events, locks, channels, sleeps and threads), waits until
every task is blocked, takes the snapshot and checks what it says about each
task.  Then: printing it, the signal that prints it (in a child process),
the hang detector, and that taking it changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import ringtrio
from ringtrio import lowlevel
from ringtrio.lowlevel import TaskInfo, TaskTree
from ringtrio.testing import HangDetector, wait_all_tasks_blocked


def run(afn: Callable[[], Awaitable[Any]], **kwargs: Any) -> Any:
    return ringtrio.run(afn, **kwargs)


def only(tree: TaskTree, name: str) -> TaskInfo:
    found = tree.find(name)
    assert len(found) == 1, [t.name for t in tree.tasks()]
    return found[0]


def here(task: TaskInfo) -> tuple[str, str]:
    assert task.location is not None
    return os.path.basename(task.location.filename), task.location.function


# ---------------------------------------------------------------------------
# The tree itself
# ---------------------------------------------------------------------------


def test_tree_from_the_root_task_with_states() -> None:
    async def child() -> None:
        await ringtrio.sleep_forever()

    async def main() -> TaskTree:
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(child, name="parked child")
            await wait_all_tasks_blocked()
            nursery.start_soon(child, name="new child")
            tree = lowlevel.task_tree()  # the new child has not run yet
            nursery.cancel_scope.cancel()
        return tree

    tree = run(main)
    assert tree.root.name == "<init>"
    assert tree.root.system
    main_task = only(tree, "main")
    assert main_task.state == "running"
    assert here(main_task) == ("test_task_tree.py", "test_tree_from_the_root_task_with_states.<locals>.main")
    assert only(tree, "parked child").state == "parked"
    assert only(tree, "new child").state == "runnable"
    # The children are in the main task's nursery, found where it is held.
    (nursery,) = main_task.nurseries
    assert {t.name for t in nursery.tasks} == {"parked child", "new child"}
    assert nursery.opened_in is not None and nursery.opened_in.function.endswith("main")
    # Every task once, the root's three nurseries included.
    names = [t.name for t in tree.tasks()]
    assert sorted(names) == sorted(["<init>", main_task.name, "parked child", "new child"])
    assert len(tree.root.nurseries) == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        main_task.state = "parked"  # type: ignore[misc]
    # Whole dataclasses: every field set, comparable, convertible.
    assert dataclasses.asdict(tree)["root"]["name"] == "<init>"
    assert dataclasses.replace(main_task, state="parked").state == "parked"
    assert main_task == dataclasses.replace(main_task)


def test_server_with_idle_connections() -> None:
    async def handler(stream: ringtrio.SocketStream) -> None:
        while await stream.receive_some(1000):
            pass

    async def main() -> tuple[TaskTree, int, list[int]]:
        async with ringtrio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(ringtrio.serve_tcp, handler, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            clients = [await ringtrio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
            await wait_all_tasks_blocked()
            tree = lowlevel.task_tree()
            client_ports = [c.socket.getsockname()[1] for c in clients]
            for c in clients:
                await c.aclose()
            nursery.cancel_scope.cancel()
        return tree, port, client_ports

    tree, port, client_ports = run(main)
    handlers = tree.find("handler")
    assert len(handlers) == 3
    peers = set()
    for task in handlers:
        assert task.state == "parked"
        assert here(task) == ("test_task_tree.py", "test_server_with_idle_connections.<locals>.handler")
        assert task.waiting_for == "SocketStream.receive_some(1000)"
        op = task.ring_op
        assert op is not None and op.opcode == "RECV" and op.multishot
        assert op.owner == "SocketStream.receive_some" and op.nbytes == 1000
        assert op.fd is not None and op.fd.kind == "socket"
        local, _, peer = op.fd.description.partition(" <- ")
        assert local == f"TCP 127.0.0.1:{port}"
        peers.add(peer)
    assert peers == {f"127.0.0.1:{p}" for p in client_ports}
    # The listener's multishot accept, owned by the serving task.
    (acceptor,) = [t for t in tree.tasks() if t.ring_op is not None and t.ring_op.opcode == "ACCEPT"]
    assert acceptor.waiting_for == "serve_listeners: connections to accept"
    assert acceptor.ring_op is not None and acceptor.ring_op.multishot
    assert acceptor.ring_op.fd is not None
    assert acceptor.ring_op.fd.description == f"TCP listening on 127.0.0.1:{port}"
    assert tree.ops_in_flight == 4
    assert tree.other_ops == ()


def test_file_read_blocked_inside_a_deadline(tmp_path: Any) -> None:
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    # Opened for writing too (without blocking), so the reader's open
    # returns and its read waits for data.
    keep = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)

    async def reader(deadline: float) -> None:
        async with await ringtrio.open_file(fifo, "rb") as f:
            with ringtrio.move_on_at(deadline):
                await f.read(100)

    async def main() -> tuple[TaskTree, float]:
        lowlevel.enable_op_timestamps()
        deadline = ringtrio.current_time() + 1000
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(reader, deadline)
            await wait_all_tasks_blocked()
            tree = lowlevel.task_tree()
            nursery.cancel_scope.cancel()
        return tree, deadline

    try:
        tree, deadline = run(main)
    finally:
        os.close(keep)
    task = only(tree, "reader")
    assert task.waiting_for == "AsyncBinaryFile.read"
    assert here(task)[1].endswith("reader")
    op = task.ring_op
    assert op is not None and op.opcode == "READ" and not op.multishot
    assert op.fd is not None and (op.fd.kind, op.fd.description) == ("fifo", fifo)
    assert op.nbytes is not None and op.nbytes > 0
    assert op.age is not None and op.age >= 0
    assert task.deadline == deadline and not task.cancelled
    (scope,) = task.deadline_scopes
    assert scope.deadline == deadline and scope.owner == task.name and not scope.shield


def test_receive_buffers_loop_parked_after_a_lease() -> None:
    """A receive_buffers loop that took a lease and waits for the next one
    (with the accelerator, parked by the C __anext__: no frame of its own)
    is shown waiting for the next buffer on its multishot RECV."""

    async def main() -> TaskTree:
        a, b = ringtrio.socket.socketpair()
        stream = ringtrio.SocketStream(a)
        took = ringtrio.Event()

        async def consumer(group: ringtrio.BufferGroup) -> None:
            async for buf in stream.receive_buffers(group):
                with buf:
                    took.set()

        async with ringtrio.open_nursery() as nursery:
            group = nursery.buffer_group(count=2, size=64, incremental=False)
            nursery.start_soon(consumer, group)
            await b.send(b"one")
            await took.wait()
            await wait_all_tasks_blocked()
            tree = lowlevel.task_tree()
            nursery.cancel_scope.cancel()
        b.close()
        await stream.aclose()
        return tree

    tree = run(main)
    consumer_task = only(tree, "consumer")
    assert consumer_task.waiting_for == "receive_buffers: the next buffer"
    op = consumer_task.ring_op
    assert op is not None and op.opcode == "RECV" and op.multishot


def test_nursery_buffer_group_and_multishot_receive() -> None:
    async def main() -> tuple[TaskTree, TaskTree]:
        a, b = ringtrio.socket.socketpair()
        stream = ringtrio.SocketStream(a)
        held: list[ringtrio.Buffer] = []
        full = ringtrio.Event()

        async def consumer(group: ringtrio.BufferGroup) -> None:
            # Keep both buffers leased: the third chunk finds the ring empty.
            async for buf in stream.receive_buffers(group):
                held.append(buf)
                if len(held) == 2:
                    full.set()
                    await ringtrio.sleep_forever()

        async with ringtrio.open_nursery() as nursery:
            group = nursery.buffer_group(count=2, size=64, incremental=False)
            nursery.start_soon(consumer, group)
            await wait_all_tasks_blocked()
            waiting = lowlevel.task_tree()
            for chunk in (b"one", b"two"):
                await b.send(chunk)
                await wait_all_tasks_blocked()
            await full.wait()
            await b.send(b"three")
            for _ in range(200):  # until the ENOBUFS ending is in
                if group.statistics().enobufs:
                    break
                await ringtrio.sleep(0.01)
            starved = lowlevel.task_tree()
            nursery.cancel_scope.cancel()
        b.close()
        await stream.aclose()
        return waiting, starved

    waiting, starved = run(main)
    main_task = only(waiting, "main")
    (group,) = main_task.nurseries[0].buffer_groups
    assert (group.count, group.size, group.leased, group.enobufs, group.incremental) == (2, 64, 0, 0, False)
    (op,) = group.multishots
    assert op.opcode == "RECV" and op.multishot and op.waiter is not None
    assert op.owner is not None and op.owner.startswith("receive_buffers")
    assert op.fd is not None and op.fd.kind == "socket"
    consumer_task = only(waiting, "consumer")
    assert consumer_task.waiting_for == "receive_buffers: the next buffer"
    assert consumer_task.ring_op == op
    # Both buffers out, the multishot ended on the empty ring.
    (group,) = only(starved, "main").nurseries[0].buffer_groups
    assert (group.leased, group.free, group.enobufs, group.multishots) == (2, 0, 1, ())
    assert only(starved, "consumer").waiting_for == "sleep_forever()"


def test_tasks_on_events_locks_channels_sleeps_and_threads() -> None:
    release = threading.Event()

    def blocking() -> None:
        release.wait(30)

    async def main() -> TaskTree:
        event = ringtrio.Event()
        lock = ringtrio.Lock()
        semaphore = ringtrio.Semaphore(0)
        limiter = ringtrio.CapacityLimiter(1)
        condition = ringtrio.Condition()

        async def holder() -> None:
            async with lock, limiter:
                await event.wait()

        async def waits_for_condition() -> None:
            async with condition:
                await condition.wait()

        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(holder)
            await wait_all_tasks_blocked()
            nursery.start_soon(lock.acquire, name="lock waiter")
            nursery.start_soon(limiter.acquire, name="limiter waiter")
            nursery.start_soon(semaphore.acquire, name="semaphore waiter")
            nursery.start_soon(waits_for_condition)
            nursery.start_soon(ringtrio.sleep, 1000, name="sleeper")
            nursery.start_soon(ringtrio.sleep_forever, name="forever")
            nursery.start_soon(ringtrio.to_thread.run_sync, blocking, name="threaded")
            nursery.start_soon(wait_all_tasks_blocked, 1000, name="idle waiter")
            await wait_all_tasks_blocked(0.01)
            tree = lowlevel.task_tree()
            release.set()
            nursery.cancel_scope.cancel()
        return tree

    tree = run(main)
    holder = only(tree, "holder")
    assert holder.waiting_for == "Event.wait"
    said = {t.name: t.waiting_for for t in tree.tasks()}
    assert said["lock waiter"] == f"Lock.acquire (held by {holder.name})"
    assert said["limiter waiter"] == f"CapacityLimiter.acquire (1 of 1 tokens out, to {holder.name})"
    assert said["semaphore waiter"] == "Semaphore.acquire (value 0)"
    assert said[only(tree, "waits_for_condition").name] == "Condition.wait"
    sleeper = only(tree, "sleeper")
    assert sleeper.waiting_for is not None and sleeper.waiting_for.startswith("sleep until ")
    assert said["forever"] == "sleep_forever()"
    assert said["threaded"] == "to_thread.run_sync(test_tasks_on_events_locks_channels_sleeps_and_threads.<locals>.blocking)"
    assert said["idle waiter"] == "wait_all_tasks_blocked(cushion=1000)"
    # Non-ring waits have no ring op.
    assert all(t.ring_op is None for t in tree.tasks())


def test_memory_channel_waits() -> None:
    async def main() -> TaskTree:
        send0, receive0 = ringtrio.open_memory_channel[int](0)
        send1, receive1 = ringtrio.open_memory_channel[int](1)
        send1.send_nowait(0)
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(receive0.receive, name="receiver")
            nursery.start_soon(send1.send, 1, name="sender")
            await wait_all_tasks_blocked()
            tree = lowlevel.task_tree()
            nursery.cancel_scope.cancel()
        return tree

    tree = run(main)
    assert only(tree, "receiver").waiting_for == "memory channel receive (1 send end(s) open)"
    assert only(tree, "sender").waiting_for == "memory channel send (buffer 1 of 1, 1 receive end(s) open)"


def test_sleep_says_until_when() -> None:
    async def sleeper(seconds: float) -> None:
        await ringtrio.sleep(seconds)

    async def main() -> tuple[TaskTree, float]:
        async with ringtrio.open_nursery() as nursery:
            start = ringtrio.current_time()
            nursery.start_soon(sleeper, 500)
            await wait_all_tasks_blocked()
            tree = lowlevel.task_tree()
            nursery.cancel_scope.cancel()
        return tree, start

    tree, start = run(main)
    task = only(tree, "sleeper")
    assert task.sleeps_until is not None
    assert start + 500 <= task.sleeps_until <= tree.time + 500
    assert task.waiting_for == f"sleep until {task.sleeps_until:.3f} (in 500 s)"
    assert task.deadline == math.inf  # a sleep is not a cancel scope


def test_effective_deadline_and_the_scopes_that_set_it() -> None:
    async def nested(outer: float, inner: float) -> None:
        with ringtrio.move_on_at(outer):
            with ringtrio.move_on_at(inner):
                await ringtrio.sleep_forever()

    done = ringtrio.Event()

    async def shielded(outer: float) -> None:
        with ringtrio.move_on_at(outer):
            with ringtrio.CancelScope(shield=True):
                await done.wait()

    async def cancelled() -> None:
        with ringtrio.CancelScope() as scope:
            scope.cancel()
            with ringtrio.CancelScope(shield=True):
                await done.wait()

    async def main() -> tuple[TaskTree, float]:
        now = ringtrio.current_time()
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(nested, now + 500, now + 400)
            nursery.start_soon(shielded, now + 300)
            nursery.start_soon(cancelled)
            await wait_all_tasks_blocked()
            tree = lowlevel.task_tree()
            done.set()
            nursery.cancel_scope.cancel()
        return tree, now

    tree, now = run(main)
    task = only(tree, "nested")
    assert task.deadline == now + 400
    assert [s.deadline for s in task.deadline_scopes] == [now + 400, now + 500]
    # A shield hides what is outside it.
    task = only(tree, "shielded")
    assert (task.deadline, task.deadline_scopes, task.cancelled) == (math.inf, (), False)
    task = only(tree, "cancelled")
    assert task.deadline == math.inf and not task.cancelled  # shielded from its own cancel
    # No nursery scope has a deadline here.
    assert all(not s.nursery_scope for t in tree.tasks() for s in t.deadline_scopes)


def test_a_cancelled_task_says_so() -> None:
    async def main() -> TaskTree:
        with ringtrio.CancelScope() as scope:
            scope.cancel()
            tree = lowlevel.task_tree()
        return tree

    task = only(run(main), "main")
    assert task.cancelled and task.deadline == -math.inf
    (scope,) = task.deadline_scopes
    assert scope.cancel_called and scope.owner == task.name


def test_cancelled_task_waiting_for_its_op() -> None:
    async def main() -> TaskTree:
        a, b = ringtrio.socket.socketpair()
        async with ringtrio.open_nursery() as nursery:

            async def reader() -> None:
                with ringtrio.CancelScope(shield=True):
                    await a.recv(10)

            nursery.start_soon(reader)
            await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()  # the shield keeps the reader waiting
            tree = lowlevel.task_tree()
            os.write(b.fileno(), b"x")  # (main is cancelled: no await)
        a.close()
        b.close()
        return tree

    tree = run(main)
    task = only(tree, "reader")
    assert task.ring_op is not None and task.ring_op.opcode == "RECV"
    assert task.ring_op.nbytes == 10 and not task.ring_op.cancel_requested
    assert task.waiting_for == "SocketType.recv"
    assert only(tree, "main").nurseries[0].cancel_called


def test_op_age_needs_timestamps_and_grows() -> None:
    async def main() -> list[float | None]:
        a, b = ringtrio.socket.socketpair()
        ages: list[float | None] = []
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(a.recv, 10, name="before")
            await wait_all_tasks_blocked()
            ages.append(only(lowlevel.task_tree(), "before").ring_op.age)  # type: ignore[union-attr]
            lowlevel.enable_op_timestamps()
            nursery.start_soon(b.recv, 10, name="after")
            await wait_all_tasks_blocked()
            ages.append(only(lowlevel.task_tree(), "after").ring_op.age)  # type: ignore[union-attr]
            await ringtrio.sleep(0.05)
            tree = lowlevel.task_tree()
            ages.append(only(tree, "after").ring_op.age)  # type: ignore[union-attr]
            assert tree.op_timestamps
            lowlevel.enable_op_timestamps(False)
            assert not lowlevel.task_tree().op_timestamps
            nursery.cancel_scope.cancel()
        a.close()
        b.close()
        return ages

    before, first, second = run(main)
    assert before is None
    assert first is not None and second is not None and second > first >= 0


def test_stream_multishot_without_a_reader_is_listed_apart() -> None:
    async def main() -> TaskTree:
        a, b = ringtrio.socket.socketpair()
        stream = ringtrio.SocketStream(a)
        await b.send(b"hello")
        assert await stream.receive_some(100) == b"hello"
        await b.send(b"more")
        await wait_all_tasks_blocked()
        tree = lowlevel.task_tree()
        await stream.aclose()
        b.close()
        return tree

    tree = run(main)
    (op,) = tree.other_ops
    assert op.opcode == "RECV" and op.multishot and op.waiter is None
    assert op.detail == "1 chunk(s), 4 bytes received, not yet read"
    assert "no task waiting" in str(tree)


def test_process_wait_names_the_pidfd() -> None:
    async def main() -> tuple[TaskTree, int]:
        proc = await lowlevel.open_process(["sleep", "30"])
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(proc.wait, name="waiter")
            await wait_all_tasks_blocked()
            tree = lowlevel.task_tree()
            proc.kill()
        return tree, proc.pid

    tree, pid = run(main)
    task = only(tree, "waiter")
    assert task.waiting_for == f"Process.wait (pid {pid})"
    assert task.ring_op is not None and task.ring_op.fd is not None
    if task.ring_op.fd.kind == "pidfd":  # (WAITID/POLL_ADD on a pidfd; WAITID by pid has none)
        assert task.ring_op.fd.description == f"pid {pid}"


# ---------------------------------------------------------------------------
# Safe anywhere in the run's thread, changes nothing
# ---------------------------------------------------------------------------


def test_taken_from_an_instrument_hook_and_a_callback() -> None:
    trees: list[tuple[str, TaskTree]] = []

    class Snapshotter(lowlevel.Instrument):
        def before_task_step(self, task: lowlevel.Task) -> None:
            if task.name.endswith("stepper") and not trees:
                trees.append(("hook", lowlevel.task_tree()))

    async def stepper() -> None:
        await ringtrio.sleep(0)

    async def main() -> None:
        done = ringtrio.Event()

        def callback() -> None:
            trees.append(("callback", lowlevel.task_tree()))
            done.set()

        lowlevel.add_instrument(Snapshotter())
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(stepper)
        lowlevel.current_trio_token().run_sync_soon(callback)
        await done.wait()

    run(main)
    (where, hook_tree), (where2, callback_tree) = trees
    assert (where, where2) == ("hook", "callback")
    assert only(hook_tree, "stepper").state == "running"
    # Between steps nothing runs; main is parked on the event.
    assert all(t.state != "running" for t in callback_tree.tasks())
    assert only(callback_tree, "main").waiting_for == "Event.wait"


def test_a_passed_deadline_is_not_expired_by_the_snapshot() -> None:
    async def main() -> tuple[bool, bool]:
        with ringtrio.CancelScope() as scope:
            scope.deadline = ringtrio.current_time() + 0.001
            time.sleep(0.01)  # the deadline passes without a checkpoint
            lowlevel.task_tree()
            cancel_called_after_snapshot = scope._cancel_called  # type: ignore[attr-defined]
            cancelled = scope.cancel_called  # (trio's property expires it)
        return cancel_called_after_snapshot, cancelled

    assert run(main) == (False, True)


def test_outside_a_run_it_says_so() -> None:
    with pytest.raises(RuntimeError, match="inside ringtrio.run"):
        lowlevel.task_tree()
    with pytest.raises(RuntimeError, match="inside ringtrio.run"):
        lowlevel.enable_op_timestamps()


# ---------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------


def test_print_task_tree_renders_each_task() -> None:
    out = io.StringIO()

    async def waiter(event: ringtrio.Event) -> None:
        with ringtrio.move_on_after(500):
            await event.wait()

    async def main() -> None:
        event = ringtrio.Event()
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(waiter, event)
            await wait_all_tasks_blocked()
            lowlevel.print_task_tree(file=out)
            event.set()

    run(main)
    text = out.getvalue()
    assert text.startswith("ringtrio task tree at t=")
    assert "3 task(s), 0 ring op(s) in flight; op ages off" in text
    assert "test_print_task_tree_renders_each_task.<locals>.waiter [parked]" in text
    assert "waiting for: Event.wait" in text
    assert "deadline: t=" in text and "set by a cancel scope of" in text
    assert "main [running]" in text


# ---------------------------------------------------------------------------
# run(dump_tasks_on=...)
# ---------------------------------------------------------------------------

SIGNAL_SCRIPT = textwrap.dedent(
    """
    import signal, sys
    import ringtrio

    async def stuck_forever(event):
        await event.wait()

    async def main():
        event = ringtrio.Event()
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(stuck_forever, event)
            await ringtrio.testing.wait_all_tasks_blocked()
            print("ready", flush=True)
            # Wait for the parent's "quit" line, in a thread.
            line = await ringtrio.to_thread.run_sync(sys.stdin.readline)
            event.set()
        print("done", line.strip(), flush=True)

    ringtrio.run(main, dump_tasks_on=signal.SIGUSR1)
    print("after run:", signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL, flush=True)
    """
)


class Lines:
    """The lines a child writes to a pipe, read by a thread, so that
    waiting for one is bounded in time."""

    def __init__(self, stream: Any) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put("")

    def until(self, marker: str, limit: float = 60.0) -> str:
        """The lines up to the first that contains ``marker``."""
        seen: list[str] = []
        deadline = time.monotonic() + limit
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                break
            if not line:
                break
            seen.append(line)
            if marker in line:
                return "".join(seen)
        raise AssertionError(f"{marker!r} never came; got {''.join(seen)!r}")


def test_sigusr1_prints_the_tree_without_disturbing_the_run() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        out.until("ready")
        for _ in range(2):
            os.kill(proc.pid, signal.SIGUSR1)
            dump = err.until("waiting for: Event.wait")
            assert "ringtrio task tree at t=" in dump
            assert "__main__.main [parked]" in dump
            assert "waiting for: to_thread.run_sync(TextIOWrapper.readline)" in dump
            assert "__main__.stuck_forever [parked]" in dump
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        # The run went on: the stuck task was woken and the run ended.
        out.until("done quit")
        out.until("after run: True")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_dump_tasks_on_refuses_what_it_cannot_do() -> None:
    async def main() -> None:
        pass

    with pytest.raises(ValueError, match="Ctrl-C"):
        run(main, dump_tasks_on=signal.SIGINT)
    with pytest.raises(ValueError, match="cannot be caught"):
        run(main, dump_tasks_on=signal.SIGKILL)
    with pytest.raises(ValueError, match="signal number"):
        run(main, dump_tasks_on="SIGUSR1")
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            run(main, dump_tasks_on=signal.SIGUSR1)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    (error,) = errors
    assert isinstance(error, RuntimeError) and "main thread" in str(error)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_dump_tasks_on_puts_the_handler_and_wakeup_fd_back() -> None:
    def mine(signum: int, frame: Any) -> None:
        pass

    async def main() -> None:
        assert signal.getsignal(signal.SIGUSR2) is not mine
        await ringtrio.sleep(0)

    old = signal.signal(signal.SIGUSR2, mine)
    try:
        run(main, dump_tasks_on=signal.SIGUSR2)
        assert signal.getsignal(signal.SIGUSR2) is mine
        assert signal.set_wakeup_fd(-1) == -1
    finally:
        signal.signal(signal.SIGUSR2, old)


# ---------------------------------------------------------------------------
# HangDetector
# ---------------------------------------------------------------------------


@contextmanager
def safety_net(seconds: float = 120) -> Iterator[None]:
    """Fail a hang-detector test that waits too long, without arming a timer
    of the run (which would keep the detector quiet by design): a thread
    cancels the block after ``seconds``."""
    token = lowlevel.current_trio_token()
    with ringtrio.CancelScope() as scope:
        timer = threading.Timer(seconds, token.run_sync_soon, (scope.cancel,))
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
    assert not scope.cancelled_caught, f"the detector said nothing in {seconds} s"


def test_hang_detector_reports_once_per_idle_episode() -> None:
    trees: list[TaskTree] = []
    woken: list[ringtrio.Event] = []

    def on_hang(tree: TaskTree) -> None:
        trees.append(tree)
        woken.pop(0).set()

    async def stuck(event: ringtrio.Event) -> None:
        await event.wait()

    async def main() -> None:
        with safety_net():
            for name in ("first", "second"):
                event = ringtrio.Event()
                woken.append(event)
                async with ringtrio.open_nursery() as nursery:
                    nursery.start_soon(stuck, event, name=name)

    detector = HangDetector(timeout=0.2, on_hang=on_hang)
    run(main, instruments=[detector])
    assert detector.reports == 2
    assert [[t.name for t in tree.tasks() if t.name in ("first", "second")] for tree in trees] == [
        ["first"],
        ["second"],
    ]
    assert only(trees[0], "first").waiting_for == "Event.wait"


def test_hang_detector_prints_to_its_file() -> None:
    out = io.StringIO()
    detector = HangDetector(timeout=0.1, file=out)

    async def main() -> None:
        with safety_net():
            for _ in range(100):
                if detector.reports:
                    break
                # Nothing can wake the run but the thread: as hung as a
                # deadlock, to the detector.
                await ringtrio.to_thread.run_sync(time.sleep, 0.3)

    run(main, instruments=[detector])
    text = out.getvalue()
    assert text.startswith(
        "ringtrio.testing.HangDetector: no task has run for 0.1 s and nothing can wake one"
    )
    assert "waiting for: to_thread.run_sync(sleep)" in text


def test_hang_detector_is_quiet_while_tasks_run() -> None:
    detector = HangDetector(timeout=5)

    async def main() -> None:
        for _ in range(50):
            await ringtrio.sleep(0.01)

    run(main, instruments=[detector])
    assert detector.reports == 0


def test_hang_detector_is_quiet_while_a_timer_is_armed() -> None:
    # A run that sleeps, or waits inside a deadline, is not hung: the timer
    # will wake it, however long after the detector's timeout that is.
    detector = HangDetector(timeout=0.1)

    async def main() -> None:
        await ringtrio.sleep(0.5)
        with ringtrio.move_on_after(0.5):
            await ringtrio.Event().wait()

    run(main, instruments=[detector])
    assert detector.reports == 0


def test_hang_detector_clock_starts_when_the_last_timer_goes() -> None:
    # The deadline passes without waking the task (its wait is shielded):
    # from then on nothing can wake the run, and only then is it hung.
    trees: list[TaskTree] = []
    event = ringtrio.Event()

    def on_hang(tree: TaskTree) -> None:
        trees.append(tree)
        event.set()

    async def main() -> float:
        with safety_net():
            deadline = ringtrio.current_time() + 0.5
            with ringtrio.CancelScope(deadline=deadline):
                with ringtrio.CancelScope(shield=True):
                    await event.wait()
        return deadline

    detector = HangDetector(timeout=0.2, on_hang=on_hang)
    deadline = run(main, instruments=[detector])
    (tree,) = trees
    assert tree.time >= deadline + 0.2
    assert only(tree, "main").waiting_for == "Event.wait"


def test_hang_detector_added_and_removed_during_the_run() -> None:
    detector = HangDetector(timeout=0.2)

    async def main() -> None:
        lowlevel.add_instrument(detector)
        with safety_net():
            for _ in range(100):
                if detector.reports:
                    break
                await ringtrio.to_thread.run_sync(time.sleep, 0.5)
        lowlevel.remove_instrument(detector)
        # Hung, but nobody watches any more.
        await ringtrio.to_thread.run_sync(time.sleep, 0.5)

    out = io.StringIO()
    detector.file = out
    run(main)
    assert detector.reports == 1


@pytest.mark.parametrize("timeout", [0, -1, math.inf, "1", True])
def test_hang_detector_timeout_must_be_seconds(timeout: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        HangDetector(timeout=timeout)
