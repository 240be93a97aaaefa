"""The runtime half of the trio-suite import shim: trio's names, resolved to ringtrio's.

rewrite.py turns every import of a trio library module in the copied tests
into a call to this module (``trio = trio_shim.module("trio")``,
``a, b = trio_shim.import_names("trio.testing", "a", "b")``).  The rules are
in rules.toml, next to this file.

Real trio is imported here only as the oracle of *names*: to know whether a
name exists in trio and under which public name trio exports a private
object.  No test code ever gets a real trio object, except the few data
values rules.toml lists.

Two failures are deliberate and recognised by the pytest plugin:

* ``MissingName`` (an ``AttributeError``, so ``hasattr`` stays truthful):
  trio has the name, ringtrio does not.
* ``SetAside``: the test reached one of trio's internals (a private name trio
  does not export).  Such a test is listed in exclusions.toml.

A name imported with ``from ... import`` is resolved at once, but a missing
or set-aside one becomes a placeholder that raises only when the test uses
it, so one missing name fails the tests that use it, not its whole module.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import tomllib
import types
from pathlib import Path
from typing import Any, Callable

import ringtrio
import ringtrio.abc

_RULES = tomllib.loads((Path(__file__).with_name("rules.toml")).read_text())
PUBLIC: dict[str, str] = _RULES["public"]
NAMES: dict[str, str] = _RULES["names"]
# The copied tests themselves; never resolved through the shim.
TEST_PACKAGES = ("trio._tests", "trio._core._tests")


class MissingName(AttributeError):
    """A trio test used a name trio has and ringtrio lacks."""

    def __init__(self, trio_name: str, looked_in: str) -> None:
        super().__init__(
            f"ringtrio lacks trio's {trio_name} (looked for {looked_in})",
            name=trio_name.rpartition(".")[2],
        )
        self.trio_name = trio_name
        self.looked_in = looked_in


class SetAside(Exception):
    """A trio test reached one of trio's internals, which have no ringtrio equivalent."""

    def __init__(self, trio_name: str) -> None:
        super().__init__(
            f"{trio_name} is internal to trio (trio exports it under no public "
            "name); the test using it belongs in tools/trio_suite/exclusions.toml"
        )
        self.trio_name = trio_name


def _is_test_module(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in TEST_PACKAGES)


# ---------------------------------------------------------------------------
# private trio name -> public trio name
# ---------------------------------------------------------------------------

_PRIMITIVES = (int, float, str, bytes, bool, type(None), tuple, frozenset)


@functools.cache
def _public_index() -> dict[int, tuple[str, str, Any]]:
    """id(object) -> (public trio module, name), first public home wins."""
    index: dict[int, tuple[str, str, Any]] = {}
    for modname in PUBLIC:
        module = importlib.import_module(modname)
        for name in dir(module):
            if name.startswith("_"):
                continue
            obj = getattr(module, name)
            if isinstance(obj, _PRIMITIVES):
                continue  # equal constants are matched by name instead
            index.setdefault(id(obj), (modname, name, obj))
    return index


def _public_home(obj: object, name: str) -> tuple[str, str] | None:
    if isinstance(obj, _PRIMITIVES):
        for modname in PUBLIC:
            module = importlib.import_module(modname)
            if name in getattr(module, "__dict__", {}) and getattr(module, name) == obj:
                return modname, name
        return None
    hit = _public_index().get(id(obj))
    return None if hit is None else (hit[0], hit[1])


def _foreign(obj: object, name: str) -> bool:
    """Not trio's own: a stdlib or third-party name a trio module imported (errno, TYPE_CHECKING)."""
    if name == "TYPE_CHECKING":
        return True
    if isinstance(obj, types.ModuleType):
        return not obj.__name__.startswith("trio")
    owner = getattr(obj, "__module__", None)
    return isinstance(owner, str) and not owner.startswith("trio")


def _at_import_time(frame: types.FrameType) -> bool:
    """Is ``frame`` a module body, or a class body in one (code that runs at import)?"""
    while frame is not None and frame.f_code.co_name != "<module>":
        if "__module__" not in frame.f_locals or "__qualname__" not in frame.f_locals:
            return False
        frame = frame.f_back  # a class body: look at what encloses it
    return frame is not None


# ---------------------------------------------------------------------------
# shim modules
# ---------------------------------------------------------------------------

_MODULES: dict[str, "ShimModule"] = {}


def module(trio_name: str) -> "ShimModule":
    """The shim standing for the trio module ``trio_name``."""
    shim = _MODULES.get(trio_name)
    if shim is None:
        shim = _MODULES[trio_name] = ShimModule(trio_name)
    return shim


def _is_trio_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def _override(full: str) -> Any:
    rule = NAMES[full]
    if rule == "trio:":
        modname, _, name = full.rpartition(".")
        return getattr(importlib.import_module(modname), name)
    modname, _, name = rule.rpartition(".")
    try:
        return getattr(importlib.import_module(modname), name)
    except AttributeError:
        raise MissingName(full, rule) from None


