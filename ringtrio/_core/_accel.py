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
# Buffer leases (_buffer_group): release_lease(lease) / lease_unref(lease)
# -> True when done in C, False for the Python path.
_sp_release_lease: Callable[[Any], bool] | None = None
_sp_lease_unref: Callable[[Any], bool] | None = None
# lease_hold(lease) -> the address of its bytes, its buffer held for a send
# (what send_all does before sending a lease), or None: the Python path.
_sp_lease_hold: Callable[[Any], int | None] | None = None
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
# pread_nowait(fd, size, offset) -> bytes | (first part,) | errno: a file
# read served from the page cache without a ring op (_file_io._pread_nowait
# is its definition).
_sp_pread_nowait: Callable[[int, int, int], bytes | tuple[bytes] | int] | None = None

# Receivers above the core whose common CQE the dispatch completes in C
# (register_receiver): the _speedups setup call -> its arguments.
_receivers: dict[str, tuple[Any, ...]] = {}
_module: Any = None


def load(ffi: Any, lib: Any) -> None:
    """Set up _speedups (once) with ``ffi``/``lib``, the native ring module,
    and publish its entry points; nothing when it is missing or disabled."""
    global _sp_submit, _sp_dispatch, _sp_new_bytes, _sp_iovecs, _sp_take_tokens
    global _sp_prep_open_chain, _sp_prep_close_direct, _sp_lease_view, _sp_run_batch, _module
    global _sp_submit_park, _sp_release_lease, _sp_lease_unref, _sp_pread_nowait, _sp_lease_hold
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
    _sp_pread_nowait = _speedups.pread_nowait
    _sp_take_tokens, _sp_lease_view = _speedups.take_tokens, _speedups.lease_view
    _sp_prep_open_chain, _sp_prep_close_direct = _speedups.prep_open_chain, _speedups.prep_close_direct
    _sp_submit_park = _speedups.submit_park
    _sp_release_lease, _sp_lease_unref = _speedups.release_lease, _speedups.lease_unref
    _sp_lease_hold = _speedups.lease_hold
    _module = (_speedups, ffi, lib)
    for setup in _receivers:
        _setup_receiver(setup)


def speedups_class(name: str) -> type:
    """A base class for a class above the core: _speedups' ``name``
    (``LeaseBase`` for ``ringtrio.Buffer``, ``ReceiverBase`` for
    ``BufferReceiver``: their hot methods in C) when the accelerator is
    present and allowed, else ``object`` (the class is then all Python).
    Asked once, when the class is defined: a class cannot change its base
    later."""
    if os.environ.get("RINGTRIO_NO_SPEEDUPS"):
        return object
    try:
        from . import _speedups  # type: ignore[attr-defined]
    except ImportError:
        return object
    return getattr(_speedups, name)  # type: ignore[no-any-return]


def register_receiver(setup: str, *args: Any) -> None:
    """Have the CQE dispatch complete a receiver's common CQE in C.  The
    receivers live above the core: ``setup`` names the _speedups call that
    takes their classes (``args``), made now or when the module loads.

    * ``"setup_receive"``, (_StreamReceiver, pause_bytes): receive_some's
      multishot receive, which copies each chunk out of a BufferRing
      (the call also gets BufferRing and ring.c's rt_buf_ring_recycle);
    * ``"setup_lease_receive"``, (_MultishotRecv, BufferGroup, Buffer):
      receive_buffers' multishot receive, which queues a Buffer lease per
      chunk (the call also gets BufferRing); this also enables
      ``lease_unref`` and ``release_lease``, Buffer's release in C;
    * ``"setup_lease_anext"``, (BufferReceiver, _local): after the one
      above, BufferReceiver.__anext__'s common case in C (its base
      ``ReceiverBase``; the Python ``_anext`` until then).

    The classes' ``_on_cqe`` stays the definition: the C code does what it
    does for a chunk that arrives while more are to come and the queue is
    below its pause mark, and hands every other CQE to it."""
    _receivers[setup] = args
    if _module is not None:
        _setup_receiver(setup)


def _setup_receiver(setup: str) -> None:
    speedups, ffi, lib = _module
    args = _receivers[setup]
    from ._buffers import BufferRing

    if setup == "setup_receive":
        recycle = int(ffi.cast("uintptr_t", ffi.addressof(lib, "rt_buf_ring_recycle")))
        args = (args[0], BufferRing, recycle, *args[1:])
    elif setup == "setup_lease_receive":
        args = (*args, BufferRing)
    getattr(speedups, setup)(*args)
