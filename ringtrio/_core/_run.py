"""ringtrio.run() and the public helpers that need the current run:
current_time() and the other current_*(), sleep(), spawn_system_task(),
wait_all_tasks_blocked()."""

from __future__ import annotations

import heapq
import math
import select
import signal
import threading
import warnings
from collections.abc import Awaitable, Callable
from contextvars import Context
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, Unpack

import outcome

from ._cancel_scope import CancelScope
from ._backend import Backend
from ._deprecate import warn_loose_exception_groups
from ._exceptions import RingtrioInternalError, RingUnavailableError
from ._instrumentation import IOStatistics, RunStatistics
from ._ki import sigint_handler
from ._introspect import check_dump_signal, install_dump_signal
from ._local import _current_runner, _local, _outside_run, current_task
from ._ring import IORING_OP_POLL_ADD
from ._nursery import PosArgT, open_nursery
from ._ring_ops import StandInPollOp
from ._runner import Runner
from ._task import Task, _require_function, new_task
from ._traps import _CHECKPOINT, Abort, _Park, _yield_trap, wait_task_rescheduled

if TYPE_CHECKING:
    from ._clock import Clock
    from ._instrumentation import Instrument
    from ._ring import RingFeatures
    from ._trio_token import TrioToken

RetT = TypeVar("RetT")

inf = math.inf


