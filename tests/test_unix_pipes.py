"""lowlevel.FdStream: pipes (and other pollable fds) as a Stream.

Most scenarios run under trio and ringtrio (the ``lib`` fixture) and must
observe the same thing: they restate trio's own test_unix_pipes.py
scenarios and the FdStream documentation.  The ring-specific ones (what a
cancelled READ does, when the fd number is released, the poll fallback)
run under ringtrio only.
"""

from __future__ import annotations

import errno
import os
import random
import select
import time
from types import ModuleType
from typing import Any

import pytest

import ringtrio
from ringtrio import _unix_pipes
from ringtrio.lowlevel import FdStream

from _differential import lib  # noqa: F401


def count_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def make_pipe(lib: ModuleType) -> tuple[Any, Any]:
    """(send stream, receive stream) over one new pipe."""
    r, w = os.pipe()
    return lib.lowlevel.FdStream(w), lib.lowlevel.FdStream(r)


def clog(send_fd: int) -> None:
    """Fill the pipe completely.  Writes bigger than PIPE_BUF: a smaller one
    is all-or-nothing and could fail while some room is left."""
    try:
        for _ in range(10_000):
            os.write(send_fd, b"x" * select.PIPE_BUF * 2)
    except BlockingIOError:
        return
    raise AssertionError("the pipe never filled up")


def make_clogged_pipe(lib: ModuleType) -> tuple[Any, Any]:
    s, r = make_pipe(lib)
    clog(s.fileno())
    return s, r


# ---------------------------------------------------------------- basics


def test_send_all_reaches_the_raw_fd(lib: ModuleType) -> None:
    async def main() -> bytes:
        r, w = os.pipe()
        try:
            async with lib.lowlevel.FdStream(w) as send:
                assert send.fileno() == w
                await send.send_all(b"123")
                await send.send_all(bytearray(b"45"))
                await send.send_all(memoryview(b"6789")[1:])
                return os.read(r, 100)
        finally:
            os.close(r)

    assert lib.run(main) == b"12345789"


def test_receive_some_reads_the_raw_fd(lib: ModuleType) -> None:
    async def main() -> list[bytes]:
        r, w = os.pipe()
        try:
            async with lib.lowlevel.FdStream(r) as recv:
                assert recv.fileno() == r
                os.write(w, b"123")
                got = [await recv.receive_some(8)]
                os.write(w, b"4567")
                got.append(await recv.receive_some(2))
                got.append(await recv.receive_some())
                os.close(w)
                got.append(await recv.receive_some())
                return got
        finally:
            try:
                os.close(w)
            except OSError:
                pass

    assert lib.run(main) == [b"123", b"45", b"67", b""]


def test_a_megabyte_through_a_pipe(lib: ModuleType) -> None:
    count = 2**20
    payload = random.Random(5).randbytes(count)

    async def main() -> bytes:
        send, recv = make_pipe(lib)
        got = bytearray()

        async def sender() -> None:
            await send.send_all(payload)
            await send.aclose()

        async def reader() -> None:
            while True:
                chunk = await recv.receive_some(4096)
                if not chunk:
                    return
                got.extend(chunk)

        async with lib.open_nursery() as nursery:
            nursery.start_soon(sender)
            nursery.start_soon(reader)
        await recv.aclose()
        return bytes(got)

    assert lib.run(main) == payload


def test_bad_arguments(lib: ModuleType) -> None:
    async def main() -> list[str]:
        seen = []
        with pytest.raises(TypeError):
            lib.lowlevel.FdStream(None)
        with pytest.raises(TypeError):
            lib.lowlevel.FdStream("3")
        r, w = os.pipe()
        os.close(w)
        async with lib.lowlevel.FdStream(r) as s:
            for bad in (0, -1):
                with pytest.raises(ValueError) as info:
                    await s.receive_some(bad)
                seen.append(str(info.value))
            with pytest.raises(TypeError) as tinfo:
                await s.receive_some(1.5)
            seen.append(str(tinfo.value))
        return seen

    assert lib.run(main) == ["max_bytes must be integer >= 1"] * 3


def test_not_an_open_fd_raises_oserror() -> None:
    # (ringtrio only: trio raises the same, then its half-built object
    # complains from __del__.)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        FdStream(r)
    assert info.value.errno == errno.EBADF


