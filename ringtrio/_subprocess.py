"""Child processes: ``ringtrio.run_process``, ``ringtrio.Process`` and
``lowlevel.open_process``, with trio's names, signatures and rules.

The process is started by :class:`subprocess.Popen` (in a worker thread, as
trio does: fork/exec and the wait for the exec to succeed must not stall
the run).  Its pipes are :class:`~ringtrio.lowlevel.FdStream`\\ s.  Waiting
for it to exit is a ring operation -- no SIGCHLD handler, no thread per
child:

* ``IORING_OP_WAITID`` (Linux 6.7) on a pidfd (``P_PIDFD``) with
  ``WEXITED | WNOWAIT``: the completion says the child has exited without
  reaping it, so ``Popen`` reaps it itself and keeps its own state right;
* else ``IORING_OP_POLL_ADD`` on the pidfd: a pidfd is readable once the
  process has exited;
* else, with no pidfd (``pidfd_open`` refused, e.g. by a seccomp filter),
  ``IORING_OP_WAITID`` on the pid (``P_PID``: an unreaped child's pid
  cannot be reused);
* only with neither: one worker thread blocked in ``waitid`` per child, as
  trio does everywhere.

Whatever reaps the child (``wait``, ``poll``, ``returncode``) cancels a wait
op still in flight and closes the pidfd; a pidfd an op may still name is
closed once that op has completed.
"""

from __future__ import annotations

import errno
import math
import os
import select
import subprocess
import warnings
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

from ._abc import ReceiveStream, SendStream
from ._final import final
from ._core import (
    TASK_STATUS_IGNORED,
    BrokenResourceError,
    CancelScope,
    ClosedResourceError,
    RingOp,
    TaskStatus,
    cancel_ring_op,
    current_ring_features,
    open_nursery,
    sleep,
    spawn_system_task,
    submit_and_wait,
)
from ._core._ring import IORING_OP_POLL_ADD, IORING_OP_WAITID
from ._highlevel_generic import StapledStream
from ._sync import CapacityLimiter, Event, Lock
from ._threads import to_thread_run_sync
from ._unix_pipes import FdStream

if TYPE_CHECKING:
    import signal

__all__ = ["Process", "open_process", "run_process"]

StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]

# trio's name: whether to try pidfd_open at all.  A test sets it False to
# take the pid-based paths.
can_try_pidfd_open = True

_WAIT_OPTIONS: Final = os.WEXITED | os.WNOWAIT


class HasFileno(Protocol):
    """Anything with a file descriptor (``fileno()``)."""

    def fileno(self) -> int: ...


def _ring_has_waitid() -> bool:
    return current_ring_features().supports(IORING_OP_WAITID)


def _pidfd_open(pid: int) -> int | None:
    if not can_try_pidfd_open:
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        # Refused (a seccomp filter, an old kernel) or out of fds: the
        # pid-based ways to wait still work.
        return None


def _waitid_blocking(pid: int) -> None:
    # For the worker-thread fallback: block until the child has exited,
    # without reaping it (Popen does that).
    os.waitid(os.P_PID, pid, _WAIT_OPTIONS)


# The thread fallback must never run out of threads: a child that exits
# only after others did would wait behind them.
_waitid_limiter = CapacityLimiter(math.inf)


async def _watch_in_thread(pid: int, exited: Event) -> None:
    try:
        await to_thread_run_sync(_waitid_blocking, pid, abandon_on_cancel=True, limiter=_waitid_limiter)
    except OSError:
        # e.g. ECHILD: reaped elsewhere, or SIGCHLD ignored; waitpid will
        # say the same, so waking the waiters is right.
        pass
    finally:
        exited.set()


