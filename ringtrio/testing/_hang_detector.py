"""HangDetector: an instrument that prints the task tree when a run has
been idle for too long with nothing to wake it, so a deadlock says what
every task waits on.

Hung means: no task was scheduled, and the loop waited with no timer armed
(no deadline, sleep or other wake-up due: ``before_io_wait`` was given the
loop's unbounded wait), for ``timeout`` seconds of real time.  A run that
sleeps, or waits inside a deadline, is not hung: the timer will wake it.
The hang clock starts at the first such pass after the last activity or
the last armed timer.  The loop may be asleep in ``io_uring_enter`` for all
that time, so the detector cannot count on a hook being called.  A
watchdog thread sleeps until ``timeout`` after the hang clock started; if
nothing changed since, it asks the loop, through the run's TrioToken
(whose wake-up pipe interrupts the wait), to print the tree.  The tree is
taken in the loop, between steps, as every snapshot must be; the callback
checks once more that the run is still hung before it reports.  One report
per episode: the next comes only after some task has run (or a timer was
armed) and the run has hung again.

The hooks cost a Python call per scheduled task (an instrument's usual
price, and the run takes its instrumented path while any instrument is
installed): meant for tests and debugging sessions.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from .._core import Instrument, RunFinishedError, current_statistics, current_trio_token
from .._core._internal_api import _introspect
from .._final import final
from .._task_tree import TaskTree, enable_op_timestamps, task_tree

if TYPE_CHECKING:
    from .._core import Task, TrioToken

__all__ = ["HangDetector"]


@final
class HangDetector(Instrument):
    """Print the task tree once per hang of ``timeout`` seconds.

    ``ringtrio.run(main, instruments=[HangDetector(timeout=5)])``: when no
    task has been scheduled and no timer has been armed (no deadline or
    sleep due: nothing can wake the run but I/O, a thread or a signal) for
    5 s of real time, the tree
    (:func:`ringtrio.lowlevel.task_tree`) is printed to ``file`` (default
    ``sys.stderr``), or handed to ``on_hang(tree)`` if given instead.  Ring
    ops are stamped with their submission time while it is installed, so
    the tree says how long each has waited.

    A task that never yields (a CPU loop without checkpoints) keeps the
    loop from running the report at all: that is not an idle run, and
    ``faulthandler.dump_traceback_later`` is the tool for it.
    """

    def __init__(
        self,
        timeout: float,
        file: TextIO | None = None,
        *,
        on_hang: Callable[[TaskTree], object] | None = None,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"HangDetector(timeout=...) takes seconds as a number, not {timeout!r}")
        if not timeout > 0 or math.isinf(timeout):
            raise ValueError(f"HangDetector(timeout=...) must be a finite number of seconds > 0, not {timeout!r}")
        self.timeout = float(timeout)
        self.file = file
        self.on_hang = on_hang
        # How many idle episodes were reported.
        self.reports = 0
        # Written by the loop's thread, read by the watchdog (single
        # assignments of immutable values: the GIL makes them atomic).
        self._activity = 0  # bumped whenever a task is scheduled
        self._passes = 0  # bumped by every pass of the loop (after its wait)
        self._idle_since = 0.0  # time.monotonic() the hang clock started
        self._idle_activity = -1  # the activity count _idle_since is for
        self._unbounded = False  # the loop's last wait had no timer armed
        self._episode = 0  # bumped whenever the hang clock starts again
        self._reported = -1  # the episode last reported
        self._token: TrioToken | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<ringtrio.testing.HangDetector timeout={self.timeout}>"

    # -- hooks (in the loop's thread) -------------------------------------

    def before_run(self) -> None:
        self._start()

    def task_scheduled(self, task: Task) -> None:
        self._activity += 1

    def before_io_wait(self, timeout: float) -> None:
        # The hang clock starts at the first unbounded wait after the last
        # activity or the last wait with a timer (a zero timeout, a pass
        # with work to do, counts as one).
        unbounded = _introspect.wait_is_unbounded(timeout)
        if self._idle_activity != self._activity or not (unbounded and self._unbounded):
            self._idle_activity = self._activity
            self._idle_since = time.monotonic()
            self._episode += 1
        self._unbounded = unbounded
        if self._thread is None:
            self._start()  # added during the run: no before_run

    def after_io_wait(self, timeout: float) -> None:
        self._passes += 1

    def after_run(self) -> None:
        self._stop.set()
        self._token = None
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()  # at once: it waits on _stop

    # -- the watchdog ------------------------------------------------------

    def _start(self) -> None:
        if self._thread is not None:
            return
        enable_op_timestamps()
        self._token = current_trio_token()
        self._stop.clear()
        self._idle_activity = self._activity
        self._idle_since = time.monotonic()
        self._episode += 1
        self._thread = threading.Thread(
            target=self._watch, name=f"ringtrio HangDetector({self.timeout})", daemon=True
        )
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            episode, since = self._episode, self._idle_since
            remaining = since + self.timeout - time.monotonic()
            if episode == self._reported or remaining > 0:
                # Already reported (wait for a new episode) or not yet due.
                self._stop.wait(remaining if remaining > 0 else self.timeout)
                continue
            token = self._token
            if token is None:
                return
            try:
                token.run_sync_soon(self._report, episode, self._passes, idempotent=True)
            except RunFinishedError:
                return
            # The loop answers at once unless a task never yields: do not
            # ask again for the same episode.
            self._reported = episode

    def _report(self, episode: int, passes: int) -> None:
        # In the loop, between steps.
        if self._passes == passes:
            # The loop woke for this callback without calling our
            # after_io_wait: the detector was removed from the run.
            self._stop.set()
            return
        if (
            self._episode != episode
            or self._activity != self._idle_activity
            or not self._unbounded
            or current_statistics().tasks_runnable
        ):
            # Not the same episode any more, a timer is armed, or not
            # idle: each of these starts a new episode, which the watchdog
            # times afresh.
            return
        self.reports += 1
        tree = task_tree()
        if self.on_hang is not None:
            self.on_hang(tree)
            return
        file = sys.stderr if self.file is None else self.file
        print(
            f"ringtrio.testing.HangDetector: no task has run for {self.timeout:g} s "
            "and nothing can wake one (no completion, no timer armed); the tasks:",
            file=file,
        )
        print(str(tree), file=file, flush=True)
