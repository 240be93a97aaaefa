"""``ringtrio.lowlevel.task_tree()``: what every task of the run is doing and
waiting for, as a frozen snapshot; ``print_task_tree()`` renders it.

The snapshot is built from the run's own bookkeeping, read through the
core's ``_introspect`` views (ringtrio/_core/_introspect.py): the task tree
(nurseries and their children, from the root task), each task's state, the
abort function a parked task waits with (for a ring op: a method of the op
itself, so the op is known exactly), the cancel scopes around it, the ops in
flight and the sleeping tasks' deadlines.  What a wait *means* is read from
the task's await chain: the outermost frame of ringtrio below the user's
innermost frame is the API the user called (``Event.wait``,
``SocketStream.receive_some``, ``to_thread_run_sync`` ...), and its locals
say the rest (the function given to a thread, ``max_bytes``).

Taking a snapshot reads and never writes: no scope is expired, no op is
touched, no task is woken, so it is safe anywhere in the run's thread (in a
task, an instrument hook, a ``run_sync_soon`` callback, the callback
``run(dump_tasks_on=...)`` queues).  Costs are paid only by the snapshot:
a few microseconds per task, plus a few system calls per distinct file
descriptor a ring op waits on (to say what it is).
"""

from __future__ import annotations

import gc
import math
import operator
import os
import socket
import stat
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from ._core import OwnedRingOp, RingOp, _ring
from ._core._internal_api import _current_runner, _introspect
from ._final import final

if TYPE_CHECKING:
    from ._core import CancelScope, Nursery, Task

# Frames in files under this directory are ringtrio's own.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
inf = math.inf
_T = TypeVar("_T")


# ---------------------------------------------------------------------------
# The snapshot's types
# ---------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class Location:
    """One frame of a task's await chain."""

    filename: str
    lineno: int
    function: str  # the code's qualified name
    internal: bool  # a frame of ringtrio itself

    def __str__(self) -> str:
        return f"{self.function} at {_short_path(self.filename)}:{self.lineno}"


@final
@dataclass(frozen=True, slots=True)
class FdInfo:
    """What a file descriptor is, as far as the kernel says."""

    fd: int
    # "socket", "file", "directory", "fifo", "pipe", "char device",
    # "block device", "pidfd", "eventfd", "direct" (a slot of the ring's
    # registered file table), "closed", or "other".
    kind: str
    # The address, path or process: "TCP 127.0.0.1:5000 <- 127.0.0.1:41234",
    # "/tmp/data.bin", "pid 4242" ... ("" when nothing more is known).
    description: str

    def __str__(self) -> str:
        return f"fd {self.fd} ({self.kind}{': ' + self.description if self.description else ''})"


@final
@dataclass(frozen=True, slots=True)
class RingOpInfo:
    """A ring operation in flight."""

    opcode: str  # "RECV", "READ", "ACCEPT" ... (IORING_OP_ without the prefix)
    fd: FdInfo | None
    nbytes: int | None  # bytes asked for, where the op has a length
    # Seconds since it was submitted; None when op timestamps were off as it
    # was (lowlevel.enable_op_timestamps()).
    age: float | None
    multishot: bool  # a request that stays armed (owned by a stream or nursery)
    cancel_requested: bool
    # For a multishot request: what it belongs to ("SocketStream.receive_some",
    # "receive_buffers", "serve_listeners").
    owner: str | None
    # What it holds or has done: "2 chunks, 1200 bytes queued" ...
    detail: str | None
    # For a multishot request: the task parked waiting for its next result.
    waiter: str | None


@final
@dataclass(frozen=True, slots=True)
class ScopeInfo:
    """A cancel scope around a task that bounds its deadline or cancels it."""

    deadline: float  # on the run's clock; inf if none
    shield: bool
    cancel_called: bool
    nursery_scope: bool  # the cancel scope of a nursery
    owner: str | None  # the task that entered it


@final
@dataclass(frozen=True, slots=True)
class BufferGroupInfo:
    """A provided-buffer group owned by a nursery (``nursery.buffer_group``)."""

    bgid: int
    count: int
    size: int
    free: int  # buffers in the ring
    leased: int  # Buffer leases out (queued or in user code)
    held: int  # buffers out of the ring
    enobufs: int  # multishot receives ended because the ring was empty
    waiting: int  # receivers parked until a buffer comes back
    incremental: bool
    multishots: tuple[RingOpInfo, ...]  # multishot receives armed on it


