"""Read-only views of a run, for ``ringtrio.lowlevel.task_tree()``.

The task tree is built above the core (``ringtrio/_task_tree.py``): it
describes sockets, files, buffer groups and what a task's wait means in the
layer's own words, which the core knows nothing of.  What it needs of the
scheduler's own state is listed here, in one place, so that the scheduler
can change without the debugging code reaching into it:

- per task (``task_facts``): the abort function it is parked with, what
  its wait keeps in ``custom_sleep_data`` (a parking lot), its nurseries,
  the frames of its await chain; its innermost cancel scope
  (``innermost_scope``; ``parent_scope`` goes outwards);
- per scope: deadline, shield, cancel called, effectively cancelled
  (``scope_state``; read without the side effect of
  ``CancelScope.cancel_called``, which expires a passed deadline);
- per nursery: the objects whose exit callbacks it holds (``owned_by``:
  buffer groups);
- per run: the task running, the sleeping tasks' deadlines, the ring ops
  in flight with their submission times;
- per loop pass: whether the loop's wait has a timer (``wait_is_unbounded``,
  for ``testing.HangDetector``).

Two things here change the run, and both only on request:

- **Submission times** (``set_op_timestamps``).  Stamping every op would
  cost a clock read on the hottest path of all I/O, so ops are stamped only
  while timestamps are on: the runner's ``_submit_op`` is then shadowed, on
  that one runner object, by a wrapper that calls it and records
  ``(token, time.monotonic())`` in a table keyed by slot; linked chains
  stamp their members when the table exists.  While off (the default) no
  code path differs at all.  A stamp is only believed while the op still
  holds the same token, so a slot reused since is never given an old age.
- **A signal that prints the tree** (``install_dump_signal``, for
  ``run(dump_tasks_on=...)``): the handler queues one idempotent callback
  for the loop, as ``open_signal_receiver`` does, and the run's wake-up pipe
  is the signal module's wake-up fd while it is installed, so a signal that
  arrives while the loop waits in ``io_uring_enter`` wakes it.  The tree is
  printed by the loop between two task steps, never inside the handler.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from ._exceptions import RunFinishedError
from ._local import _local
from ._ring_ops import _SLOT_MASK, RingOp
from ._runner import _MAX_WAIT
from ._task import await_chain_frames

if TYPE_CHECKING:
    from ._cancel_scope import CancelScope
    from ._chains import LinkedChain
    from ._nursery import Nursery
    from ._runner import Runner
    from ._task import Task


# -- tasks, scopes, nurseries -----------------------------------------------


def task_facts(
    task: Task,
) -> tuple[Callable[..., Any] | None, bool, Any, list[Nursery], list[FrameType]]:
    """What the task tree reads of a task, in one call (a snapshot makes one
    per task, and 10 000 tasks should take milliseconds):

    - the abort function it is parked with; None if it is not parked
      (running or runnable);
    - whether it is a system task (the run's own, or started with
      ``spawn_system_task``);
    - what its wait keeps in ``custom_sleep_data`` (the ParkingLot it is
      parked in, for waits built on one);
    - the nurseries it has open, outermost first (the task's own list: not
      to be changed);
    - the frames of its await chain, outermost first (no line numbers).
    """
    return (
        task._abort_func,
        task._system,
        task.custom_sleep_data,
        task._child_nurseries,
        list(await_chain_frames(task.coro)),
    )


def innermost_scope(task: Task) -> CancelScope:
    """The innermost cancel scope ``task`` is in (its nursery's, if it
    entered none of its own)."""
    return task._cancel_scope


def parent_scope(scope: CancelScope) -> CancelScope | None:
    """The scope around ``scope`` (None for the run's root scope)."""
    return scope._parent


@dataclass(frozen=True, slots=True)
class ScopeState:
    deadline: float
    shield: bool
    cancel_called: bool
    # cancel_called here, or in an enclosing scope and no shield between.
    effectively_cancelled: bool
    # The scope of a nursery (its children run directly in it).
    is_nursery_scope: bool
    owner: Task | None


def scope_state(scope: CancelScope) -> ScopeState:
    return ScopeState(
        deadline=scope._deadline,
        shield=scope._shield,
        cancel_called=scope._cancel_called,
        effectively_cancelled=scope._eff,
        is_nursery_scope=scope._nursery_tasks is not None,
        owner=scope._owner,
    )


def owned_by(nursery: Nursery) -> list[object]:
    """The objects whose cleanup ``nursery`` runs when it closes (the
    ``__self__`` of each bound-method exit callback: buffer groups)."""
    owners = []
    for callback in nursery._exit_callbacks or ():
        owner = getattr(callback, "__self__", None)
        if owner is not None:
            owners.append(owner)
    return owners


# -- the run ----------------------------------------------------------------


def running_task() -> Task | None:
    """The task whose step is in progress in this thread (None between
    steps: in a run_sync_soon callback or the loop's own code)."""
    return _local.task


def sleep_deadlines(runner: Runner) -> dict[Task, float]:
    """The deadline of each task in ``sleep()``/``sleep_until()`` (a task
    is its own entry in the deadline queues while it sleeps)."""
    from ._task import Task

    found: dict[Task, float] = {}
    for entries in (runner._sorted_deadlines, runner._deadlines):
        for deadline, seq, obj in entries:
            if type(obj) is Task and obj._deadline_seq == seq:
                found[obj] = deadline
    return found


def ops_in_flight(runner: Runner) -> list[tuple[RingOp, float | None]]:
    """Every ring op holding a token (the runtime's own reserved slots
    excepted), with its submission time on ``time.monotonic()`` when
    timestamps were on as it was submitted, else None."""
    from ._ring_ops import _RESERVED_SLOTS

    stamps = runner._op_stamps or {}
    found: list[tuple[RingOp, float | None]] = []
    slots = runner._op_slots
    for slot in range(_RESERVED_SLOTS, len(slots)):
        op = slots[slot]
        if op is None:
            continue
        stamp = stamps.get(slot)
        found.append((op, stamp[1] if stamp is not None and stamp[0] == op.token else None))
    return found


def chain_of(abort_owner: object) -> LinkedChain | None:
    """``abort_owner`` if it is a linked chain (a task in
    ``submit_chain_and_wait`` is parked with the chain's abort)."""
    # (_chains imports this module: its class is looked up at call time.)
    chains = sys.modules[__package__ + "._chains"]
    return abort_owner if isinstance(abort_owner, chains.LinkedChain) else None


def wait_is_unbounded(timeout: float) -> bool:
    """Whether the loop's I/O wait with this timeout (what an instrument's
    ``before_io_wait`` is given) ends only when something happens: no
    deadline, sleep, ``wait_all_tasks_blocked`` cushion or clock autojump is
    due (the loop then waits a day at a time, as it does for a deadline a
    clock that never moves will not reach)."""
    return timeout >= _MAX_WAIT


# -- submission timestamps --------------------------------------------------


def op_timestamps_enabled(runner: Runner) -> bool:
    return runner._op_stamps is not None


def set_op_timestamps(runner: Runner, enabled: bool) -> None:
    """Start or stop stamping ring ops with their submission time (see the
    module docstring).  Idempotent."""
    if enabled == (runner._op_stamps is not None):
        return
    if not enabled:
        runner._op_stamps = None
        del runner._submit_op  # type: ignore[method-assign]
        return
    stamps: dict[int, tuple[int, float]] = {}
    runner._op_stamps = stamps
    submit = type(runner)._submit_op.__get__(runner)
    now = time.monotonic

    def _submit_op(op: RingOp, task: Task | None, deadline: float | None = None) -> None:
        submit(op, task, deadline)
        token = op.token
        stamps[token & _SLOT_MASK] = (token, now())

    # An attribute of this runner object only: every caller looks
    # `runner._submit_op` up at call time, and other runs are unaffected.
    runner._submit_op = _submit_op  # type: ignore[method-assign]


def stamp_ops(runner: Runner, ops: tuple[RingOp, ...]) -> None:
    """Record the submission of ``ops`` now (linked chains, which take their
    tokens without ``_submit_op``), if timestamps are on."""
    stamps = runner._op_stamps
    if stamps is not None:
        now = time.monotonic()
        for op in ops:
            stamps[op.token & _SLOT_MASK] = (op.token, now)


# -- printing the tree on a signal ------------------------------------------

# Registered by ringtrio/_task_tree.py when imported (`import ringtrio`
# always imports it): print_task_tree(file).  The core never imports upward.
_printer: Callable[[TextIO], None] | None = None


def set_task_tree_printer(printer: Callable[[TextIO], None]) -> Callable[[TextIO], None]:
    """Register what ``run(dump_tasks_on=...)`` calls to print the tree."""
    global _printer
    _printer = printer
    return printer


def _print_tree_now() -> None:
    # A run_sync_soon callback: in the loop, between task steps.
    if _printer is not None:
        _printer(sys.stderr)


def check_dump_signal(signum: object, api: str = "run") -> int:
    """The signal number ``run(dump_tasks_on=...)`` (or ``api``'s, such as
    start_guest_run's) was given, or an error that says why it cannot be
    used.  Checked before the run starts."""
    try:
        number = int(signal.Signals(signum))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(
            f"{api}(dump_tasks_on=...) takes a signal number such as signal.SIGUSR1, not {signum!r}"
        ) from None
    if number in (signal.SIGKILL, signal.SIGSTOP):
        raise ValueError(f"{api}(dump_tasks_on={signal.Signals(number).name}): that signal cannot be caught")
    if number == signal.SIGINT:
        raise ValueError(
            f"{api}(dump_tasks_on=SIGINT) would take Ctrl-C away from KeyboardInterrupt; "
            "use another signal, such as signal.SIGUSR1"
        )
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            f"{api}(dump_tasks_on=...) needs the main thread: Python only lets the main "
            "thread install signal handlers"
        )
    return number