@final
class Process:
    """A child process: like :class:`subprocess.Popen`, but async.

    Made by :func:`ringtrio.lowlevel.open_process` or, supervised, by
    ``await nursery.start(ringtrio.run_process, ...)``; there is no public
    constructor.

    Attributes:
      args: the command, as given.
      pid: the child's process id.
      stdin: a :class:`~ringtrio.abc.SendStream` to the child's standard
        input if it was made with ``stdin=subprocess.PIPE``, else None.
      stdout, stderr: :class:`~ringtrio.abc.ReceiveStream`\\ s from the
        child's standard output and error, for ``subprocess.PIPE``.
      stdio: a :class:`~ringtrio.StapledStream` of ``stdin`` and
        ``stdout`` when both exist.
    """

    # Always binary and unbuffered.
    universal_newlines: Final = False
    encoding: Final = None
    errors: Final = None

    _proc: subprocess.Popen[bytes]
    stdin: SendStream | None
    stdout: ReceiveStream | None
    stderr: ReceiveStream | None
    stdio: StapledStream[SendStream, ReceiveStream] | None
    args: StrOrBytesPath | Sequence[StrOrBytesPath]
    pid: int
    _wait_lock: Lock
    _pidfd: int | None
    _pidfd_closing: int | None
    _wait_op: RingOp | None
    _exited_event: Event | None

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(
            "ringtrio.Process has no public constructor: use ringtrio.lowlevel.open_process() "
            "or `await nursery.start(ringtrio.run_process, ...)`"
        )

    @classmethod
    def _create(
        cls,
        popen: subprocess.Popen[bytes],
        stdin: SendStream | None,
        stdout: ReceiveStream | None,
        stderr: ReceiveStream | None,
    ) -> Process:
        self = object.__new__(cls)
        self._proc = popen
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.stdio = StapledStream(stdin, stdout) if stdin is not None and stdout is not None else None
        self.args = popen.args
        self.pid = popen.pid
        self._wait_lock = Lock()
        # Opened before anyone can reap the child: nothing reaps it but us.
        self._pidfd = _pidfd_open(popen.pid)
        self._pidfd_closing = None
        self._wait_op = None
        self._exited_event = None
        return self

    def __repr__(self) -> str:
        code = self.returncode
        if code is None:
            status = f"running with PID {self.pid}"
        elif code < 0:
            status = f"exited with signal {-code}"
        else:
            status = f"exited with status {code}"
        return f"<ringtrio.Process {self.args!r}: {status}>"

    def __del__(self) -> None:
        # A Process dropped before anyone saw it exit: its pidfd (nothing
        # can be in flight: a waiting task keeps the Process alive).
        fd = getattr(self, "_pidfd", None)
        if fd is not None and getattr(self, "_wait_op", None) is None:
            self._pidfd = None
            os.close(fd)

    @property
    def returncode(self) -> int | None:
        """The exit status, or None while the child runs.  Negative: killed
        by that signal.  Always current (unlike ``Popen.returncode``, no
        ``poll()`` needed): reading it reaps the child if it has exited."""
        code = self._proc.poll()
        if code is not None:
            self._reaped()
        return code

    def poll(self) -> int | None:
        """Same as :attr:`returncode` (for code ported from subprocess)."""
        return self.returncode

    def _reaped(self) -> None:
        # The child is gone: a wait op still in flight can only end by
        # cancellation (ClosedResourceError, which wait() expects), and the
        # pidfd is done with.
        op = self._wait_op
        if op is not None:
            cancel_ring_op(op, ClosedResourceError("the process was reaped by another call"))
        fd = self._pidfd
        if fd is not None:
            self._pidfd = None
            if op is None:
                os.close(fd)
            else:
                # The op's SQE may still name the number: close it once
                # the op is over (see _wait_exiting).
                self._pidfd_closing = fd

    async def wait(self) -> int:
        """Block until the child exits; return its exit status (see
        :attr:`returncode`).  Any number of tasks may wait at once."""
        async with self._wait_lock:
            while self.poll() is None:
                try:
                    await self._wait_exiting()
                except ClosedResourceError:
                    # poll() or returncode reaped it meanwhile.
                    pass
        code = self._proc.returncode
        assert code is not None
        return code

    async def _wait_exiting(self) -> None:
        """Return once the child has exited (a waitpid would not block),
        without reaping it."""
        pidfd = self._pidfd
        waitid = _ring_has_waitid()
        if waitid and pidfd is not None:
            op = RingOp(IORING_OP_WAITID, pidfd, 0, os.P_PIDFD, 0, _WAIT_OPTIONS)
        elif pidfd is not None:
            op = RingOp(IORING_OP_POLL_ADD, pidfd, 0, 0, 0, select.POLLIN)
        elif waitid:
            op = RingOp(IORING_OP_WAITID, self.pid, 0, os.P_PID, 0, _WAIT_OPTIONS)
        else:
            if self._exited_event is None:
                self._exited_event = Event()
                spawn_system_task(_watch_in_thread, self.pid, self._exited_event)
            await self._exited_event.wait()
            return
        self._wait_op = op
        try:
            res, _ = await submit_and_wait(op)
        finally:
            self._wait_op = None
            closing, self._pidfd_closing = self._pidfd_closing, None
            if closing is not None:
                os.close(closing)
        # -ECHILD: the child was reaped without us (SIGCHLD ignored, or a
        # stray waitpid); Popen's own wait reports it the same way.
        if res < 0 and res != -errno.ECHILD:
            raise OSError(-res, f"waiting for process {self.pid}: {os.strerror(-res)}")

    def send_signal(self, sig: signal.Signals | int) -> None:
        """Send ``sig`` to the child (nothing if it has been reaped)."""
        self._proc.send_signal(sig)

    def terminate(self) -> None:
        """``send_signal(SIGTERM)``: a request to exit."""
        self._proc.terminate()

    def kill(self) -> None:
        """``send_signal(SIGKILL)``: the child cannot refuse; it is gone
        once :meth:`wait` returns."""
        self._proc.kill()

    async def aclose(self) -> None:
        """Close the pipes and wait for the child to exit; if cancelled
        meanwhile, kill it and wait for that (shielded) before the
        cancellation goes on.  **Not in trio 0.35** (trio had it once)."""
        with CancelScope(shield=True):
            for stream in (self.stdin, self.stdout, self.stderr):
                if stream is not None:
                    await stream.aclose()
        try:
            await self.wait()
        finally:
            if self._proc.returncode is None:
                self.kill()
                with CancelScope(shield=True):
                    await self.wait()