@final
@dataclass(frozen=True)
class TaskInfo:
    name: str
    id: int
    state: str  # "running", "runnable" or "parked"
    system: bool  # a system task (spawn_system_task, the run's own)
    # Where the task is: the innermost frame of its await chain outside
    # ringtrio (ringtrio's innermost frame if it has none).
    location: Location | None
    stack: tuple[Location, ...]  # the await chain, outermost first
    # What a parked task waits for, in words: "Event.wait",
    # "memory channel receive", "sleep until 1234.500", "to_thread.run_sync(fn)" ...
    waiting_for: str | None
    ring_op: RingOpInfo | None  # the ring op it is parked on
    sleeps_until: float | None  # for a task in sleep()/sleep_until(): when it wakes
    # The effective deadline (inf: none; -inf: cancelled) and the scopes
    # around the task that have a deadline or are cancelled, up to the first
    # shield, innermost first.
    deadline: float
    deadline_scopes: tuple[ScopeInfo, ...]
    cancelled: bool  # effectively cancelled: its next checkpoint raises
    # The nurseries it has open, outermost first: each one is inside the one
    # before (one task's nurseries nest, as its `async with` blocks do).
    nurseries: tuple[NurseryInfo, ...]


@final
@dataclass(frozen=True, slots=True)
class NurseryInfo:
    id: int
    # The frame of the parent task that holds the nursery (the function the
    # `async with` is in), where found.
    opened_in: Location | None
    cancel_called: bool
    deadline: float
    tasks: tuple[TaskInfo, ...]
    buffer_groups: tuple[BufferGroupInfo, ...]


@final
@dataclass(frozen=True, slots=True)
class TaskTree:
    """A snapshot of a run: :func:`task_tree`'s result.  ``str(tree)`` is
    what :func:`print_task_tree` prints."""

    time: float  # current_time() when it was taken
    root: TaskInfo
    # Ring ops in flight that no task is parked on and no nursery owns: a
    # stream's multishot receive between two reads, a request being stopped.
    other_ops: tuple[RingOpInfo, ...]
    ops_in_flight: int
    op_timestamps: bool  # whether ops carry their submission time

    def tasks(self) -> Iterator[TaskInfo]:
        """Every task, depth first from the root."""
        stack = [self.root]
        while stack:
            task = stack.pop()
            yield task
            for nursery in reversed(task.nurseries):
                stack.extend(reversed(nursery.tasks))

    def nurseries(self) -> Iterator[NurseryInfo]:
        for task in self.tasks():
            yield from task.nurseries

    def find(self, name: str) -> list[TaskInfo]:
        """The tasks called ``name`` (or whose name ends with ``.name``)."""
        return [t for t in self.tasks() if t.name == name or t.name.endswith("." + name)]

    def __str__(self) -> str:
        return _render(self)


# ---------------------------------------------------------------------------
# Taking it
# ---------------------------------------------------------------------------


def task_tree() -> TaskTree:
    """A snapshot of the current run: its nurseries and tasks as a tree from
    the root task, what each task waits for (the ring op, with its file
    descriptor, length and age), deadlines, buffer groups and multishot
    requests.  Safe anywhere in the run's thread; changes nothing."""
    return _Snapshot(_current_runner()).take()


def print_task_tree(file: TextIO | None = None) -> None:
    """Print :func:`task_tree` as a readable tree to ``file`` (default:
    ``sys.stderr``)."""
    print(str(task_tree()), file=sys.stderr if file is None else file, flush=True)


def enable_op_timestamps(enabled: bool = True) -> None:
    """Stamp every ring op of this run with its submission time (off by
    default: it costs a clock read per op), so that :func:`task_tree` can
    say how long each has been waiting.  ``run(dump_tasks_on=...)``,
    ``testing.HangDetector`` and the pytest option turn it on."""
    _introspect.set_op_timestamps(_current_runner(), enabled)


def _print_or_report(file: TextIO) -> None:
    # What run(dump_tasks_on=...) calls, in the loop.  A broken snapshot
    # must not take the run down: report it instead.
    try:
        print_task_tree(file)
    except Exception:  # noqa: BLE001 - reported, the run goes on
        import traceback

        print("ringtrio: could not take the task tree:", file=file)
        traceback.print_exc(file=file)


_introspect.set_task_tree_printer(_print_or_report)


