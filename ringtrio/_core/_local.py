"""Where "the current run" lives: the runner and the task running now.

A thread-local, so that separate threads can each run their own
ringtrio.run().  The core's hot paths (checkpoints, parking, submitting an
op) read ``_local.task`` directly; everything else asks through
:func:`current_task` and :func:`_current_runner`, which say clearly when they
are called from outside a run.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from ._runner import Runner
    from ._task import Task


class _RunLocal(threading.local):
    runner: Runner | None = None
    task: Task | None = None


_local = _RunLocal()


def _outside_run() -> NoReturn:
    raise RuntimeError(
        "this must be called from inside ringtrio.run() (in a ringtrio task), "
        "not from plain synchronous code or another event loop"
    )


def _current_runner() -> Runner:
    runner = getattr(_local, "runner", None)
    if runner is None:
        raise RuntimeError("must be called from inside ringtrio.run()")
    return runner  # type: ignore[no-any-return]


def current_task() -> Task:
    """The task this code is running in."""
    task = getattr(_local, "task", None)
    if task is None:
        raise RuntimeError("must be called from inside a ringtrio task (inside ringtrio.run())")
    return task  # type: ignore[no-any-return]
