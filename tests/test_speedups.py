"""ringtrio._core._speedups (ringtrio/_core/_speedups.c): two of the
scheduler's per-operation loops in C, the Python code they stand in for,
and new_bytes (file reads straight into their result)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

import ringtrio
from ringtrio import lowlevel
from ringtrio._core import _accel, _local, _runner

from _counting import counting_on_cqe

HERE = os.path.dirname(os.path.abspath(__file__))


def test_speedups_are_built_and_used() -> None:
    """Used unless RINGTRIO_NO_SPEEDUPS is set, and then not used at all."""

    async def main() -> None:
        await lowlevel.submit_and_wait(lowlevel.RingOp(lowlevel.IORING_OP_NOP))

    ringtrio.run(main)
    if os.environ.get("RINGTRIO_NO_SPEEDUPS"):
        assert _accel._sp_submit is None and _accel._sp_dispatch is None
        assert _runner._sp_submit is None and _runner._sp_dispatch is None
    else:
        assert _accel._sp_submit is not None and _accel._sp_dispatch is not None
        # The runner's own references, which its per-op paths read.
        assert _runner._sp_submit is _accel._sp_submit
        assert _runner._sp_dispatch is _accel._sp_dispatch
        assert _runner._sp_run_batch is _accel._sp_run_batch


def test_bad_sqe_fields_raise_and_release_their_token() -> None:
    """The C submit checks every field as the cffi call would: a ValueError
    naming the op, and nothing left taken."""

    async def main() -> None:
        before = lowlevel.current_statistics().ops_in_flight
        bad = [
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, fd=2**40),
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, length=-1),
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, off=-1),
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, buf_index=2**16),
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, addr=-5),
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, op_flags="x"),  # type: ignore[arg-type]
        ]
        for op in bad:
            with pytest.raises(ValueError, match="out of range for an SQE"):
                await lowlevel.submit_and_wait(op)
            assert op.task is None
        assert lowlevel.current_statistics().ops_in_flight == before
        # The run goes on normally: tokens were given back.
        for _ in range(10):
            res, _flags = await lowlevel.submit_and_wait(lowlevel.RingOp(lowlevel.IORING_OP_NOP))
            assert res == 0
        # A bytes object as the address (the send path's form).
        res, _flags = await lowlevel.submit_and_wait(
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, addr=b"payload", keepalive=None)
        )
        assert res == 0

    ringtrio.run(main)


def test_the_python_path_still_works() -> None:
    """The core, socket, stream, TLS, file and cancellation-integrity tests
    with RINGTRIO_NO_SPEEDUPS=1 (the Python code _speedups stands in for)."""
    env = dict(os.environ, RINGTRIO_NO_SPEEDUPS="1")
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            os.path.join(HERE, "test_core.py"),
            os.path.join(HERE, "test_runner_vs_trio.py"),
            os.path.join(HERE, "test_runner_edges.py"),
            os.path.join(HERE, "test_socket.py"),
            os.path.join(HERE, "test_highlevel_socket.py"),
            os.path.join(HERE, "test_file_chains.py"),
            os.path.join(HERE, "test_file_io.py"),
            os.path.join(HERE, "test_file_cancel.py"),
            os.path.join(HERE, "test_buffer_group.py"),
            os.path.join(HERE, "test_vs_trio_streams.py"),
            os.path.join(HERE, "test_cancel_integrity.py"),
            os.path.join(HERE, "test_ssl.py"),
            os.path.join(HERE, "test_speedups.py") + "::test_speedups_are_built_and_used",
            os.path.join(HERE, "test_speedups.py") + "::test_chain_helpers_check_their_arguments",
            os.path.join(HERE, "test_speedups.py") + "::test_step_loop_in_c_handles_every_kind_of_step",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_reads_straight_into_their_result(tmp_path: Any) -> None:
    """File reads fill a fresh bytes object (new_bytes) and return it, or a
    slice of it after a short read; nothing of a cancelled read comes out."""
    from ringtrio._core import _speedups  # type: ignore[attr-defined]

    with pytest.raises(ValueError):
        _speedups.new_bytes(1)
    assert len(_speedups.new_bytes(5)) == 5
    path = tmp_path / "f"
    content = bytes(range(256)) * 40
    path.write_bytes(content)

    async def main() -> None:
        async with await ringtrio.open_file(path, "rb") as f:
            assert await f.read_at(0, 100) == content[:100]
            assert await f.read_at(5000, 10_000) == content[5000:]  # short: EOF
            assert await f.read_at(len(content) + 5, 10) == b""
            assert await f.read(len(content)) == content
            with ringtrio.CancelScope() as scope:
                scope.cancel()
                with pytest.raises(ringtrio.Cancelled):
                    await f.read_at(0, 100)
            assert await f.read_at(1, 3) == content[1:4]

    ringtrio.run(main)


def test_unusable_memoryview_addr_raises_and_releases_the_token() -> None:
    async def main() -> None:
        before = lowlevel.current_statistics().ops_in_flight
        view = memoryview(bytearray(16))
        view.release()
        with pytest.raises(ValueError):
            await lowlevel.submit_and_wait(lowlevel.RingOp(lowlevel.IORING_OP_NOP, addr=view))
        assert lowlevel.current_statistics().ops_in_flight == before
        res, _flags = await lowlevel.submit_and_wait(
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, addr=memoryview(bytearray(16)))
        )
        assert res == 0

    ringtrio.run(main)


def test_chain_helpers_check_their_arguments(tmp_path: Any) -> None:
    """take_tokens / prep_open_chain / prep_close_direct (Path.read_bytes'
    chain in C) refuse bad arguments without queueing anything or keeping
    a token; chains complete through the C dispatch with every result."""
    from ringtrio._core import _speedups  # type: ignore[attr-defined]

    path = tmp_path / "small"
    path.write_bytes(b"x" * 5000)

    async def main() -> None:
        runner = _local._local.task._runner
        before = lowlevel.current_statistics().ops_in_flight
        if _accel._sp_take_tokens is None:
            # Switched off: chains take the Python path (checked below).
            assert os.environ.get("RINGTRIO_NO_SPEEDUPS")
        else:
            check_helpers(runner)
        assert lowlevel.current_statistics().ops_in_flight == before
        # Chains complete with every result: many at once, each with its bytes.
        results: list[bytes] = []

        async def reader() -> None:
            results.append(await ringtrio.Path(path).read_bytes())

        async with ringtrio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(reader)
        assert results == [b"x" * 5000] * 50
        assert lowlevel.current_statistics().ops_in_flight == before

    def check_helpers(runner: Any) -> None:
        slots, gens, free = runner._op_slots, runner._op_gens, runner._free_slots
        with pytest.raises(TypeError, match="RingOps"):
            _speedups.take_tokens(slots, gens, free, (lowlevel.RingOp(0), "x"), None)
        with pytest.raises(TypeError):
            _speedups.take_tokens(slots, gens, free, [lowlevel.RingOp(0)], None)
        args = [runner._ring_addr, -100, b"p", 0, 0, 0, 22, 0, 1, 0, 1, [8, 9, 10]]
        for i, bad, exc in [
            (2, b"a\0b", ValueError),  # NUL in the path
            (2, "str", ValueError),  # not bytes
            (11, [1], TypeError),  # one token
            (3, 2**32, OverflowError),  # open_flags
            (6, 256, OverflowError),  # rw_opcode
            (1, 2**31, OverflowError),  # dirfd
        ]:
            with pytest.raises(exc):
                _speedups.prep_open_chain(*args[:i], bad, *args[i + 1 :])
        with pytest.raises(OverflowError):
            _speedups.prep_close_direct(runner._ring_addr, 2**32, 0, 0)

    ringtrio.run(main)


def test_step_loop_in_c_handles_every_kind_of_step() -> None:
    """run_batch (the run loop's step loop in C) gives back to Python the
    steps it does not do itself -- a cancel raised at a checkpoint, a task's
    return value, its exception, a foreign yield -- with the same results as
    the Python loop (the subprocess run checks the same suite without it)."""
    import types

    @types.coroutine
    def foreign_yield() -> Any:
        yield "an asyncio future, say"  # not a ringtrio trap

    async def returns(value: int) -> int:
        await lowlevel.checkpoint()
        await lowlevel.cancel_shielded_checkpoint()
        return value

    async def raises() -> None:
        await lowlevel.checkpoint()
        raise KeyError("child")

    async def main() -> list[Any]:
        if not os.environ.get("RINGTRIO_NO_SPEEDUPS"):
            assert _runner._sp_run_batch is not None
        seen: list[Any] = []
        with ringtrio.CancelScope() as scope:
            scope.cancel()
            await lowlevel.checkpoint()  # the cancel is raised by the Python step
        seen.append(scope.cancelled_caught)
        with pytest.raises(TypeError, match="not a ringtrio operation"):
            await foreign_yield()
        with pytest.raises(ExceptionGroup) as info:
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(raises)
                for _ in range(3):
                    nursery.start_soon(returns, 1)
        assert info.value.subgroup(KeyError) is not None
        event = ringtrio.Event()

        async def parked() -> None:
            await event.wait()
            seen.append("woken")

        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(parked)
            await ringtrio.testing.wait_all_tasks_blocked()
            event.set()
        seen.append(await returns(7))
        return seen

    assert ringtrio.run(main) == [True, "woken", 7]


def _echo_chunks_through(receiver_calls: list[int]) -> tuple[list[bytes], Any]:
    """Send 200 chunks of different sizes over a socketpair and receive each
    with receive_some; returns the chunks received and the receive group's
    statistics."""
    from ringtrio import _highlevel_socket
    from ringtrio._core._buffers import runtime_recv_ring

    got: list[bytes] = []
    stats: list[Any] = []

    async def main() -> None:
        a, b = ringtrio.socket.socketpair()
        tx, rx = ringtrio.SocketStream(a), ringtrio.SocketStream(b)
        for i in range(200):
            await tx.send_all(bytes([i % 256]) * (1 + i * 7))
            got.append(await rx.receive_some())
        ring = runtime_recv_ring()
        assert ring is not None
        stats.append(ring.statistics())
        await tx.aclose()
        await rx.aclose()

    with counting_on_cqe(_highlevel_socket._StreamReceiver, receiver_calls):
        ringtrio.run(main)
    return got, stats[0]


def test_receive_some_chunks_are_completed_in_c_as_in_python() -> None:
    """A chunk of receive_some's multishot receive that arrives while more
    are to come is copied out, its buffer recycled and the reader woken in
    the C dispatch (complete_stream_rx), without the Python _on_cqe; the
    bytes and the group's counters are what the Python method gives."""
    calls: list[int] = []
    got, stats = _echo_chunks_through(calls)
    assert got == [bytes([i % 256]) * (1 + i * 7) for i in range(200)]
    assert stats.selected == stats.recycled >= 200
    if os.environ.get("RINGTRIO_NO_SPEEDUPS"):
        assert len([r for r in calls if r > 0]) >= 200
    else:
        # Only the final CQE (the cancel at close) reaches Python.
        assert [r for r in calls if r > 0] == []


def test_submit_park_queues_the_op_and_leaves_no_cycle() -> None:
    """Runner._submit_park (in C: submit_park) queues the op and yields a
    park that the op does not keep (no op -> park -> op cycle: an op made
    per call is freed at once, without the cyclic GC); ops with a linked
    deadline take the Python path, which attaches it."""
    import gc
    import weakref

    from ringtrio._core._runner import Runner

    class Op(lowlevel.RingOp):
        __slots__ = ("__weakref__",)

    python_calls: list[bool] = []
    original = Runner._submit_park

    def counting(self: Any, op: Any, task: Any, park: Any = None) -> Any:
        python_calls.append(self._scope_deadlines > 0)
        return original(self, op, task, park)

    async def main() -> None:
        refs = []
        for _ in range(5):
            op = Op(lowlevel.IORING_OP_NOP)
            assert await lowlevel.submit_and_wait(op) == (0, 0)
            refs.append(weakref.ref(op))
            del op
        # (The Python step loop keeps what a task yielded in a local until
        # its next step.)
        await lowlevel.checkpoint()
        assert [r() for r in refs] == [None] * 5
        op = Op(lowlevel.IORING_OP_NOP)
        with ringtrio.move_on_after(100):
            assert await lowlevel.submit_and_wait(op) == (0, 0)
            assert op.linked  # the deadline rode along as a linked timeout
        assert await lowlevel.submit_and_wait(op) == (0, 0)
        assert not op.linked

    Runner._submit_park = counting  # type: ignore[method-assign]
    gc.disable()
    try:
        ringtrio.run(main)
    finally:
        gc.enable()
        Runner._submit_park = original  # type: ignore[method-assign]
    if os.environ.get("RINGTRIO_NO_SPEEDUPS"):
        assert python_calls == [False] * 5 + [True, False]
    else:
        # Only the op with a deadline to compute took the Python path.
        assert python_calls == [True]


def test_submit_park_parks_on_the_ops_abort_and_leaves_pending_cancels_to_python() -> None:
    """What a task waiting in submit_and_wait parks on is its op's bound
    ``_abort`` (the task tree finds the op through it), a subclass's own
    ``_abort`` if it has one; a task already cancelled gets Cancelled at the
    checkpoint and its op is never submitted (submit_park leaves it to the
    Python path, which delivers it)."""
    aborted: list[str] = []

    class Op(lowlevel.RingOp):
        __slots__ = ()

    class OwnAbort(lowlevel.RingOp):
        __slots__ = ()

        def _abort(self, raise_cancel: Any) -> Any:
            aborted.append("own")
            return super()._abort(raise_cancel)  # type: ignore[misc]

    async def main() -> None:
        r, w = os.pipe()
        try:
            for cls in (lowlevel.RingOp, Op, OwnAbort):
                # (A read of an empty pipe: it waits until cancelled.)
                op = cls(lowlevel.IORING_OP_READ, r, memoryview(bytearray(8)), 8)
                parked: list[bool] = []

                async def reader(task_status: Any = ringtrio.TASK_STATUS_IGNORED) -> None:
                    task_status.started(lowlevel.current_task())
                    with pytest.raises(ringtrio.Cancelled):
                        await lowlevel.submit_and_wait(op)
                    parked.append(True)

                async with ringtrio.open_nursery() as nursery:
                    task = await nursery.start(reader)
                    await ringtrio.testing.wait_all_tasks_blocked()
                    abort = task._abort_func
                    assert abort.__self__ is op
                    assert abort.__func__ is cls._abort  # type: ignore[attr-defined]
                    nursery.cancel_scope.cancel()
                assert parked == [True]
            assert aborted == ["own"]
            # Already cancelled: Cancelled at the checkpoint, nothing submitted.
            op = lowlevel.RingOp(lowlevel.IORING_OP_NOP)
            before = lowlevel.current_statistics().io_statistics.sqes_submitted
            with ringtrio.CancelScope() as scope:
                scope.cancel()
                with pytest.raises(ringtrio.Cancelled):
                    await lowlevel.submit_and_wait(op)
            assert op.token == 0 and op.task is None
            await lowlevel.checkpoint()
            assert lowlevel.current_statistics().io_statistics.sqes_submitted == before
        finally:
            os.close(r)
            os.close(w)

    ringtrio.run(main)


def test_no_task_is_current_between_passes() -> None:
    """After a pass's steps -- run to their end in C, or ending with one the
    Python step takes -- no task is current: a run_sync_soon callback (run
    at the start of the next pass) is outside every task, as in trio."""
    seen: list[bool] = []

    def callback() -> None:
        try:
            lowlevel.current_task()
        except RuntimeError:
            seen.append(True)
        else:
            seen.append(False)

    async def main() -> None:
        token = lowlevel.current_trio_token()

        async def stepper(cancelled: bool) -> None:
            for _ in range(20):
                token.run_sync_soon(callback)
                with ringtrio.CancelScope() as scope:
                    if cancelled:
                        # (Resumed by the Python step: a cancel to throw in.)
                        scope.cancel()
                    await lowlevel.checkpoint()

        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(stepper, False)
            nursery.start_soon(stepper, True)
        await lowlevel.checkpoint()

    ringtrio.run(main)
    assert seen == [True] * 40