def test_no_send_eof(lib: ModuleType) -> None:
    # An FdStream is a Stream, not a HalfCloseableStream: closing it is the EOF.
    assert not hasattr(lib.lowlevel.FdStream, "send_eof")
    assert issubclass(lib.lowlevel.FdStream, lib.abc.Stream)
    assert not issubclass(lib.lowlevel.FdStream, lib.abc.HalfCloseableStream)


def test_cannot_subclass(lib: ModuleType) -> None:
    with pytest.raises(TypeError):

        class Sub(lib.lowlevel.FdStream):  # type: ignore[misc]
            pass


# ------------------------------------------------------------- closing


def test_dropped_stream_closes_its_fd(lib: ModuleType) -> None:
    async def main() -> tuple[int, int]:
        send, recv = make_pipe(lib)
        return send.fileno(), recv.fileno()

    fds = lib.run(main)  # the streams are garbage once main returns
    for fd in fds:
        with pytest.raises(OSError) as info:
            os.fstat(fd)
        assert info.value.errno == errno.EBADF


def test_async_with_closes_and_fileno_becomes_minus_one(lib: ModuleType) -> None:
    async def main() -> tuple[list[int], list[int]]:
        send, recv = make_pipe(lib)
        old = [send.fileno(), recv.fileno()]
        async with send, recv:
            pass
        return old, [send.fileno(), recv.fileno()]

    old, now = lib.run(main)
    assert now == [-1, -1]
    for fd in old:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_operations_on_a_closed_stream(lib: ModuleType) -> None:
    async def main() -> list[str]:
        send, recv = make_pipe(lib)
        await send.aclose()
        await send.aclose()  # twice is fine
        recv.close()
        seen = []
        for call in (
            lambda: send.send_all(b"x"),
            lambda: send.send_all(b""),
            lambda: send.wait_send_all_might_not_block(),
            lambda: recv.receive_some(1),
        ):
            try:
                await call()
                seen.append("ok")
            except lib.ClosedResourceError:
                seen.append("ClosedResourceError")
        return seen

    assert lib.run(main) == ["ClosedResourceError"] * 4


def test_second_close_leaves_a_reused_fd_number_alone(lib: ModuleType) -> None:
    # Closing an already-closed stream must not touch a new file that got
    # its old number (trio's "misdirected aclose" regression).
    async def main() -> bytes:
        send, recv = make_pipe(lib)
        old = recv.fileno()
        await send.aclose()
        await recv.aclose()
        r2, w2 = os.pipe()
        if r2 != old:
            os.dup2(r2, old)
            os.close(r2)
        async with lib.lowlevel.FdStream(old) as recv2:
            result = []

            async def reader() -> None:
                result.append(await recv2.receive_some(10))

            async with lib.open_nursery() as nursery:
                nursery.start_soon(reader)
                await lib.testing.wait_all_tasks_blocked()
                await recv.aclose()  # the old object: must do nothing
                await lib.testing.wait_all_tasks_blocked()
                os.write(w2, b"still here")
                os.close(w2)
            return result[0]

    assert lib.run(main) == b"still here"


# (which call blocks, on a clogged pipe?, what then happens, to which end)
BLOCKED_THEN = {
    "receive, then close it": ("receive_some", False, "close", "recv"),
    "send, then close it": ("send_all", True, "close", "send"),
    "wait writable, then close it": ("wait_send_all_might_not_block", True, "close", "send"),
    "send, then the reader goes": ("send_all", True, "close", "recv"),
    "receive, then data": ("receive_some", False, "write", "send"),
}


@pytest.mark.parametrize("case", list(BLOCKED_THEN))
def test_what_a_blocked_call_sees(lib: ModuleType, case: str) -> None:
    call, clogged, action, target = BLOCKED_THEN[case]

    async def main() -> str:
        send, recv = make_clogged_pipe(lib) if clogged else make_pipe(lib)
        blocked = recv if call == "receive_some" else send
        args = {"receive_some": (10,), "send_all": (b"y" * 100,)}.get(call, ())
        outcome = []

        async def blocker() -> None:
            try:
                result = await getattr(blocked, call)(*args)
                outcome.append(repr(result))
            except (lib.ClosedResourceError, lib.BrokenResourceError) as exc:
                outcome.append(type(exc).__name__)

        async with lib.open_nursery() as nursery:
            nursery.start_soon(blocker)
            await lib.testing.wait_all_tasks_blocked()
            end = send if target == "send" else recv
            if action == "close":
                await end.aclose()
            else:
                await end.send_all(b"data")
        await send.aclose()
        await recv.aclose()
        return outcome[0]

    assert lib.run(main) == {
        "receive, then close it": "ClosedResourceError",
        "send, then close it": "ClosedResourceError",
        "wait writable, then close it": "ClosedResourceError",
        "send, then the reader goes": "BrokenResourceError",
        "receive, then data": "b'data'",
    }[case]