class _Snapshot:
    """One snapshot in the making: the run's facts read once, then the tree
    walked from the root."""

    def __init__(self, runner: Any) -> None:
        # (The core's Runner: read only through _introspect and its public
        # attributes, init_task, system_nursery, current_time.)
        # Upper layers' op classes, imported here (not at module level):
        # this module is imported by ringtrio.lowlevel, before them.
        from ._buffer_group import BufferGroup, _MultishotRecv
        from ._highlevel_serve_listeners import _MultishotAccept
        from ._highlevel_socket import _StreamReceiver

        self._BufferGroup = BufferGroup
        self._MultishotRecv = _MultishotRecv
        self._MultishotAccept = _MultishotAccept
        self._StreamReceiver = _StreamReceiver
        self.runner = runner
        self.now = runner.current_time()
        self.mono = time.monotonic()
        self.running = _introspect.running_task()
        self.sleeps = _introspect.sleep_deadlines(runner)
        self.system_nursery = runner.system_nursery
        ops = _introspect.ops_in_flight(runner)
        self.n_ops = len(ops)
        self.stamps: dict[int, float | None] = {id(op): stamp for op, stamp in ops}
        self.ops = [op for op, _ in ops]
        # Ops whose cancel is itself in flight (the op stays in flight
        # until its own CQE says whether it happened).
        self.cancelling = {
            id(op.target) for op in self.ops if type(op).__name__ == "_CancelOp"  # type: ignore[attr-defined]
        }
        self.claimed: set[int] = set()
        self.fds: dict[tuple[int, bool], FdInfo] = {}
        # id(scope) -> (effective deadline, the scopes that bound it, whether
        # code in the scope is effectively cancelled)
        self.scope_memo: dict[int, tuple[float, tuple[ScopeInfo, ...], bool]] = {}
        # (id(code), f_lasti) -> Location: tasks parked at one place share one.
        self.locations: dict[tuple[int, int], Location] = {}
        # (id(code), type of its self) -> what a wait in that API is, for
        # the APIs whose description says nothing of the instance.
        self.descriptions: dict[tuple[int, type], str] = {}

    def take(self) -> TaskTree:
        root_task = self.runner.init_task
        assert root_task is not None
        # The snapshot allocates a few objects per task and frees none: with
        # the collector on, a tree of 10 000 tasks sets off a dozen young
        # collections and maybe an old one over every live task, a fifth of
        # the snapshot's time for nothing to collect.
        collecting = gc.isenabled()
        gc.disable()
        try:
            root = self.task(root_task)
        finally:
            if collecting:
                gc.enable()
        other = tuple(
            self.op(op)
            for op in self.ops
            if id(op) not in self.claimed and type(op).__name__ not in ("_CancelOp", "LinkedOp")
        )
        return TaskTree(
            time=self.now,
            root=root,
            other_ops=other,
            ops_in_flight=self.n_ops,
            op_timestamps=_introspect.op_timestamps_enabled(self.runner),
        )

    # -- tasks -------------------------------------------------------------

    def task(self, task: Task) -> TaskInfo:
        abort, system, sleep_data, child_nurseries, frames = _introspect.task_facts(task)
        if task is self.running:
            state = "running"
            frames = self.frames_of_running(task, frames)
        elif abort is not None:
            state = "parked"
        else:  # queued to run (or between two steps of the loop's own bookkeeping)
            state = "runnable"
        known = self.locations
        stack = tuple(
            [known.get((id(f.f_code), f.f_lasti)) or self.location(f) for f in frames]  # (inlined: hot)
        )
        user = len(stack) - 1
        while user >= 0 and stack[user].internal:
            user -= 1
        if user >= 0:
            # The API the user's innermost frame called.
            location: Location | None = stack[user]
            api_index = user + 1
        else:
            # A task running a function of ringtrio (a system task, a
            # handler-less server task, start_soon(sock.recv)): the
            # function itself is what the task is for, unless a frame
            # below it is a wait with a description of its own.
            location = stack[0] if stack else None
            api_index = 0
            for i in range(len(stack) - 1, 0, -1):
                if stack[i].function in _SPECIAL:
                    api_index = i
                    break
        api_frame = frames[api_index] if 0 <= api_index < len(frames) else None
        waiting_for = None
        ring_op = None
        if state == "parked":
            ring_op, waiting_for = self.wait_of(task, abort, api_frame, sleep_data)
        deadline, scopes, cancelled = self.deadline_of(task)
        # (TaskInfo(...) spelled out: see _frozen.)
        return _frozen(
            TaskInfo,
            {
                "name": task.name,
                "id": id(task),
                "state": state,
                "system": system,
                "location": location,
                "stack": stack,
                "waiting_for": waiting_for,
                "ring_op": ring_op,
                "sleeps_until": self.sleeps.get(task),
                "deadline": deadline,
                "deadline_scopes": scopes,
                "cancelled": cancelled,
                "nurseries": tuple([self.nursery(n, frames) for n in child_nurseries]) if child_nurseries else (),
            },
        )

    def location(self, frame: types.FrameType) -> Location:
        # By the code's id and the frame's instruction offset: hashing a
        # code object hashes its contents, and f_lineno decodes the line
        # table.  (The frames keep every code object alive while the
        # snapshot is taken.)
        key = (id(frame.f_code), frame.f_lasti)
        loc = self.locations.get(key)
        if loc is None:
            loc = self.locations[key] = _location(frame)
        return loc

    def frames_of_running(self, task: Task, suspended: list[types.FrameType]) -> list[types.FrameType]:
        """The await chain of the task whose step is in progress
        (``suspended``, its chain as walked from its coroutine, unless the
        snapshot is taken from inside it)."""
        coro: Any = task.coro
        if getattr(coro, "cr_running", False) or getattr(coro, "gi_running", False):
            # The snapshot is taken from inside the task: its await chain
            # is the live stack, from the coroutine's own frame down to here.
            # (From an instrument hook, before or after the task's step, its
            # coroutine is suspended as any other.)
            top = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            frames: list[types.FrameType] = []
            frame: types.FrameType | None = sys._getframe(1)
            while frame is not None:
                frames.append(frame)
                if frame is top:
                    return frames[::-1]
                frame = frame.f_back
        return suspended

    def wait_of(
        self, task: Task, abort: Callable[..., Any] | None, api_frame: types.FrameType | None, sleep_data: Any
    ) -> tuple[RingOpInfo | None, str]:
        owner = getattr(abort, "__self__", None)
        api = None
        if api_frame is not None:
            api = self.describe(api_frame, sleep_data)
        if isinstance(owner, RingOp):
            nbytes = None
            if isinstance(owner, self._StreamReceiver) and api_frame is not None:
                # The multishot receive is the stream's; what this read
                # asked for is receive_some's argument.
                nbytes = _local(api_frame, "max_bytes")
            if api is None and isinstance(owner, self._MultishotRecv):
                # Parked by the accelerator's __anext__ (C: no frame).
                api = _NEXT_BUFFER
            return self.op(owner, nbytes), api or _opcode(owner)
        if owner is task:
            if getattr(abort, "__name__", "") == "_abort_timed_sleep":
                deadline = self.sleeps.get(task)
                if deadline is not None:
                    return None, f"sleep until {deadline:.3f} (in {_seconds(deadline - self.now)})"
        elif owner is not None:
            chain = _introspect.chain_of(owner)
            if chain is not None:
                return self.chain(chain), api or "a linked chain of ring ops"
        if api is not None:
            return None, api
        name = getattr(abort, "__qualname__", repr(abort))
        return None, f"wait_task_rescheduled (abort function {name})"

    def describe(self, frame: types.FrameType, sleep_data: Any) -> str:
        """What a task waits for, in words, from the frame of the ringtrio
        API the user called (memoised where the words depend on the API
        alone: thousands of tasks on `Event.wait` are described once)."""
        code = frame.f_code
        obj = _local(frame, "self") if code.co_argcount and code.co_varnames[0] == "self" else None
        key = (id(code), type(obj))
        text = self.descriptions.get(key)
        if text is None:
            text, general = _describe_api(code, obj, frame, sleep_data)
            if general:
                self.descriptions[key] = text
        return text

    def deadline_of(self, task: Task) -> tuple[float, tuple[ScopeInfo, ...], bool]:
        # Walked from the task's innermost scope outwards, up to the first
        # shield.  Many tasks share their outer scopes (every child of a
        # nursery starts in its scope), so each scope's answer -- its own
        # combined with its parent's -- is worked out once per snapshot.
        memo = self.scope_memo
        scope: CancelScope | None = _introspect.innermost_scope(task)
        known = memo.get(id(scope))
        if known is not None:
            return known
        pending = []
        above: tuple[float, tuple[ScopeInfo, ...], bool] = (inf, (), False)
        while scope is not None:
            known = memo.get(id(scope))
            if known is not None:
                above = known
                break
            pending.append(scope)
            scope = _introspect.parent_scope(scope)
        for scope in reversed(pending):
            st = _introspect.scope_state(scope)
            best, scopes = (inf, ()) if st.shield else above[:2]
            if st.cancel_called:
                best, scopes = -inf, (self.scope(st), *scopes)
            elif st.deadline != inf:
                best, scopes = min(best, st.deadline), (self.scope(st), *scopes)
            above = memo[id(scope)] = (best, scopes, st.effectively_cancelled)
        return above

    def scope(self, st: _introspect.ScopeState) -> ScopeInfo:
        return ScopeInfo(
            deadline=st.deadline,
            shield=st.shield,
            cancel_called=st.cancel_called,
            nursery_scope=st.is_nursery_scope,
            owner=st.owner.name if st.owner is not None else None,
        )

    # -- nurseries -----------------------------------------------------------

    def nursery(self, nursery: Nursery, parent_frames: list[types.FrameType]) -> NurseryInfo:
        opened_in = None
        # The innermost frame of the parent holding the nursery in a local
        # (`async with open_nursery() as nursery:` binds it).
        for frame in reversed(parent_frames):
            try:
                items = frame.f_locals.items()
            except Exception:  # noqa: BLE001 - a frame being torn down
                continue
            # (`self`: a method of the nursery itself, not its opener.)
            if any(v is nursery and k != "self" for k, v in items):
                opened_in = self.location(frame)
                break
        st = _introspect.scope_state(nursery.cancel_scope)
        children = [self.task(child) for child in nursery.child_tasks]
        children.sort(key=_by_name)
        groups = tuple(
            self.buffer_group(owner)
            for owner in _introspect.owned_by(nursery)
            if isinstance(owner, self._BufferGroup)
        )
        return NurseryInfo(
            id=id(nursery),
            opened_in=opened_in,
            cancel_called=st.cancel_called,
            deadline=st.deadline,
            tasks=tuple(children),
            buffer_groups=groups,
        )

    def buffer_group(self, group: Any) -> BufferGroupInfo:
        stats = group.statistics()
        armed = sorted(group._armed, key=lambda op: op.fd)
        return BufferGroupInfo(
            bgid=group._ring.bgid,
            count=stats.count,
            size=stats.size,
            free=stats.free,
            leased=stats.leased,
            held=stats.held,
            enobufs=stats.enobufs,
            waiting=stats.waiting,
            incremental=stats.incremental,
            multishots=tuple(self.op(op) for op in armed),
        )

    # -- ring ops ----------------------------------------------------------------

    def op(self, op: RingOp, nbytes: int | None = None) -> RingOpInfo:
        self.claimed.add(id(op))
        multishot = isinstance(op, OwnedRingOp)
        if nbytes is None and not multishot and op.opcode in _LENGTH_IS_BYTES:
            nbytes = op.length
        stamp = self.stamps.get(id(op))
        owner = detail = waiter = None
        cancel_requested = id(op) in self.cancelling or op.cancel_raise is not None
        if multishot:
            cancel_requested = cancel_requested or bool(getattr(op, "cancel_requested", False))
            w = getattr(op, "waiter", None)
            waiter = w.name if w is not None else None
            if isinstance(op, self._StreamReceiver):
                owner = "SocketStream.receive_some"
                if op.queued:
                    detail = f"{len(op.chunks)} chunk(s), {op.queued} bytes received, not yet read"
            elif isinstance(op, self._MultishotRecv):
                owner = f"receive_buffers (buffer group {op.group._ring.bgid})"
                if op.queue:
                    detail = f"{len(op.queue)} lease(s) received, not yet taken"
            elif isinstance(op, self._MultishotAccept):
                owner = "serve_listeners"
                detail = f"armed {op.arms} time(s)"
                if op.accepted:
                    detail += f", {len(op.accepted)} connection(s) not yet handed off"
            else:
                owner = type(op).__name__
        return RingOpInfo(
            opcode=_opcode(op),
            fd=self.fd(op.fd, bool(op.sqe_flags & _ring.IOSQE_FIXED_FILE)) if op.fd >= 0 else None,
            nbytes=nbytes,
            age=(self.mono - stamp) if stamp is not None else None,
            multishot=multishot,
            cancel_requested=cancel_requested,
            owner=owner,
            detail=detail,
            waiter=waiter,
        )

    def chain(self, chain: Any) -> RingOpInfo | None:
        # The member the kernel is working on stands for the chain.
        members = chain.members
        for op in members:
            self.claimed.add(id(op))
        current = next((op for op in members if id(op) in self.stamps), None)
        if current is None:
            return None
        info = self.op(current)
        names = " -> ".join(_opcode(op) for op in members)
        return RingOpInfo(
            opcode=info.opcode,
            fd=info.fd,
            nbytes=info.nbytes,
            age=info.age,
            multishot=False,
            cancel_requested=info.cancel_requested or chain.cancel_raise is not None,
            owner=None,
            detail=f"linked chain {names}, at member {current.index + 1} of {len(members)}",
            waiter=None,
        )

    def fd(self, fd: int, fixed: bool) -> FdInfo:
        key = (fd, fixed)
        info = self.fds.get(key)
        if info is None:
            info = self.fds[key] = _describe_fd(fd, fixed)
        return info


