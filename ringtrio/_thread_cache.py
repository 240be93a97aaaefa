"""A pool of reusable daemon worker threads.

``start_thread_soon(fn, deliver)`` runs ``fn()`` in some worker thread and
then calls ``deliver(outcome)`` in that same thread.  Starting an OS thread
costs tens of microseconds; handing a job to a thread that is already parked
costs one lock release, so ``to_thread.run_sync`` keeps finished workers
around for a while instead of letting them exit.

How the pool is organised:

* Each worker owns a ``threading.Lock`` that is held (locked) while the worker
  has nothing to do.  The worker parks by trying to acquire it with a timeout;
  a dispatcher hands it a job by storing the job and releasing the lock.
* Idle workers sit in a dict used as an ordered set.  The dispatcher takes the
  most recently idled one (LIFO): under a steady load the same few threads
  stay warm and the rest time out and exit, so the pool shrinks to what the
  load needs.
* A worker that waited ``IDLE_TIMEOUT`` seconds without a job removes itself
  from the idle set and exits -- unless a dispatcher removed it first, in
  which case a job is on its way and it goes back to waiting for it.

The pool is shared by every ``ringtrio.run`` in the process (like the threads
themselves, it is not tied to one run).  Workers are daemon threads, so a
worker stuck in a blocking call never keeps the interpreter from exiting.

Worker threads never see the event loop's async context: new threads start
with an empty ``contextvars`` context, and sniffio's thread-local override is
cleared before every job, so ``sniffio.current_async_library()`` raises
``AsyncLibraryNotFoundError`` in ``fn`` unless ``fn`` arranges otherwise.
"""

from __future__ import annotations

import contextvars
import ctypes
import ctypes.util
import os
import sys
import threading
import traceback
from collections.abc import Callable
from itertools import count
from typing import Any, Generic, TypeVar

import outcome
import sniffio

__all__ = ["IDLE_TIMEOUT", "start_thread_soon"]

RetT = TypeVar("RetT")

# How long (seconds) an idle worker waits for a new job before exiting.
IDLE_TIMEOUT = 10.0

# The name a worker carries while it has no job.
_IDLE_NAME = "ringtrio worker (idle)"

_PR_SET_NAME = 15  # from <linux/prctl.h>

_Job = tuple[Callable[[], Any], Callable[[outcome.Outcome[Any]], object], "str | None"]


