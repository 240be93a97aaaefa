"""Make ``anyio`` find ringtrio's backend, without importing anyio.

AnyIO picks its backend from sniffio's name (``"ringtrio"`` inside
``ringtrio.run``) or from ``anyio.run(..., backend="ringtrio")``, and loads
it with ``import_module(f"anyio._backends._{name}")``; it has no public hook
for third-party backends.  So ``import ringtrio`` appends a finder to
``sys.meta_path`` that answers for exactly that one module name and hands
back ringtrio's own module, ``ringtrio._anyio._backend``, under it.

Why a finder and not ``sys.modules["anyio._backends._ringtrio"] = ...``:
that would import anyio (and the backend) whenever ringtrio is imported,
and fail where anyio is not installed.  The finder costs nothing until
anyio asks, and is appended last so that it never shadows a module some
other finder can provide.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence

ANYIO_MODULE = "anyio._backends._ringtrio"
BACKEND_MODULE = "ringtrio._anyio._backend"


class _AliasLoader(importlib.abc.Loader):
    """Loads ``BACKEND_MODULE`` normally and returns that same module object,
    so there is one copy of the backend whichever name imported it first."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        # importlib keeps the attributes an existing module already has
        # (__name__, __spec__, __file__), so the module stays
        # "ringtrio._anyio._backend" and is merely also filed under the
        # anyio name in sys.modules.
        return importlib.import_module(BACKEND_MODULE)

    def exec_module(self, module: types.ModuleType) -> None:
        pass  # already executed by create_module's import


class AnyioBackendFinder(importlib.abc.MetaPathFinder):
    """Answers ``find_spec`` for ``anyio._backends._ringtrio`` only."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != ANYIO_MODULE:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader())


def install() -> None:
    """Append the finder to ``sys.meta_path`` (once per process)."""
    if not any(isinstance(finder, AnyioBackendFinder) for finder in sys.meta_path):
        sys.meta_path.append(AnyioBackendFinder())
