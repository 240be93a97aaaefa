"""Running blocking code in worker threads, and calling back into the loop.

``to_thread_run_sync`` (public as ``ringtrio.to_thread.run_sync``) hands a
synchronous function to a pooled worker thread (``_thread_cache``) and parks
the calling task until the thread is done.  The worker's completion reaches
the scheduler through ``TrioToken.run_sync_soon``, which writes to the
runtime's wake-up pipe; a read on that pipe is always pending on the ring, so
an idle loop sleeping in ``io_uring_enter`` wakes up at once.  Nothing polls.

``from_thread_run`` / ``from_thread_run_sync`` (``ringtrio.from_thread.run`` /
``.run_sync``) go the other way: a thread blocks while a function runs in the
loop.  ``from_thread_check_cancelled`` lets a worker thread notice that the
``to_thread.run_sync`` call that started it has been cancelled.

Semantics follow trio 0.35:

* ``to_thread.run_sync`` is a checkpoint.  It takes a token from the limiter
  (the default one holds 40) on behalf of the call before starting the
  thread, and gives it back when the thread has really finished -- also when
  the caller gave up waiting earlier.
* ``abandon_on_cancel=False`` (the default): once the thread runs, the call
  cannot be cancelled.  The task waits for the thread and returns its result;
  a pending cancellation lands at the task's next checkpoint.
  ``abandon_on_cancel=True``: a cancellation makes the call raise
  ``Cancelled`` at once; the thread keeps running and whatever it returns or
  raises is discarded.  ``cancellable=`` is the deprecated old name.
* From a worker thread started by ``to_thread.run_sync`` the ``from_thread``
  functions find the run by themselves.  When the call was made with
  ``abandon_on_cancel=False``, the callback runs *inside the waiting task*
  (so it is cancelled together with that task, and sees its cancel scopes);
  otherwise -- ``abandon_on_cancel=True``, or an explicit ``trio_token=``
  -- an async callback runs as a new system task and a sync callback runs
  as a plain ``run_sync_soon`` callback.
* Callbacks run in a copy of the calling thread's ``contextvars`` context, so
  context variables flow from the thread into the callback (changes made by
  the callback do not flow back).

Differences from trio:

* trio sets sniffio's *thread-local* override in the loop thread; ringtrio
  sets sniffio's context variable in every task's context.  So the context a
  callback runs in is the thread's context with the async library set back to
  the run's name, ``"ringtrio"`` (``"trio"`` in trio mode; in the worker it
  is cleared).
* ``from_thread.check_cancelled`` raises a fresh ``Cancelled`` even when what
  interrupted the ``to_thread.run_sync`` call was a ``KeyboardInterrupt``
  (that KeyboardInterrupt is the main task's Ctrl-C, delivered by aborting
  its wait; raising it in the worker thread would consume it there).
* ``from_thread.run*`` with the ``trio_token`` of another run (one that runs
  in another thread) may be called from inside a run: it blocks this run
  until the other one has run the job.  trio refuses any call from inside a
  run ("this is a blocking function"), which deadlocks code that starts an
  AnyIO ``BlockingPortal`` from async code; ringtrio refuses only a call into
  its own run, the one that would deadlock.
* A thread blocked in ``from_thread.run*`` whose callback was queued just as
  the run was shutting down notices the end of the run within about a second
  (it re-checks the token) and raises ``RunFinishedError``, instead of waiting
  for a callback that will never run.
"""

from __future__ import annotations

import contextvars
import inspect
import threading
from collections.abc import Awaitable, Callable
from itertools import count
from typing import Any, NoReturn, Protocol, TypeVar, TypeVarTuple, Unpack

import outcome
import sniffio

from ._core import (
    Abort,
    Cancelled,
    RunFinishedError,
    RunVar,
    Task,
    TrioToken,
    WouldBlock,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    current_task,
    current_trio_token,
    disable_ki_protection,
    reschedule,
    spawn_system_task,
    wait_task_rescheduled,
)
from ._core._internal_api import _coroutine_or_error, _ki_pending_for, _require_function, sniffio_name, warn_deprecated
from ._sync import CapacityLimiter, Event
from ._thread_cache import start_thread_soon