async def _init(runner: Runner, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
    # Three nurseries, one inside the other, as in trio: the main task's; the
    # system nursery around it (a system task that raises cancels
    # everything, the main task included, and its error leaves through both
    # outer nurseries); and an outermost one, still open while abandoned
    # async generators are closed and the last run_sync_soon callbacks run,
    # for a callback that raises that late.  Whatever leaves the init task
    # becomes the run's RingtrioInternalError (Runner._task_exited).
    async with open_nursery() as late_nursery:
        runner.late_nursery = late_nursery
        try:
            async with open_nursery() as system_nursery:
                runner.system_nursery = system_nursery
                async with open_nursery() as main_nursery:
                    try:
                        runner.main_task = runner._spawn(async_fn, args, main_nursery, None)
                    except BaseException as exc:
                        runner.main_outcome = outcome.Error(exc)
                        return
                # Main task done: system tasks are cancelled.
                system_nursery.cancel_scope._cancel(
                    "shutdown", "main task done, shutting down system tasks", repr(runner.init_task)
                )
            # Tasks that misnesting left outside every nursery's wait finish first.
            await runner.wait_for_stragglers()
            # No user code is left but abandoned async generators' cleanup.
            await runner.asyncgens.finalize_remaining()
        finally:
            # From here run_sync_soon raises RunFinishedError; what is queued
            # still runs.
            runner._close_entry_queue()


def run(
    async_fn: Callable[[Unpack[PosArgT]], Awaitable[RetT]],
    *args: Unpack[PosArgT],
    clock: Clock | None = None,
    instruments: tuple[Instrument, ...] | list[Instrument] = (),
    restrict_keyboard_interrupt_to_checkpoints: bool = False,
    strict_exception_groups: bool = True,
    backend: Literal["auto", "ring", "epoll"] | None = None,
    dump_tasks_on: int | None = None,
) -> RetT:
    """Run ``async_fn(*args)`` under ringtrio and return its result (or raise
    its exception).  The trio-shaped entry point of the library.

    Ctrl-C raises ``KeyboardInterrupt`` at once in the task that is running
    (unless its code is KI-protected: see ``_ki.py``), or is delivered to the
    main task if the loop or protected code was running;
    ``restrict_keyboard_interrupt_to_checkpoints=True`` always does the
    latter (the main task gets it at its next checkpoint or wait).

    ``backend`` (default: ``$RINGTRIO_BACKEND``, else ``"auto"``) chooses the
    ring: ``"auto"`` uses io_uring where the kernel allows it and the epoll
    backend elsewhere (with a :exc:`RingFallbackWarning`, once per process);
    ``"ring"`` insists on io_uring (:exc:`RingUnavailableError` otherwise);
    ``"epoll"`` uses the epoll backend.  See docs/where-it-runs.md.

    ``dump_tasks_on`` (a signal number such as ``signal.SIGUSR1``; off by
    default): print ``lowlevel.print_task_tree()`` to stderr whenever the
    process gets that signal, and stamp ring ops with their submission time
    for the run (docs/debugging.md)."""
    # (Checked before the runner opens its ring, which an error here would leak.)
    dump_signal = None if dump_tasks_on is None else check_dump_signal(dump_tasks_on)
    runner = _new_runner("ringtrio.run", async_fn, clock, instruments, strict_exception_groups, backend)
    _local.runner = runner
    restore_signals: Callable[[], None] = _nothing
    try:
        restore_signals = _install_sigint(runner, restrict_keyboard_interrupt_to_checkpoints)
        if dump_signal is not None:
            restore_signals = install_dump_signal(runner, dump_signal, restore_signals)
        _start(runner, async_fn, args)
        runner._run_loop()
        if runner._instruments:
            runner._instrument("after_run")
    except (RingtrioInternalError, RingUnavailableError):
        raise
    except BaseException as exc:
        raise RingtrioInternalError("internal error in ringtrio - please report it") from exc
    finally:
        _close(runner, restore_signals)
    return _final_outcome(runner).unwrap()  # type: ignore[no-any-return]


def _nothing() -> None:
    pass


def _new_runner(
    api: str,
    async_fn: Callable[..., Awaitable[Any]],
    clock: Clock | None,
    instruments: tuple[Instrument, ...] | list[Instrument],
    strict_exception_groups: bool,
    backend: str | None,
    guest: bool = False,
) -> Runner:
    """Check run()'s (or start_guest_run()'s) arguments and set up the
    Runner: the only step of starting a run that may fail with
    RingUnavailableError."""
    if getattr(_local, "runner", None) is not None:
        raise RuntimeError(f"Attempted to call {api}() from inside a run()")
    _require_function(async_fn, api)
    if not strict_exception_groups:
        # (stacklevel 3: the caller of run() or start_guest_run().)
        warn_loose_exception_groups(api, stacklevel=3)
    if clock is not None and not (
        hasattr(clock, "current_time") and hasattr(clock, "deadline_to_sleep_time")
    ):
        raise TypeError(f"clock must provide current_time() and deadline_to_sleep_time(), got {clock!r}")
    runner = Runner(clock, tuple(instruments), strict_exception_groups, backend, guest)
    if runner.fallback_warning is not None:
        warnings.warn(runner.fallback_warning, stacklevel=3)
    return runner


def _start(runner: Runner, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
    """What a run does before its loop, once its SIGINT handler is in:
    async generator hooks, the clock, the before_run hook, and the init task
    on the run queue."""
    runner.asyncgens.install()
    if runner.clock is not None:
        runner.clock.start_clock()
    if runner._instruments:
        runner._instrument("before_run")
    # The root scope: never cancelled, the parent of everything.
    root_scope = CancelScope()
    init_task = new_task(runner, _init(runner, async_fn, args), "<init>", runner.system_context.copy(), None, True)
    init_task._cancel_scope = root_scope
    root_scope._state = CancelScope._ACTIVE
    root_scope._owner = init_task
    runner.init_task = init_task
    runner._ntasks += 1
    runner._runq.append(init_task)
    if runner._instruments:
        runner._instrument("task_spawned", init_task)
        runner._instrument("task_scheduled", init_task)


def _close(runner: Runner, restore_signals: Callable[[], None]) -> None:
    """The end of a run, whatever happened: the ring drained and closed, the
    hooks and signal handling put back, the thread no longer in a run."""
    try:
        runner.close()
    finally:
        runner.asyncgens.uninstall()
        restore_signals()
        if getattr(_local, "runner", None) is runner:
            _local.runner = None
            _local.task = None


def _final_outcome(runner: Runner) -> outcome.Outcome[Any]:
    """What the run returns or raises: the main task's outcome, or
    KeyboardInterrupt if a Ctrl-C is still pending (chained to the main
    task's error, if any)."""
    result = runner.main_outcome
    if runner.ki_pending:
        ki = KeyboardInterrupt()
        if type(result) is outcome.Error:
            ki.__context__ = result.error
        result = outcome.Error(ki)
    assert result is not None
    return result


def _install_sigint(
    runner: Runner, restrict_to_checkpoints: bool, set_wakeup_fd: bool = True
) -> Callable[[], None]:
    """Install run()'s SIGINT handler (``_ki.sigint_handler``): Ctrl-C raises
    KeyboardInterrupt in unprotected code, else marks it pending for the
    main task.  Returns the function that puts back what was there.

    Only when run() is in the main thread and nobody installed their own
    handler (trio's rule).  Unless ``set_wakeup_fd`` is False (a guest run:
    it decides about the wake-up fd itself), the wake-up fd points at our
    wake-up pipe, so a signal arriving while we sleep in io_uring_enter
    wakes the loop.
    """
    # (By ident: current_thread() is a dummy for a thread missing from
    # threading's table, which trio's tests simulate.)
    if threading.get_ident() != threading.main_thread().ident:
        return _nothing
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return _nothing

    def deliver() -> None:
        runner.ki_pending = True
        runner._ki_fresh = True
        runner._state_changed()

    handler = sigint_handler(deliver, restrict_to_checkpoints)
    old_handler = signal.signal(signal.SIGINT, handler)
    old_wakeup: int | None = None
    if set_wakeup_fd:
        try:
            old_wakeup = signal.set_wakeup_fd(runner._wake_w, warn_on_full_buffer=False)
        except ValueError:  # pragma: no cover
            pass

    def restore() -> None:
        # Only if the handler is still ours (trio's rule): one the program
        # installed during the run stays.
        if signal.getsignal(signal.SIGINT) is handler:
            signal.signal(signal.SIGINT, old_handler)
        if old_wakeup is not None:
            try:
                signal.set_wakeup_fd(old_wakeup)
            except ValueError:  # pragma: no cover
                pass

    return restore


def current_root_task() -> Task | None:
    """The runtime's root task (the parent of the main task's nursery)."""
    return _current_runner().init_task


def current_time() -> float:
    """The current time on the run's clock (CLOCK_MONOTONIC seconds by default)."""
    return _current_runner().current_time()


def current_clock() -> Clock | None:
    return _current_runner().clock


def current_effective_deadline() -> float:
    """The deadline that applies to the current code: ``-inf`` if already
    cancelled, ``inf`` if there is none."""
    task = current_task()
    return task._cancel_scope._effective_deadline()


def current_trio_token() -> TrioToken:
    """A token for reaching this run from other threads."""
    return _current_runner().trio_token


def current_statistics() -> RunStatistics:
    runner = _current_runner()
    submitted, reaped, enters, overflows, polled, hits, poll_ns = runner.ring.stats()
    backend = runner.backend
    deadline = runner._next_deadline()
    # Tasks in readiness waits: the POLL_ADD ops tasks wait on, by the
    # direction each task waits for (a walk over the token table: statistics
    # are not a hot path).  That is the op's mask, but for a stand-in's (a
    # writer polling a private epoll instance for POLLIN).
    waiting_read = waiting_write = 0
    for op in runner._op_slots:
        if op is not None and op.opcode == IORING_OP_POLL_ADD and op.task is not None:
            events = op.waits_for if type(op) is StandInPollOp else op.op_flags
            waiting_read += bool(events & select.POLLIN)
            waiting_write += bool(events & select.POLLOUT)
    return RunStatistics(
        tasks_living=runner._ntasks,
        tasks_runnable=len(runner._runq),
        seconds_to_next_deadline=deadline - runner.current_time() if deadline != inf else inf,
        run_sync_soon_queue_size=len(runner._entry_queue),
        io_statistics=IOStatistics(
            backend=backend.name,
            backend_reason=backend.reason,
            sqes_submitted=submitted,
            cqes_reaped=reaped,
            enters=enters,
            cq_overflows=overflows,
            ops_in_flight=runner._ops_in_flight,
            stale_cqes=runner._stale_cqes,
            tasks_waiting_read=waiting_read,
            tasks_waiting_write=waiting_write,
            polled_waits=polled,
            poll_hits=hits,
            poll_seconds=poll_ns / 1e9,
        ),
    )


def current_backend() -> Backend:
    """Which ring this run uses -- ``name`` is ``"io_uring"`` or ``"epoll"``
    (the soft ring, where io_uring is refused) -- and ``reason``, why."""
    return _current_runner().backend


def current_ring_features() -> RingFeatures:
    """What the kernel's io_uring supports (probed once at setup)."""
    return _current_runner().features


def add_instrument(instrument: Instrument) -> None:
    _current_runner().add_instrument(instrument)


def remove_instrument(instrument: Instrument) -> None:
    _current_runner().remove_instrument(instrument)


def spawn_system_task(
    async_fn: Callable[[Unpack[PosArgT]], Awaitable[object]],
    *args: Unpack[PosArgT],
    name: object = None,
    context: Context | None = None,
) -> Task:
    """Start a task in the system nursery: it is cancelled when the main task
    finishes, and if it raises, the whole run fails with an internal error."""
    runner = _current_runner()
    assert runner.system_nursery is not None
    return runner._spawn(async_fn, args, runner.system_nursery, name, system=True, context=context)


async def wait_all_tasks_blocked(cushion: float = 0.0) -> None:
    """Block until every other task has been blocked for ``cushion`` seconds
    of real time.  Tasks waiting with the same cushion wake together, in the
    order they started waiting."""
    if cushion < 0 or math.isnan(cushion):
        raise ValueError(f"cushion must be a non-negative number, not {cushion!r}")
    task = current_task()
    runner = task._runner
    heapq.heappush(runner._idle_waiters, (float(cushion), next(runner._idle_counter), task))

    def abort(raise_cancel: Callable[[], NoReturn]) -> Abort:
        runner._remove_idle_waiter(task)
        return Abort.SUCCEEDED

    await wait_task_rescheduled(abort)


async def sleep_until(deadline: float) -> None:
    """Sleep until ``current_time() >= deadline``.  A checkpoint."""
    if math.isnan(deadline):
        raise ValueError("deadline must not be NaN")
    task = _local.task
    if task is None:
        _outside_run()
    runner = task._runner
    if deadline <= runner.current_time():
        await _yield_trap(_CHECKPOINT)
        return
    if task._cancel_scope._eff or (runner.ki_pending and task is runner.main_task):
        await _yield_trap(_CHECKPOINT)
    if deadline == inf:
        await _yield_trap(_Park(_abort_sleep))
        return
    # A sleeping task is its own heap entry: no cancel scope, no exception on
    # the normal path.  Cancellation invalidates the entry.
    runner._register_deadline(task, deadline)
    await _yield_trap(_Park(task._abort_timed_sleep))


def _abort_sleep(raise_cancel: Callable[[], NoReturn]) -> Abort:
    return Abort.SUCCEEDED


async def sleep(seconds: float) -> None:
    """Sleep for ``seconds`` (0 is a pure checkpoint)."""
    if seconds < 0:
        raise ValueError("`seconds` must be non-negative")
    if math.isnan(seconds):
        # trio's words: its sleep() computes a deadline and sleep_until()
        # refuses that.
        raise ValueError("deadline must not be NaN")
    task = _local.task
    if task is None:
        _outside_run()
    if seconds == 0:
        await _yield_trap(_CHECKPOINT)
        return
    runner = task._runner
    if task._cancel_scope._eff or (runner.ki_pending and task is runner.main_task):
        await _yield_trap(_CHECKPOINT)
    if seconds == inf:
        await _yield_trap(_Park(_abort_sleep))
        return
    # (sleep_until inlined: this is the hot path of timer-heavy programs.)
    runner._register_deadline(task, runner.current_time() + seconds)
    await _yield_trap(_Park(task._abort_timed_sleep))


async def sleep_forever() -> NoReturn:
    """Sleep until cancelled."""
    await wait_task_rescheduled(lambda _: Abort.SUCCEEDED)
    raise RuntimeError("sleep_forever() should only end by cancellation, but it was rescheduled")
