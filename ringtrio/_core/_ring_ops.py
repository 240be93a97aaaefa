"""Ring operations: the one path every I/O layer uses, and their cancel
protocol.

A :class:`RingOp` is one io_uring operation: its SQE's fields, the memory it
owns until its final CQE, and what a completion means.  A task waiting for
the kernel submits one with :func:`submit_and_wait` and parks on its token;
the CQE carrying that token reschedules it.  Cancelling the task submits
``IORING_OP_ASYNC_CANCEL`` for the op (retried while the kernel cannot find
it: :class:`_CancelOp`) and keeps the task parked until the op's own CQE
says whether it happened, so that nothing the kernel did is lost.
:class:`OwnedRingOp` is the same for requests owned by a resource or
nursery rather than a waiting task (multishot accept and receive).

The token table itself -- taking and releasing tokens, queuing SQEs,
dispatching CQEs -- is the runner's (``Runner._submit_op``,
``Runner._dispatch_cqes``).
"""

from __future__ import annotations

import errno
import types
from collections.abc import Callable, Generator
from math import inf
from typing import TYPE_CHECKING, Any, NoReturn

import outcome

from . import _accel, _ring
from ._cancel_scope import CancelScope
from ._local import _local, _outside_run
from ._ring import IORING_OP_ASYNC_CANCEL
from ._traps import _CHECKPOINT, Abort, _cancelled_for, _Park, reschedule, wait_task_rescheduled

if TYPE_CHECKING:
    from ._runner import Runner
    from ._task import Task


class RingOp:
    """One io_uring operation: the fields of its SQE, the memory it owns
    until its final CQE, and what a completion means.

    The default meaning (used by :func:`submit_and_wait`) is "wake the task
    parked on me with ``(res, flags)``".  Subclasses override
    :meth:`_on_cqe` (e.g. multishot requests that produce many CQEs).
    """

    __slots__ = (
        "opcode",
        "fd",
        "addr",
        "length",
        "off",
        "op_flags",
        "ioprio",
        "sqe_flags",
        "buf_index",
        "keepalive",
        "token",
        "task",
        "cancel_raise",
        "linked",
        "done",
        "result",
    )

    def __init__(
        self,
        opcode: int,
        fd: int = -1,
        addr: Any = 0,
        length: int = 0,
        off: int = 0,
        op_flags: int = 0,
        *,
        ioprio: int = 0,
        sqe_flags: int = 0,
        buf_index: int = 0,
        keepalive: object = None,
    ) -> None:
        self.opcode = opcode
        self.fd = fd
        self.addr = addr
        self.length = length
        self.off = off
        self.op_flags = op_flags
        self.ioprio = ioprio
        self.sqe_flags = sqe_flags
        self.buf_index = buf_index
        # `addr` is an integer address, or a bytes object or cffi buffer
        # whose memory the SQE points at (it must then also be kept alive,
        # normally by being the keepalive).
        # Whatever `addr`/`off` point into: kept alive until the final CQE,
        # whatever happens to the task that submitted the op.
        self.keepalive = keepalive
        self.token = 0
        self.task: Task | None = None
        self.cancel_raise: Callable[[], NoReturn] | None = None
        self.linked = False
        self.done = False
        # Set by the default _on_cqe for submit_and_wait to pick up.
        self.result: Any = None

    def __repr__(self) -> str:
        name = _ring.OPCODE_NAMES.get(self.opcode, str(self.opcode))
        return f"<RingOp {name} fd={self.fd} token={self.token:#x}>"

    def _cancel_wanted(self) -> bool:
        """Whether a cancel of this op (in flight) still stands; a cancel the
        kernel could not match is retried while it does.  Ops owned by a
        nursery rather than a waiting task override this."""
        return self.cancel_raise is not None and self.task is not None

    def _on_cqe(self, res: int, flags: int) -> None:
        task = self.task
        if task is None:
            return
        self.task = None
        if self.cancel_raise is not None and res in _NOT_HAPPENED:
            # We asked the kernel to cancel and it did: the op did not happen.
            # (-EINTR: an op interrupted in an io-wq worker before it
            # transferred anything; a partial transfer is a result.)
            reschedule(task, outcome.capture(self.cancel_raise))
        else:
            if self.linked and res == -errno.ECANCELED:
                # The linked deadline fired in the kernel: it did not happen.
                self.result = _LINK_EXPIRED
            else:
                self.result = (res, flags)
            # reschedule(task), inlined: this runs once per completed op.
            task._abort_func = None
            task._next_send = None
            task.custom_sleep_data = None
            runner = task._runner
            runner._runq.append(task)
            if runner._instruments:
                runner._instrument("task_scheduled", task)


