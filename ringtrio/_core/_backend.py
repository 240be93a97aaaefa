"""Which ring a run uses: the kernel's io_uring, or -- where io_uring is
refused -- the soft ring, the same ring emulated on epoll and worker threads
(_native/softring.c).

Both take the same SQEs and give the same CQEs, so nothing above this choice
knows which one runs; the choice is made here, once per run, and shown by
:func:`ringtrio.lowlevel.current_backend`.

- ``"auto"`` (the default): io_uring if the kernel lets us set up a ring and
  use it (a NOP through ``io_uring_enter``, the opcode probe through
  ``io_uring_register``); otherwise the soft ring, with one
  :exc:`RingFallbackWarning` per process saying what refused io_uring and how
  to allow it.  Once io_uring has been refused, later runs in the process go
  straight to the soft ring.
- ``"ring"``: io_uring or :exc:`RingUnavailableError` (what ringtrio did
  before it had a fallback).
- ``"epoll"``: the soft ring, whatever the kernel allows.

``run(..., backend=...)`` wins over ``RINGTRIO_BACKEND``, which wins over
the default.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

from . import _ring
from ._exceptions import RingFallbackWarning, RingUnavailableError
from ._final import final
from ._ring import Ring

__all__ = ["BACKENDS", "ENV_VAR", "Backend", "note_refusal", "open_ring"]

BACKENDS = ("auto", "ring", "epoll")
ENV_VAR = "RINGTRIO_BACKEND"
# The oldest kernel whose io_uring has what ringtrio's ring backend uses
# (provided-buffer rings and multishot accept are 5.19; receive_some's
# multishot receive is 6.0 and has no other path): an older one is run on
# the soft ring, as one that refuses io_uring.
MIN_KERNEL = (6, 0)


@final
@dataclass(frozen=True, slots=True)
class Backend:
    """What :func:`ringtrio.lowlevel.current_backend` returns."""

    name: str  # "io_uring" or "epoll"
    reason: str  # why this one: the choice that was made, or what refused io_uring


# The process's verdict on io_uring, once it has refused: every later "auto"
# run goes straight to the soft ring, and the warning is given once.
_refused: RingUnavailableError | None = None
_warned = False


def _wanted(backend: str | None) -> tuple[str, str]:
    """(the choice, who made it)."""
    if backend is not None:
        source = f"run(backend={backend!r})"
    else:
        backend = os.environ.get(ENV_VAR, "") or "auto"
        source = f"{ENV_VAR}={backend}"
    if backend not in BACKENDS:
        raise ValueError(
            f"{source}: the backend must be one of {', '.join(map(repr, BACKENDS))} "
            "('auto' uses io_uring where the kernel allows it and the epoll backend "
            "elsewhere; 'ring' and 'epoll' force one)"
        )
    return backend, source


def _kernel_too_old() -> RingUnavailableError | None:
    match = re.match(r"(\d+)\.(\d+)", _ring.kernel_release())
    if match is None or (int(match[1]), int(match[2])) >= MIN_KERNEL:
        return None
    return RingUnavailableError(
        errno.ENOSYS,
        f"ringtrio cannot use io_uring: this kernel ({_ring.kernel_release()}) is older "
        f"than {MIN_KERNEL[0]}.{MIN_KERNEL[1]}, which ringtrio's io_uring backend needs.",
    )


def note_refusal(exc: RingUnavailableError) -> None:
    """io_uring was refused in the middle of a run (an io_uring_enter that
    worked at setup fails with EPERM, say): later runs use the soft ring."""
    global _refused
    if _refused is None:
        _refused = exc


def _new_ring(soft: bool, guest: bool) -> Ring:
    # (The sizes are read now, not when Ring was defined: tests shrink them.)
    flags = _ring.GUEST_SETUP_FLAGS if guest else _ring.PREFERRED_SETUP_FLAGS
    return Ring(_ring.SQ_ENTRIES, _ring.CQ_ENTRIES, soft=soft, setup_flags=flags)


def open_ring(
    backend: str | None, guest: bool = False
) -> tuple[Ring, Backend, RingFallbackWarning | None]:
    """The ring for a new run (``guest``: a guest run's, see
    ``_ring.GUEST_SETUP_FLAGS``), what it is and why, and the warning to
    give (if this is the process's first fallback)."""
    global _refused, _warned
    choice, source = _wanted(backend)
    if choice == "epoll":
        return _new_ring(True, guest), Backend("epoll", f"chosen with {source}"), None
    if choice == "ring":
        return _new_ring(False, guest), Backend("io_uring", f"chosen with {source}"), None
    if _refused is None:
        _refused = _kernel_too_old()
    if _refused is None:
        try:
            ring = _new_ring(False, guest)
        except RingUnavailableError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                # Out of file descriptors: the soft ring needs some too, and
                # io_uring was not refused.
                raise
            _refused = exc
        else:
            return ring, Backend("io_uring", "io_uring is available"), None
    ring = _new_ring(True, guest)
    reason = _refused.strerror or str(_refused)
    warning = None
    if not _warned:
        _warned = True
        warning = RingFallbackWarning(
            f"io_uring is not available, so ringtrio runs on its epoll backend (the same "
            f"semantics, slower I/O). {reason.removeprefix('ringtrio cannot use io_uring: ')} "
            f"Set {ENV_VAR}=epoll to choose the epoll backend (and silence this warning), "
            f"or {ENV_VAR}=ring to fail instead."
        )
    return ring, Backend("epoll", reason.removeprefix("ringtrio cannot use io_uring: ")), warning