__all__ = [
    "current_default_thread_limiter",
    "from_thread_check_cancelled",
    "from_thread_run",
    "from_thread_run_sync",
    "to_thread_run_sync",
    "active_thread_count",
    "wait_all_threads_completed",
]

RetT = TypeVar("RetT")
# The positional arguments of the function a call runs: a type checker matches
# them against its signature, as it would in a direct call.
PosArgsT = TypeVarTuple("PosArgsT")

# trio picked 40 and so do we: enough for typical blocking-I/O fan-out, small
# enough not to drown a machine in threads.
DEFAULT_THREAD_LIMIT = 40

_default_limiter: RunVar[CapacityLimiter] = RunVar("ringtrio.to_thread default limiter")

# Serial numbers for _ThreadCall reprs (which show up as limiter borrowers).
_call_serial = count(1)

# How long a thread blocked in from_thread.run* waits between checks that the
# run is still alive (only relevant if the run ends while it waits).
_RUN_ALIVE_CHECK_INTERVAL = 1.0


class ThreadLimiter(Protocol):
    """What ``to_thread_run_sync(limiter=...)`` needs: a
    :class:`CapacityLimiter`, or anything with these two methods."""

    async def acquire_on_behalf_of(self, borrower: object) -> None: ...

    def release_on_behalf_of(self, borrower: object) -> None: ...


def current_default_thread_limiter() -> CapacityLimiter:
    """The :class:`CapacityLimiter` that :func:`to_thread_run_sync` uses when
    no ``limiter=`` is given: 40 tokens, one limiter per call of
    :func:`ringtrio.run`.  Change its ``total_tokens`` to allow more or fewer
    threads at once."""
    limiter = _default_limiter.get(None)
    if limiter is None:
        limiter = CapacityLimiter(DEFAULT_THREAD_LIMIT)
        _default_limiter.set(limiter)
    return limiter


class _ActiveCalls:
    """How many ``to_thread.run_sync`` calls of this run are waiting for
    their thread, and an Event set (and replaced) each time that reaches 0.

    As trio counts them for ``testing.active_thread_count``: a call counts
    from just before its thread is started until its task stops waiting
    (the result arrived, or the call was abandoned on cancel: an abandoned
    thread may still be running, but nobody waits for it any more)."""

    __slots__ = ("count", "idle")

    def __init__(self) -> None:
        self.count = 0
        self.idle = Event()

    @staticmethod
    def of_this_run() -> _ActiveCalls:
        """This run's counter, created by the first call that needs it."""
        calls = _active_calls.get(None)
        if calls is None:
            calls = _ActiveCalls()
            _active_calls.set(calls)
        return calls

    def __enter__(self) -> None:
        self.count += 1

    def __exit__(self, *exc_info: object) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle.set()
            self.idle = Event()


_active_calls: RunVar[_ActiveCalls] = RunVar("ringtrio.to_thread active calls")


def active_thread_count() -> int:
    """How many ``to_thread.run_sync`` calls of this run are waiting for
    their worker thread (public as ``ringtrio.testing.active_thread_count``).
    A call abandoned on cancel no longer counts.  As in trio."""
    calls = _active_calls.get(None)
    return 0 if calls is None else calls.count


async def wait_all_threads_completed() -> None:
    """Checkpoint, then wait until :func:`active_thread_count` is 0 (public
    as ``ringtrio.testing.wait_all_threads_completed``).  As in trio.

    A thread may call back into the run (``from_thread.run``) and so start
    new tasks that start new threads; to wait until everything has settled::

        while True:
            await ringtrio.testing.wait_all_threads_completed()
            await ringtrio.testing.wait_all_tasks_blocked()
            if ringtrio.testing.active_thread_count() == 0:
                break
    """
    await checkpoint()
    calls = _active_calls.get(None)
    while calls is not None and calls.count:
        await calls.idle.wait()


