"""KeyboardInterrupt protection: where Ctrl-C may raise at once, and where it
must wait.

Python raises ``KeyboardInterrupt`` between any two bytecodes.  In a task's
own code that is what a user wants -- a task spinning in ``while True:
pass`` must be interruptible -- but in the runtime it would tear state that
other tasks and the kernel depend on: a token taken and not recorded, an
in-flight count off by one, a task out of a parking lot and not on the run
queue, half a deadline heap push.  So run()'s SIGINT handler decides, from
the frame it interrupted, whether that code is *protected*:

* unprotected: raise ``KeyboardInterrupt`` right there (trio's default);
* protected: only note it (``Runner.ki_pending``); the loop then delivers
  it to the main task, at its next checkpoint or by aborting its wait.

The decision walks the interrupted frame's stack outwards and takes the
first frame that has an opinion:

1. a frame whose code object was marked by :func:`enable_ki_protection` /
   :func:`disable_ki_protection` (trio's decorators; they mark the code, so
   generators, coroutines and async generators are covered too);
2. the root frame of the current task's coroutine: protected for system
   tasks, not for the others.  So a user's task is unprotected unless its
   code says otherwise, and so is a helper task of ringtrio's whose job is
   to run the user's code (``serve_tcp``'s handler wrapper, a process's
   ``deliver_cancel``, ``as_safe_channel``'s producer), as in trio;
3. a frame of ringtrio's own code (its module's ``__name__`` is
   ``ringtrio`` or ``ringtrio.*``): protected, unless the module says
   ``_KI_PROTECTION = False`` (test helpers whose job is to run the user's
   code);
4. a ``__del__`` method: protected (a finalizer runs at arbitrary moments,
   in the middle of the runtime too);
5. nothing decided by the outermost frame: protected (code outside any task:
   the run loop's callers, a guest run's host loop).

Rule 3 is what makes the runtime safe without a decorator on each of its
functions: every frame of ringtrio's code below a task's root protects
itself *and everything it calls*, so a user callback that ringtrio runs (an
abort function, an instrument, a ``run_sync_soon`` callback) is protected,
as in trio.  Where ringtrio calls user code that should stay interruptible
from deeper down (the body of a ``from_thread.run`` call), the calling
function is marked with :func:`disable_ki_protection`.

What it costs: nothing on any hot path.  Marks are made when a function is
decorated; the walk runs only when SIGINT arrives (and in
:func:`currently_ki_protected`).  The C accelerator needs no marks either:
Python runs a signal handler only between bytecodes, so while _speedups.c's
step loop or dispatch does its bookkeeping in C the handler cannot run; it
runs in the next Python frame to execute -- a task's code (whose frames lead
back to the task's root), or a runtime function the C code called (whose
caller, the loop, is ringtrio's).  The C loop adds no frame of its own: a
task's root frame's ``f_back`` is ``Runner._run_loop``.
"""

from __future__ import annotations

import sys
import types
import weakref
from collections.abc import Callable
from typing import Protocol, TypeVar

from ._local import _local

# Marked code objects: id(code) -> (a weak reference to the code, protected?).
# Keyed by id because code objects compare by value (two functions with the
# same body share a key otherwise); the weak reference checks the id was not
# reused, and its callback drops the entry when the code object goes.
_marks: dict[int, tuple[weakref.ref[types.CodeType], bool]] = {}


class _HasCode(Protocol):
    __code__: types.CodeType


_FnT = TypeVar("_FnT", bound=_HasCode)


def _mark(fn: _FnT, protected: bool, what: str) -> _FnT:
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        raise TypeError(
            f"{what} decorates a Python function (or generator, coroutine, async "
            f"generator function); {fn!r} has no code object. Decorate the function "
            "itself, before functools.partial or other wrappers."
        )
    key = id(code)

    def forget(ref: weakref.ref[types.CodeType], key: int = key) -> None:
        entry = _marks.get(key)
        if entry is not None and entry[0] is ref:
            del _marks[key]

    _marks[key] = (weakref.ref(code, forget), protected)
    return fn


def enable_ki_protection(f: _FnT, /) -> _FnT:
    """Decorator: Ctrl-C never raises ``KeyboardInterrupt`` in the middle of
    ``f`` or anything it calls; it is delivered to the main task at a
    checkpoint instead.  Works on functions, generator functions, async
    functions and async generator functions; returns ``f`` itself."""
    return _mark(f, True, "enable_ki_protection")


def disable_ki_protection(f: _FnT, /) -> _FnT:
    """Decorator: Ctrl-C raises ``KeyboardInterrupt`` at once in ``f`` and
    what it calls, even when called from protected code.  Returns ``f``."""
    return _mark(f, False, "disable_ki_protection")


def ki_protection_enabled(frame: types.FrameType | None) -> bool:
    """Whether code running in ``frame`` is protected (see the module
    docstring for the rules, in order)."""
    task = _local.task
    root = None
    if task is not None:
        coro = task.coro
        root = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    while frame is not None:
        code = frame.f_code
        entry = _marks.get(id(code))
        if entry is not None and entry[0]() is code:
            return entry[1]
        if frame is root:
            return bool(task._system)  # type: ignore[union-attr]
        globals_ = frame.f_globals
        module = globals_.get("__name__")
        if type(module) is str and (module == "ringtrio" or module.startswith("ringtrio.")):
            return bool(globals_.get("_KI_PROTECTION", True))
        if code.co_name == "__del__":
            return True
        frame = frame.f_back
    return True


def currently_ki_protected() -> bool:
    """Whether Ctrl-C would be deferred (True) or raise ``KeyboardInterrupt``
    at once (False) in the code that calls this."""
    return ki_protection_enabled(sys._getframe(1))


def sigint_handler(
    deliver: Callable[[], None], restrict_to_checkpoints: bool
) -> Callable[[int, types.FrameType | None], None]:
    """The SIGINT handler of a run: raise KeyboardInterrupt where the frame
    it interrupted is unprotected, else ``deliver()`` (note it for the loop)."""

    def handler(signum: int, frame: types.FrameType | None) -> None:
        if restrict_to_checkpoints or ki_protection_enabled(frame):
            deliver()
        else:
            raise KeyboardInterrupt

    return handler