# Opcodes whose SQE length is a byte count (READV/WRITEV count iovecs).
_LENGTH_IS_BYTES = frozenset(
    getattr(_ring, f"IORING_OP_{name}")
    for name in ("READ", "WRITE", "RECV", "SEND", "READ_FIXED", "WRITE_FIXED", "SEND_ZC")
    if hasattr(_ring, f"IORING_OP_{name}")
)


_by_name = operator.attrgetter("name")


def _opcode(op: RingOp) -> str:
    return _ring.OPCODE_NAMES.get(op.opcode, str(op.opcode))


def _frozen(cls: type[_T], fields: dict[str, Any]) -> _T:
    """``cls(**fields)`` for a frozen dataclass, without its ``__init__``.

    A frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__`` (its own ``__setattr__`` refuses): for TaskInfo's
    twelve fields that was the largest single cost of a snapshot, over a
    microsecond per task.  Setting the instance's ``__dict__`` once does the
    same; the instance is as frozen as any other.  ``fields`` must name
    every field (the one caller spells them out)."""
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", fields)
    return obj


def _location(frame: types.FrameType) -> Location:
    code = frame.f_code
    filename = code.co_filename
    return Location(
        filename=filename,
        lineno=frame.f_lineno,
        function=code.co_qualname,
        internal=filename.startswith(_PACKAGE_DIR),
    )