class _ThreadCall:
    """The state shared by one ``to_thread.run_sync`` call, its worker thread
    and the loop.  Also the borrower that holds the call's limiter token."""

    __slots__ = ("token", "task", "abandon_on_cancel", "cancelled", "name")

    def __init__(self, token: TrioToken, task: Task, abandon_on_cancel: bool, name: str) -> None:
        self.token = token
        # The task waiting for the thread; None once it has stopped waiting
        # (abandoned on cancel), so the thread's result is then discarded.
        self.task: Task | None = task
        self.abandon_on_cancel = abandon_on_cancel
        # The Cancelled the waiting task got (or would have got, had it not
        # kept waiting), set in the loop thread when the cancellation came;
        # from_thread.check_cancelled in the worker raises one like it, so
        # the worker learns why (source, reason, task), as in trio.
        self.cancelled: Cancelled | None = None
        self.name = name

    def __repr__(self) -> str:
        return f"<ringtrio worker thread {self.name!r}>"


class _WorkerState(threading.local):
    """Per-thread: the to_thread.run_sync call a worker thread is running,
    or None (foreign threads, and pooled workers between jobs)."""

    call: _ThreadCall | None = None


_worker_state = _WorkerState()


def _noop() -> None:
    pass


class _LoopJob:
    """A function a thread wants run in the loop, plus the hand-over of its
    outcome back to that thread.  Created in the requesting thread."""

    __slots__ = ("context", "_outcome", "_done")

    def __init__(self) -> None:
        # The requesting thread's context variables travel with the job.  In
        # a worker thread sniffio's variable is cleared; inside the loop it
        # must say what the run says ("ringtrio", or "trio" in trio mode).
        self.context = contextvars.copy_context()
        self.context.run(sniffio.current_async_library_cvar.set, sniffio_name())
        self._outcome: outcome.Outcome[Any] | None = None
        # Held until the outcome is ready: a one-shot signal to the thread.
        self._done = threading.Lock()
        self._done.acquire()

    # -- loop side -------------------------------------------------------

    def _finish(self, result: outcome.Outcome[Any]) -> None:
        self._outcome = result
        self._done.release()

    def submit_as_system(self, token: TrioToken) -> None:
        """Run the job in the loop independently of any task's cancel scope."""
        raise NotImplementedError

    async def run_in_host_task(self, task: Task) -> None:
        """Run the job inside ``task`` (the to_thread.run_sync caller)."""
        raise NotImplementedError

    # -- thread side -----------------------------------------------------

    def wait(self, token: TrioToken) -> Any:
        """Block until the loop has run the job; return or raise its result."""
        while not self._done.acquire(timeout=_RUN_ALIVE_CHECK_INTERVAL):
            # Normally the loop finishes the job and we never get here twice.
            # But a callback queued while the run was ending may never run;
            # asking the token (at most one harmless no-op queued at a time)
            # tells us whether the run is gone.
            try:
                token.run_sync_soon(_noop, idempotent=True)
            except RunFinishedError:
                if self._done.acquire(blocking=False):
                    break
                raise RunFinishedError(
                    "the ringtrio run ended before it could run this from_thread "
                    "callback; call from_thread functions only while the run is active"
                ) from None
        assert self._outcome is not None
        return self._outcome.unwrap()


