"""Loading the optional C accelerator, ringtrio/_core/_speedups.c.

_speedups.c does the work of ``Runner._submit_op``, ``Runner._dispatch_cqes``
and the plain case of the run loop's step in C, on the same objects (an
accelerator of the core, not a layer of its own).  The Python code stays the
definition it mirrors: without the module (or with RINGTRIO_NO_SPEEDUPS=1 in
the environment) that code does the same work.

:func:`load` runs when the first Runner starts: it hands _speedups the
classes whose ``__slots__`` it reads and writes (RingOp, Task, CancelScope,
_Park, LinkedOp, LinkedChain), the trap sentinels, and the addresses of the
native ring functions, then publishes the entry points below.  They stay
None when the accelerator is not used.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

_sp_submit: Callable[..., Any] | None = None
# submit_park(runner, op, task): Runner._submit_park without a Python frame
# (None: take the Python path).
_sp_submit_park: Callable[..., Any] | None = None
_sp_dispatch: Callable[..., Any] | None = None
_sp_take_tokens: Callable[..., Any] | None = None
_sp_prep_open_chain: Callable[..., int] | None = None
_sp_prep_close_direct: Callable[..., int] | None = None
_sp_lease_view: Callable[..., memoryview] | None = None
_sp_run_batch: Callable[..., tuple[int, Any, int, Any]] | None = None
# new_bytes(n): a private, uninitialized bytes object for a READ to fill
# (file reads then copy once, as os.read; see _file_io._pread).
_sp_new_bytes: Callable[[int], bytes] | None = None
_sp_iovecs: Callable[[list[bytes]], bytes] | None = None

# Receivers above the core whose common CQE the dispatch completes in C
# (register_receiver): class -> the setup call's extra arguments.
_receivers: dict[type, tuple[Any, ...]] = {}
_module: Any = None


def load(ffi: Any, lib: Any) -> None:
    """Set up _speedups (once) with ``ffi``/``lib``, the native ring module,
    and publish its entry points; nothing when it is missing or disabled."""
    global _sp_submit, _sp_dispatch, _sp_new_bytes, _sp_iovecs, _sp_take_tokens
    global _sp_prep_open_chain, _sp_prep_close_direct, _sp_lease_view, _sp_run_batch, _module
    global _sp_submit_park
    if _sp_submit is not None or os.environ.get("RINGTRIO_NO_SPEEDUPS"):
        return
    try:
        from . import _speedups  # type: ignore[attr-defined]
    except ImportError:
        return
    # Imported here, not at the top: the chains module reads this module's
    # entry points, and this module needs the classes of every other one.
    from ._cancel_scope import CancelScope
    from ._chains import LinkedChain, LinkedOp
    from ._ring_ops import _LINK_EXPIRED, RingOp
    from ._task import Task
    from ._traps import _CHECKPOINT, _RESUME_CHECKING_CANCEL, _RESUME_PLAIN, _YIELD, _Park

    prep = int(ffi.cast("uintptr_t", ffi.addressof(lib, "rt_prep")))
    _speedups.setup(RingOp, Task, _LINK_EXPIRED, prep)
    _speedups.setup_chains(
        LinkedOp, LinkedChain,
        int(ffi.cast("uintptr_t", ffi.addressof(lib, "rt_prep_open_chain"))),
        int(ffi.cast("uintptr_t", ffi.addressof(lib, "rt_prep_close_direct"))),
    )
    _speedups.setup_steps(
        Task, CancelScope, _Park, _CHECKPOINT, _YIELD, _RESUME_PLAIN, _RESUME_CHECKING_CANCEL
    )
    _sp_submit, _sp_dispatch, _sp_run_batch = _speedups.submit, _speedups.dispatch, _speedups.run_batch
    _sp_new_bytes, _sp_iovecs = _speedups.new_bytes, _speedups.iovecs
    _sp_take_tokens, _sp_lease_view = _speedups.take_tokens, _speedups.lease_view
    _sp_prep_open_chain, _sp_prep_close_direct = _speedups.prep_open_chain, _speedups.prep_close_direct
    _sp_submit_park = _speedups.submit_park
    _module = (_speedups, ffi, lib)
    for cls in _receivers:
        _setup_receiver(cls)


def register_receiver(cls: type, pause_bytes: int) -> None:
    """Have the CQE dispatch complete ``cls``'s common CQE in C: ``cls`` is
    receive_some's multishot receive (_highlevel_socket._StreamReceiver),
    which copies each chunk out of a BufferRing and queues it; its
    ``_on_cqe`` stays the definition (and handles everything but a chunk
    that arrives while more are to come and the queue is below
    ``pause_bytes``)."""
    _receivers[cls] = (pause_bytes,)
    if _module is not None:
        _setup_receiver(cls)


def _setup_receiver(cls: type) -> None:
    from ._buffers import BufferRing

    speedups, ffi, lib = _module
    recycle = int(ffi.cast("uintptr_t", ffi.addressof(lib, "rt_buf_ring_recycle")))
    speedups.setup_receive(cls, BufferRing, recycle, *_receivers[cls])