def _local(frame: types.FrameType, name: str) -> Any:
    try:
        return frame.f_locals.get(name)
    except Exception:  # noqa: BLE001 - a frame being torn down
        return None


# ---------------------------------------------------------------------------
# What a wait means
# ---------------------------------------------------------------------------


def _describe_api(code: types.CodeType, obj: Any, frame: types.FrameType, sleep_data: Any) -> tuple[str, bool]:
    """What a task waits for, in words, from the frame of the ringtrio API
    the user called (``code`` its code, ``obj`` its ``self`` or None), and
    whether the words depend on the API alone (not on this instance, its
    locals or the wait's data).  The API is ``Type.method`` named after
    the object's own class (``Lock.acquire``, not the base class that
    defines it), else the function's qualified name."""
    api = f"{type(obj).__name__}.{code.co_name}" if obj is not None else code.co_qualname
    kind, _, method = api.rpartition(".")
    if method == "__aenter__" and hasattr(obj, "acquire"):
        # `async with lock:` waits in the primitive's acquire().
        api, method = f"{kind}.acquire", "acquire"
    special = _SPECIAL.get(api) or _SPECIAL.get(code.co_qualname)
    if special is None and (obj is None or method != "acquire"):
        return api, True
    try:
        if special is not None:
            return special(api, frame, sleep_data), False
        return f"{api} ({_holder(obj)})", False
    except Exception:  # noqa: BLE001 - a description is never worth an error
        return api, False