class ShimModule(types.ModuleType):
    """A trio module as the copied tests see it: every attribute comes from ringtrio."""

    def __init__(self, trio_name: str) -> None:
        super().__init__(trio_name, f"trio-suite shim for {trio_name}")
        object.__setattr__(self, "_trio_name", trio_name)
        target = PUBLIC.get(trio_name)
        if target is not None:
            # Tests walk module.__dict__ (test_classes_are_final): give them
            # ringtrio's public names, with trio's submodules as shims.
            for name, value in vars(importlib.import_module(target)).items():
                if name.startswith("_") or f"{trio_name}.{name}" in NAMES:
                    continue
                if isinstance(value, types.ModuleType):
                    if f"{trio_name}.{name}" not in PUBLIC:
                        continue
                    value = module(f"{trio_name}.{name}")
                object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"<trio-suite shim for {self._trio_name}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        full = f"{self._trio_name}.{name}"
        if full in NAMES:
            return _override(full)
        if _is_test_module(full):
            # trio._tests.test_threads etc.: the copied module, not a shim.
            return importlib.import_module("retargeted" + full[len("trio") :])
        if _is_trio_module(full):
            return module(full)
        real = importlib.import_module(self._trio_name)
        target = PUBLIC.get(self._trio_name)
        if target is not None:
            ring_module = importlib.import_module(target)
            try:
                return getattr(ring_module, name)
            except AttributeError:
                if not hasattr(real, name):
                    raise AttributeError(f"neither trio nor ringtrio has {full}", name=name) from None
                if name.startswith("_"):
                    # trio.testing._RaisesGroup, trio.socket._SocketType: a
                    # private name of a public module is one of trio's internals
                    return _placeholder(name, SetAside(full))
                missing = MissingName(full, f"{target}.{name}")
                if _at_import_time(sys._getframe(1)):
                    # `class Scenario(trio.abc.SocketFactory)`, a parametrize
                    # list: fail the tests that use it, not the whole module.
                    return _placeholder(name, missing)
                raise missing from None
        if not hasattr(real, name):
            raise AttributeError(f"trio has no {full}", name=name)
        obj = getattr(real, name)
        home = _public_home(obj, name)
        if home is not None:
            return getattr(module(home[0]), home[1])
        if _foreign(obj, name):
            return obj
        # One of trio's internals: it fails the test that uses it, when used.
        return _placeholder(name, SetAside(full))

    # monkeypatch.setattr on a public module patches ringtrio's module; on a
    # private one it would patch nothing real, so it is refused.
    def __setattr__(self, name: str, value: Any) -> None:
        target = PUBLIC.get(self._trio_name)
        if target is None:
            raise SetAside(f"{self._trio_name}.{name}")
        setattr(importlib.import_module(target), name, value)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        target = PUBLIC.get(self._trio_name)
        if target is None:
            raise SetAside(f"{self._trio_name}.{name}")
        delattr(importlib.import_module(target), name)
        self.__dict__.pop(name, None)

    def __dir__(self) -> list[str]:
        target = PUBLIC.get(self._trio_name)
        if target is None:
            return []
        return dir(importlib.import_module(target))


# ---------------------------------------------------------------------------
# from ... import
# ---------------------------------------------------------------------------


class _PlaceholderMeta(type):
    """Any use of a placeholder raises the error that made it one."""

    _error: Callable[[], BaseException]

    def __call__(cls, *args: object, **kwargs: object) -> Any:
        raise cls._error()

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise cls._error()

    def __getitem__(cls, key: object) -> Any:
        raise cls._error()

    def __instancecheck__(cls, obj: object) -> bool:
        raise cls._error()

    def __subclasscheck__(cls, sub: type) -> bool:
        raise cls._error()

    def __iter__(cls) -> Any:
        raise cls._error()

    def __bool__(cls) -> bool:
        raise cls._error()

    def __len__(cls) -> int:
        raise cls._error()

    def __contains__(cls, item: object) -> bool:
        raise cls._error()

    # Arithmetic and ordering, for internal constants (a heap threshold).
    def _fail(cls, *args: object) -> Any:
        raise cls._error()

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _fail
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __neg__ = _fail
    __lt__ = __le__ = __gt__ = __ge__ = __int__ = __float__ = __index__ = _fail


def _placeholder(name: str, error: MissingName | SetAside) -> type:
    # An Exception subclass, so `except Placeholder:` is a clause that never
    # matches rather than a TypeError that would hide the test's real error.
    if isinstance(error, MissingName):
        trio_name, looked_in = error.trio_name, error.looked_in
        make: Callable[[], BaseException] = lambda: MissingName(trio_name, looked_in)
    else:
        trio_name = error.trio_name
        make = lambda: SetAside(trio_name)
    return _PlaceholderMeta(name, (Exception,), {"_error": staticmethod(make)})


def import_names(trio_module: str, *names: str) -> Any:
    """``from trio_module import names``: one value, or a tuple of values."""
    shim = module(trio_module)
    values: list[Any] = []
    for name in names:
        try:
            values.append(getattr(shim, name))
        except (MissingName, SetAside) as error:
            values.append(_placeholder(name, error))
    return values[0] if len(values) == 1 else tuple(values)


def star(trio_module: str) -> dict[str, Any]:
    """``from trio_module import *``: the names trio's module would give."""
    real = importlib.import_module(trio_module)
    exported = getattr(real, "__all__", None)
    if exported is None:
        exported = [n for n in dir(real) if not n.startswith("_")]
    values = import_names(trio_module, *exported)
    if len(exported) == 1:
        values = (values,)
    return dict(zip(exported, values))