def test_read_error_is_broken_resource_error(lib: ModuleType) -> None:
    # A read that fails with something other than EBADF: the fd turned into
    # a directory under the stream, so read() says EISDIR.
    async def main() -> tuple[str, str]:
        send, recv = make_pipe(lib)
        async with send, recv:
            dir_fd = os.open("/", os.O_DIRECTORY)
            try:
                os.dup2(dir_fd, recv.fileno())
                with pytest.raises(lib.BrokenResourceError) as info:
                    await recv.receive_some(10)
            finally:
                os.close(dir_fd)
        cause = info.value.__cause__
        return type(cause).__name__, str(getattr(cause, "errno", None))

    assert lib.run(main) == ("IsADirectoryError", str(errno.EISDIR))


def test_write_to_a_pipe_nobody_reads_is_broken(lib: ModuleType) -> None:
    async def main() -> list[str]:
        send, recv = make_pipe(lib)
        await recv.aclose()
        seen = []
        async with send:
            for _ in range(2):
                try:
                    await send.send_all(b"z" * 100)
                    seen.append("sent")
                except lib.BrokenResourceError:
                    seen.append("BrokenResourceError")
        return seen

    assert lib.run(main) == ["BrokenResourceError"] * 2


# ---------------------------------------------------- concurrency, modes


def test_concurrent_use_is_busy_resource_error(lib: ModuleType) -> None:
    async def main() -> list[str]:
        send, recv_end = make_clogged_pipe(lib)  # a sender that blocks
        send_end, recv = make_pipe(lib)  # a receiver that blocks
        seen = []

        async def run(call: Any) -> None:
            try:
                await call()
            except lib.BusyResourceError:
                seen.append("BusyResourceError")

        for first, second in (
            (lambda: recv.receive_some(10), lambda: recv.receive_some(10)),
            (lambda: send.send_all(b"a" * 10), lambda: send.send_all(b"b")),
            (lambda: send.send_all(b"a" * 10), lambda: send.wait_send_all_might_not_block()),
        ):
            async with lib.open_nursery() as nursery:
                nursery.start_soon(run, first)
                await lib.testing.wait_all_tasks_blocked()
                nursery.start_soon(run, second)
                await lib.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
        for stream in (send, recv_end, send_end, recv):
            await stream.aclose()
        return seen

    assert lib.run(main) == ["BusyResourceError"] * 3


@pytest.mark.parametrize("was_blocking", [True, False])
def test_blocking_mode_is_set_and_restored(lib: ModuleType, was_blocking: bool) -> None:
    # The mode belongs to the open file description: a dup of the fd sees it.
    async def main() -> list[bool]:
        r, w = os.pipe()
        os.set_blocking(r, was_blocking)
        watch = os.dup(r)
        try:
            seen = [os.get_blocking(watch)]
            stream = lib.lowlevel.FdStream(r)
            seen.append(os.get_blocking(watch))
            await stream.aclose()
            seen.append(os.get_blocking(watch))
            return seen
        finally:
            os.close(watch)
            os.close(w)

    assert lib.run(main) == [was_blocking, False, was_blocking]


def test_conformance_check_one_way_stream(lib: ModuleType) -> None:
    async def make() -> tuple[Any, Any]:
        return make_pipe(lib)

    async def make_clogged() -> tuple[Any, Any]:
        return make_clogged_pipe(lib)

    async def main() -> None:
        await lib.testing.check_one_way_stream(make, make_clogged)

    lib.run(main)


# --------------------------------------------------------- ringtrio only


