"""AnyIO's ``TaskInfo`` for ringtrio tasks (``anyio.get_current_task()``,
``get_running_tasks()``, lock owners)."""

from __future__ import annotations

import weakref

from anyio import TaskInfo

import ringtrio
from ringtrio import lowlevel


class RingtrioTaskInfo(TaskInfo):
    __slots__ = ("_task",)

    def __init__(self, task: lowlevel.Task) -> None:
        parent = task.parent_nursery
        parent_id = id(parent.parent_task) if parent is not None else None
        super().__init__(id(task), parent_id, task.name, task.coro)
        # A weak reference: a TaskInfo kept around must not keep the task alive.
        self._task = weakref.ref(task)

    def has_pending_cancellation(self) -> bool:
        task = self._task()
        if task is None:
            return False  # gone, so nothing is pending for it
        # ringtrio (like trio) has no public "is this task cancelled?"; the
        # task's innermost scope caches whether it is effectively cancelled.
        return bool(task._cancel_scope._eff)


def task_info(task: lowlevel.Task) -> RingtrioTaskInfo:
    return RingtrioTaskInfo(task)


def running_tasks() -> list[TaskInfo]:
    """Every task of the run, the root first, walking down the nurseries."""
    root = lowlevel.current_root_task()
    assert root is not None
    infos: list[TaskInfo] = [RingtrioTaskInfo(root)]
    nurseries = root.child_nurseries
    while nurseries:
        deeper: list[ringtrio.Nursery] = []
        for nursery in nurseries:
            for task in nursery.child_tasks:
                infos.append(RingtrioTaskInfo(task))
                deeper.extend(task.child_nurseries)
        nurseries = deeper
    return infos
