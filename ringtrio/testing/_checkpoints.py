"""assert_checkpoints / assert_no_checkpoints."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import AbstractContextManager, contextmanager

from .._core import Instrument, Task, add_instrument, current_task, remove_instrument
from .._core._internal_api import _RESUME_PLAIN


class _CheckpointCounter(Instrument):
    # Every resumption of the watched task inside the block matches one
    # yield inside it.  What the task resumes with tells the kind of yield:
    # a cancel-shielded schedule point resumes "plain"; a checkpoint resumes
    # "checking cancel"; a park (a blocking wait, cancellable) resumes with
    # the value it was rescheduled with.  A cancellation check that did not
    # yield (checkpoint_if_cancelled before an operation that completes at
    # once, followed by a cancel-shielded yield: trio's shape) is counted on
    # the task itself (Task._cancel_checks).
    def __init__(self, task: Task) -> None:
        self.task = task
        self.schedule_points = 0
        self.cancel_points = 0

    def before_task_step(self, task: Task) -> None:
        if task is not self.task:
            return
        self.schedule_points += 1
        if task._next_send is not _RESUME_PLAIN:
            self.cancel_points += 1


@contextmanager
def _watch(expect_checkpoints: bool) -> Generator[None, None, None]:
    task = current_task()
    counter = _CheckpointCounter(task)
    checks_before = task._cancel_checks
    add_instrument(counter)
    try:
        yield
    finally:
        remove_instrument(counter)
    counter.cancel_points += task._cancel_checks - checks_before
    if expect_checkpoints:
        if not (counter.schedule_points and counter.cancel_points):
            raise AssertionError(
                "assert_checkpoints block did not yield to the scheduler and check "
                f"for cancellation (schedule points: {counter.schedule_points}, "
                f"cancel points: {counter.cancel_points})"
            )
    elif counter.schedule_points or counter.cancel_points:
        raise AssertionError(
            f"assert_no_checkpoints block yielded {counter.schedule_points} time(s)"
        )


def assert_checkpoints() -> AbstractContextManager[None]:
    """``with assert_checkpoints():`` fails unless the block contains a
    checkpoint (a schedule point that also checks for cancellation)."""
    return _watch(True)


def assert_no_checkpoints() -> AbstractContextManager[None]:
    """``with assert_no_checkpoints():`` fails if the block yields to the
    scheduler at all."""
    return _watch(False)
