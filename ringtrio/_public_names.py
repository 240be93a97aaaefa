"""Public names for public objects.

ringtrio's classes and functions are defined in underscore modules and
re-exported by thin public ones (``ringtrio``, ``ringtrio.lowlevel`` ...).
Python names an object after the module that defined it, so without help a
traceback says ``ringtrio._core._exceptions.TooSlowError``, a pytest summary
repeats it, and a task running ``to_thread_run_sync`` is named after a
function no user ever called.  :func:`claim_public_names` gives every
exported object the name a user imports it by: ``__module__`` becomes the
public module, and an object exported under another name (``run_sync`` for
``to_thread_run_sync``) takes that name.

An object several public modules export (``Clock`` is in ``ringtrio.abc``
and ``ringtrio.lowlevel``) gets the first of :data:`PUBLIC_MODULES` that
exports it: the home trio gives the same name.
"""

from __future__ import annotations

import sys
import types
from typing import Any

# In order of precedence: an object belongs to the first module that exports it.
PUBLIC_MODULES = (
    "ringtrio",
    "ringtrio.abc",
    "ringtrio.testing",
    "ringtrio.to_thread",
    "ringtrio.from_thread",
    "ringtrio.lowlevel",
    "ringtrio.socket",
)


def _is_private_module(name: str) -> bool:
    return name.split(".")[0] == "ringtrio" and any(part.startswith("_") for part in name.split("."))


def _rename(obj: Any, module: str, name: str | None, qualname: str | None) -> None:
    old_module, old_qualname = obj.__module__, obj.__qualname__
    obj.__module__ = module
    if name is not None and qualname is not None:
        obj.__name__ = name
        obj.__qualname__ = qualname
    if not isinstance(obj, type):
        return
    # The class's own methods and nested classes follow it (so that
    # `ringtrio.Nursery.start_soon` is what a traceback or help() shows).
    for attr in vars(obj).values():
        if isinstance(attr, (classmethod, staticmethod)):
            attr = attr.__func__
        elif isinstance(attr, property):
            attr = attr.fget
        if not isinstance(attr, (types.FunctionType, type)):
            continue
        if attr.__module__ != old_module or not attr.__qualname__.startswith(old_qualname + "."):
            continue
        inner = attr.__qualname__[len(old_qualname) + 1 :]
        if "." in inner:  # defined in a nested scope: left to that scope
            continue
        _rename(attr, module, inner, f"{obj.__qualname__}.{inner}")


def claim_public_names() -> None:
    """Give every object in a public module's ``__all__`` that module as its
    ``__module__`` (and its exported name, for an object exported under
    another one).  Called once, by ``ringtrio/__init__`` after it has
    imported every public module."""
    for module_name in PUBLIC_MODULES:
        module = sys.modules[module_name]
        for public in module.__all__:
            obj = getattr(module, public)
            if not isinstance(obj, (type, types.FunctionType)):
                continue  # constants, submodules, stdlib passthroughs
            if not _is_private_module(obj.__module__):
                continue  # already claimed (or not ours: socket.error ...)
            # An alias (PosixPath = Path) keeps its own name when that name is
            # exported too; a rename (run_sync = to_thread_run_sync) takes
            # the public one.
            if getattr(module, obj.__name__, None) is obj:
                _rename(obj, module_name, None, None)
            else:
                _rename(obj, module_name, public, public)