def _fn_name(fn: Any) -> str:
    inner = getattr(fn, "func", fn)  # functools.partial
    return str(getattr(inner, "__qualname__", None) or getattr(inner, "__name__", None) or repr(inner))


def _holder(primitive: Any) -> str:
    """Who holds a lock-like primitive of ringtrio's, from its statistics."""
    stats = primitive.statistics()
    owner = getattr(stats, "owner", None)
    if owner is not None:
        return f"held by {owner.name}"
    borrowers = getattr(stats, "borrowers", None)
    if borrowers is not None:
        names = [getattr(b, "name", None) or type(b).__name__ for b in borrowers[:3]]
        more = ", ..." if len(borrowers) > 3 else ""
        return f"{stats.borrowed_tokens} of {stats.total_tokens} tokens out, to {', '.join(names)}{more}"
    value = getattr(primitive, "value", None)
    if value is not None:
        return f"value {value}"
    return f"{stats.tasks_waiting} task(s) waiting"


def _to_thread(api: str, frame: types.FrameType, lot: Any) -> str:
    fn = _fn_name(_local(frame, "sync_fn"))
    if lot is not None:
        # Parked in the limiter's lot: no thread yet.
        return f"to_thread.run_sync({fn}): waiting for a thread (the limiter is full)"
    return f"to_thread.run_sync({fn})"


def _memory_receive(api: str, frame: types.FrameType, lot: Any) -> str:
    stats = _local(frame, "self").statistics()
    return f"memory channel receive ({stats.open_send_channels} send end(s) open)"


def _memory_send(api: str, frame: types.FrameType, lot: Any) -> str:
    stats = _local(frame, "self").statistics()
    return (
        f"memory channel send (buffer {stats.current_buffer_used} of {stats.max_buffer_size}, "
        f"{stats.open_receive_channels} receive end(s) open)"
    )


def _wait_all(api: str, frame: types.FrameType, lot: Any) -> str:
    return f"wait_all_tasks_blocked(cushion={_local(frame, 'cushion')})"


def _nursery_exit(api: str, frame: types.FrameType, lot: Any) -> str:
    return "its nursery's children to finish (the end of `async with open_nursery()`)"


def _nursery_start(api: str, frame: types.FrameType, lot: Any) -> str:
    return f"nursery.start({_fn_name(_local(frame, 'async_fn'))}) to call task_status.started()"


