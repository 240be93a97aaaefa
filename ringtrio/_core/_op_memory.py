"""The caller's memory a ring op points at: pinned by a private view, never
by a buffer export held while the op waits.

An op that reads into or writes from a caller's buffer (``recv_into``,
``send(memoryview)``, a file write) must keep that memory in place until its
final CQE, whatever the caller does meanwhile: drop the buffer, release its
memoryview, resize the bytearray under it.

The obvious way -- take a buffer export of the caller's object (a cffi
``from_buffer``) and hold it until the CQE -- crashes the interpreter on
CPython 3.11 (and 3.12 before 3.12.7): a memoryview's ``tp_clear`` drops its
managed buffer even while an export of it is held (CPython gh-77894).  When
the caller's memoryview and the object holding the export end up in one
garbage cycle -- which is what happens when the op fails: the exception's
traceback holds the frames that hold both -- the collector may clear the view
first ("memoryview has 1 exported buffer"), and releasing the export
afterwards dereferences the cleared view: SIGSEGV.  Any object that holds an
export and that the collector can see has the same problem, so ringtrio holds
none across a wait:

* :func:`pin_view` makes a *new* memoryview of the caller's memory.  For a
  memoryview it shares the view's managed buffer (``memoryview(view)``) and
  takes no export of the view itself, so the caller may release or drop
  theirs at any time; the managed buffer keeps its export of the underlying
  object (a bytearray stays unresizable, an array alive) while our view
  lives.  Nobody else can release our view.
* :func:`address_of` gives the address of such a view through an export that
  ends before it returns.
* The runner (``Runner._submit_op``, and ``submit`` in _speedups.c) does
  both for a ``memoryview`` in ``RingOp.addr``: the op then holds its own
  view there until its final CQE, so a view the caller passes in, and later
  releases, still pins the memory.
"""

from __future__ import annotations

from typing import Any

from ._ring import _load_native

_ffi: Any = None


def pin_view(obj: Any, *, writable: bool = False) -> memoryview:
    """A new memoryview of ``obj``'s memory that only the caller holds.

    Raises ``TypeError`` for an object without the buffer protocol (or a
    read-only one when ``writable``), ``ValueError`` for a released
    memoryview, ``BufferError`` for memory that is not C-contiguous.
    """
    view = memoryview(obj)
    if writable and view.readonly:
        raise TypeError(f"{type(obj).__name__} is read-only")
    if not view.c_contiguous:
        raise BufferError(f"the memory of this {type(obj).__name__} is not C-contiguous")
    return view


def address_of(buffer: memoryview | bytes) -> int:
    """The address of the first byte of ``buffer`` (a view from
    :func:`pin_view`, or ``bytes``).  The export taken to read it has ended
    when this returns; the caller keeps ``buffer`` alive for as long as the
    address is used."""
    global _ffi
    if _ffi is None:
        _ffi = _load_native()[0]
    cbuf = _ffi.from_buffer(buffer)
    try:
        return int(_ffi.cast("uintptr_t", cbuf))
    finally:
        _ffi.release(cbuf)