# What an op's result is set to when its linked deadline fired in the kernel
# (the op did not happen): submit_and_wait then raises Cancelled or submits
# again.
_LINK_EXPIRED = object()
# Results that mean "the op did not happen", for an op we asked to cancel:
# -ECANCELED, -EINTR (a blocking syscall in an io-wq worker interrupted by
# the cancel), and ERESTARTSYS, which the kernel lets out for some of those
# (an open of a FIFO, for one) although it is never meant for userspace.
ERESTARTSYS = 512
_NOT_HAPPENED = frozenset({-errno.ECANCELED, -errno.EINTR, -ERESTARTSYS})
# Ops still in flight when a run could not drain its ring: their memory is
# kept alive forever rather than freed under the kernel's feet.
_abandoned_ops: list[RingOp] = []

# Reserved tokens: the low slots never hold user ops.
_TOKEN_IGNORE = 0  # CQEs we do not care about (cancel results, link timeouts)
_TOKEN_WAKEUP = 1  # the read kept pending on the wake-up pipe
_RESERVED_SLOTS = 8
_SLOT_MASK = 0xFFFFFFFF


@types.coroutine
def submit_and_wait(op: RingOp) -> Generator[Any, Any, tuple[int, int]]:
    """Submit a ring op and park the current task until its CQE arrives.

    This is a checkpoint: it raises :exc:`Cancelled` before submitting if the
    task is already cancelled.  If the task is cancelled while the op is in
    flight, ``IORING_OP_ASYNC_CANCEL`` is submitted and the task keeps
    waiting for the op's own CQE: ``-ECANCELED`` raises :exc:`Cancelled`, any
    other result is returned (the cancellation then lands at the next
    checkpoint).  When the task has a finite deadline, it rides along as a
    linked ``IORING_OP_LINK_TIMEOUT``.  Returns ``(res, cqe_flags)``; a
    negative ``res`` is ``-errno`` and is not raised here.

    (A generator-based coroutine: one frame per op; this is the hot path of
    all I/O.)
    """
    task = _local.task
    if task is None:
        _outside_run()
    runner = task._runner
    # The checkpoint, the submit and the park in C when the accelerator can
    # (None: a cancel is pending, or a case it leaves to Python).
    sp = _accel._sp_submit_park
    park = sp(runner, op, task, None) if sp is not None else None
    if park is None:
        if task._cancel_scope._eff or (runner.ki_pending and task is runner.main_task):
            yield _CHECKPOINT
        park = runner._submit_park(op, task)
    while True:
        # The plain completion path resumes us with None and leaves the
        # result on the op (no outcome object per op); cancellation and
        # errors arrive as outcomes and raise here.
        yield park
        result = op.result
        op.result = None
        if result is not _LINK_EXPIRED:
            return result  # type: ignore[no-any-return]
        _link_expired(op, task)
        park = runner._submit_park(op, task)


def _link_expired(op: RingOp, task: Task) -> None:
    """After a wait for ``op`` ended because its linked deadline fired in
    the kernel (the op did not happen): raise Cancelled if that deadline
    still stands, or return, and the caller submits the op again.  (The
    runner has already expired Python deadlines up to now, so a deadline
    that still stands has cancelled the task's scope; one moved later
    meanwhile has not.)"""
    if task._cancel_scope._eff:
        _release_memory(op)
        raise _cancelled_for(task)


def _release_memory(op: RingOp) -> None:
    op.keepalive = None
    if type(op.addr) is not int:
        op.addr = 0


def _op_abort(self: RingOp, raise_cancel: Callable[[], NoReturn]) -> Abort:
    # Keep the task parked: only the op's own CQE says whether it happened.
    if self.cancel_raise is None:
        self.cancel_raise = raise_cancel
        task = self.task
        if task is not None:
            task._runner._cancel_op(self)
    return Abort.FAILED