def _sleep_forever(api: str, frame: types.FrameType, lot: Any) -> str:
    return "sleep_forever()"


def _process_wait(api: str, frame: types.FrameType, lot: Any) -> str:
    proc = _local(frame, "self")
    return f"Process.wait (pid {getattr(proc, 'pid', '?')})"


_NEXT_BUFFER = "receive_buffers: the next buffer"


def _next_buffer(api: str, frame: types.FrameType, lot: Any) -> str:
    return _NEXT_BUFFER


def _accepting(api: str, frame: types.FrameType, lot: Any) -> str:
    return "serve_listeners: connections to accept"


def _receive_some(api: str, frame: types.FrameType, lot: Any) -> str:
    return f"SocketStream.receive_some({_local(frame, 'max_bytes')})"


_Describe = Callable[[str, types.FrameType, Any], str]
_SPECIAL: dict[str, _Describe] = {
    "to_thread_run_sync": _to_thread,
    "MemoryReceiveChannel.receive": _memory_receive,
    "MemorySendChannel.send": _memory_send,
    "wait_all_tasks_blocked": _wait_all,
    "_NurseryManager.__aexit__": _nursery_exit,
    "Nursery._nested_child_finished": _nursery_exit,
    "Nursery.start": _nursery_start,
    "sleep_forever": _sleep_forever,
    "sleep": _sleep_forever,  # sleep(inf): no deadline entry
    "sleep_until": _sleep_forever,
    "Process.wait": _process_wait,
    # (__anext__'s Python halves; with the accelerator, a loop parked in
    # its common case has no frame of its own: see wait_of.)
    "BufferReceiver._anext": _next_buffer,
    "BufferReceiver._receive": _next_buffer,
    "_serve_one_listener": _accepting,
    "_serve_multishot": _accepting,
    "SocketStream.receive_some": _receive_some,
}


# ---------------------------------------------------------------------------
# What a file descriptor is
# ---------------------------------------------------------------------------


def _describe_fd(fd: int, fixed: bool) -> FdInfo:
    if fixed:
        return FdInfo(fd, "direct", f"slot {fd} of the ring's registered file table")
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return FdInfo(fd, "closed", "")
    if stat.S_ISSOCK(mode):
        return FdInfo(fd, "socket", _describe_socket(fd))
    target = _proc_link(fd)
    if stat.S_ISREG(mode):
        return FdInfo(fd, "file", target)
    if stat.S_ISDIR(mode):
        return FdInfo(fd, "directory", target)
    if stat.S_ISFIFO(mode):
        if target.startswith("pipe:"):
            return FdInfo(fd, "pipe", target)
        return FdInfo(fd, "fifo", target)
    if stat.S_ISCHR(mode):
        return FdInfo(fd, "char device", target)
    if stat.S_ISBLK(mode):
        return FdInfo(fd, "block device", target)
    if target == "anon_inode:[pidfd]":
        pid = _fdinfo_field(fd, "Pid")
        return FdInfo(fd, "pidfd", f"pid {pid}" if pid else "")
    if target.startswith("anon_inode:[eventfd"):
        return FdInfo(fd, "eventfd", "")
    return FdInfo(fd, "other", target)