class _AsyncLoopJob(_LoopJob):
    __slots__ = ("afn", "args")

    def __init__(self, afn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        super().__init__()
        self.afn = afn
        self.args = args

    # The thread's callback is user code: Ctrl-C interrupts it at once, as
    # in trio, although it runs below ringtrio's frames (_core/_ki.py).
    @disable_ki_protection
    async def _call(self) -> Any:
        # Checks that afn really is an async function; the TypeError, if
        # any, travels back to the thread like any other exception.
        return await _coroutine_or_error(self.afn, self.args, api="from_thread.run")

    async def _as_system_task(self) -> None:
        # Capture everything (Cancelled included): a system task that raises
        # would crash the whole run.
        self._finish(await outcome.acapture(self._call))

    def _spawn(self) -> None:
        try:
            spawn_system_task(self._as_system_task, name=self.afn, context=self.context)
        except RuntimeError:
            # The system nursery only refuses new tasks while the run shuts down.
            self._finish(
                outcome.Error(
                    RunFinishedError(
                        "the ringtrio run is shutting down and no longer starts tasks "
                        "for from_thread.run"
                    )
                )
            )

    def submit_as_system(self, token: TrioToken) -> None:
        token.run_sync_soon(self._spawn)

    async def run_in_host_task(self, task: Task) -> None:
        # The callback must see the thread's context variables, but it runs
        # as part of `task`, whose steps run in task.context.  Swap the
        # task's context and yield once so that the following steps run in
        # the job's context; swap back afterwards (the park that follows in
        # to_thread_run_sync is the yield that makes the old one current).
        old_context = task.context
        task.context = self.context
        try:
            await cancel_shielded_checkpoint()
            result = await outcome.acapture(self._call)
        finally:
            task.context = old_context
        self._finish(result)


def _reject_coroutine(ret: object, fn: object, expected: str, advice: str) -> None:
    """Raise TypeError if ``fn`` (called as a sync function) returned a
    coroutine.  ``expected`` starts the message with trio's words for the
    API (code and trio's tests match on them)."""
    if inspect.iscoroutine(ret):
        ret.close()  # no "never awaited" warning on top of our error
        raise TypeError(
            f"{expected}, but {getattr(fn, '__qualname__', fn)!r} appears to be asynchronous "
            f"(it returned a coroutine); {advice}"
        )


class _SyncLoopJob(_LoopJob):
    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        super().__init__()
        self.fn = fn
        self.args = args

    @disable_ki_protection  # (user code, as _AsyncLoopJob._call)
    def _call(self) -> Any:
        ret = self.context.run(self.fn, *self.args)
        _reject_coroutine(
            ret, self.fn, "from_thread.run_sync expected a synchronous function",
            "use from_thread.run for async functions",
        )
        return ret

    def _run_now(self) -> None:
        self._finish(outcome.capture(self._call))

    def submit_as_system(self, token: TrioToken) -> None:
        token.run_sync_soon(self._run_now)

    async def run_in_host_task(self, task: Task) -> None:
        self._run_now()


async def to_thread_run_sync(
    sync_fn: Callable[[Unpack[PosArgsT]], RetT],
    *args: Unpack[PosArgsT],
    thread_name: str | None = None,
    abandon_on_cancel: bool | None = None,
    limiter: ThreadLimiter | None = None,
    cancellable: bool | None = None,
) -> RetT:
    """Run ``sync_fn(*args)`` in a worker thread and return what it returns
    (or raise what it raises), without blocking the other tasks.

    Args:
      sync_fn: a synchronous callable.  Use :func:`functools.partial` for
        keyword arguments.
      thread_name: the worker's thread name while it runs ``sync_fn``;
        default ``"<sync_fn name> from <task name>"``.
      abandon_on_cancel: if false (the default), a cancellation waits for the
        thread to finish, returns its result, and lands at the next
        checkpoint.  If true, a cancellation raises ``Cancelled`` at once and
        the thread's eventual result is thrown away.
      limiter: a :class:`CapacityLimiter` (or anything with
        ``acquire_on_behalf_of`` / ``release_on_behalf_of``) bounding how
        many threads run at once; default
        :func:`current_default_thread_limiter` (40).  The token is held from
        before the thread starts until it has finished, even if abandoned.
      cancellable: deprecated name for ``abandon_on_cancel``.

    This is a checkpoint.  Inside ``sync_fn``, ``ringtrio.from_thread.run``
    and ``.run_sync`` call back into the loop and
    ``ringtrio.from_thread.check_cancelled`` reports a cancellation.
    """
    if cancellable is not None:
        if abandon_on_cancel is not None:
            raise ValueError(
                "to_thread.run_sync got both cancellable= and abandon_on_cancel=; "
                "cancellable is the deprecated name of abandon_on_cancel, pass only "
                "abandon_on_cancel"
            )
        warn_deprecated(
            "to_thread.run_sync(cancellable=...)", since_trio="0.23.0", instead="abandon_on_cancel=...", stacklevel=2
        )
        abandon_on_cancel = cancellable
    # First, so that a call outside ringtrio.run() fails with a clear error.
    task = current_task()
    await checkpoint_if_cancelled()
    # bool() now, so a weird object fails here and not in the abort function.
    abandon = bool(abandon_on_cancel)
    if limiter is None:
        limiter = current_default_thread_limiter()
    token = current_trio_token()
    if thread_name is None:
        thread_name = f"{getattr(sync_fn, '__name__', None)} from {task.name}"
    call = _ThreadCall(token, task, abandon, f"{thread_name} #{next(_call_serial)}")

    # The worker runs sync_fn in a copy of the caller's context (so context
    # variables flow into the thread) in which sniffio's variable is cleared:
    # the thread is not running any async library.
    context = contextvars.copy_context()
    context.run(sniffio.current_async_library_cvar.set, None)

    def run_in_worker() -> RetT:
        _worker_state.call = call
        try:
            ret = context.run(sync_fn, *args)
        finally:
            _worker_state.call = None
        _reject_coroutine(
            ret, sync_fn, "to_thread.run_sync expected a sync function",
            "await async functions directly instead of running them in a thread",
        )
        return ret

    def report_in_loop(result: outcome.Outcome[RetT]) -> None:
        # Runs in the loop thread (CapacityLimiter is not thread-safe).  The
        # token goes back first, whether or not anybody still waits.
        try:
            limiter.release_on_behalf_of(call)
        except BaseException as exc:
            # A custom limiter's release failed: that error is the result
            # now, chained to the thread's own error if it had one.
            if isinstance(result, outcome.Error):
                exc.__context__ = result.error
            result = outcome.Error(exc)
        waiter = call.task
        if waiter is not None:
            call.task = None
            reschedule(waiter, outcome.Value(result))

    def deliver(result: outcome.Outcome[RetT]) -> None:
        # Runs in the worker thread.  run_sync_soon writes to the wake-up
        # pipe, whose read is always pending on the ring: the loop wakes up.
        try:
            token.run_sync_soon(report_in_loop, result)
        except RunFinishedError:
            # The run is over, so the caller abandoned us long ago; there is
            # nobody to hand the result (or the limiter token) to.
            pass

    # Fast path: a free token is taken without the extra schedule point that
    # acquire_on_behalf_of() adds; this call still yields below (parking
    # until the thread is done), so it stays a checkpoint.  Custom limiters
    # need only the two *_on_behalf_of methods, hence the getattr.
    acquire_nowait = getattr(limiter, "acquire_on_behalf_of_nowait", None)
    try:
        if acquire_nowait is None:
            raise WouldBlock
        acquire_nowait(call)
    except WouldBlock:
        await limiter.acquire_on_behalf_of(call)
    # Counted for testing.active_thread_count from here until this task
    # stops waiting for the thread.
    with _ActiveCalls.of_this_run():
        try:
            start_thread_soon(run_in_worker, deliver, thread_name)
        except BaseException:
            limiter.release_on_behalf_of(call)
            raise

        def abort(raise_cancel: Callable[[], NoReturn]) -> Abort:
            if _ki_pending_for(task):
                # The main task's Ctrl-C.  Calling raise_cancel would take
                # it; it stays pending instead, so the task gets it when
                # this wait ends (now if abandoned, else at its next
                # checkpoint), as in trio.  The worker gets a plain
                # Cancelled (see the module doc).
                call.cancelled = Cancelled._create()
            else:
                # raise_cancel builds the task's Cancelled from the scope's
                # state; build it now, in the loop thread, not in the worker.
                error = outcome.capture(raise_cancel).error  # type: ignore[union-attr]
                call.cancelled = error if isinstance(error, Cancelled) else Cancelled._create()
            if abandon:
                # Stop waiting; report_in_loop will find nobody to wake.
                call.task = None
                return Abort.SUCCEEDED
            return Abort.FAILED

        while True:
            msg = await wait_task_rescheduled(abort)
            if isinstance(msg, _LoopJob):
                # from_thread.run / run_sync from our worker: run it here, as
                # part of this task, then keep waiting for the thread.
                await msg.run_in_host_task(task)
                del msg
                continue
            return msg.unwrap()  # type: ignore[no-any-return]


def from_thread_check_cancelled() -> None:
    """In a worker thread started by ``to_thread.run_sync``: raise
    ``Cancelled`` if that call has been cancelled (useful with
    ``abandon_on_cancel=False`` to stop long work early, or to let an
    abandoned thread notice it was abandoned).  Otherwise return.

    Raises:
      Cancelled: the ``to_thread.run_sync`` call was cancelled.
      RuntimeError: this thread was not started by ``to_thread.run_sync``.
    """
    call = _worker_state.call
    if call is None:
        raise RuntimeError(
            "from_thread.check_cancelled() only works in a thread started by "
            "ringtrio.to_thread.run_sync, and this thread was not; there is no "
            "to_thread call whose cancellation it could report"
        )
    cancelled = call.cancelled
    if cancelled is not None:
        # A fresh one each time (raising the same object again would grow
        # its traceback), saying what the task's said.
        raise Cancelled._create(cancelled.source, cancelled.reason, cancelled.source_task)


def _send_to_loop(job: _LoopJob, trio_token: TrioToken | None, api: str) -> Any:
    # A blocking wait in the loop's own thread would deadlock the loop.  A
    # token of *another* run (running in another thread) is fine: blocking
    # this loop while that one runs the job cannot deadlock (trio refuses
    # that too, see the module docstring).
    try:
        own_token: TrioToken | None = current_trio_token()
    except RuntimeError:
        own_token = None
    if own_token is not None and (trio_token is None or trio_token is own_token):
        raise RuntimeError(
            f"this is a blocking function; call it from a thread: {api}() blocks "
            "until the loop runs the callback, and it was called from inside the "
            "loop's own thread. Inside the loop, call or await the function directly."
        )
    call = _worker_state.call
    if trio_token is None:
        if call is None:
            raise RuntimeError(
                f"{api}() was called from a thread that ringtrio.to_thread.run_sync "
                "did not start, so it does not know which run to enter: pass "
                "trio_token=... (get one inside the run with "
                "ringtrio.lowlevel.current_trio_token())"
            )
        if not call.abandon_on_cancel:
            # The to_thread.run_sync caller is parked waiting for this very
            # thread (the thread cannot finish while we block here), and with
            # abandon_on_cancel=False it cannot stop waiting: run the job in
            # that task, under its cancel scopes.
            waiter = call.task
            assert waiter is not None, "a non-abandoning call stopped waiting for its thread"
            call.token.run_sync_soon(reschedule, waiter, outcome.Value(job))
            return job.wait(call.token)
        token = call.token
    elif isinstance(trio_token, TrioToken):
        token = trio_token
    else:
        raise RuntimeError(
            f"{api}(trio_token=...) needs a ringtrio.lowlevel.TrioToken "
            f"(from ringtrio.lowlevel.current_trio_token()), got {trio_token!r}"
        )
    job.submit_as_system(token)
    return job.wait(token)


def from_thread_run(
    afn: Callable[[Unpack[PosArgsT]], Awaitable[RetT]],
    *args: Unpack[PosArgsT],
    trio_token: TrioToken | None = None,
) -> RetT:
    """From a thread, run ``await afn(*args)`` in the ringtrio loop and return
    (or raise) its result, blocking the thread meanwhile.

    In a thread started by ``to_thread.run_sync`` the run is found
    automatically; from any other thread pass ``trio_token=`` (from
    ``ringtrio.lowlevel.current_trio_token()``).  Without ``trio_token`` and
    with ``abandon_on_cancel=False``, ``afn`` runs inside the task waiting in
    ``to_thread.run_sync`` and is cancelled with it; otherwise it runs as a
    system task (cancelled when the run's main task ends).

    Raises:
      RunFinishedError: the run is over (or shutting down).
      RuntimeError: called from the loop's own thread, or from a foreign
        thread without ``trio_token``.
      TypeError: ``afn`` is not an async function (for instance a coroutine
        object: ``from_thread.run(fn(x))`` instead of ``from_thread.run(fn, x)``).
    """
    # Checked here, in the calling thread, before anything reaches the loop.
    _require_function(afn, "from_thread.run")
    return _send_to_loop(_AsyncLoopJob(afn, args), trio_token, "from_thread.run")  # type: ignore[no-any-return]


def from_thread_run_sync(
    fn: Callable[[Unpack[PosArgsT]], RetT],
    *args: Unpack[PosArgsT],
    trio_token: TrioToken | None = None,
) -> RetT:
    """From a thread, run ``fn(*args)`` in the ringtrio loop's thread and
    return (or raise) its result, blocking the thread meanwhile.

    Finds the run like :func:`from_thread_run`.

    Raises:
      RunFinishedError: the run is over.
      RuntimeError: called from the loop's own thread, or from a foreign
        thread without ``trio_token``.
      TypeError: ``fn`` returned a coroutine (use :func:`from_thread_run`).
    """
    return _send_to_loop(_SyncLoopJob(fn, args), trio_token, "from_thread.run_sync")  # type: ignore[no-any-return]