def test_receive_with_data_there_returns_it_even_if_cancelled_meanwhile() -> None:
    # trio's shape for a receive that need not wait: checkpoint_if_cancelled,
    # take, cancel_shielded_checkpoint.  A cancel that arrives while the
    # receiver yields after taking does not throw the bytes away.
    async def main() -> tuple[list[bytes], bool, bytes]:
        send, recv = make_pipe(ringtrio)
        got: list[bytes] = []
        async with send, recv:
            os.write(send.fileno(), b"abc")
            with ringtrio.CancelScope() as cs:
                async with ringtrio.open_nursery() as nursery:
                    # Runs while the body yields inside receive_some.
                    nursery.start_soon(_cancel, cs)
                    got.append(await recv.receive_some())
                    # The cancellation is still there, for the next checkpoint.
                    await ringtrio.lowlevel.checkpoint()
                    got.append(b"unreachable")
            os.write(send.fileno(), b"def")
            return got, cs.cancelled_caught, await recv.receive_some()

    assert ringtrio.run(main) == ([b"abc"], True, b"def")


async def _cancel(cs: ringtrio.CancelScope) -> None:
    cs.cancel()


def test_cancelled_receives_lose_and_duplicate_nothing() -> None:
    # Every receive under a short random deadline, retried; the bytes that
    # come out are exactly the bytes that went in, in order.
    rng = random.Random(11)
    total = 300_000
    payload = rng.randbytes(total)

    async def main() -> tuple[bytes, int]:
        send, recv = make_pipe(ringtrio)
        got = bytearray()
        cancelled = 0

        async def sender() -> None:
            sent = 0
            while sent < total:
                n = rng.randrange(1, 20_000)
                await send.send_all(payload[sent : sent + n])
                sent += n
                if rng.random() < 0.3:
                    await ringtrio.sleep(rng.random() * 1e-3)
            await send.aclose()

        async def reader() -> None:
            nonlocal cancelled
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with ringtrio.move_on_after(rng.random() * 3e-4) as cs:
                    chunk = await recv.receive_some(rng.randrange(1, 30_000))
                    if not chunk:
                        return
                    got.extend(chunk)
                cancelled += cs.cancelled_caught

        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(sender)
            nursery.start_soon(reader)
        await recv.aclose()
        return bytes(got), cancelled

    got, cancelled = ringtrio.run(main)
    assert got == payload
    assert cancelled > 0  # the deadlines did interrupt waiting receives


def test_close_keeps_the_fd_number_until_the_read_ends() -> None:
    # An SQE queued for the next enter names the fd by number: the number
    # must not be reusable until the kernel has let go of the op.
    async def main() -> list[str]:
        send, recv = make_pipe(ringtrio)
        fd = recv.fileno()
        seen = []

        async def reader() -> None:
            try:
                await recv.receive_some(10)
            except ringtrio.ClosedResourceError:
                seen.append("ClosedResourceError")

        async with send:
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await ringtrio.testing.wait_all_tasks_blocked()
                recv.close()
                os.fstat(fd)  # still ours: no new file can take the number
                seen.append("still open after close()")
            try:
                os.fstat(fd)
            except OSError as exc:
                seen.append(errno.errorcode[exc.errno])
        return seen

    assert ringtrio.run(main) == ["still open after close()", "ClosedResourceError", "EBADF"]


def test_read_that_says_eagain_falls_back_to_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    # Older kernels answer -EAGAIN to a READ on a non-blocking tty instead of
    # waiting; RWF_NOWAIT makes this kernel answer the same for a pipe.
    monkeypatch.setattr(_unix_pipes, "_READ_FLAGS", os.RWF_NOWAIT)
    polls = []
    real_poll = FdStream._poll

    async def counting_poll(self: FdStream, fd: int, events: int) -> None:
        polls.append(events)
        await real_poll(self, fd, events)

    monkeypatch.setattr(FdStream, "_poll", counting_poll)

    async def main() -> bytes:
        send, recv = make_pipe(ringtrio)
        async with send, recv:

            async def late_writer() -> None:
                await ringtrio.testing.wait_all_tasks_blocked()
                await send.send_all(b"late")

            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(late_writer)
                return await recv.receive_some(100)

    assert ringtrio.run(main) == b"late"
    assert polls == [select.POLLIN]


def test_no_fd_left_behind() -> None:
    async def main() -> None:
        for _ in range(20):
            send, recv = make_pipe(ringtrio)

            async def reader() -> None:
                try:
                    await recv.receive_some(10)
                except ringtrio.ClosedResourceError:
                    pass

            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await ringtrio.testing.wait_all_tasks_blocked()
                recv.close()  # with a READ in flight
            await send.aclose()

    before = count_fds()
    ringtrio.run(main)
    assert count_fds() == before
