"""run_process, Process and lowlevel.open_process.

Most scenarios run under trio and under ringtrio and must observe the same
thing (``same_under_both``); they restate trio's own test_subprocess.py
scenarios and its documentation.  The ring-specific ones -- which op waits
for the child, many children at once with no zombie and no fd left, the
fallbacks -- run under ringtrio only.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from types import ModuleType
from typing import Any

import pytest
import trio

import ringtrio
from ringtrio import _subprocess
from ringtrio._core._ring import IORING_OP_POLL_ADD, IORING_OP_WAITID

from _differential import same_under_both

LIBS = [trio, ringtrio]


def python(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", "import sys; " + code]


EXIT_TRUE = python("sys.exit(0)")
EXIT_FALSE = python("sys.exit(1)")
CAT = python("sys.stdout.buffer.write(sys.stdin.buffer.read())")
COPY_AND_REVERSE = python(
    "data = sys.stdin.buffer.read(); sys.stdout.buffer.write(data); sys.stderr.buffer.write(data[::-1])"
)


def SLEEP(seconds: int) -> list[str]:
    return ["sleep", str(seconds)]


def count_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def status(proc: Any) -> str:
    """repr(proc) without the library's name."""
    return repr(proc).split(" ", 1)[1]


@asynccontextmanager
async def open_then_kill(lib: ModuleType, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
    proc = await lib.lowlevel.open_process(*args, **kwargs)
    try:
        yield proc
    finally:
        proc.kill()
        await proc.wait()


@asynccontextmanager
async def run_in_nursery(lib: ModuleType, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
    async with lib.open_nursery() as nursery:
        kwargs.setdefault("check", False)
        proc = await nursery.start(partial(lib.run_process, *args, **kwargs))
        yield proc
        nursery.cancel_scope.cancel()


BACKGROUND = pytest.mark.parametrize("background", [open_then_kill, run_in_nursery], ids=["open_process", "run_process"])


# ------------------------------------------------------------ exit codes


@BACKGROUND
def test_exit_status_and_repr(background: Any) -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        seen = []
        for cmd in (EXIT_TRUE, EXIT_FALSE, python("sys.exit(42)")):
            async with background(lib, cmd) as proc:
                seen.append(await proc.wait())
            seen += [proc.returncode, proc.poll(), status(proc) == f"{cmd!r}: exited with status {proc.returncode}>"]
        return seen

    assert same_under_both(scenario) == [0, 0, 0, True, 1, 1, 1, True, 42, 42, 42, True]


@BACKGROUND
def test_returncode_is_always_current(background: Any) -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        async with background(lib, SLEEP(9999)) as p:
            seen = [p.returncode, "running" in repr(p)]
            p.kill()
            p._proc.wait()  # reaped behind the Process's back
            seen += [p.returncode, "exited" in repr(p), p._pidfd]
        return seen

    assert same_under_both(scenario) == [None, True, -signal.SIGKILL, True, None]


@BACKGROUND
def test_many_waiters_cancelled_then_real(background: Any) -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        async with background(lib, SLEEP(3600)) as proc:
            async with lib.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(proc.wait)
                await lib.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
            codes = []

            async def waiter() -> None:
                codes.append(await proc.wait())

            async with lib.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(waiter)
                await lib.testing.wait_all_tasks_blocked()
                proc.kill()
        return codes

    assert same_under_both(scenario) == [-signal.SIGKILL] * 3


@BACKGROUND
def test_signals_end_the_child(background: Any) -> None:
    async def scenario(lib: ModuleType) -> list[int]:
        codes = []
        for send in (
            lambda p: p.kill(),
            lambda p: p.terminate(),
            lambda p: p.send_signal(signal.SIGUSR1),
            lambda p: p.send_signal(signal.SIGHUP),
        ):
            async with background(lib, SLEEP(3600)) as proc:
                send(proc)
                codes.append(await proc.wait())
        return codes

    assert same_under_both(scenario) == [-signal.SIGKILL, -signal.SIGTERM, -signal.SIGUSR1, -signal.SIGHUP]


@BACKGROUND
def test_child_auto_reaped_when_sigchld_is_ignored(background: Any) -> None:
    # With SIGCHLD ignored the kernel reaps the child itself and waitpid
    # fails with ECHILD; like subprocess, the status is then 0.
    async def scenario(lib: ModuleType) -> tuple[int | None, bool]:
        old = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        try:
            async with background(lib, SLEEP(3600)) as proc:
                async with lib.open_nursery() as nursery:
                    nursery.start_soon(proc.wait)
                    await lib.testing.wait_all_tasks_blocked()
                    proc.kill()
                    nursery.cancel_scope.deadline = lib.current_time() + 30
            return proc.returncode, nursery.cancel_scope.cancelled_caught
        finally:
            signal.signal(signal.SIGCHLD, old)

    assert same_under_both(scenario) == (0, False)


def test_reaped_by_poll_wakes_a_waiter() -> None:
    # A waiter is parked on the child; another task reaps it with poll()
    # without yielding in between.  The waiter must still wake up.
    async def scenario(lib: ModuleType) -> list[Any]:
        proc = await lib.lowlevel.open_process(SLEEP(9999))
        seen = []

        async def waiter() -> None:
            seen.append(await proc.wait())

        async with lib.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await lib.testing.wait_all_tasks_blocked()
            proc.terminate()
            with lib.testing.assert_no_checkpoints():
                proc._proc.wait()
                seen.append(proc.poll())
        return seen + [proc._pidfd]

    assert same_under_both(scenario) == [-signal.SIGTERM, -signal.SIGTERM, None]


# ------------------------------------------------------------------ pipes


@BACKGROUND
def test_three_pipes(background: Any) -> None:
    msg = b"the quick brown fox jumps over the lazy dog"

    async def scenario(lib: ModuleType) -> tuple[bytes, bytes, int]:
        out: dict[str, bytes] = {}
        async with background(
            lib, COPY_AND_REVERSE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc:

            async def feed() -> None:
                await proc.stdin.send_all(msg)
                await proc.stdin.aclose()

            async def collect(name: str, stream: Any) -> None:
                data = bytearray()
                async for chunk in stream:
                    data += chunk
                out[name] = bytes(data)

            async with lib.open_nursery() as nursery:
                nursery.start_soon(feed)
                nursery.start_soon(collect, "out", proc.stdout)
                nursery.start_soon(collect, "err", proc.stderr)
            code = await proc.wait()
        return out["out"], out["err"], code

    assert same_under_both(scenario) == (msg, msg[::-1], 0)


INTERACTIVE = python(
    "idx = 0\n"
    "while True:\n"
    "    line = sys.stdin.readline()\n"
    "    if line == '': break\n"
    "    n = int(line.strip())\n"
    "    print(str(idx * 2) * n)\n"
    "    print(str(idx * 2 + 1) * n * 2, file=sys.stderr)\n"
    "    idx += 1\n"
)


@BACKGROUND
def test_interactive_back_and_forth(background: Any) -> None:
    # A conversation: each request line gets an answer on stdout and on
    # stderr; an incomplete request gets none until its newline arrives.
    async def scenario(lib: ModuleType) -> list[Any]:
        log: list[Any] = []
        async with background(
            lib, INTERACTIVE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc:

            async def expect(idx: int, n: int) -> None:
                async def drain(stream: Any, count: int, digit: int) -> None:
                    while count > 0:
                        got = await stream.receive_some(count)
                        assert got == str(digit).encode() * len(got)
                        count -= len(got)
                    assert await stream.receive_some(1) == b"\n"

                async with lib.open_nursery() as nursery:
                    nursery.start_soon(drain, proc.stdout, n, idx * 2)
                    nursery.start_soon(drain, proc.stderr, n * 2, idx * 2 + 1)
                log.append(("answered", idx, n))

            await proc.stdin.send_all(b"12")
            await proc.stdin.send_all(b"345\n")
            await expect(0, 12345)
            await proc.stdin.send_all(b"100\n200\n")
            await expect(1, 100)
            await expect(2, 200)
            await proc.stdin.send_all(b"0\n")
            await expect(3, 0)
            await proc.stdin.send_all(b"999999")
            with lib.move_on_after(0.1) as scope:
                await expect(4, 0)
            log.append(("no answer to half a line", scope.cancelled_caught))
            await proc.stdin.send_all(b"\n")
            await expect(4, 999999)
            await proc.stdin.aclose()
            log.append((await proc.stdout.receive_some(1), await proc.stderr.receive_some(1)))
            log.append(await proc.wait())
        return log

    assert same_under_both(scenario)[-4:] == [
        ("no answer to half a line", True),
        ("answered", 4, 999999),
        (b"", b""),
        0,
    ]


@BACKGROUND
def test_stderr_into_stdout(background: Any) -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        seen: list[Any] = []
        async with background(
            lib, COPY_AND_REVERSE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        ) as proc:
            seen += [proc.stdio is not None, proc.stdout is not None, proc.stderr]
            await proc.stdio.send_all(b"1234")
            await proc.stdio.send_eof()
            out = bytearray()
            while chunk := await proc.stdio.receive_some(16):
                out += chunk
            seen.append(bytes(out))
        # stderr=STDOUT with stdout not redirected: both go to our stdout.
        async with background(lib, CAT, stdin=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
            seen += [proc.stdout, proc.stderr]
            await proc.stdin.aclose()
            seen.append(await proc.wait())
        # ... and into an fd of ours.
        r, w = os.pipe()
        try:
            async with background(
                lib, COPY_AND_REVERSE, stdin=subprocess.PIPE, stdout=w, stderr=subprocess.STDOUT
            ) as proc:
                os.close(w)
                seen += [proc.stdio, proc.stdout, proc.stderr]
                await proc.stdin.send_all(b"1234")
                await proc.stdin.aclose()
                seen += [await proc.wait(), os.read(r, 4096), os.read(r, 4096)]
        finally:
            os.close(r)
        return seen

    assert same_under_both(scenario) == [
        True, True, None, b"12344321",
        None, None, 0,
        None, None, None, 0, b"12344321", b"",
    ]  # fmt: skip


# -------------------------------------------------------------- run_process


def test_run_process_feeds_and_captures() -> None:
    data = random.Random(3).randbytes(2**18)

    async def scenario(lib: ModuleType) -> list[Any]:
        seen = []
        for cmd, kwargs in (
            (CAT, dict(stdin=data, capture_stdout=True, capture_stderr=True)),
            (CAT, dict(capture_stdout=True)),
            (COPY_AND_REVERSE, dict(stdin=bytearray(data), capture_stdout=True, capture_stderr=True)),
            (COPY_AND_REVERSE, dict(stdin=memoryview(b"1234"), capture_stdout=True, stderr=subprocess.STDOUT)),
            (CAT, dict(stdin=subprocess.DEVNULL, capture_stdout=True)),
        ):
            result = await lib.run_process(cmd, **kwargs)
            seen.append((result.args == cmd, result.returncode, result.stdout, result.stderr))
        return seen

    assert same_under_both(scenario) == [
        (True, 0, data, b""),
        (True, 0, b"", None),
        (True, 0, data, data[::-1]),
        (True, 0, b"12344321", None),
        (True, 0, b"", None),
    ]


def test_run_process_bad_arguments() -> None:
    async def scenario(lib: ModuleType) -> list[tuple[str, str]]:
        seen = []
        for kwargs in (
            dict(stdin="oh no, it's text"),
            dict(stdin=subprocess.PIPE),
            dict(stdout=subprocess.PIPE),
            dict(stderr=subprocess.PIPE),
            dict(capture_stdout=True, stdout=subprocess.DEVNULL),
            dict(capture_stderr=True, stderr=None),
        ):
            try:
                await lib.run_process(CAT, **kwargs)
                seen.append(("ok", ""))
            except (UnicodeError, ValueError) as exc:
                seen.append((type(exc).__name__, str(exc)))
        return seen

    seen = same_under_both(scenario)
    assert [kind for kind, _ in seen] == ["UnicodeError"] + ["ValueError"] * 5
    assert seen[2][1] == (
        "stdout=subprocess.PIPE is only valid with nursery.start, since that's the only way to "
        "access the pipe"
    )


def test_open_process_bad_arguments() -> None:
    async def scenario(lib: ModuleType) -> list[str]:
        seen = []
        for args, kwargs in (
            (["ls"], dict(encoding="utf-8")),
            (["ls"], dict(text=True)),
            (["ls"], dict(bufsize=1)),
            (["ls"], dict(shell=True)),
            ("ls", dict(shell=False)),
            ("ls", {}),
        ):
            try:
                proc = await lib.lowlevel.open_process(args, **kwargs)
                await proc.wait()
                seen.append("started")
            except TypeError as exc:
                seen.append("unbuffered byte streams" in str(exc) and "option is not supported" in str(exc))
        return seen

    assert same_under_both(scenario) == [True, True, True, False, False, False]


def test_check_errors_carry_the_output() -> None:
    cmd = python("sys.stdout.buffer.write(b'out'); sys.stderr.buffer.write(b'test\\n'); sys.exit(3)")

    async def scenario(lib: ModuleType) -> list[Any]:
        seen: list[Any] = []
        for kwargs in (
            dict(stdin=subprocess.DEVNULL, capture_stderr=True),
            dict(capture_stdout=True, capture_stderr=True),
            dict(capture_stdout=True, stderr=subprocess.STDOUT),
            dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ):
            try:
                await lib.run_process(cmd, **kwargs)
            except subprocess.CalledProcessError as exc:
                seen.append((exc.cmd == cmd, exc.returncode, exc.stdout, exc.stderr, exc.output is exc.stdout))
        result = await lib.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
        seen.append((result.returncode, result.stdout, result.stderr))
        return seen

    assert same_under_both(scenario) == [
        (True, 3, None, b"test\n", True),
        (True, 3, b"out", b"test\n", True),
        (True, 3, b"outtest\n", None, True),
        (True, 3, None, None, True),
        (3, b"out", b"test\n"),
    ]


def test_child_that_stops_reading_is_not_an_error() -> None:
    async def scenario(lib: ModuleType) -> tuple[int, Any, Any]:
        result = await lib.run_process(python("sys.stdin.close()"), stdin=b"x" * 131072)
        return result.returncode, result.stdout, result.stderr

    assert same_under_both(scenario) == (0, None, None)


def test_started_in_a_nursery_hands_back_the_process() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        seen: list[Any] = []
        async with lib.open_nursery() as nursery:
            proc = await nursery.start(
                partial(lib.run_process, CAT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            )
            seen.append(type(proc).__name__)
            await proc.stdin.send_all(b"ping")
            await proc.stdin.aclose()
            seen.append(await proc.stdout.receive_some(10))
        seen.append(proc.returncode)
        # check=True in the background: the error leaves through the nursery.
        try:
            async with lib.open_nursery() as nursery:
                proc = await nursery.start(lib.run_process, EXIT_FALSE)
        except BaseExceptionGroup as group:
            seen.append([type(e).__name__ for e in group.exceptions])
        seen.append(proc.returncode)
        return seen

    assert same_under_both(scenario) == ["Process", b"ping", 0, ["CalledProcessError"], 1]


def test_spawn_errors_and_no_fd_left() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        seen: list[Any] = []
        before = count_fds()
        await lib.run_process(EXIT_TRUE)
        seen.append(count_fds() - before)
        try:
            await lib.run_process(EXIT_FALSE, capture_stdout=True, capture_stderr=True)
        except subprocess.CalledProcessError:
            seen.append(count_fds() - before)
        for cmd in (["/dev/fd/0"], ["/nonexistent/ringtrio-test"]):
            try:
                await lib.run_process(cmd, stdin=b"x", capture_stdout=True, capture_stderr=True)
            except OSError as exc:
                seen.append((type(exc).__name__, count_fds() - before))
        return seen

    assert same_under_both(scenario) == [0, 0, ("PermissionError", 0), ("FileNotFoundError", 0)]


# ----------------------------------------------------------- cancellation


def test_cancel_mid_run_terminates_and_waits() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        procs: list[Any] = []
        seen: list[Any] = []
        with lib.CancelScope() as scope:
            async with lib.open_nursery() as nursery:
                for _ in range(3):
                    procs.append(await nursery.start(lib.run_process, SLEEP(3600)))
                # The deadline is set once all three run: a loaded machine
                # slow to spawn them must not cancel a start() instead.
                scope.deadline = lib.current_time() + 0.1
                await lib.sleep_forever()
        seen.append(scope.cancelled_caught)
        # Every child has exited -- and been reaped -- before the scope ends.
        seen.append([p.returncode for p in procs])
        with lib.CancelScope() as cs:
            cs.cancel()
            await lib.run_process(EXIT_TRUE)
        seen.append(cs.cancelled_caught)
        return seen

    assert same_under_both(scenario) == [True, [-signal.SIGTERM] * 3, True]


def test_custom_deliver_cancel_is_cancelled_when_the_child_exits() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        seen: list[Any] = []

        async def deliver(proc: Any) -> None:
            seen.append("deliver called")
            proc.send_signal(signal.SIGUSR1)
            try:
                await lib.sleep_forever()
            finally:
                seen.append(("child gone when deliver is cancelled", proc.returncode))

        async with lib.open_nursery() as nursery:
            nursery.start_soon(partial(lib.run_process, SLEEP(9999), deliver_cancel=deliver))
            await lib.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        return seen

    assert same_under_both(scenario) == [
        "deliver called",
        ("child gone when deliver is cancelled", -signal.SIGUSR1),
    ]


def test_failing_deliver_cancel() -> None:
    async def scenario(lib: ModuleType) -> Any:
        async def deliver(proc: Any) -> None:
            proc.terminate()
            raise ValueError("foo")

        def shape(exc: BaseException) -> Any:
            if isinstance(exc, BaseExceptionGroup):
                return [shape(e) for e in exc.exceptions]
            return (type(exc).__name__, str(exc))

        try:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(partial(lib.run_process, SLEEP(9999), deliver_cancel=deliver))
                await lib.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            return shape(group)
        return "no error"

    # Our nursery's group around run_process's own nursery's group.
    assert same_under_both(scenario) == [[("ValueError", "foo")]]


def test_failed_terminate_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        original = lib.Process.terminate

        def broken(self: Any) -> None:
            original(self)
            raise OSError("whoops")

        monkeypatch.setattr(lib.Process, "terminate", broken)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                async with lib.open_nursery() as nursery:
                    nursery.start_soon(lib.run_process, SLEEP(9999))
                    await lib.testing.wait_all_tasks_blocked()
                    nursery.cancel_scope.cancel()
        finally:
            monkeypatch.undo()
        return [(w.category.__name__, "whoops" in str(w.message)) for w in caught]

    assert same_under_both(scenario) == [("RuntimeWarning", True)]


@pytest.mark.parametrize("lib", LIBS, ids=["trio", "ringtrio"])
def test_sigterm_ignored_escalates_to_sigkill(lib: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default deliver_cancel waits 5 s (virtual time here) after SIGTERM.
    monkeypatch.setattr(lib.Process, "terminate", lambda self: None)

    async def main() -> tuple[list[str], list[int]]:
        procs = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async with lib.open_nursery() as nursery:
                procs.append(await nursery.start(lib.run_process, SLEEP(9999)))
                nursery.cancel_scope.cancel()
        return [str(w.message).split(" ignored ")[1][:18] for w in caught], [p.returncode for p in procs]

    clock = lib.testing.MockClock(autojump_threshold=0)
    assert lib.run(main, clock=clock) == (["SIGTERM for 5 seco"], [-signal.SIGKILL])


def test_no_public_constructor_no_subclass() -> None:
    async def scenario(lib: ModuleType) -> list[str]:
        seen = []
        try:
            lib.Process(None, None, None, None)
        except TypeError:
            seen.append("no constructor")
        try:

            class Sub(lib.Process):  # type: ignore[misc]
                pass

        except TypeError:
            seen.append("no subclass")
        return seen

    assert same_under_both(scenario) == ["no constructor", "no subclass"]


# --------------------------------------------------------- ringtrio only

# The four ways to wait for a child: (pidfd tried, ring has WAITID) ->
# the op that waits (None: the worker-thread fallback).
WAYS = {
    "waitid-pidfd": (True, True, IORING_OP_WAITID),
    "poll-pidfd": (True, False, IORING_OP_POLL_ADD),
    "waitid-pid": (False, True, IORING_OP_WAITID),
    "thread": (False, False, None),
}


@pytest.mark.parametrize("way", list(WAYS))
def test_every_way_of_waiting(way: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pidfd, waitid, expected_op = WAYS[way]
    monkeypatch.setattr(_subprocess, "can_try_pidfd_open", pidfd)
    monkeypatch.setattr(_subprocess, "_ring_has_waitid", lambda: waitid)
    used: list[int] = []
    real = _subprocess.submit_and_wait

    def spy(op: ringtrio.lowlevel.RingOp) -> Any:
        used.append(op.opcode)
        return real(op)

    monkeypatch.setattr(_subprocess, "submit_and_wait", spy)

    async def main() -> list[Any]:
        seen: list[Any] = []
        proc = await ringtrio.lowlevel.open_process(SLEEP(3600))
        seen.append(proc._pidfd is not None)
        async with ringtrio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(proc.wait)
            await ringtrio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        async with ringtrio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(proc.wait)
            await ringtrio.testing.wait_all_tasks_blocked()
            proc.kill()
        seen += [proc.returncode, proc._pidfd]
        result = await ringtrio.run_process(CAT, stdin=b"data", capture_stdout=True)
        seen.append(result.stdout)
        # Auto-reaped by the kernel (SIGCHLD ignored): the wait still ends.
        old = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        try:
            proc = await ringtrio.lowlevel.open_process(SLEEP(3600))
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(proc.wait)
                await ringtrio.testing.wait_all_tasks_blocked()
                proc.kill()
            seen.append(proc.returncode)
        finally:
            signal.signal(signal.SIGCHLD, old)
        return seen

    assert ringtrio.run(main) == [pidfd, -signal.SIGKILL, None, b"data", 0]
    assert set(used) == ({expected_op} if expected_op is not None else set())


def test_waitid_is_what_this_kernel_uses() -> None:
    # The kernel these tests run on (6.18) has IORING_OP_WAITID: the default
    # way must be the ring op on the pidfd, not a fallback.
    async def main() -> tuple[bool, bool]:
        proc = await ringtrio.lowlevel.open_process(EXIT_TRUE)
        has_pidfd = proc._pidfd is not None
        await proc.wait()
        return _subprocess._ring_has_waitid(), has_pidfd

    assert ringtrio.run(main) == (True, True)


def _assert_reaped(pids: list[int]) -> None:
    # Reaped children are not our children any more: waitpid says ECHILD.
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_200_concurrent_short_processes_leave_no_zombie_and_no_fd() -> None:
    async def main() -> list[int]:
        pids: list[int] = []
        codes: list[int] = []

        async def one(i: int) -> None:
            async with ringtrio.open_nursery() as nursery:
                proc = await nursery.start(
                    partial(ringtrio.run_process, ["sh", "-c", f"exit {i % 7}"], check=False)
                )
                pids.append(proc.pid)
            codes.append(proc.returncode)

        async with ringtrio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(one, i)
        assert sorted(codes) == sorted(i % 7 for i in range(200))
        return pids

    before = count_fds()
    pids = ringtrio.run(main)
    assert len(set(pids)) == 200
    _assert_reaped(pids)
    assert count_fds() == before


def test_cancelling_many_running_processes_reaps_them_all() -> None:
    async def main() -> list[Any]:
        procs: list[Any] = []
        with ringtrio.CancelScope() as scope:
            async with ringtrio.open_nursery() as nursery:
                for _ in range(50):
                    procs.append(
                        await nursery.start(
                            partial(
                                ringtrio.run_process,
                                ["cat"],
                                stdin=subprocess.PIPE,
                                capture_stdout=True,
                                deliver_cancel=_kill,
                            )
                        )
                    )
                scope.cancel()
        for proc in procs:
            await proc.stdin.aclose()  # ours: run_process only closes what it made
        return procs

    before = count_fds()
    procs = ringtrio.run(main)
    assert [p.returncode for p in procs] == [-signal.SIGKILL] * 50
    _assert_reaped([p.pid for p in procs])
    assert count_fds() == before


async def _kill(proc: Any) -> None:
    proc.kill()


def test_process_aclose() -> None:
    # Not in trio 0.35: close the pipes, wait; cancelled meanwhile -> kill.
    async def main() -> list[Any]:
        seen: list[Any] = []
        proc = await ringtrio.lowlevel.open_process(CAT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        await proc.aclose()  # cat sees EOF and exits
        seen += [proc.returncode, proc.stdin.fileno(), proc.stdout.fileno()]
        proc = await ringtrio.lowlevel.open_process(SLEEP(3600))
        with ringtrio.move_on_after(0.1) as scope:
            await proc.aclose()
        seen += [scope.cancelled_caught, proc.returncode]
        return seen

    assert ringtrio.run(main) == [0, -1, -1, True, -signal.SIGKILL]


def test_cancelled_while_spawning_still_reaps_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cancel arrives while Popen runs in its worker thread: the spawn
    # cannot be undone, so run_process must kill and reap what it made.
    made: list[Any] = []
    real_create = _subprocess.Process._create

    def spy(*args: Any) -> Any:
        made.append(real_create(*args))
        return made[-1]

    monkeypatch.setattr(_subprocess.Process, "_create", spy)

    async def main() -> bool:
        with ringtrio.CancelScope() as scope:
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(partial(ringtrio.run_process, SLEEP(3600), deliver_cancel=_kill))
                await ringtrio.testing.wait_all_tasks_blocked()  # in the thread
                scope.cancel()
        return scope.cancelled_caught

    assert ringtrio.run(main) is True
    assert [p.returncode for p in made] == [-signal.SIGKILL]
    _assert_reaped([made[0].pid])


def test_pidfd_outlives_the_wait_op_that_names_it() -> None:
    # poll() reaps the child while a waiter's op is in flight: the pidfd
    # number stays ours until that op has completed, then it is closed.
    async def main() -> list[str]:
        seen = []
        proc = await ringtrio.lowlevel.open_process(SLEEP(3600))
        pidfd = proc._pidfd
        assert pidfd is not None

        async def waiter() -> None:
            await proc.wait()
            seen.append("waiter woke")

        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await ringtrio.testing.wait_all_tasks_blocked()
            proc.kill()
            proc._proc.wait()
            proc.poll()
            os.fstat(pidfd)
            seen.append("pidfd still open")
        try:
            os.fstat(pidfd)
        except OSError:
            seen.append("pidfd closed")
        return seen

    assert ringtrio.run(main) == ["pidfd still open", "waiter woke", "pidfd closed"]


def test_an_internal_error_leaves_as_a_group(monkeypatch: pytest.MonkeyPatch) -> None:
    # trio's regression test: run_process's supervision code itself fails
    # (here: open_process returned nonsense).  Both the body's error and the
    # cancel path's error leave, as one group.
    async def nonsense(*args: object, **kwargs: object) -> str:
        return "oops"

    async def scenario(lib: ModuleType) -> list[str]:
        monkeypatch.setattr(lib._subprocess, "_open_process", nonsense)
        try:
            await lib.run_process(EXIT_TRUE, capture_stdout=True)
        except BaseExceptionGroup as group:
            return sorted(type(e).__name__ for e in group.exceptions)
        finally:
            monkeypatch.undo()
        return []

    assert same_under_both(scenario) == ["AttributeError", "AttributeError"]
