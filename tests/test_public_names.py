"""Public objects carry public names, and public modules show only public names.

A traceback, a pytest summary, a repr or a pickle names an object by its
``__module__`` and ``__qualname__``; for ringtrio's objects those must be the
names a user imports them by (``ringtrio.TooSlowError``, as trio's say
``trio.TooSlowError``), not the underscore modules that define them.
"""

from __future__ import annotations

import importlib
import pickle
import pkgutil
import traceback
import types
from typing import Any

import pytest

import ringtrio
from ringtrio._public_names import PUBLIC_MODULES


def public_modules_on_disk() -> set[str]:
    found = {"ringtrio"}
    for info in pkgutil.walk_packages(ringtrio.__path__, "ringtrio."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found.add(info.name)
    return found


def ours(obj: Any) -> bool:
    return isinstance(obj, (type, types.FunctionType)) and obj.__module__.split(".")[0] == "ringtrio"


# Public modules whose import is an action, with no names of their own:
# importing ringtrio.trio_mode turns trio mode on for the whole process, so
# it is never imported here (tests/test_trio_mode.py runs it in subprocesses).
SWITCHES = {"ringtrio.trio_mode"}


def test_every_public_module_is_known() -> None:
    # A new public module must join PUBLIC_MODULES to have its names claimed.
    assert public_modules_on_disk() == set(PUBLIC_MODULES) | SWITCHES


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_module_shows_only_what_it_exports(name: str) -> None:
    module = importlib.import_module(name)
    # (pytest's assertion rewriting, which covers every module of a package
    # with a pytest plugin, adds names that are not identifiers: not ours.)
    shown = {n for n in dir(module) if n.isidentifier() and not n.startswith("_")}
    assert shown == set(module.__all__), shown ^ set(module.__all__)
    assert len(module.__all__) == len(set(module.__all__)), "a name listed twice in __all__"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_exported_objects_are_named_by_a_public_module(name: str) -> None:
    module = importlib.import_module(name)
    wrong = []
    for public in module.__all__:
        obj = getattr(module, public)
        if not ours(obj):
            continue
        home = obj.__module__
        # The name the object gives is one a user can import it by.
        if home not in PUBLIC_MODULES or getattr(importlib.import_module(home), obj.__qualname__, None) is not obj:
            wrong.append(f"{name}.{public} calls itself {home}.{obj.__qualname__}")
            continue
        if isinstance(obj, type):
            for attr_name, attr in vars(obj).items():
                if isinstance(attr, (classmethod, staticmethod)):
                    attr = attr.__func__
                if ours(attr) and attr.__qualname__ == f"{obj.__qualname__}.{attr_name}" and attr.__module__ != home:
                    wrong.append(f"{home}.{attr.__qualname__} says module {attr.__module__}")
    assert not wrong, "\n".join(wrong)


def test_traceback_and_pickle_use_public_names() -> None:
    shown = traceback.format_exception_only(ringtrio.TooSlowError("late"))
    assert shown == ["ringtrio.TooSlowError: late\n"]
    assert type(pickle.loads(pickle.dumps(ringtrio.BusyResourceError("x")))) is ringtrio.BusyResourceError
    assert ringtrio.to_thread.run_sync.__qualname__ == "run_sync"
    assert ringtrio.to_thread.run_sync.__module__ == "ringtrio.to_thread"
    assert repr(ringtrio.lowlevel.ParkingLot).startswith("<class 'ringtrio.lowlevel.ParkingLot'")
    # Objects exported by two modules live where trio keeps them.
    assert ringtrio.lowlevel.Clock.__module__ == "ringtrio.abc"
    assert ringtrio.testing.wait_all_tasks_blocked.__module__ == "ringtrio.testing"
    assert ringtrio.Nursery.start_soon.__module__ == "ringtrio"


def test_task_names_use_public_names() -> None:
    # A task is named after its function: the public name, as in trio.
    names = []

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(ringtrio.sleep_forever)
            await ringtrio.testing.wait_all_tasks_blocked()
            names.extend(t.name for t in nursery.child_tasks)
            nursery.cancel_scope.cancel()

    ringtrio.run(main)
    assert names == ["ringtrio.sleep_forever"]


# The classes above the core that trio makes final (its Final metaclass):
# subclassing one raises TypeError in both, so no code comes to depend on
# their insides.  (The core's classes are the core's to decide.)  ringtrio's
# own concrete classes above the core follow the same rule (RINGTRIO_FINAL).
FINAL_AS_IN_TRIO = [
    "Event", "Lock", "StrictFIFOLock", "Semaphore", "Condition", "CapacityLimiter",
    "MemorySendChannel", "MemoryReceiveChannel", "open_memory_channel",
    "SocketStream", "SocketListener", "StapledStream", "SSLStream", "SSLListener",
    "Process", "lowlevel.FdStream",
    "testing.MockClock", "testing.Sequencer", "testing.MemorySendStream", "testing.MemoryReceiveStream",
]


RINGTRIO_FINAL = ["AsyncBinaryFile", "AsyncTextFile", "Buffer", "BufferGroup"]

# Public concrete classes left open on purpose (docs/reference.md,
# "Differences from trio", Ring operations): ring ops are made by subclassing.
OPEN_ON_PURPOSE = {"ringtrio.lowlevel.RingOp", "ringtrio.lowlevel.OwnedRingOp"}


def test_every_public_concrete_class_is_final() -> None:
    # trio's rule (its test_classes_are_final), over ringtrio's public
    # modules: the same exemptions (abstract classes, protocols, exceptions,
    # Instrument, SocketType, Path, statistics), plus OPEN_ON_PURPOSE.
    import inspect
    from typing import Protocol

    open_classes = set()
    for name in PUBLIC_MODULES:
        if name in SWITCHES:
            continue
        for attr, cls in vars(importlib.import_module(name)).items():
            if not isinstance(cls, type) or attr.startswith("_") or inspect.isabstract(cls):
                continue
            if Protocol in cls.__bases__ or issubclass(cls, BaseException) or attr.endswith("Statistics"):
                continue
            if cls in (ringtrio.abc.Instrument, ringtrio.socket.SocketType, ringtrio.Path):
                continue
            if _refuses_subclasses(cls) is None:
                open_classes.add(f"{cls.__module__}.{cls.__qualname__}")
    assert open_classes == OPEN_ON_PURPOSE


@pytest.mark.parametrize("name", RINGTRIO_FINAL)
def test_ringtrio_concrete_classes_are_final(name: str) -> None:
    cls = getattr(ringtrio, name)
    assert _refuses_subclasses(cls) == f"ringtrio.{name} does not support subclassing"


def _refuses_subclasses(cls: type) -> str | None:
    """The TypeError's message if ``cls`` cannot be subclassed, else None."""
    try:
        types.new_class("Sub", (cls,))
    except TypeError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("name", FINAL_AS_IN_TRIO)
def test_classes_trio_makes_final_are_final(name: str) -> None:
    import trio
    import trio.lowlevel
    import trio.testing

    def lookup(root: types.ModuleType) -> type:
        obj: Any = root
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj  # type: ignore[no-any-return]

    assert _refuses_subclasses(lookup(trio)) is not None
    # trio's message names the would-be subclass; ringtrio's the final class.
    cls = lookup(ringtrio)
    assert _refuses_subclasses(cls) == f"{cls.__module__}.{cls.__qualname__} does not support subclassing"
    assert cls.__module__.startswith("ringtrio") and not cls.__module__.startswith("ringtrio._")