def _load_prctl() -> Callable[[str], None] | None:
    """Return a function that sets the calling thread's OS-level name (what
    ``ps -T``, ``top -H`` and ``/proc/<pid>/task/<tid>/comm`` show), or None
    if libc cannot be loaded."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int

    def set_os_name(name: str) -> None:
        # The kernel keeps at most 15 bytes plus the terminating NUL.
        raw = name.encode("utf-8", "replace")[:15]
        prctl(_PR_SET_NAME, raw, 0, 0, 0)

    return set_os_name


_set_os_thread_name = _load_prctl()


class _Worker(Generic[RetT]):
    """One pooled thread.  Created by the pool with its first job."""

    __slots__ = ("_pool", "_job", "_wakeup", "_thread", "_default_name")

    def __init__(self, pool: _ThreadPool, job: _Job) -> None:
        self._pool = pool
        self._job: _Job | None = job
        # Locked <=> "no job for me yet".  The first job is already here, so
        # the lock starts released and the first acquire succeeds at once.
        self._wakeup = threading.Lock()
        self._default_name = f"ringtrio worker {next(pool._serial)}"
        self._thread = threading.Thread(target=self._main, name=self._default_name, daemon=True)
        self._thread.start()

    def _give(self, job: _Job) -> None:
        # Called by a dispatcher that has just removed us from the idle set,
        # so nobody else can be handing us a job concurrently.
        self._job = job
        self._wakeup.release()

    def _main(self) -> None:
        pool = self._pool
        while True:
            if self._wakeup.acquire(timeout=IDLE_TIMEOUT):
                self._run_job()
                continue
            # Timed out.  Decide under the pool lock whether we exit: if a
            # dispatcher already took us out of the idle set it has committed
            # to giving us a job (it may be about to release our lock), so we
            # must stay and wait for it.
            with pool._lock:
                if self in pool._idle:
                    del pool._idle[self]
                    return

    def _run_job(self) -> None:
        job = self._job
        self._job = None
        assert job is not None, "worker woken without a job"
        fn, deliver, name = job
        thread = threading.current_thread()
        if name is not None:
            thread.name = name
            if _set_os_thread_name is not None:
                _set_os_thread_name(name)
        # A previous job might have set sniffio's per-thread override; the
        # next job must start from "no async library here".
        sniffio.thread_local.name = None
        # A fresh empty context per job: whatever one job sets with
        # ContextVar.set() must not leak into the next job on this thread.
        result: outcome.Outcome[Any] = outcome.capture(contextvars.Context().run, fn)
        # Drop the references before parking: a job's function and its
        # arguments must not stay alive for IDLE_TIMEOUT seconds.
        del fn, job
        if name is not None:
            thread.name = self._default_name
            if _set_os_thread_name is not None:
                _set_os_thread_name(_IDLE_NAME)
        sniffio.thread_local.name = None
        # Rejoin the idle set *before* delivering.  deliver() typically wakes
        # the event loop, and the task it wakes often asks for a thread
        # straight away (a loop of to_thread.run_sync calls); if we were not
        # idle yet, the dispatcher would have to start a brand new thread
        # while this one is about to become free.  Being idle while deliver()
        # still runs is harmless: a new job just waits on our lock until we
        # come back to acquire it.
        with self._pool._lock:
            self._pool._idle[self] = None
        try:
            deliver(result)
        except BaseException:
            # deliver() must not raise; there is nobody to report to, so say
            # so on stderr rather than killing a pooled thread silently
            # ("delivering result" is trio's phrase, which people grep for).
            print(
                f"ringtrio: exception while delivering result of a worker thread: the "
                f"deliver callback {deliver!r} raised (deliver functions must not raise):",
                file=sys.stderr,
            )
            traceback.print_exc()


class _ThreadPool:
    __slots__ = ("_lock", "_idle", "_serial")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Ordered set of idle workers; popitem() takes the newest (LIFO).
        self._idle: dict[_Worker[Any], None] = {}
        self._serial = count(1)

    def start_thread_soon(
        self,
        fn: Callable[[], RetT],
        deliver: Callable[[outcome.Outcome[RetT]], object],
        name: str | None = None,
    ) -> None:
        job: _Job = (fn, deliver, name)
        with self._lock:
            worker = self._idle.popitem()[0] if self._idle else None
        if worker is None:
            _Worker(self, job)
        else:
            worker._give(job)

    def idle_count(self) -> int:
        """How many workers are parked waiting for a job (for tests)."""
        with self._lock:
            return len(self._idle)

    def _forget_workers_after_fork(self) -> None:
        # In a forked child only the forking thread exists; the parked
        # workers recorded here are gone and must never be handed a job.
        self._lock = threading.Lock()
        self._idle = {}


_POOL = _ThreadPool()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL._forget_workers_after_fork)


def start_thread_soon(
    fn: Callable[[], RetT],
    deliver: Callable[[outcome.Outcome[RetT]], object],
    name: str | None = None,
) -> None:
    """Run ``fn()`` in a worker thread, then ``deliver(outcome)`` in the same
    thread, where ``outcome`` is an :class:`outcome.Outcome` holding what
    ``fn`` returned or raised.

    ``fn`` may block as long as it likes.  ``deliver`` must be quick and must
    not raise (an exception from it is printed to stderr and dropped); the
    usual ``deliver`` hands the outcome to an event loop, e.g. with
    ``TrioToken.run_sync_soon``.

    ``name``, if given, is the thread's name (``threading.current_thread().name``
    and, truncated to 15 bytes, the OS-level name) while ``fn`` runs.

    Worker threads are daemon threads: they do not keep the process alive.
    ``fn`` runs in a fresh, empty ``contextvars`` context, with no async
    library visible to sniffio.
    """
    _POOL.start_thread_soon(fn, deliver, name)
