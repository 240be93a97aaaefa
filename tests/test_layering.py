"""The direction of imports (docs/design.md, "Map"): the layers above the core
import from it, the core imports from nothing above it.

Checked on the sources with `ast`, so imports inside functions and under
`if TYPE_CHECKING:` count as much as those at the top of a module: a
function-level import is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ringtrio

# The imports of the sources: no run, no backend (make test's epoll pass leaves
# it out).
pytestmark = pytest.mark.backend_independent

PACKAGE_DIR = Path(ringtrio.__file__).parent

# What the core may import from the rest of the package: itself, and the
# native ring module below it.
CORE_MAY_IMPORT = ("ringtrio._core", "ringtrio._native")

# How the layers above reach into the core: its public names (the package
# itself), its internal interface, the ring's constants and the
# provided-buffer rings.  Nothing else -- in particular no module of the
# scheduler's own (_runner, _traps, _task, ...).
UPPER_MAY_IMPORT_FROM_CORE = (
    "ringtrio._core",
    "ringtrio._core._internal_api",
    "ringtrio._core._ring",
    "ringtrio._core._buffers",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, name: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module ``source`` (the module ``name``) imports, as absolute
    names with line numbers.  ``from pkg import x`` counts as importing
    ``pkg.x`` when ``x`` may be a submodule (``pkg`` is a package we know
    nothing more about), so ``from .. import _native`` names the module."""
    package = name if is_package else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                # Names imported from a package may be its submodules:
                # count them as such (a public name like `CancelScope`
                # then reads as `ringtrio._core.CancelScope`, which is
                # still "inside ringtrio._core").
                if alias.name != "*":
                    found.append((node.lineno, f"{target}.{alias.name}"))
                else:
                    found.append((node.lineno, target))
    return found


def is_within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def core_violations(source: str, name: str, is_package: bool = False) -> list[str]:
    return [
        f"{name}:{line}: imports {target}"
        for line, target in imports_of(source, name, is_package)
        if is_within(target, ("ringtrio",)) and not is_within(target, CORE_MAY_IMPORT)
    ]


def upper_violations(source: str, name: str, is_package: bool = False) -> list[str]:
    bad = []
    for line, target in imports_of(source, name, is_package):
        if not is_within(target, ("ringtrio._core",)):
            continue
        # `from ringtrio._core import CancelScope` -> ringtrio._core.CancelScope:
        # a public name when its last part has no leading underscore.
        head, _, last = target.rpartition(".")
        if head == "ringtrio._core" and not last.startswith("_"):
            continue
        if any(target == allowed or head == allowed for allowed in UPPER_MAY_IMPORT_FROM_CORE[1:]):
            continue
        bad.append(f"{name}:{line}: imports {target}")
    return bad


def sources(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*.py"))


def test_core_imports_nothing_above_it() -> None:
    core = PACKAGE_DIR / "_core"
    files = sources(core)
    assert len(files) > 10  # the walk found the core
    problems = []
    for path in files:
        problems += core_violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert problems == []


def test_layers_above_reach_the_core_only_through_its_interfaces() -> None:
    files = [p for p in sources(PACKAGE_DIR) if "_core" not in p.relative_to(PACKAGE_DIR).parts]
    assert any(p.name == "_socket.py" for p in files)
    problems = []
    for path in files:
        problems += upper_violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert problems == []


def test_the_checks_see_every_kind_of_import() -> None:
    """The checkers catch what they are for: an upward import at the top,
    inside a function, under TYPE_CHECKING, absolute or relative; and a
    layer above importing a scheduler module of the core."""
    core_source = (
        "from typing import TYPE_CHECKING\n"
        "from . import _traps\n"
        "from .. import _native\n"
        "from .._buffer_group import BufferGroup\n"
        "if TYPE_CHECKING:\n"
        "    from ringtrio._socket import SocketType\n"
        "def f():\n"
        "    from .. import _file_io\n"
        "    import ringtrio.lowlevel\n"
    )
    assert core_violations(core_source, "ringtrio._core._example") == [
        "ringtrio._core._example:4: imports ringtrio._buffer_group.BufferGroup",
        "ringtrio._core._example:6: imports ringtrio._socket.SocketType",
        "ringtrio._core._example:8: imports ringtrio._file_io",
        "ringtrio._core._example:9: imports ringtrio.lowlevel",
    ]
    upper_source = (
        "from ._core import CancelScope, _ring\n"
        "from ._core._internal_api import _Park\n"
        "from ._core import _run\n"
        "def f():\n"
        "    from ._core._runner import Runner\n"
    )
    assert upper_violations(upper_source, "ringtrio._example") == [
        "ringtrio._example:3: imports ringtrio._core._run",
        "ringtrio._example:5: imports ringtrio._core._runner.Runner",
    ]
