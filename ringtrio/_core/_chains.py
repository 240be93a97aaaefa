"""Linked chains (several SQEs queued as one unit, one wake-up) and the
ring's registered file table (direct descriptors) that chains open files
into."""

from __future__ import annotations

import os
import types
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, NoReturn

from . import _accel, _ring
from ._exceptions import RingtrioInternalError
from ._introspect import stamp_ops
from ._local import _local, _outside_run
from ._ring import IORING_OP_READ, IOSQE_CQE_SKIP_SUCCESS
from ._ring_ops import _NOT_HAPPENED, _SLOT_MASK, _TOKEN_IGNORE, RingOp
from ._traps import _CHECKPOINT, Abort, _Park, reschedule

if TYPE_CHECKING:
    from ._runner import Runner
    from ._task import Task


class LinkedOp(RingOp):
    """One member of a :class:`LinkedChain`.  It has a token of its own, so
    its CQE is routed (and its token released) like any op's; the result
    goes to the chain."""

    __slots__ = ("chain", "index")

    def __init__(self, chain: LinkedChain, index: int, opcode: int) -> None:
        super().__init__(opcode)
        self.chain = chain
        self.index = index

    def _cancel_wanted(self) -> bool:
        return self.cancel_raise is not None and not self.done

    def _on_cqe(self, res: int, flags: int) -> None:
        self.task = None
        chain = self.chain
        chain.results[self.index] = res
        chain.pending -= 1
        if chain.cancel_raise is not None:
            chain._cancel_next(self.index + 1)
        if chain.pending == 0:
            chain._completed()


class LinkedChain:
    """Ring ops the kernel runs one after the other (``IOSQE_IO_LINK`` /
    ``IOSQE_IO_HARDLINK``), queued by one native call and waited for as one:
    the task parked on the chain is woken once, when every member's CQE is
    in, with every member's result.

    A subclass says how its SQEs are prepared (:meth:`_prep`: one call into
    the native layer, which reserves all the SQEs together so that no enter
    can split the chain) and what counts as "the chain happened" for a task
    cancelled while it ran (:meth:`_happened`).

    Cancelling a chain cancels the member the kernel is working on; when its
    CQE comes back, the next member still to come is cancelled too (a member
    behind an unfinished one is in no list ASYNC_CANCEL searches, so it is
    only asked once its predecessor is done).  Soft-linked members after a
    cancelled one are failed by the kernel itself.  Either way the task is
    only woken when all CQEs are in, so memory the chain points into is never
    released early, and whatever a member did (an opened file in a direct
    slot) is visible in ``results`` for the caller to clean up.

    Chains carry no linked timeout: a deadline reaches them the Python way
    (the scope's deadline expires, the task's abort cancels the chain).
    """

    __slots__ = ("members", "results", "pending", "task", "cancel_raise")

    def __init__(self, opcodes: tuple[int, ...]) -> None:
        # (A chain and its members refer to each other: keep chains for
        # reuse rather than leaving each one to the cycle collector.)
        self.members = tuple([LinkedOp(self, i, opcode) for i, opcode in enumerate(opcodes)])
        self.results = [0] * len(opcodes)
        self.pending = 0
        self.task: Task | None = None
        self.cancel_raise: Callable[[], NoReturn] | None = None

    def _prep(self, runner: Runner, tokens: list[int]) -> int:
        """Queue the members' SQEs on ``runner``'s ring, member i with
        ``tokens[i]`` as user_data; 0 or -errno."""
        raise NotImplementedError

    def _happened(self) -> bool:
        """Whether a cancelled task gets the results (True) or Cancelled."""
        return self.results[-1] not in _NOT_HAPPENED

    def _completed(self) -> None:
        task = self.task
        if task is not None:
            self.task = None
            reschedule(task)

    def _abort(self, raise_cancel: Callable[[], NoReturn]) -> Abort:
        if self.cancel_raise is None:
            self.cancel_raise = raise_cancel
            self._cancel_next(0)
        return Abort.FAILED

    def _cancel_next(self, start: int) -> None:
        for op in self.members[start:]:
            if not op.done:
                if op.cancel_raise is None and self.task is not None:
                    op.cancel_raise = self.cancel_raise
                    self.task._runner._cancel_op(op)
                return


def submit_chain(runner: Runner, chain: LinkedChain, task: Task | None) -> None:
    """Give every member of ``chain`` a token and queue its SQEs (sent with
    this pass's enter).  Parks nothing; see :func:`submit_chain_and_wait`."""
    if runner._ops_closed:
        raise RuntimeError("the ringtrio run this op belongs to has finished")
    chain.task = task
    chain.cancel_raise = None
    members = chain.members
    chain.pending = len(members)
    take_tokens = _accel._sp_take_tokens
    if take_tokens is not None:
        tokens = take_tokens(runner._op_slots, runner._op_gens, runner._free_slots, members, task)
        runner._ops_in_flight += len(members)
    else:
        tokens = [runner._take_token(op, task) for op in members]
    runner._sq_dirty = True
    rc = chain._prep(runner, tokens)
    if rc < 0:
        for token in tokens:
            runner._release_token(token & _SLOT_MASK)
        chain.task = None
        chain.pending = 0
        raise OSError(-rc, f"could not queue {type(chain).__name__}: {os.strerror(-rc)}")
    if runner._op_stamps is not None:
        stamp_ops(runner, members)


