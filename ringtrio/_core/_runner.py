"""The Runner: the state of one call to ringtrio.run() and its loop.

Every task is a coroutine driven by :meth:`Runner._run_loop`; what a task
yields is a trap (``_traps.py``).  One pass of the loop: submit the SQEs
queued since the last pass and copy out CQEs with one native call
(:meth:`Runner._io_pass`), hand each CQE to the op whose token it carries
(:meth:`Runner._dispatch_cqes`), run callbacks from other threads, expire
deadlines, then run every task that was runnable at the start of the pass,
once.  Also here: the token table of in-flight ops, the deadline queues,
spawning and reaping tasks, KeyboardInterrupt delivery, idle detection
(``wait_all_tasks_blocked``), and draining the ring at the end of a run.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import math
import os
import struct
import threading
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextvars import Context, copy_context
from typing import TYPE_CHECKING, Any, NoReturn

import outcome
from sniffio import current_async_library_cvar as _sniffio_cvar
from sniffio import thread_local as _sniffio_thread

from . import _accel, _ring
from ._asyncgens import AsyncGenerators
from ._backend import note_refusal, open_ring
from ._instrumentation import _hooks_of
from ._sniffio_name import sniffio_name
from ._exceptions import (
    BusyResourceError,
    Cancelled,
    RingtrioInternalError,
    RingUnavailableError,
    RunFinishedError,
)
from ._detach import _PermanentDetach
from ._local import _local
from ._op_memory import address_of, pin_view
from ._ring import (
    IORING_CQE_F_MORE,
    IORING_OP_ASYNC_CANCEL,
    IORING_OP_READ,
    IOSQE_CQE_SKIP_SUCCESS,
    REFUSALS,
    RingFeatures,
)
from ._ring_ops import (
    _LINK_EXPIRED,
    _RESERVED_SLOTS,
    _SLOT_MASK,
    _TOKEN_IGNORE,
    _TOKEN_WAKEUP,
    RingOp,
    _abandoned_ops,
    _CancelOp,
    _release_memory,
)
from ._cancel_scope import _DONE as _SCOPE_DONE
from ._nursery import _misnesting_at_exit
from ._task import Task, _require_function, new_task
from ._traps import (
    _CHECKPOINT,
    _RESUME_CHECKING_CANCEL,
    _RESUME_PLAIN,
    _YIELD,
    Abort,
    _cancelled_for,
    _Park,
    reschedule,
    wait_task_rescheduled,
)
from ._trio_token import TrioToken

if TYPE_CHECKING:
    from ._cancel_scope import CancelScope
    from ._clock import Clock
    from ._instrumentation import Instrument
    from ._nursery import Nursery
    from ._run_var import RunVar

inf = math.inf

# What a task that returned normally reports to its nursery: only the main
# task's return value is ever used, so the others share one (never
# unwrapped) outcome instead of allocating one each.
_EXITED_OK: outcome.Value[None] = outcome.Value(None)
# Deadlines in kernel time are int64 nanoseconds.  A linked timeout is only
# attached to deadlines below this bound (2**62 ns, about 146 years of
# CLOCK_MONOTONIC); later ones, up to inf, are left to the Python heap.
_MAX_KERNEL_DEADLINE = 2.0**62 / 1e9
# The longest single wait in io_uring_enter, in seconds (trio's bound too).
# A deadline further away -- 1e10 s, 1e300 s, a MockClock that never moves --
# is waited for in steps of a day: the loop wakes, finds nothing due and
# waits again.  This keeps every wait timeout a small int64 of nanoseconds.
_MAX_WAIT = 86400.0
# What the reserved slots of the token table hold: never a user op.
_IGNORED_OP = RingOp(_ring.IORING_OP_NOP)

# The accelerator's entry points on the runner's per-op and per-pass paths
# (see _accel.py), kept as globals of this module so that those paths read
# them as cheaply as before the core was split into files; set by
# _load_speedups when a Runner starts, None while the Python code below does
# the work.
_sp_submit: Callable[..., Any] | None = None
_sp_dispatch: Callable[..., Any] | None = None
_sp_run_batch: Callable[..., tuple[int, Any, int, Any]] | None = None


def _load_speedups(ffi: Any, lib: Any) -> None:
    global _sp_submit, _sp_dispatch, _sp_run_batch
    _accel.load(ffi, lib)
    _sp_submit, _sp_dispatch, _sp_run_batch = _accel._sp_submit, _accel._sp_dispatch, _accel._sp_run_batch


_CQE_STRUCT = struct.Struct("QiI")
_iter_cqes = _CQE_STRUCT.iter_unpack


class Runner:
    """The state of one call to :func:`run`."""

    def __init__(
        self,
        clock: Clock | None,
        instruments: tuple[Instrument, ...],
        strict_exception_groups: bool,
        backend: str | None = None,
        guest: bool = False,
    ) -> None:
        self.clock = clock
        # With the default clock, deadlines are CLOCK_MONOTONIC seconds and can
        # ride with ring ops as kernel link timeouts.  A custom clock's time is
        # not the kernel's: then deadlines are handled in Python only.
        self._kernel_deadlines = clock is None
        if clock is None:
            self.current_time: Callable[[], float] = time.monotonic
        else:
            self.current_time = clock.current_time
        self.strict_exception_groups = strict_exception_groups
        # Every installed instrument (the hot paths only ask whether there
        # is any), and per hook the ones that implement it, decided when
        # each was added.
        self._instruments: list[Instrument] = []
        self._hooks: dict[str, list[Instrument]] = {}
        for inst in instruments:
            self.add_instrument(inst)
        self._runq: deque[Task] = deque()
        self._ntasks = 0
        # The init task, while it waits for tasks that misnesting left
        # running outside every nursery's wait (wait_for_stragglers).
        self._straggler_waiter: Task | None = None
        # Deadlines live in two structures: a deque of entries that arrived
        # in nondecreasing deadline order (the common case: every sleep(d) or
        # move_on_after(d) with the same d) -- O(1) in and out -- and a heap
        # for the rest.  The earliest deadline is at the head of one of them.
        self._deadlines: list[tuple[float, int, Any]] = []
        self._sorted_deadlines: deque[tuple[float, int, Any]] = deque()
        self._deadline_counter = itertools.count(1)
        self._stale_deadlines = 0
        # Active cancel scopes with a registered deadline.  While zero, no
        # ring op can need a linked timeout: skip the scope-chain walk.
        self._scope_deadlines = 0
        self._runvars: dict[RunVar[Any], Any] = {}
        self.ki_pending = False
        # A KeyboardInterrupt that has not yet been offered to a parked main
        # task.  Offered once: if the main task's wait cannot be aborted right
        # away (Abort.FAILED), it gets it at its next checkpoint or park.
        self._ki_fresh = False
        self.main_task: Task | None = None
        self.main_outcome: outcome.Outcome[Any] | None = None
        self.init_task: Task | None = None
        self.system_nursery: Nursery | None = None
        # The init task's outermost nursery (see _run._init).
        self.late_nursery: Nursery | None = None
        self.system_context: Context = copy_context()
        # What sniffio says in the run's tasks: through its context variable,
        # which every task's context inherits.  Not in a guest run, whose
        # tasks share a thread with the host loop: an asyncio task started
        # from one of them copies its context and would say "ringtrio" too.
        # A guest run sets sniffio's thread-local for the length of each
        # pass instead (_guest.py), as trio does for every run.  (_spawn
        # keeps the variable right in tasks spawned where it says otherwise.)
        self.sniffio_name = sniffio_name()
        if not guest:
            self.system_context.run(_sniffio_cvar.set, self.sniffio_name)
        self.trio_token = TrioToken._create(self)
        self.asyncgens = AsyncGenerators(self)
        self._idle_waiters: list[tuple[float, int, Task]] = []
        self._idle_counter = itertools.count()
        # Tokens: slot index in the low 32 bits, the slot's generation in the
        # high 32.  A CQE whose generation does not match the slot's current
        # one is stale (its op is long gone) and wakes nobody.
        self._op_slots: list[RingOp | None] = [_IGNORED_OP] * _RESERVED_SLOTS
        self._op_gens: list[int] = [0] * _RESERVED_SLOTS
        self._free_slots: list[int] = []
        self._ops_in_flight = 0
        # Submission times by slot, (token, time.monotonic()), while
        # lowlevel.enable_op_timestamps() is on; None (the default) while
        # nothing stamps (see _introspect.py).
        self._op_stamps: dict[int, tuple[int, float]] | None = None
        self._stale_cqes = 0
        self._more_cqes = False
        # SQEs queued since the last enter: if none and no op is in flight,
        # a non-blocking pass needs no native call at all.
        self._sq_dirty = False
        self._idle_primed = 0
        # Set once the loop is over: no new ops may be submitted.
        self._ops_closed = False
        # Cross-thread wake-ups: a pipe whose read end always has a READ
        # pending on the ring.  run_sync_soon from another thread and signal
        # delivery (via signal.set_wakeup_fd) write a byte to it.
        self._entry_queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        # Re-entrant: run_sync_soon may be called from a signal handler that
        # interrupted the loop while it held the lock.
        self._entry_lock = threading.RLock()
        self._idempotent: dict[tuple[Callable[..., Any], tuple[Any, ...]], None] = {}
        self._closed_for_entries = False
        self._wakeup_armed = False
        self._thread = threading.get_ident()
        # Guest mode (_guest.py): the loop runs one pass per callback from
        # the host loop, and a helper thread waits for the ring in between.
        # _guest_waiting is True while it waits: code the host runs
        # meanwhile that changes what the wait depends on calls
        # _state_changed().  _guest_wait is that wait's (timeout, idle
        # primed) and, once over, whether it timed out: the next pass takes
        # it instead of waiting itself.
        self.is_guest = guest
        self._guest_waiting = False
        self._guest_wait: tuple[float, int, bool] | None = None
        # Resources whose memory in-flight ops may still use at the end of
        # the run: closed once the ring has been drained.
        self._close_after_drain: list[Callable[[], None]] = []
        self._done = False
        self._open_kernel_side(backend)
        if guest and self.ring.soft:
            # The soft ring times linked timeouts in its own heap, which only
            # a pass looks at, and a guest run's helper thread waits on the
            # ring's fd, which no timer wakes: leave deadlines to our heap,
            # whose next deadline is the wait's timeout.
            self._kernel_deadlines = False

    def _open_kernel_side(self, backend: str | None) -> None:
        """Open what the run needs from the kernel: the ring and the wake-up
        pipe.  The one place a run can fail to start (after the argument
        checks): all or nothing, so that a failed run() leaves no fd behind
        -- one run after another failing on EMFILE must not eat the
        process's descriptors -- and every failure is a
        RingUnavailableError naming its cause.

        The ring is the kernel's or the soft ring (see _backend.py); nothing
        below cares which.  The fallback warning, if any, is given by run()."""
        ring, self.backend, self.fallback_warning = open_ring(backend, guest=self.is_guest)
        try:
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            ring.close()
            raise RingUnavailableError.cannot_start(
                "its wake-up pipe could not be created", exc
            ) from exc
        try:
            self._wake_buf = ring.ffi.new("char[]", 256)
            self.features: RingFeatures = ring.features
            self._lib = ring.lib
            self._ring_ptr = ring.ptr
            self._ring_addr = int(ring.ffi.cast("uintptr_t", self._ring_ptr))
            # What the accelerator's submit_park needs of the token table,
            # in one attribute (the lists are never rebound).
            self._sp_table = (self._ring_addr, self._op_slots, self._op_gens, self._free_slots)
            _load_speedups(ring.ffi, self._lib)
        except BaseException:
            ring.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        self.ring = ring

    # -- instruments -----------------------------------------------------

    @property
    def instruments(self) -> Mapping[str, list[Instrument]]:
        """The installed instruments by hook: trio's ``Runner.instruments``
        (trio's tests read it through ``current_task()._runner``).  A hook
        that no instrument implements is not a key."""
        return self._hooks

    def add_instrument(self, instrument: Instrument) -> None:
        if instrument in self._instruments:
            return
        self._instruments.append(instrument)
        try:
            for hook in _hooks_of(instrument):
                self._hooks.setdefault(hook, []).append(instrument)
        except BaseException:
            # (A hook that is a property raising, say.)  Not half installed.
            self.remove_instrument(instrument)
            raise

    def remove_instrument(self, instrument: Instrument) -> None:
        try:
            self._instruments.remove(instrument)
        except ValueError:
            raise KeyError(f"instrument {instrument!r} is not installed") from None
        for hook, hooked in list(self._hooks.items()):
            if instrument in hooked:
                hooked.remove(instrument)
                if not hooked:
                    del self._hooks[hook]

    def _instrument(self, hook: str, *args: Any) -> None:
        hooked = self._hooks.get(hook)
        if not hooked:
            return
        for inst in list(hooked):
            try:
                getattr(inst, hook)(*args)
            except BaseException:
                # A broken instrument is removed, loudly, rather than taking
                # the run down.
                if inst in self._instruments:
                    self.remove_instrument(inst)
                import logging

                logging.getLogger("ringtrio.abc.Instrument").exception(
                    "Instrument %r raised in its %s hook. Instrument has been disabled "
                    "(removed from the run); the run goes on.",
                    inst,
                    hook,
                )

    # -- deadlines -------------------------------------------------------

    def _register_deadline(self, obj: Any, deadline: float) -> None:
        """Heap entry for a sleeping task or (via _register_scope_deadline)
        a cancel scope: at ``deadline``, ``obj._deadline_expired()``."""
        seq = next(self._deadline_counter)
        obj._deadline_seq = seq
        in_order = self._sorted_deadlines
        if not in_order or deadline >= in_order[-1][0]:
            in_order.append((deadline, seq, obj))
        else:
            heapq.heappush(self._deadlines, (deadline, seq, obj))

    def _register_scope_deadline(self, scope: CancelScope, deadline: float) -> None:
        self._scope_deadlines += 1
        self._register_deadline(scope, deadline)
        if self._guest_waiting:
            self._state_changed()  # (a guest's host moved a deadline)

    def _unregister_scope_deadline(self, scope: CancelScope) -> None:
        self._scope_deadlines -= 1
        self._unregister_deadline(scope)

    def _unregister_deadline(self, obj: Any) -> None:
        # Lazy deletion: the heap entry stays, marked stale by the sequence
        # number no longer matching.  Compact when stale entries dominate.
        obj._deadline_seq = 0
        self._stale_deadlines += 1
        if self._stale_deadlines > 1024 and self._stale_deadlines * 2 > len(self._deadlines) + len(
            self._sorted_deadlines
        ):
            self._deadlines = [e for e in self._deadlines if e[2]._deadline_seq == e[1]]
            heapq.heapify(self._deadlines)
            self._sorted_deadlines = deque(
                e for e in self._sorted_deadlines if e[2]._deadline_seq == e[1]
            )
            self._stale_deadlines = 0

    def _expire_deadlines(self, now: float) -> None:
        heap = self._deadlines
        in_order = self._sorted_deadlines
        while True:
            # Earliest first, from whichever structure holds it.
            if in_order and in_order[0][0] <= now and (not heap or in_order[0][0] <= heap[0][0]):
                _, seq, obj = in_order.popleft()
            elif heap and heap[0][0] <= now:
                _, seq, obj = heapq.heappop(heap)
            else:
                return
            if obj._deadline_seq == seq:
                obj._deadline_seq = 0
                obj._deadline_expired()
            else:
                self._stale_deadlines -= 1

    def _next_deadline(self) -> float:
        heap = self._deadlines
        while heap and heap[0][2]._deadline_seq != heap[0][1]:
            heapq.heappop(heap)
            self._stale_deadlines -= 1
        in_order = self._sorted_deadlines
        while in_order and in_order[0][2]._deadline_seq != in_order[0][1]:
            in_order.popleft()
            self._stale_deadlines -= 1
        best = heap[0][0] if heap else inf
        if in_order and in_order[0][0] < best:
            best = in_order[0][0]
        return best

    # -- tasks -----------------------------------------------------------

    def _spawn(
        self,
        async_fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        nursery: Nursery | None,
        name: object,
        *,
        system: bool = False,
        context: Context | None = None,
    ) -> Task:
        if nursery is not None and nursery._closed:
            raise RuntimeError("Nursery is closed to new arrivals")
        if _sniffio_cvar.get() is not self.sniffio_name:
            # (Outside any task -- run()'s first task, callbacks from other
            # threads -- or in code that told sniffio it is another library.
            # A guest run's tasks do not carry the variable: they say the
            # run's name through the thread-local each pass sets, so there
            # the thread-local decides: another library's in the host's
            # code, or an override set around the call.)
            if not self.is_guest or _sniffio_thread.name is not self.sniffio_name:
                return self._spawn_for_another_library(async_fn, args, nursery, name, system, context)
        if type(async_fn) is types.FunctionType:
            coro = async_fn(*args)
            if type(coro) is not types.CoroutineType:
                coro = _coroutine_or_error(async_fn, args, coro, _spawn_api(system))
        else:
            coro = _coroutine_or_error(async_fn, args, api=_spawn_api(system))
        if context is None:
            if system:
                context = self.system_context.copy()
            else:
                # The context the call is made in (trio's rule): inside
                # Context.run, that context, not the task's own.  (sniffio's
                # variable in it is this run's name: checked above.)
                context = copy_context()
        elif context.get(_sniffio_cvar) != self.sniffio_name and not self.is_guest:
            # A context given by the caller, made outside any task.
            context.run(_sniffio_cvar.set, self.sniffio_name)
        # The name is worked out lazily (Task.name): most tasks never need it.
        task = new_task(self, coro, async_fn if name is None else name, context, nursery, system)
        self._ntasks += 1
        if nursery is not None:
            nursery._children.add(task)
            scope = nursery._scope
            task._cancel_scope = scope
            scope._nursery_tasks.add(task)  # type: ignore[union-attr]
        self._runq.append(task)
        if self._guest_waiting:
            self._state_changed()  # (spawn_system_task from a guest's host)
        if self._instruments:
            self._instrument("task_spawned", task)
            self._instrument("task_scheduled", task)
        return task

    def _spawn_for_another_library(
        self,
        async_fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        nursery: Nursery | None,
        name: object,
        system: bool,
        context: Context | None,
    ) -> Task:
        """_spawn, called where sniffio's variable is not this run's name:
        outside any task, or in code that set it to another library's
        around the call.  The new task belongs to this run all the same: as
        in trio, it sees this run's name, and so does its function while
        that makes the coroutine.  So both of sniffio's settings say this
        run's name for the call (the thread-local override wins over the
        variable, and the caller may have set both); the task's context is
        copied with the variable so set.  (Only the variable is checked on
        every spawn: reading the thread-local costs more than the rest of
        the check.)

        A guest run sets the thread-local alone: its tasks must not carry
        the variable (see __init__), and the thread-local is what says the
        run's name in the host's code (start_soon from an asyncio task or
        a callback of the host), as trio's does there."""
        name_ = self.sniffio_name
        token = None if self.is_guest else _sniffio_cvar.set(name_)
        prev, _sniffio_thread.name = _sniffio_thread.name, name_
        try:
            return self._spawn(async_fn, args, nursery, name, system=system, context=context)
        finally:
            _sniffio_thread.name = prev
            if token is not None:
                _sniffio_cvar.reset(token)

    def _task_exited(self, task: Task, result: outcome.Outcome[Any]) -> None:
        if task._finalizer is not None:
            # Run the finalizer in this task before it really exits.
            finalizer, task._finalizer = task._finalizer, None
            task._stashed = result
            coro = _coroutine_or_error(finalizer, ())
            task.coro = coro
            task._send = coro.send
            task._next_send = None
            self._runq.append(task)
            return
        if task._stashed is not None:
            # The finalizer is done: the task reports what its coroutine
            # did, unless the finalizer raised (then that, as a `finally:`
            # block would, with the coroutine's error as its context).
            stashed, task._stashed = task._stashed, None
            if type(result) is outcome.Error:
                if type(stashed) is outcome.Error and result.error.__context__ is None:
                    result.error.__context__ = stashed.error
            else:
                result = stashed
        nursery = task._parent_nursery
        if nursery is not None:
            scope = nursery._scope
            # The task must exit in the scope it was spawned in, and that
            # scope must still be open (else: misnesting).
            if task._cancel_scope is not scope or scope._state == _SCOPE_DONE:
                result = _misnesting_at_exit(task, result)
            scope._nursery_tasks.discard(task)  # type: ignore[union-attr]
        if task._lot_breakers:
            breakers, task._lot_breakers = task._lot_breakers, None
            for lot in breakers:
                lot.break_lot(task)
        self._ntasks -= 1
        # (The finished coroutine stays in task.coro, as in trio; only the
        # bound send goes, so that a stray reschedule fails loudly.)
        task._send = None  # type: ignore[assignment]
        if self._ntasks == 1 and self._straggler_waiter is not None:
            waiter, self._straggler_waiter = self._straggler_waiter, None
            reschedule(waiter)
        if task is self.main_task:
            self.main_outcome = result
            result = outcome.Value(None)
        if nursery is not None:
            # A system task's error goes to the system nursery like any
            # child's: it cancels the run, and leaves the init task (below).
            nursery._child_finished(task, result)
        else:
            # The init task: the run is over.
            self._done = True
            if type(result) is outcome.Error:
                self._crash(
                    RingtrioInternalError(
                        "the run ended with an error outside the main task: a system task "
                        "or a run_sync_soon callback raised (the cause shows which, under "
                        "the nurseries of the run's init task), or ringtrio has a bug"
                    ),
                    result.error,
                )
        if self._instruments:
            self._instrument("task_exited", task)

    async def wait_for_stragglers(self) -> None:
        """Wait (in the init task, at the end of the run) until it is the
        only task left.  Only misnesting leaves others: the children of a
        nursery whose task exited without closing it, which nobody waits
        for.  They were cancelled, so they finish soon; their cleanup
        (finally blocks) runs inside the run, as in trio."""
        if self._ntasks > 1:
            self._straggler_waiter = _local.task
            await wait_task_rescheduled(lambda _: Abort.FAILED)

    def _crash(self, exc: RingtrioInternalError, cause: BaseException) -> NoReturn:
        exc.__cause__ = cause
        raise exc

    # -- ring ops --------------------------------------------------------

    def _release_token(self, slot: int) -> None:
        self._op_slots[slot] = None
        self._op_gens[slot] = (self._op_gens[slot] + 1) & _SLOT_MASK
        self._free_slots.append(slot)
        self._ops_in_flight -= 1

    def _take_token(self, op: RingOp, task: Task | None) -> int:
        """Give ``op`` a token (the free slot list, LIFO; the slot's current
        generation in the high 32 bits) and mark it in flight for ``task``.
        (_speedups.submit does the same in C.)"""
        op.task = task
        op.cancel_raise = None
        op.done = False
        free = self._free_slots
        if free:
            slot = free.pop()
            self._op_slots[slot] = op
        else:
            slot = len(self._op_slots)
            self._op_slots.append(op)
            self._op_gens.append(0)
        token = (self._op_gens[slot] << 32) | slot
        op.token = token
        self._ops_in_flight += 1
        return token

    def _submit_op(self, op: RingOp, task: Task | None, deadline: float | None = None) -> None:
        """Queue ``op``'s SQE (sent with this pass's single enter) and park
        nothing: callers park on ``op._abort`` themselves."""
        if self._ops_closed:
            raise RuntimeError("the ringtrio run this op belongs to has finished")
        link_ns = -1
        if self._kernel_deadlines and self._scope_deadlines:
            if deadline is None and task is not None:
                deadline = task._cancel_scope._effective_deadline()
            if deadline is not None and deadline < _MAX_KERNEL_DEADLINE:
                # The kernel compares against CLOCK_MONOTONIC ns: round up so
                # that when it fires, time.monotonic() >= our float deadline.
                # A deadline at or before the clock's zero (down to -inf)
                # has passed: 0 fires at once.
                link_ns = math.ceil(deadline * 1e9) if deadline > 0 else 0
        if _sp_submit is not None:
            # The rest of this method, in C (None: an addr it does not take,
            # or an op already in flight, for the error below).
            if (
                _sp_submit(
                    self._ring_addr, self._op_slots, self._op_gens, self._free_slots,
                    op, task, link_ns, _TOKEN_IGNORE,
                )
                is not None
            ):
                self._ops_in_flight += 1
                self._sq_dirty = True
                return
        slot = op.token & _SLOT_MASK
        if slot < len(self._op_slots) and self._op_slots[slot] is op:
            # The op holds a slot until its final CQE.  Submitting it again
            # meanwhile would give it a second token and hand its one
            # completion to whichever task submitted last: the other one
            # would wait forever.
            holder = op.task
            raise BusyResourceError(
                f"{op!r} is already in flight"
                + (f" (submitted by {holder!r})" if holder is not None else "")
                + ": a RingOp is one operation, in flight once at a time. Make a "
                "RingOp per concurrent operation, or submit this one again only "
                "after its completion."
            )
        token = self._take_token(op, task)
        op.linked = link_ns >= 0
        self._sq_dirty = True
        addr = op.addr
        if type(addr) is memoryview:
            # The op's own view of the memory in place of the caller's, and
            # its address through an export that ends at once: no export
            # is held while the op waits (see _op_memory; the accelerator
            # does the same in C).
            try:
                op.addr = view = pin_view(addr)
                addr = address_of(view)
            except (TypeError, ValueError, BufferError) as exc:  # e.g. a released view
                self._release_token(token & _SLOT_MASK)
                op.task = None
                raise ValueError(f"{op!r}: its addr cannot be used: {exc}") from None
        try:
            # `addr` is an address (int) or, on hot paths, the buffer object
            # itself (bytes or a cffi buffer): passed as a pointer, no cast.
            rc = (self._lib.rt_prep if type(addr) is int else self._lib.rt_prep_ptr)(
                self._ring_ptr,
                op.opcode,
                op.sqe_flags,
                op.ioprio,
                op.fd,
                addr,
                op.length,
                op.off,
                op.op_flags,
                token,
                op.buf_index,
                link_ns,
                _TOKEN_IGNORE,
            )
        except (OverflowError, TypeError) as exc:
            self._release_token(token & _SLOT_MASK)
            op.task = None
            raise ValueError(
                f"{op!r} has a field out of range for an SQE (fd/len/op_flags are "
                f"32-bit, addr/off 64-bit unsigned, buf_index 16-bit): {exc}"
            ) from None
        if rc < 0:
            self._release_token(token & _SLOT_MASK)
            op.task = None
            raise OSError(-rc, f"could not queue {op!r}: {os.strerror(-rc)}")

    def _submit_park(self, op: RingOp, task: Task, park: _Park | None = None) -> _Park:
        """Submit ``op`` for ``task`` (:meth:`_submit_op`) and return what
        the task yields to wait for it: ``park`` -- ``_Park(op._abort)``
        kept by the caller for an op it reuses (a socket's send op) -- or a
        new one.  (Not kept on the op: op -> park -> bound method -> op
        would be a cycle, and ops made per call, as file reads make them,
        would wait for the cyclic GC.)  _speedups.submit_park does this
        without a Python frame when no linked deadline is to be computed;
        this method is its definition."""
        self._submit_op(op, task)
        return park if park is not None else _Park(op._abort)  # type: ignore[attr-defined]

    def _submit_cancel(self, token: int, flags: int = 0, fd: int = -1) -> None:
        # Success needs no handling: skip its CQE.  Failures (-ENOENT: the op
        # already completed; -EALREADY: it is completing) arrive on the ignore
        # token: the op's own CQE is what decides.
        if self.ring.closed:
            # The run is over (e.g. a resource closed from __del__ after
            # run() returned): the ring was drained, nothing is in flight.
            return
        self._sq_dirty = True
        rc = self._lib.rt_prep(
            self._ring_ptr,
            IORING_OP_ASYNC_CANCEL,
            IOSQE_CQE_SKIP_SUCCESS,
            0,
            fd,
            token,
            0,
            0,
            flags,
            _TOKEN_IGNORE,
            0,
            -1,
            0,
        )
        if rc < 0:  # pragma: no cover - SQ could not be drained
            raise RingtrioInternalError(f"could not queue ASYNC_CANCEL: {os.strerror(-rc)}")

    def _cancel_op(self, op: RingOp, retries: int = 0) -> None:
        """Ask the kernel to cancel ``op`` (in flight); see _CancelOp."""
        if self._ops_closed:
            return
        self._submit_op(_CancelOp(self, op, retries), None, inf)
        if self._guest_waiting:
            # A guest's host cancelled a wait: only a pass may submit.
            self._state_changed()

    def _arm_wakeup(self) -> None:
        self._sq_dirty = True
        rc = self._lib.rt_prep(
            self._ring_ptr,
            IORING_OP_READ,
            0,
            0,
            self._wake_r,
            int(self.ring.ffi.cast("uintptr_t", self._wake_buf)),
            256,
            0,
            0,
            _TOKEN_WAKEUP,
            0,
            -1,
            0,
        )
        if rc < 0:  # pragma: no cover
            raise RingtrioInternalError(f"could not arm the wake-up read: {os.strerror(-rc)}")
        self._wakeup_armed = True

    def _state_changed(self) -> None:
        """Something the loop's next wait depends on changed outside the
        loop (a task rescheduled, an SQE queued, a deadline moved, a
        callback queued, Ctrl-C noted).  Only a guest run needs telling: its
        wait happens in a helper thread while the host runs (_guest.py)."""
        if self._guest_waiting:
            self._guest_waiting = False
            self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            # Full pipe: a wake-up is already pending.  Closed: run is over.
            pass

    def _dispatch_cqes(self, n: int) -> None:
        slots = self._op_slots
        gens = self._op_gens
        free = self._free_slots
        if _sp_dispatch is not None:
            # This method, in C (plain RingOps completed inline unless
            # instruments want to see task_scheduled).
            _sp_dispatch(self, self.ring.cqe_bytes, n, slots, gens, free, self._runq, not self._instruments)
            return
        for ud, res, flags in _iter_cqes(self.ring.cqe_bytes[: n * 16]):
            slot = ud & _SLOT_MASK
            if slot < _RESERVED_SLOTS:
                if slot == _TOKEN_WAKEUP:
                    self._wakeup_armed = False
                continue
            op = slots[slot] if slot < len(slots) else None
            if op is None or gens[slot] != ud >> 32:
                self._stale_cqes += 1
                continue
            if not (flags & IORING_CQE_F_MORE):
                # The op's final CQE: release its token (as _release_token).
                op.done = True
                slots[slot] = None
                gens[slot] = (gens[slot] + 1) & _SLOT_MASK
                free.append(slot)
                self._ops_in_flight -= 1
                op._on_cqe(res, flags)
                if op.result is not _LINK_EXPIRED:
                    # The kernel is done with the op's memory: drop it now,
                    # not whenever the op object goes (a caller's buffer
                    # export, such as send_all's memoryview, must be
                    # releasable at once).  (An op whose linked deadline
                    # fired may be submitted again: submit_and_wait drops
                    # them if it is not.)
                    _release_memory(op)
            else:
                op._on_cqe(res, flags)

    # -- cross-thread entry ----------------------------------------------

    def _run_sync_soon(
        self, fn: Callable[..., Any], args: tuple[Any, ...], idempotent: bool
    ) -> None:
        with self._entry_lock:
            if self._closed_for_entries:
                raise RunFinishedError("the ringtrio run this token belongs to has finished")
            if idempotent:
                key = (fn, args)
                if key in self._idempotent:
                    return
                self._idempotent[key] = None
            self._entry_queue.append((fn, args))
        if threading.get_ident() != self._thread:
            self._wake()
        elif self._guest_waiting:
            self._state_changed()  # (from a guest's host loop)

    def _run_entry_queue(self) -> None:
        # Only the callbacks queued before this pass, as trio: one that
        # queues itself again runs once per pass, and can neither starve
        # the tasks nor keep the run from ending.
        queue = self._entry_queue
        for _ in range(len(queue)):
            with self._entry_lock:
                fn, args = queue.popleft()
                self._idempotent.pop((fn, args), None)
            try:
                self.system_context.run(fn, *args)
            except BaseException as exc:
                self._callback_raised(fn, exc)

    def _callback_raised(self, fn: Callable[..., Any], exc: BaseException) -> None:
        # As a system task that raised (trio's rule): the error goes to the
        # system nursery, cancelling the run, and the next callbacks still
        # run.  Once the system nursery is closed (a callback queued by an
        # async generator's cleanup), to the init task's outermost nursery.
        async def reraise() -> NoReturn:
            raise exc

        nursery = self.system_nursery
        if nursery is None or nursery._closed:
            nursery = self.late_nursery
        self._spawn(reraise, (), nursery, f"<run_sync_soon callback {fn!r}, which raised>", system=True)

    def _close_entry_queue(self) -> None:
        """The end of run_sync_soon: from now on it raises RunFinishedError.
        What was queued still runs (here, in the init task)."""
        with self._entry_lock:
            self._closed_for_entries = True
        self._run_entry_queue()

    # -- KeyboardInterrupt -----------------------------------------------

    def _raise_ki(self) -> NoReturn:
        self.ki_pending = False
        raise KeyboardInterrupt

    def _deliver_ki(self) -> None:
        main = self.main_task
        if main is not None and main._abort_func is not None:
            main._attempt_abort(self._raise_ki)

    # -- idle detection (wait_all_tasks_blocked) --------------------------

    def _wake_idle_waiters(self) -> None:
        # Everybody has been blocked for the smallest cushion: wake the tasks
        # waiting with exactly that cushion, in the order they started waiting.
        waiters = self._idle_waiters
        cushion = waiters[0][0]
        while waiters and waiters[0][0] == cushion:
            _, _, task = heapq.heappop(waiters)
            reschedule(task)

    def _remove_idle_waiter(self, task: Task) -> None:
        self._idle_waiters = [e for e in self._idle_waiters if e[2] is not task]
        heapq.heapify(self._idle_waiters)

    # -- the loop ----------------------------------------------------------

    def _compute_timeout(self) -> float:
        deadline = self._next_deadline()
        if deadline == inf:
            timeout = inf
        elif self.clock is None:
            timeout = deadline - time.monotonic()
        else:
            timeout = self.clock.deadline_to_sleep_time(deadline)
        return min(max(timeout, 0.0), _MAX_WAIT)

    def _run_loop(self, one_pass: bool = False) -> None:
        """Run passes until the run is over (a guest run: one pass)."""
        runq = self._runq
        local = _local
        current_time = self.current_time
        CKPT = _CHECKPOINT
        YIELD = _YIELD
        RESUME_CHECK = _RESUME_CHECKING_CANCEL
        RESUME_PLAIN = _RESUME_PLAIN
        Park = _Park
        Value = outcome.Value
        Error = outcome.Error
        entry_queue = self._entry_queue
        # (Bound once, for _sp_run_batch: the run queue is never rebound.)
        runq_popleft = runq.popleft
        runq_append = runq.append
        while not self._done:
            idle_primed = 0
            if runq and not (
                self._sq_dirty
                or self._ops_in_flight
                or self._more_cqes
                or entry_queue
                or self._ki_fresh
                or self._instruments
            ):
                # The common pass of a busy program: tasks to run, nothing
                # for the kernel.  No native call; straight to deadlines.
                pass
            else:
                n = self._io_pass()
                if n:
                    self._dispatch_cqes(n)
                if entry_queue:
                    self._run_entry_queue()
                if self._ki_fresh:
                    self._ki_fresh = False
                    if self.ki_pending:
                        self._deliver_ki()
                if not n and not runq:
                    idle_primed = self._idle_primed
            # --- deadlines: expire what is due, with a fresh clock reading ---
            heap = self._deadlines
            in_order = self._sorted_deadlines
            if heap or in_order:
                now = current_time()
                if (heap and heap[0][0] <= now) or (in_order and in_order[0][0] <= now):
                    self._expire_deadlines(now)
            if idle_primed and not runq:
                if idle_primed == 1:
                    self._wake_idle_waiters()
                else:
                    self.clock._autojump()  # type: ignore[union-attr]
            # --- run every task that is runnable now, once ---
            batch = len(runq)
            if self._instruments:
                self._run_batch_instrumented(batch)
            elif _sp_run_batch is not None:
                # The loop below, in C, for tasks resumed with None; the
                # others (and a task's end) come back here one at a time.
                while batch > 0:
                    n, task, kind, payload = _sp_run_batch(
                        self, runq_popleft, runq_append, batch, local, self.main_task
                    )
                    batch -= n
                    if task is None:
                        break
                    if kind == 0:
                        self._step(task)
                    elif kind == 3:
                        self._bad_yield(task, payload)
                    elif kind == 1:
                        self._task_exited(task, Value(payload) if task is self.main_task else _EXITED_OK)
                    else:
                        self._task_exited(task, Error(payload))
                    # Not kept until the next call returns: the tasks it
                    # runs (a parent catching this exception) must not find
                    # the exception referenced from here.
                    task = payload = None
                    # (A batch run to its end in C leaves no task current.)
                    local.task = None
            else:
                popleft = runq.popleft
                append = runq.append
                for _ in range(batch):
                    task = popleft()
                    local.task = task
                    next_send = task._next_send
                    task._next_send = None
                    try:
                        if next_send is None or next_send is RESUME_PLAIN:
                            msg = task.context.run(task._send, None)
                        elif next_send is RESUME_CHECK:
                            # (KeyboardInterrupt is outside every cancel scope:
                            # it goes first, as in trio.)
                            if self.ki_pending and task is self.main_task:
                                self.ki_pending = False
                                msg = task.context.run(task.coro.throw, KeyboardInterrupt())
                            elif task._cancel_scope._eff:
                                msg = task.context.run(task.coro.throw, _cancelled_for(task))
                            else:
                                msg = task.context.run(task._send, None)
                        elif type(next_send) is Error:
                            # Thrown in here, not through Error.send: that frame
                            # would sit in the error's own traceback, holding the
                            # Error (a reference cycle per error delivered).
                            msg = task.context.run(task.coro.throw, next_send.error)
                        else:
                            msg = task.context.run(task._send, next_send.value)
                    except StopIteration as stop:
                        self._task_exited(
                            task, Value(stop.value) if task is self.main_task else _EXITED_OK
                        )
                        continue
                    except BaseException as exc:
                        self._task_exited(task, Error(exc.with_traceback(exc.__traceback__.tb_next)))  # type: ignore[union-attr]
                        continue
                    if msg is CKPT:
                        task._next_send = RESUME_CHECK
                        task.custom_sleep_data = None
                        append(task)
                    elif msg is YIELD:
                        task._next_send = RESUME_PLAIN
                        task.custom_sleep_data = None
                        append(task)
                    elif type(msg) is Park:
                        task._abort_func = msg.abort_func
                        if task._cancel_scope._eff or (
                            self.ki_pending and task is self.main_task
                        ):
                            task._attempt_delivery_of_any_pending_cancel()
                    else:
                        self._bad_yield(task, msg)
                local.task = None
            if one_pass:
                return

    def _io_pass(self) -> int:
        """Submit this pass's SQEs with one enter, waiting if nothing is
        runnable, and copy out CQEs.  Returns how many CQEs were copied."""
        runq = self._runq
        self._idle_primed = 0
        if not self._wakeup_armed:
            self._arm_wakeup()
        if self._guest_wait is not None:
            # A guest run's helper thread has done this pass's wait
            # (_guest.py): collect what it waited for.
            timeout, idle_primed, timed_out = self._guest_wait
            self._guest_wait = None
            if timed_out:
                self._idle_primed = idle_primed
            self._sq_dirty = False
            n = self._lib.rt_pass(self._ring_ptr, 0, 0, self.ring.cqes, _ring.CQE_BATCH)
            if self._instruments:
                self._instrument("after_io_wait", timeout)
        elif runq or self._entry_queue or self._more_cqes or self._ki_fresh or self.is_guest:
            # A pass that must not wait (as trio, instruments see it as an
            # I/O wait with timeout 0).  (A guest run never waits here: its
            # waits are the helper thread's.)
            if self._instruments:
                self._instrument("before_io_wait", 0.0)
            if self._sq_dirty or self._ops_in_flight or self._more_cqes:
                self._sq_dirty = False
                n = self._lib.rt_pass(self._ring_ptr, 0, 0, self.ring.cqes, _ring.CQE_BATCH)
            else:
                n = 0
            if self._instruments:
                self._instrument("after_io_wait", 0.0)
        else:
            if self._deadlines or self._sorted_deadlines or self._idle_waiters or self.clock is not None:
                timeout, idle_primed = self._wait_plan()
                self._idle_primed = idle_primed
            else:
                # Nothing that could end the wait early but the ring: the
                # longest wait, without _wait_plan's calls (a program doing
                # one op at a time waits here once per op).
                timeout = _MAX_WAIT
            if self._instruments:
                self._instrument("before_io_wait", timeout)
            self._sq_dirty = False
            n = self._lib.rt_pass(self._ring_ptr, 1, int(timeout * 1e9), self.ring.cqes, _ring.CQE_BATCH)
            if self._instruments:
                self._instrument("after_io_wait", timeout)
        self._check_native(n)
        self._more_cqes = n == _ring.CQE_BATCH
        return n

    def _wait_plan(self) -> tuple[float, int]:
        """How long the next wait for the ring may last, and what it means
        if it times out with nothing runnable (idle_primed: 1 wakes
        wait_all_tasks_blocked, 2 jumps the MockClock, 0 nothing)."""
        timeout = self._compute_timeout()
        # Idle detection (wait_all_tasks_blocked, MockClock autojump):
        # if the wait times out with nothing runnable, every task has been
        # blocked for that long.
        # Tasks in wait_all_tasks_blocked take priority over MockClock's
        # autojump, as in trio: while one waits, the clock does not jump
        # (with autojump_threshold=0 and a cushion > 0 it would otherwise
        # jump and jump, never letting the cushion pass).
        idle_primed = 0
        if self._idle_waiters:
            if self._idle_waiters[0][0] < timeout:
                timeout = self._idle_waiters[0][0]
                idle_primed = 1
        elif self.clock is not None:
            threshold = getattr(self.clock, "_autojump_threshold", inf)
            if threshold < timeout:
                timeout = threshold
                idle_primed = 2
        return timeout, idle_primed

    def _guest_prepare_wait(self) -> float | None:
        """After a guest run's pass: None if the next pass must not wait;
        else submit what this pass queued (only this thread may enter the
        ring) and return how long the helper thread may wait for the ring.

        What the submission completes at once is collected here: the helper
        waits for the ring's fd to become readable, which on the soft ring
        only new readiness does, not completions it posted while we entered
        (a cancel, an op that finished at once)."""
        while True:
            if self._runq or self._entry_queue or self._more_cqes or self._ki_fresh:
                return None
            if not self._wakeup_armed:
                self._arm_wakeup()
            self._sq_dirty = False
            n = self._lib.rt_pass(self._ring_ptr, 0, 0, self.ring.cqes, _ring.CQE_BATCH)
            self._check_native(n)
            self._more_cqes = n == _ring.CQE_BATCH
            if not n:
                break
            self._dispatch_cqes(n)
        timeout, idle_primed = self._wait_plan()
        if self._instruments:
            self._instrument("before_io_wait", timeout)
        self._guest_wait = (timeout, idle_primed, False)
        self._guest_waiting = True
        return timeout

    def _check_native(self, n: int) -> None:
        """Raise for a native pass or enter that failed (a negative errno)."""
        if n < 0:
            if -n in REFUSALS and not self.ring.soft:
                # Refused after it worked at setup (a seccomp filter installed
                # since): this run cannot go on, later ones use the soft ring.
                exc = RingUnavailableError.from_errno(-n, "io_uring_enter")
                note_refusal(exc)
                raise exc
            raise RingtrioInternalError(f"io_uring_enter failed: {os.strerror(-n)}")

    def _run_batch_instrumented(self, batch: int) -> None:
        # The same as the fast loop above, with instrument hooks; kept
        # separate so the common case pays nothing for instruments.  The
        # step hooks run in the task's context, as trio's: current_task()
        # is the task.
        runq = self._runq
        for _ in range(batch):
            task = runq.popleft()
            _local.task = task
            self._instrument("before_task_step", task)
            self._step(task)
            self._instrument("after_task_step", task)
        _local.task = None

    def _step(self, task: Task) -> None:
        # One step of one task.  The task stays current (_local.task) after
        # the step, while what it yielded is acted on -- an abort function
        # run right away, its exit and the task_exited hook -- as in trio;
        # the caller clears it.
        _local.task = task
        next_send = task._next_send
        task._next_send = None
        try:
            if next_send is None or next_send is _RESUME_PLAIN:
                msg = task.context.run(task._send, None)
            elif next_send is _RESUME_CHECKING_CANCEL:
                # (KeyboardInterrupt first: it is outside every cancel scope.)
                if self.ki_pending and task is self.main_task:
                    self.ki_pending = False
                    msg = task.context.run(task.coro.throw, KeyboardInterrupt())
                elif task._cancel_scope._eff:
                    msg = task.context.run(task.coro.throw, _cancelled_for(task))
                else:
                    msg = task.context.run(task.coro.send, None)
            elif type(next_send) is outcome.Error:
                # (Not through Error.send: see _run_loop.)
                msg = task.context.run(task.coro.throw, next_send.error)
            else:
                msg = task.context.run(task._send, next_send.value)
        except StopIteration as stop:
            self._task_exited(
                task, outcome.Value(stop.value) if task is self.main_task else _EXITED_OK
            )
            return
        except BaseException as exc:
            self._task_exited(task, outcome.Error(exc.with_traceback(exc.__traceback__.tb_next)))  # type: ignore[union-attr]
            return
        if msg is _CHECKPOINT or msg is _YIELD:
            # Rescheduled at once (as every reschedule: custom_sleep_data
            # cleared).
            task._next_send = _RESUME_CHECKING_CANCEL if msg is _CHECKPOINT else _RESUME_PLAIN
            task.custom_sleep_data = None
            self._runq.append(task)
            self._instrument("task_scheduled", task)
        elif type(msg) is _Park:
            task._abort_func = msg.abort_func
            if task._cancel_scope._eff or (self.ki_pending and task is self.main_task):
                task._attempt_delivery_of_any_pending_cancel()
        else:
            self._bad_yield(task, msg)

    def _bad_yield(self, task: Task, msg: object) -> None:
        if type(msg) is _PermanentDetach:
            # lowlevel.permanently_detach_coroutine_object (rare, so here
            # rather than on the hot paths): the task ends now; another
            # runner owns its coroutine.
            _local.task = None
            self._task_exited(task, msg.final_outcome)
            return
        # Something awaited an object from another async library (an asyncio
        # future, a trio trap, a bare `yield`).  Throw a clear error into the
        # task.
        # (Some of trio's traps are classes, yielded as they are.)
        origin = msg if isinstance(msg, type) else type(msg)
        if origin.__module__.partition(".")[0] == "trio":
            # trio's traps get this far (trio.lowlevel.checkpoint(), trio.sleep(0)
            # ...); most of trio fails earlier, in trio, asking for its own run.
            err = TypeError(
                f"ringtrio got {msg!r} from {task!r}: that is trio's, so the task "
                "awaited a trio operation (trio.sleep, trio.lowlevel.checkpoint, a "
                "library built on trio ...) inside ringtrio.run(). trio and ringtrio "
                "cannot be mixed in one run: use ringtrio's operation instead ('import "
                "ringtrio as trio' ports the common subset), or run this code with trio.run()."
            )
        else:
            err = TypeError(
                f"ringtrio got {msg!r} from {task!r}: the task awaited something that is "
                "not a ringtrio operation. Are you using a library written for asyncio "
                "(or another event loop) inside ringtrio.run()?"
            )
        task._next_send = outcome.Error(err)
        self._runq.append(task)

    # -- shutdown ----------------------------------------------------------

    def _drain_ring(self) -> None:
        # Memory that in-flight ops point into must outlive them, so before
        # the ring is closed every op is cancelled and its final CQE awaited.
        if self.ring.closed:
            return
        lib = self._lib
        self._submit_cancel(0, _ring.IORING_ASYNC_CANCEL_ANY | _ring.IORING_ASYNC_CANCEL_ALL)
        deadline = time.monotonic() + 5.0
        while (self._ops_in_flight > 0 or self._wakeup_armed) and time.monotonic() < deadline:
            n = lib.rt_pass(self._ring_ptr, 1, 50_000_000, self.ring.cqes, _ring.CQE_BATCH)
            if n < 0:
                break
            for ud, res, flags in _iter_cqes(self.ring.cqe_bytes[: n * 16]):
                slot = ud & _SLOT_MASK
                if slot == _TOKEN_WAKEUP:
                    self._wakeup_armed = False
                elif slot >= _RESERVED_SLOTS and slot < len(self._op_slots):
                    op = self._op_slots[slot]
                    if op is not None and self._op_gens[slot] == ud >> 32 and not (
                        flags & IORING_CQE_F_MORE
                    ):
                        op.done = True
                        self._release_token(slot)

    def close(self) -> None:
        with self._entry_lock:
            self._closed_for_entries = True
        self._ops_closed = True
        # The init task closes the queue and runs what is left in it
        # (_close_entry_queue); if the loop stopped on an internal error
        # instead, callbacks still queued run here, so that whoever queued
        # them is not left waiting.
        while self._entry_queue:
            fn, args = self._entry_queue.popleft()
            try:
                self.system_context.run(fn, *args)
            except BaseException:  # noqa: BLE001 - the run is over; report only
                import logging

                logging.getLogger("ringtrio").exception(
                    "run_sync_soon callback %r raised after the run finished", fn
                )
        try:
            self._drain_ring()
            if self._ops_in_flight:
                _abandoned_ops.extend(op for op in self._op_slots[_RESERVED_SLOTS:] if op is not None)
                _abandoned_ops.extend(self._close_after_drain)  # type: ignore[arg-type]
            else:
                for close in self._close_after_drain:
                    close()
        finally:
            self.ring.close()
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:  # pragma: no cover
                    pass


