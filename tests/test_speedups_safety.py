"""The accelerator's C entry points and types given what they do not expect:
a Python exception, never a crash.  Each case runs in a subprocess under
PYTHONMALLOC=debug (freed and out-of-bounds memory then reads as a pattern
that crashes at once rather than by chance), with the accelerator on
whatever the parent's environment says: these are its own entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


def run_snippet(code: str) -> str:
    env = dict(os.environ, PYTHONMALLOC="debug")
    env.pop("RINGTRIO_NO_SPEEDUPS", None)
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_receiver_base_subclass_without_buffer_receivers_fields() -> None:
    """ReceiverBase's __anext__ reads a BufferReceiver's fields at their
    offsets: any other class derived from it (here one whose float value
    sits where BufferReceiver keeps _closed and whose object ends before
    _stream) gets its own _anext instead.  It used to read past the end of
    the object and crash."""
    out = run_snippet(
        """
        import struct, ringtrio
        from ringtrio._core import _speedups
        from ringtrio import socket as rsock

        class Mixed(_speedups.ReceiverBase, float):
            __slots__ = ("a", "b", "c")

        class Own(_speedups.ReceiverBase):
            __slots__ = ()
            def _anext(self):
                return "own _anext"

        async def main():
            async with ringtrio.open_nursery() as owner:
                group = owner.buffer_group(count=4, size=256, incremental=False)
                a, b = rsock.socketpair()
                a, b = ringtrio.SocketStream(a), ringtrio.SocketStream(b)
                it = b.receive_buffers(group)
                await a.send_all(b"first")
                with (await it.__anext__()):
                    pass
                # (The receive is armed and waiting: the common case but
                # for the receiver itself.)
                false_bits = struct.unpack("d", struct.pack("Q", id(False)))[0]
                x = float.__new__(Mixed, false_bits)
                x.a, x.c = group, it._op
                it._op.owner = id(x)
                try:
                    x.__anext__().send(None)
                except AttributeError as exc:
                    print("Mixed:", exc)
                print("Own:", Own().__anext__())
                try:
                    _speedups.ReceiverBase().__anext__()
                except AttributeError as exc:
                    print("ReceiverBase:", exc)
                it._op.owner = id(it)
                await it.aclose()
                await a.aclose()
                await b.aclose()

        ringtrio.run(main)
        """
    )
    assert "Mixed: 'Mixed' object has no attribute '_anext'" in out
    assert "Own: own _anext" in out
    assert "ReceiverBase: " in out and "has no attribute '_anext'" in out


@pytest.mark.parametrize("call", ["send(None)", "throw(KeyError)", "close()"])
def test_anext_awaitable_called_again_from_the_code_it_runs(call: str) -> None:
    """The __anext__ awaitable called again (send, throw or close) from the
    Python code it is running raises ValueError, as a generator does, and
    goes on; it used to drop the running generator (freed under its own
    frame: a crash)."""
    out = run_snippet(
        f"""
        import ringtrio
        from ringtrio._buffer_group import BufferReceiver

        class Receiver(BufferReceiver):
            __slots__ = ("aw",)

            def _anext(self):
                try:
                    self.aw.{call}
                except ValueError as exc:
                    print("inner:", exc)
                yield "first"
                return "done"

        async def main():
            r = Receiver.__new__(Receiver)  # (not the common case: its _anext)
            r.aw = aw = r.__anext__()
            print("yielded:", aw.send(None))
            try:
                aw.send(None)
            except StopIteration as stop:
                print("returned:", stop.value)
            del r.aw, aw

        ringtrio.run(main)
        """
    )
    assert "inner: receive_buffers' __anext__ awaitable is already executing" in out
    assert "yielded: first" in out and "returned: done" in out


def test_submit_park_and_run_batch_check_what_they_read_at_offsets() -> None:
    """submit_park's task and run_batch's dequeued tasks must be Tasks, and
    a task's cancel scope a CancelScope (their fields are read at fixed
    offsets): anything else is a TypeError.  A non-Task used to be read out
    of bounds (an int: a crash; an object: the op submitted for it, a crash
    at its completion)."""
    out = run_snippet(
        """
        import threading, ringtrio
        from ringtrio import lowlevel
        from ringtrio._core import _speedups

        async def main():
            task = lowlevel.current_task()
            runner = task._runner
            for bad in (12345, object(), 1.5):
                op = lowlevel.RingOp(lowlevel.IORING_OP_NOP)
                try:
                    _speedups.submit_park(runner, op, bad, None)
                except TypeError as exc:
                    print("submit_park:", exc)
                assert op.task is None
            try:
                _speedups.run_batch(runner, lambda: 7, print, 1, threading.local(), None)
            except TypeError as exc:
                print("run_batch:", exc)
            scope = task._cancel_scope
            task._cancel_scope = 1.5
            try:
                _speedups.submit_park(runner, lowlevel.RingOp(lowlevel.IORING_OP_NOP), task, None)
            except TypeError as exc:
                print("scope:", exc)
            finally:
                task._cancel_scope = scope
            await lowlevel.checkpoint()

        ringtrio.run(main)
        """
    )
    assert out.count("submit_park: submit_park(): task must be a Task") == 3
    assert "run_batch: run_batch(): the run queue holds a int, not a Task" in out
    assert "scope: a task's cancel scope is a float, not a CancelScope" in out


def test_pread_nowait_refuses_bad_arguments_one_at_a_time() -> None:
    """pread_nowait's arguments are converted one at a time: a bad fd is a
    TypeError even when the offset's __index__ is Python code (which ran
    with the fd's error set, and became a SystemError)."""
    from ringtrio._core import _speedups

    class Index:
        def __index__(self) -> int:
            return 0

    with pytest.raises(TypeError, match="cannot be interpreted as an integer"):
        _speedups.pread_nowait("0", 1, Index())
    with pytest.raises(TypeError):
        _speedups.pread_nowait(0, "1", Index())
    with pytest.raises(ValueError, match="fd >= 0, size >= 1, offset >= 0"):
        _speedups.pread_nowait(0, 1, -1)
