"""The benchmark registry: which rows exist and which libraries run them.

To add a row, write one body per library family (``_trio_like.py`` takes the
library module, ``_asyncio_like.py`` does not) and add an entry to ``ROWS``.
A family with no sensible equivalent can be left as ``None``; its cells then
read ``n/a`` and nothing is run.

To add a library, add it to ``LIBS`` with its family, and teach
:func:`run_body` how to start it.

This module must stay cheap to import: the orchestrator imports it, and only
the worker subprocess imports the libraries under test (inside
:func:`run_body`).
"""

import importlib
import os
import platform
from dataclasses import dataclass
from typing import Callable, Optional

import _asyncio_like
import _files
import _trio_like


@dataclass(frozen=True)
class Row:
    count: int  # default number of ops at --scale 1
    unit: str  # what one op is, for the table's legend
    trio_like: Optional[Callable]  # async def body(lib, n)
    asyncio_like: Optional[Callable]  # async def body(n)
    sync_like: Optional[Callable] = None  # def body(n): plain blocking Python


def _row(count, unit, name):
    return Row(count, unit, getattr(_trio_like, name), getattr(_asyncio_like, name))


ROWS = {
    "spawn_join": _row(100_000, "tasks", "spawn_join"),
    "checkpoints": _row(300_000, "checkpoints", "checkpoints"),
    "timeout_scopes": _row(100_000, "scopes", "timeout_scopes"),
    "sleep_1ms": _row(100_000, "tasks", "sleep_1ms"),
    "channel_unbuffered": _row(100_000, "messages", "channel_unbuffered"),
    "event_pingpong": _row(50_000, "round trips", "event_pingpong"),
    "to_thread": _row(10_000, "round trips", "to_thread"),
    # Debugging (issue 17): one snapshot of 10k parked tasks, timed alone.
    "task_tree_10k": _row(10_000, "tasks", "task_tree_10k"),
    # File I/O (issue 6): ringtrio and trio against plain blocking Python.
    "files_read_4k": Row(10_000, "files", _files.files_read_4k, None, _files.sync_files_read_4k),
    "file_read_64k": Row(4096, "64 KiB chunks", _files.file_read_64k, None, _files.sync_file_read_64k),
    "file_read_64k_raw": Row(4096, "64 KiB chunks", _files.file_read_64k_raw, None, _files.sync_file_read_64k_raw),
    "file_read_at_8": Row(4096, "64 KiB chunks", _files.file_read_at_8, None, _files.sync_file_read_at_8),
    "file_write_64k": Row(4096, "64 KiB chunks", _files.file_write_64k, None, _files.sync_file_write_64k),
}

# library name -> family (the attribute of Row holding its body)
LIBS = {
    "ringtrio": "trio_like",
    # ringtrio on its epoll backend (RINGTRIO_BACKEND=epoll): what runs where
    # io_uring is refused (issue 15).
    "ringtrio-epoll": "trio_like",
    "trio": "trio_like",
    "asyncio": "asyncio_like",
    "uvloop": "asyncio_like",
    "sync": "sync_like",
}

DEFAULT_LIBS = ["ringtrio", "ringtrio-epoll", "trio", "asyncio", "uvloop", "sync"]

# Library variants: the module they import and the environment they set
# before importing it.
VARIANTS = {"ringtrio-epoll": ("ringtrio", {"RINGTRIO_BACKEND": "epoll"})}


def import_lib(lib):
    """Import the module ``lib`` runs on, after setting what its variant
    needs in the environment."""
    name, env = VARIANTS.get(lib, (lib, {}))
    os.environ.update(env)
    return importlib.import_module(name)


def body_for(row, lib):
    """The body that runs ``row`` for ``lib``, or None if it has none."""
    return getattr(ROWS[row], LIBS[lib])


def run_body(lib, body, n):
    """Import ``lib``, run ``body`` with ``n`` ops in it, return a dict.

    The dict has ``elapsed`` (seconds) and whatever identifies what actually
    ran (``version``, ``loop``, ``module_file``).  Exceptions propagate.
    """
    family = LIBS[lib]
    if family == "trio_like":
        mod = import_lib(lib)
        elapsed = _trio_like.run(mod, body, n)
        version = getattr(mod, "__version__", None)
        if lib in VARIANTS:
            version = f"{version} ({_trio_like.backend_of(mod)} backend)"
        return {
            "elapsed": elapsed,
            "version": version,
            "module_file": getattr(mod, "__file__", None)
            or str(list(getattr(mod, "__path__", []))),
        }
    if lib == "asyncio":
        elapsed, loop = _asyncio_like.run(None, body, n)
        return {"elapsed": elapsed, "version": platform.python_version(), "loop": loop}
    if lib == "uvloop":
        import uvloop

        elapsed, loop = _asyncio_like.run(uvloop.new_event_loop, body, n)
        if not loop.startswith("uvloop"):
            raise RuntimeError(f"expected a uvloop loop, got {loop}")
        return {"elapsed": elapsed, "version": uvloop.__version__, "loop": loop}
    if family == "sync_like":
        import time

        t0 = time.perf_counter()
        result = body(n)
        elapsed = result if isinstance(result, float) else time.perf_counter() - t0
        return {"elapsed": elapsed, "version": platform.python_version()}
    raise ValueError(f"don't know how to run library {lib!r}")