def install_dump_signal(
    runner: Runner, signum: int, then: Callable[[], None], set_wakeup_fd: bool = True
) -> Callable[[], None]:
    """Print the task tree on ``signum`` for the rest of the run.  Returns
    what puts the previous handler and wake-up fd back and then calls
    ``then`` (the restore of what was installed before: run()'s SIGINT
    handler, whose wake-up fd this one saw as the previous one).

    ``set_wakeup_fd=False`` (a guest run) leaves the wake-up fd as it is:
    the guest has already decided whose it is (the host's, or its own pipe
    for the run).  Either one wakes the host's (main) thread, where the
    handler runs; queuing the printing there wakes the guest's helper thread
    if it is waiting (``Runner._run_sync_soon``), so the next pass prints."""
    set_op_timestamps(runner, True)

    def handler(number: int, frame: Any) -> None:
        # Runs in the main thread between two bytecodes of whatever runs,
        # maybe the loop itself: only queue the printing (once, however
        # many signals come before it runs).
        try:
            runner._run_sync_soon(_print_tree_now, (), True)
        except RunFinishedError:
            pass

    old_handler = signal.signal(signum, handler)
    old_wakeup: int | None = None  # None: not ours to put back
    if set_wakeup_fd:
        try:
            old_wakeup = signal.set_wakeup_fd(runner._wake_w, warn_on_full_buffer=False)
        except ValueError:  # pragma: no cover - checked: main thread
            old_wakeup = -1

    def restore() -> None:
        try:
            # Only what is still ours: a handler the program installed
            # during the run stays.
            if signal.getsignal(signum) is handler:
                signal.signal(signum, old_handler)
            if old_wakeup is not None and old_wakeup != runner._wake_w:
                # (Otherwise run()'s SIGINT handling set it, and puts back
                # what was there before in `then`: the pipe is closed by now.)
                signal.set_wakeup_fd(old_wakeup)
        finally:
            then()

    return restore