_UNSUPPORTED_OPTIONS = ("universal_newlines", "text", "encoding", "errors", "bufsize")


async def _open_process(
    command: StrOrBytesPath | Sequence[StrOrBytesPath],
    *,
    stdin: int | HasFileno | None = None,
    stdout: int | HasFileno | None = None,
    stderr: int | HasFileno | None = None,
    **options: Any,
) -> Process:
    """Start ``command`` in a child process and return its :class:`Process`
    (``trio.lowlevel.open_process``).  Nothing supervises it: waiting for it,
    killing it and closing its pipes are the caller's business.

    ``stdin``/``stdout``/``stderr`` take what :class:`subprocess.Popen`
    takes (``subprocess.PIPE`` gives a stream on the :class:`Process`,
    ``DEVNULL``, an fd or an object with ``fileno()``, ``None`` to share the
    parent's); ``stderr=subprocess.STDOUT`` merges the child's stderr into
    its stdout.  The other Popen options pass through, except the text-mode
    and buffering ones (``TypeError``).  On Unix ``command`` is a sequence,
    or a string with ``shell=True``.  Spawning errors (``OSError``, e.g.
    ``FileNotFoundError``) are raised here, with every pipe closed.
    """
    for key in _UNSUPPORTED_OPTIONS:
        if options.get(key):
            raise TypeError(
                "ringtrio.Process only supports communicating over unbuffered byte "
                f"streams; the '{key}' option is not supported"
            )
    if isinstance(command, (str, bytes)) and not options.get("shell"):
        raise TypeError(
            "command must be a sequence (not a string or bytes) if shell=False on UNIX "
            "systems; pass shell=True to have a shell parse the string"
        )
    if not isinstance(command, (str, bytes)) and options.get("shell"):
        raise TypeError(
            "command must be a string or bytes (not a sequence) if shell=True on UNIX systems"
        )

    our_stdin: FdStream | None = None
    our_stdout: FdStream | None = None
    our_stderr: FdStream | None = None
    # The child's ends of the pipes are closed here once Popen has passed
    # them on (the child must hold the only copy, or we never see EOF);
    # our ends are closed too if the spawn fails.
    with ExitStack() as child_ends, ExitStack() as on_failure:

        def pipe(ours_is_write: bool) -> tuple[FdStream, int]:
            r, w = os.pipe()
            ours, theirs = (w, r) if ours_is_write else (r, w)
            child_ends.callback(os.close, theirs)
            try:
                stream = FdStream(ours)
            except BaseException:
                os.close(ours)
                raise
            on_failure.callback(stream.close)
            return stream, theirs

        if stdin == subprocess.PIPE:
            our_stdin, stdin = pipe(True)
        if stdout == subprocess.PIPE:
            our_stdout, stdout = pipe(False)
        if stderr == subprocess.STDOUT:
            # The child's stderr goes where its stdout goes: our stdout pipe,
            # DEVNULL, an fd.  With stdout=None Popen dups the inherited one.
            if stdout is not None:
                stderr = stdout
        elif stderr == subprocess.PIPE:
            our_stderr, stderr = pipe(False)

        # (The text-mode options were refused above: the pipes carry bytes.)
        spawn: Callable[[], subprocess.Popen[bytes]] = partial(
            subprocess.Popen, command, stdin=stdin, stdout=stdout, stderr=stderr, **options
        )  # type: ignore[assignment]
        popen = await to_thread_run_sync(spawn)
        on_failure.pop_all()
    return Process._create(popen, our_stdin, our_stdout, our_stderr)


