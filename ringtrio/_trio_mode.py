"""Trio mode: in this process, the module ``trio`` is ringtrio.

``import ringtrio.trio_mode`` (or ``python -m ringtrio --trio-mode app.py``)
calls :func:`enable`, which does three things, once, for the whole process:

1. ``sys.modules["trio"]`` becomes the ``ringtrio`` module, and
   ``trio.lowlevel``, ``trio.testing``, ``trio.abc``, ``trio.socket``,
   ``trio.to_thread`` and ``trio.from_thread`` become ringtrio's modules of
   the same role.  So ``import trio`` and ``from trio.lowlevel import ...``
   in any library give ringtrio's objects.
2. A finder at the head of ``sys.meta_path`` answers every other ``trio.X``
   import with ringtrio's module ``ringtrio.X`` (``trio.testing._memory_streams``
   is ``ringtrio.testing._memory_streams``), or with a ModuleNotFoundError
   that says ringtrio has no such module.  Without it, Python would look for
   ``trio.X`` in ringtrio's directory (``trio.__path__`` is ringtrio's) and
   load a second copy of a ringtrio module under a trio name.
3. The few trio internals that widely used libraries read get a stand-in
   (:data:`TRIO_INTERNALS`).
4. Runs report ``"trio"`` to sniffio (the core's one switch,
   ``set_sniffio_name``): a library that asks sniffio and, hearing "trio",
   calls ``trio.*`` reaches ringtrio, which is the truth in this process.

It must happen before anything imports the real trio: a library that bound
real trio's objects at import time would go on using them, and two event
loops' objects would meet in one program.  So :func:`enable` refuses, naming
the module that imported trio, when real trio is already loaded.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence
from typing import Any

from ._core import Task
from ._core._internal_api import set_sniffio_name

# trio's public modules and ringtrio's modules of the same role.
MODULES = {
    "trio": "ringtrio",
    "trio.abc": "ringtrio.abc",
    "trio.from_thread": "ringtrio.from_thread",
    "trio.lowlevel": "ringtrio.lowlevel",
    "trio.socket": "ringtrio.socket",
    "trio.testing": "ringtrio.testing",
    "trio.to_thread": "ringtrio.to_thread",
}


def _is_trio_name(name: object) -> bool:
    return isinstance(name, str) and (name == "trio" or name.startswith("trio."))


def _ours(name: str) -> str:
    """``trio.X.Y`` -> ``ringtrio.X.Y``."""
    return MODULES.get(name, "ring" + name)


class _AliasLoader(importlib.abc.Loader):
    """Loads ``trio.X`` as the already imported module ``ringtrio.X``.

    importlib gives the module the alias's ``__spec__`` before calling
    :meth:`exec_module`; that puts ringtrio's own spec back, so the module
    keeps one identity (``importlib.reload``, pickling and tracebacks see
    ``ringtrio.X``) whichever name imported it first."""

    def __init__(self, module: types.ModuleType) -> None:
        self._module = module
        self._spec = module.__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self._module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self._spec


class _TrioAliasFinder(importlib.abc.MetaPathFinder):
    """Answers ``trio`` and every ``trio.X`` with ringtrio's module."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not _is_trio_name(fullname):
            return None
        ours = _ours(fullname)
        try:
            module = importlib.import_module(ours)
        except ModuleNotFoundError as exc:
            if exc.name != ours:
                raise  # ringtrio's module exists but lacks a dependency: say that
            raise ModuleNotFoundError(
                f"No module named {fullname!r} in trio mode: there, trio's modules are "
                f"ringtrio's, and ringtrio has no {ours!r}. trio's public modules "
                f"({', '.join(MODULES)}) are all there; a library that imports trio's "
                "private modules uses trio's internals, which ringtrio does not have "
                "(docs/ecosystem.md, 'Trio mode')",
                name=fullname,
            ) from None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(module))


class _CancelStatus:
    """trio's ``Task._cancel_status``, reduced to what libraries read of it."""

    __slots__ = ("_task",)

    def __init__(self, task: Task) -> None:
        self._task = task

    @property
    def effectively_cancelled(self) -> bool:
        # A task's innermost scope caches whether it is effectively cancelled.
        return bool(self._task._cancel_scope._eff)


def _task_cancel_status(task: Task) -> _CancelStatus:
    return _CancelStatus(task)


def _hypothesis_plugin_setup() -> None:
    """trio makes its scheduler's random choices hypothesis-controlled here;
    ringtrio's scheduler makes none (it runs tasks in FIFO order), so there
    is nothing to register."""