class _CancelOp(RingOp):
    """The IORING_OP_ASYNC_CANCEL for one op, with a CQE we look at.

    Why not fire-and-forget: the kernel can answer -ENOENT while the target
    is between attempts (a socket op woken by poll and being re-issued is
    briefly in no list the cancel searches), and the op then carries on as if
    nothing had been asked.  So a -ENOENT for an op that is still in flight
    and still meant to be cancelled is retried.  (-EALREADY means the op is
    running in a worker and has been told to stop: it will complete.)
    """

    __slots__ = ("runner", "target", "target_token", "retries")
    MAX_RETRIES = 1000

    def __init__(self, runner: Runner, target: RingOp, retries: int) -> None:
        super().__init__(IORING_OP_ASYNC_CANCEL, -1, target.token)
        self.runner = runner
        self.target = target
        # Op objects are reused (sockets keep one per direction): a late
        # answer about an earlier submission must not touch the next one.
        self.target_token = target.token
        self.retries = retries

    def _on_cqe(self, res: int, flags: int) -> None:
        target = self.target
        if (
            res == -errno.ENOENT
            and target.token == self.target_token
            and not target.done
            and target._cancel_wanted()
            and self.retries < self.MAX_RETRIES
        ):
            self.runner._cancel_op(target, self.retries + 1)


RingOp._abort = _op_abort  # type: ignore[attr-defined]


class StandInPollOp(RingOp):
    """A POLL_ADD that stands in for a readiness wait on another fd: the
    wait for writability that goes through a private epoll instance
    (``_poll_writable_via_epoll`` in ringtrio/_socket.py) polls that
    instance for POLLIN.  ``waits_for`` is what its task really waits for
    (``select.POLLOUT``), which the SQE's own mask does not say;
    ``lowlevel.current_statistics()`` counts the task by it, as a writer."""

    __slots__ = ("waits_for",)

    def __init__(self, fd: int, events: int, *, waits_for: int) -> None:
        super().__init__(_ring.IORING_OP_POLL_ADD, fd, 0, 0, 0, events)
        self.waits_for = waits_for


class OwnedRingOp(RingOp):
    """A ring op owned by a resource or nursery instead of a waiting task:
    the multishot accept of a listener, the multishot receive of a stream.

    It is submitted with no task and no linked deadline (it lives until it is
    cancelled or fails), its CQEs are handled in ``_on_cqe`` by the subclass,
    and it is cancelled through the same retried cancel as every other op.
    Subclasses set ``armed = False`` when their final CQE arrives and then
    call :meth:`_ended`, which wakes a task waiting in :meth:`stop`.
    """

    __slots__ = ("runner", "armed", "cancel_requested", "closed_by_user", "stopper")

    def __init__(self, runner: Runner, opcode: int, **fields: Any) -> None:
        super().__init__(opcode, **fields)
        self.runner = runner
        self.armed = False
        self.cancel_requested = False
        # Set when the resource was closed under the request (not by its
        # owner): the owner then reports ClosedResourceError.
        self.closed_by_user = False
        self.stopper: Task | None = None  # a task waiting in stop()

    def _arm(self) -> None:
        self.cancel_requested = False
        self.runner._submit_op(self, None, inf)
        self.armed = True

    def _cancel_wanted(self) -> bool:
        return self.armed

    def request_cancel(self) -> None:
        """Cancel the request (once); its final CQE still has to arrive."""
        if self.armed and not self.cancel_requested:
            self.cancel_requested = True
            self.runner._cancel_op(self)

    def _on_socket_close(self) -> None:
        self.closed_by_user = True
        self.request_cancel()

    async def stop(self) -> None:
        """Cancel the request (if armed) and wait, shielded, for its final
        CQE.  One task at a time."""
        if not self.armed:
            return
        self.request_cancel()
        with CancelScope(shield=True):
            while self.armed:
                self.stopper = _local.task
                await wait_task_rescheduled(_abort_failed)

    def _ended(self) -> None:
        """For subclasses, once ``armed`` is False: wake stop()'s waiter."""
        stopper = self.stopper
        if stopper is not None:
            self.stopper = None
            reschedule(stopper)


def _abort_failed(raise_cancel: Callable[[], NoReturn]) -> Abort:
    # A wait that only the awaited CQE may end.
    return Abort.FAILED


def cancel_ring_op(op: RingOp, error: BaseException) -> None:
    """Cancel an op that is in flight because its resource is going away
    (e.g. the socket it reads from is being closed).

    If the kernel confirms the op did not happen, the task waiting on it gets
    ``error`` raised (typically :exc:`ClosedResourceError`); if the op
    completed in the race, the task gets its result as usual.  Does nothing
    for an op that is not in flight.
    """
    task = op.task
    if op.done or task is None:
        return

    def raise_error() -> NoReturn:
        raise error

    already_requested = op.cancel_raise is not None
    op.cancel_raise = raise_error
    if not already_requested:
        task._runner._cancel_op(op)