@types.coroutine
def submit_chain_and_wait(chain: LinkedChain) -> Generator[Any, Any, list[int]]:
    """Submit a :class:`LinkedChain` and park until all its CQEs are in.

    A checkpoint, like :func:`submit_and_wait`.  Returns the members'
    results (``-errno`` for failures, ``-ECANCELED`` for members the kernel
    skipped).  If the task was cancelled while the chain ran, it gets the
    results when ``chain._happened()``, and :exc:`Cancelled` otherwise.
    """
    task = _local.task
    if task is None:
        _outside_run()
    # (checkpoint_if_cancelled, inlined: no coroutine object per chain.)
    if task._cancel_scope._eff or (task._runner.ki_pending and task is task._runner.main_task):
        yield _CHECKPOINT
    submit_chain(task._runner, chain, task)
    yield _Park(chain._abort)
    if chain.cancel_raise is not None and not chain._happened():
        chain.cancel_raise()
    return chain.results


class DirectFiles:
    """The ring's registered file table: ``size`` direct-descriptor slots
    (sparse, registered on first use), which let a chain open a file and
    use it in the same submission (``OPENAT`` with ``file_index``, then ops
    with ``IOSQE_FIXED_FILE``).

    Slots are handed out from a free list.  The table dies with the ring, so
    files left in it when a run ends are closed by the kernel.
    """

    __slots__ = ("runner", "size", "free", "pool")

    def __init__(self, runner: Runner, size: int) -> None:
        self.runner = runner
        self.size = size
        self.free = list(range(size - 1, -1, -1))
        # Reusable objects (chains with their buffers) for the layer above.
        self.pool: list[Any] = []

    def take(self) -> int | None:
        """A free slot, or None when all are in use."""
        free = self.free
        return free.pop() if free else None

    def give_back(self, slot: int) -> None:
        """Return a slot that holds no file (its OPENAT failed or never ran)."""
        self.free.append(slot)

    def close(self, slot: int) -> None:
        """Close the file in ``slot`` (no op of its own may be in flight)
        and free the slot.

        Why the slot can be reused at once, and why nobody waits for this
        CLOSE: closing a direct descriptor only removes it from the table,
        which the kernel does while it submits the SQE, never later (no
        io-wq punt, no -EAGAIN).  So every SQE queued after this one -- the
        next OPENAT into the slot included -- finds it empty.  Its CQE is
        skipped on success; a failure (the slot was already empty) is
        harmless and lands on the ignore token.  After the run's last pass
        there is nothing to do: the table goes with the ring.
        """
        runner = self.runner
        if not runner._ops_closed:
            runner._sq_dirty = True
            prep_close_direct = _accel._sp_prep_close_direct
            if prep_close_direct is not None:
                rc = prep_close_direct(runner._ring_addr, slot, _TOKEN_IGNORE, IOSQE_CQE_SKIP_SUCCESS)
            else:
                rc = runner._lib.rt_prep_close_direct(
                    runner._ring_ptr, slot, _TOKEN_IGNORE, IOSQE_CQE_SKIP_SUCCESS
                )
            if rc < 0:  # pragma: no cover - SQ could not be drained
                raise RingtrioInternalError(f"could not queue CLOSE: {os.strerror(-rc)}")
        self.free.append(slot)


_DIRECT_FILES_SIZE = 1024
_NOT_PROBED = object()


def direct_files() -> DirectFiles | None:
    """This run's :class:`DirectFiles`, registering the table on first use;
    None when the kernel cannot do what it is for (no sparse registration,
    or no OPENAT/CLOSE/READ/WRITE)."""
    task = _local.task
    if task is None:
        _outside_run()
    runner = task._runner
    # Kept on the runner (set here, not in Runner.__init__): it is probed on
    # first use and dies with the run.
    files: Any = getattr(runner, "_direct_files", _NOT_PROBED)
    if files is not _NOT_PROBED:
        return files  # type: ignore[no-any-return]
    files = None
    ops = runner.features.opcodes
    needed = (_ring.IORING_OP_OPENAT, _ring.IORING_OP_CLOSE, IORING_OP_READ, _ring.IORING_OP_WRITE)
    if all(op in ops for op in needed):
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        size = _DIRECT_FILES_SIZE if soft == resource.RLIM_INFINITY else min(_DIRECT_FILES_SIZE, soft)
        if size > 0 and runner._lib.rt_files_register_sparse(runner._ring_ptr, size) >= 0:
            files = DirectFiles(runner, size)
    runner._direct_files = files  # type: ignore[attr-defined]
    return files