def _proc_link(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _fdinfo_field(fd: int, field: str) -> str:
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == field:
                    return value.strip()
    except OSError:
        pass
    return ""


def _describe_socket(fd: int) -> str:
    try:
        # A socket object over the number (no dup), detached again before
        # it can close anything.
        sock = socket.socket(fileno=fd)
    except OSError:
        return ""
    try:
        family, kind = sock.family, sock.type
        if family in (socket.AF_INET, socket.AF_INET6):
            proto = {socket.SOCK_STREAM: "TCP", socket.SOCK_DGRAM: "UDP"}.get(kind, str(kind))
        elif family == socket.AF_UNIX:
            proto = {socket.SOCK_STREAM: "unix stream", socket.SOCK_DGRAM: "unix datagram"}.get(
                kind, "unix"
            )
        else:
            proto = str(family)
        local = _address(sock, "getsockname")
        peer = _address(sock, "getpeername")
        if peer is None:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                return f"{proto} listening on {local}"
            return f"{proto} {local}"
        if local == peer == "(unnamed)":
            return f"{proto}, unnamed (a socketpair?)"
        return f"{proto} {local} <- {peer}"
    except OSError:
        return ""
    finally:
        sock.detach()


def _address(sock: socket.socket, how: str) -> str | None:
    try:
        addr = getattr(sock, how)()
    except OSError:
        return None
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(addr, bytes):  # abstract unix name
        return repr(addr)
    return addr or "(unnamed)"


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def _short_path(filename: str) -> str:
    if filename.startswith(_PACKAGE_DIR):
        return "ringtrio/" + filename[len(_PACKAGE_DIR) :]
    try:
        rel = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if rel.startswith("..") else rel


def _seconds(delta: float) -> str:
    if math.isinf(delta):
        return "never"
    if abs(delta) >= 100:
        return f"{delta:.0f} s"
    return f"{delta:.3f} s"


def _render(tree: TaskTree) -> str:
    ages = "" if tree.op_timestamps else "; op ages off (lowlevel.enable_op_timestamps())"
    n_tasks = sum(1 for _ in tree.tasks())
    lines = [
        f"ringtrio task tree at t={tree.time:.3f}: {n_tasks} task(s), "
        f"{tree.ops_in_flight} ring op(s) in flight{ages}"
    ]
    _render_task(tree, tree.root, "", "", lines)
    if tree.other_ops:
        lines.append("ring ops in flight that no task waits on:")
        for op in tree.other_ops:
            lines.append("  " + _op_text(op))
    return "\n".join(lines)


def _render_task(tree: TaskTree, task: TaskInfo, first: str, rest: str, lines: list[str]) -> None:
    flags = ", system" if task.system else ""
    lines.append(f"{first}{task.name} [{task.state}{flags}]")
    detail = rest + ("|  " if any(n.tasks or n.buffer_groups for n in task.nurseries) else "   ")
    if task.location is not None:
        lines.append(f"{detail}at {task.location}")
    if task.waiting_for:
        lines.append(f"{detail}waiting for: {task.waiting_for}")
    if task.ring_op is not None:
        lines.append(f"{detail}ring op: {_op_text(task.ring_op)}")
    if task.cancelled:
        lines.append(f"{detail}cancelled (its next checkpoint raises Cancelled)")
    elif task.deadline != inf:
        set_by = [s for s in task.deadline_scopes if s.deadline == task.deadline]
        who = f", set by {_scope_text(set_by[0])}" if set_by else ""
        lines.append(
            f"{detail}deadline: t={task.deadline:.3f} (in {_seconds(task.deadline - tree.time)}){who}"
        )
    # One task's nurseries nest; drawn side by side all the same (the run's
    # root task has three), each after the first marked as inside it.
    # Empty ones (no child, no buffer group) are left out of the drawing.
    shown = [n for n in task.nurseries if n.tasks or n.buffer_groups]
    for i, nursery in enumerate(shown):
        last = i == len(shown) - 1
        _render_nursery(
            tree, nursery, i > 0, rest + ("`- " if last else "+- "), rest + ("   " if last else "|  "), lines
        )


def _render_nursery(
    tree: TaskTree, nursery: NurseryInfo, nested: bool, first: str, rest: str, lines: list[str]
) -> None:
    where = f" in {nursery.opened_in}" if nursery.opened_in is not None else ""
    state = ", cancelled" if nursery.cancel_called else ""
    inside = " (inside the one above)" if nested else ""
    lines.append(f"{first}nursery{where}{state}{inside}")
    children = len(nursery.tasks)
    for group in nursery.buffer_groups:
        bar = "|  " if children else "   "
        lines.append(
            f"{rest}{bar}buffer group {group.bgid}: {group.count} x {group.size} bytes, "
            f"{group.free} free, {group.leased} lease(s) out, {group.held} held, "
            f"ENOBUFS {group.enobufs}, {group.waiting} waiting"
            + (", incremental" if group.incremental else "")
        )
        for op in group.multishots:
            lines.append(f"{rest}{bar}  {_op_text(op)}")
    for i, child in enumerate(nursery.tasks):
        last = i == children - 1
        _render_task(tree, child, rest + ("`- " if last else "+- "), rest + ("   " if last else "|  "), lines)


def _op_text(op: RingOpInfo) -> str:
    parts = [op.opcode + (" multishot" if op.multishot else "")]
    if op.owner:
        parts.append(f"of {op.owner}")
    if op.fd is not None:
        parts.append(f"on {op.fd}")
    if op.nbytes is not None:
        parts.append(f"{op.nbytes} bytes")
    if op.age is not None:
        parts.append(f"submitted {_seconds(op.age)} ago")
    if op.cancel_requested:
        parts.append("cancel requested")
    if op.detail:
        parts.append(op.detail)
    if op.multishot:
        parts.append(f"task waiting: {op.waiter}" if op.waiter else "no task waiting")
    return ", ".join(parts)


def _scope_text(scope: ScopeInfo) -> str:
    what = "the nursery's cancel scope" if scope.nursery_scope else "a cancel scope"
    shield = " (shielded)" if scope.shield else ""
    return f"{what}{shield} of {scope.owner}" if scope.owner else what + shield