# trio internals that libraries written for trio read, with who reads them:
# (trio's class or module name, attribute, stand-in, who needs it).  Each is
# provided in trio mode only (ringtrio's own API never needs them), on
# ringtrio's class or module of the same role.  Keep this list short: a
# library that reaches deep into trio's internals is not made to run by
# copying them.
TRIO_INTERNALS: list[tuple[type | str, str, Any, str]] = [
    (
        Task,
        "_cancel_status",
        property(_task_cancel_status),
        "AnyIO's trio backend: TaskInfo.has_pending_cancellation, which memory "
        "object streams call in send_nowait (.effectively_cancelled)",
    ),
    (
        "trio._core._run",
        "_hypothesis_plugin_setup",
        _hypothesis_plugin_setup,
        "hypothesis: trio's distribution declares it as a hypothesis entry point, "
        "which every `import hypothesis` loads while trio is installed",
    ),
]


def _real_trio_modules() -> list[str]:
    """Names of trio modules in sys.modules that are not ringtrio's."""
    found = []
    for name, module in list(sys.modules.items()):
        if _is_trio_name(name) and module is not None:
            if not str(getattr(module, "__name__", "")).startswith("ringtrio"):
                found.append(name)
    return found


def _refers_to_trio(value: Any) -> bool:
    if isinstance(value, types.ModuleType):
        return _is_trio_name(getattr(value, "__name__", None))
    if isinstance(value, (type, types.FunctionType)):
        return _is_trio_name(getattr(value, "__module__", None))
    return False


def trio_users() -> list[str]:
    """The modules (other than trio's own) whose globals hold trio or one of
    its classes or functions, in the order they were first imported.

    Python does not record who imported a module.  What it keeps is the
    module namespaces: ``import trio`` binds ``trio`` there, and ``from trio
    import open_nursery`` binds a function whose ``__module__`` is trio's.
    sys.modules keeps insertion order, and a module is inserted when its
    import starts, so the first such module is the likeliest first importer
    (a package that imported a submodule which imported trio comes after
    that submodule only if the package itself names trio)."""
    users = []
    for name, module in list(sys.modules.items()):
        if _is_trio_name(name) or not isinstance(module, types.ModuleType):
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        try:
            if any(_refers_to_trio(value) for value in list(namespace.values())):
                users.append(name)
        except Exception:  # an odd module object must not hide the real error
            continue
    return users


def _describe(name: str) -> str:
    module = sys.modules.get(name)
    where = getattr(module, "__file__", None)
    return f"{name!r} ({where})" if where else repr(name)


def _already_imported_error(real: list[str]) -> RuntimeError:
    trio_module = sys.modules.get("trio")
    where = getattr(trio_module, "__file__", None) or real[0]
    users = trio_users()
    if users:
        by = f"it was imported by {_describe(users[0])} (the first loaded module that uses it)"
        if len(users) > 1:
            by += f"; other modules using it: {', '.join(users[1:])}"
        fix = f"before {users[0]!r} is imported"
    else:
        by = (
            "no loaded module refers to it, so it was imported by code that kept no "
            "reference (importlib.import_module, a plugin loader, or a module that deleted it)"
        )
        fix = "before anything imports trio"
    return RuntimeError(
        f"trio mode must be enabled before anything imports trio, but the real trio "
        f"({where}) is already imported: {by}. Libraries that bound real trio's objects "
        "would go on using them, next to ringtrio's. Put `import ringtrio.trio_mode` "
        f"first in the program ({fix}), or run it with "
        "`python -m ringtrio --trio-mode app.py`."
    )


_finder = _TrioAliasFinder()


def enabled() -> bool:
    """Whether trio mode is on in this process."""
    return _finder in sys.meta_path


def enable() -> None:
    """Turn trio mode on for this process (idempotent); see the module's docstring.

    Raises RuntimeError, naming the importer, if the real trio is already
    imported, and if called inside a run."""
    if enabled():
        return
    real = _real_trio_modules()
    if real:
        raise _already_imported_error(real)
    set_sniffio_name("trio")  # refuses inside a run, before anything changed
    for owner, name, value, _who in TRIO_INTERNALS:
        target = importlib.import_module(_ours(owner)) if isinstance(owner, str) else owner
        setattr(target, name, value)
    for trio_name, ours in MODULES.items():
        sys.modules[trio_name] = importlib.import_module(ours)
    sys.meta_path.insert(0, _finder)