_NOT_CALLED = object()


def _spawn_api(system: bool) -> str:
    # The call a user made, for error messages (ringtrio.run and
    # nursery.start check their function before it gets here).
    return "spawn_system_task" if system else "nursery.start_soon"


def _coroutine_or_error(
    async_fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    coro: Any = _NOT_CALLED,
    api: str = "nursery.start_soon",
) -> Coroutine[Any, Any, Any]:
    """``async_fn(*args)`` as a coroutine to run as a task (``coro``: the
    result of that call, if made already), or a TypeError that says what is
    wrong with what ``api`` was given."""
    _require_function(async_fn, api)
    if coro is _NOT_CALLED:
        coro = async_fn(*args)
    if isinstance(coro, types.CoroutineType):
        return coro
    if isinstance(coro, types.GeneratorType) and coro.gi_code.co_flags & 0x100:
        return coro  # type: ignore[return-value]
    if hasattr(coro, "__await__"):
        # Anything else awaitable -- also a coroutine implemented in C, such
        # as an async generator's __anext__() or a Cython coroutine -- runs
        # under a coroutine of ours: the task's root then has a frame, which
        # Ctrl-C protection needs to tell the task's own code (unprotected)
        # from the runtime that called it (see _ki.py, rule 2).
        try:
            import asyncio

            if isinstance(coro, asyncio.Future):
                raise TypeError(
                    f"{api}() got an asyncio Future from {async_fn!r}: asyncio objects "
                    "cannot be awaited inside ringtrio.run()."
                )
        except ImportError:  # pragma: no cover
            pass
        awaitable = coro

        async def _wrap() -> Any:
            return await awaitable

        return _wrap()
    if hasattr(coro, "send") and hasattr(coro, "throw") and hasattr(coro, "close"):
        return coro  # type: ignore[return-value]  # (a coroutine-like object that cannot be awaited)
    if inspect.isasyncgen(coro):
        raise TypeError(
            f"{api}() expected an async function but got an async generator: "
            f"{async_fn!r} returned {coro!r}. Iterate over it inside an async "
            "function (async for) and pass that function."
        )
    # (trio's words first: "appears to be synchronous".)
    raise TypeError(
        f"{api}() expected an async function, but "
        f"{getattr(async_fn, '__qualname__', async_fn)!r} appears to be synchronous: "
        f"it returned {coro!r}. Use 'async def' (and pass the function itself, not its result)."
    )