# The public name; run_process calls the function through its private name,
# as trio's does (tests replace it there).
open_process = _open_process
open_process.__name__ = open_process.__qualname__ = "open_process"


async def _terminate_then_kill(process: Process) -> None:
    # trio's default on POSIX: ask, wait 5 s, insist.
    try:
        process.terminate()
        await sleep(5)
        warnings.warn(
            RuntimeWarning(
                f"process {process!r} ignored SIGTERM for 5 seconds. (Maybe you should pass "
                "a custom deliver_cancel?) Trying SIGKILL."
            ),
            stacklevel=1,
        )
        process.kill()
    except OSError as exc:
        warnings.warn(RuntimeWarning(f"tried to kill process {process!r}, but failed with: {exc!r}"), stacklevel=1)


async def run_process(
    command: StrOrBytesPath | Sequence[StrOrBytesPath],
    *,
    stdin: bytes | bytearray | memoryview | int | HasFileno | None = b"",
    capture_stdout: bool = False,
    capture_stderr: bool = False,
    check: bool = True,
    deliver_cancel: Callable[[Process], Awaitable[object]] | None = None,
    task_status: TaskStatus[Process] = TASK_STATUS_IGNORED,
    **options: Any,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` in a child process and wait for it to exit (trio's
    ``run_process``).

    Awaited directly it returns a :class:`subprocess.CompletedProcess`;
    started with ``await nursery.start(run_process, ...)`` it hands back the
    :class:`Process` at once and supervises it in the nursery.  Either way
    the child has exited when it returns or raises.

    * ``stdin``: bytes to feed the child (then end of file; default
      ``b""``), or anything :func:`open_process` takes (``None`` shares the
      parent's stdin; ``subprocess.PIPE`` only with ``nursery.start``).
    * ``capture_stdout`` / ``capture_stderr``: collect the output into the
      result's ``stdout`` / ``stderr``.  Otherwise it goes where the
      ``stdout=`` / ``stderr=`` options say (the parent's by default).
    * ``check`` (default True): a nonzero exit raises
      :class:`subprocess.CalledProcessError`, with the captured output on it.
    * ``deliver_cancel``: how to stop the child when ``run_process`` is
      cancelled: an async function called with the :class:`Process`.  The
      default sends SIGTERM, waits 5 seconds, then sends SIGKILL (with a
      ``RuntimeWarning``).  It is cancelled once the child has exited, and
      ``run_process`` always waits for the child before ``Cancelled`` goes on.
    * ``**options``: passed to :func:`open_process`.
    """
    if isinstance(stdin, str):
        raise UnicodeError("process stdin must be bytes, not str")
    if task_status is TASK_STATUS_IGNORED:
        if stdin is subprocess.PIPE:
            raise ValueError(
                "stdin=subprocess.PIPE is only valid with nursery.start, since that's the "
                "only way to access the pipe; use nursery.start or pass the data you want "
                "to write directly"
            )
        for name in ("stdout", "stderr"):
            if options.get(name) is subprocess.PIPE:
                raise ValueError(
                    f"{name}=subprocess.PIPE is only valid with nursery.start, since that's "
                    "the only way to access the pipe"
                )
    feed: bytes | bytearray | memoryview | None = None
    if isinstance(stdin, (bytes, bytearray, memoryview)):
        feed = stdin
        options["stdin"] = subprocess.PIPE
    else:
        options["stdin"] = stdin
    for name, capture in (("stdout", capture_stdout), ("stderr", capture_stderr)):
        if capture:
            if name in options:
                raise ValueError(f"can't specify both {name} and capture_{name}")
            options[name] = subprocess.PIPE
    if deliver_cancel is None:
        deliver_cancel = _terminate_then_kill

    stdout_chunks: list[bytes | bytearray] = []
    stderr_chunks: list[bytes | bytearray] = []

    async def feed_input(stream: SendStream, data: bytes | bytearray | memoryview) -> None:
        async with stream:
            try:
                await stream.send_all(data)
            except BrokenResourceError:
                # The child stopped reading (closed its stdin, exited): what
                # it did not take is not an error, its exit status says more.
                pass

    async def read_output(stream: ReceiveStream, chunks: list[bytes | bytearray]) -> None:
        async with stream:
            async for chunk in stream:
                chunks.append(chunk)

    # Spawning errors leave from here, not wrapped in the nursery's group.
    proc = await _open_process(command, **options)
    async with open_nursery() as nursery:
        try:
            if feed is not None:
                assert proc.stdin is not None
                nursery.start_soon(feed_input, proc.stdin, feed)
                proc.stdin = proc.stdio = None
            if capture_stdout:
                assert proc.stdout is not None
                nursery.start_soon(read_output, proc.stdout, stdout_chunks)
                proc.stdout = proc.stdio = None
            if capture_stderr:
                assert proc.stderr is not None
                nursery.start_soon(read_output, proc.stderr, stderr_chunks)
                proc.stderr = None
            task_status.started(proc)
            await proc.wait()
        except BaseException:
            # Cancelled (or failed): stop the child and wait for it, shielded,
            # so that no child outlives its run_process.  deliver_cancel runs
            # beside the wait and is cancelled as soon as the child is gone.
            with CancelScope(shield=True):
                killer_scope = CancelScope(shield=True)

                async def killer() -> None:
                    with killer_scope:
                        await deliver_cancel(proc)

                nursery.start_soon(killer)
                await proc.wait()
                killer_scope.cancel()
            raise

    stdout = b"".join(stdout_chunks) if capture_stdout else None
    stderr = b"".join(stderr_chunks) if capture_stderr else None
    code = proc.returncode
    assert code is not None
    if code and check:
        raise subprocess.CalledProcessError(code, proc.args, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(proc.args, code, stdout, stderr)

