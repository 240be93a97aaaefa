"""Copy trio's shipped tests into the build directory and retarget their imports.

The copies keep trio's layout under a package named ``retargeted``
(``trio/_tests/test_sync.py`` -> ``retargeted/_tests/test_sync.py``), so
imports between test modules (``from .tutil import slow``) work unchanged.
Every import of a trio *library* module is replaced, in place and on the same
line, by a call into trio_shim (see rules.toml for how names resolve):

    import trio                       -> trio = _trio_shim.module("trio")
    import trio.testing as tt         -> tt = _trio_shim.module("trio.testing")
    from trio import sleep            -> sleep = _trio_shim.import_names("trio", "sleep")
    from .. import _core              -> _core = _trio_shim.import_names("trio", "_core")
    from .._sync import *             -> globals().update(_trio_shim.star("trio._sync"))
    from trio._tests.pytest_plugin import RUN_SLOW
                                      -> from retargeted._tests.pytest_plugin import RUN_SLOW
    mock.patch("trio._subprocess.can_try_pidfd_open", ...)
                                      -> mock.patch("ringtrio._subprocess.can_try_pidfd_open", ...)

The last kind: a string naming a trio-private knob that ringtrio keeps
under trio's name, listed in rules.toml's [patch_targets] (mock.patch
imports the module it names, so without this it would patch real trio and
test nothing of ringtrio's).  Likewise a warning filter naming a trio
warning class (``@pytest.mark.filterwarnings("ignore:...:trio.TrioDeprecationWarning")``:
pytest imports the class from real trio, whose warnings ringtrio never
raises) names ringtrio's class of the same name:

    "ignore:.*x:trio.TrioDeprecationWarning" -> "ignore:.*x:ringtrio.TrioDeprecationWarning"

Line numbers are kept, so a traceback line in a copy is the same line in
trio's original.  Nothing else in the files changes.
"""

from __future__ import annotations

import ast
import shutil
import tomllib
from pathlib import Path

# The trees copied from the installed trio package, and where they go.
TREES = ("_tests", "_core/_tests")
PACKAGE = "retargeted"
SHIM = "import trio_shim as _trio_shim; "
PATCH_TARGETS: dict[str, str] = tomllib.loads(
    (Path(__file__).with_name("rules.toml")).read_text()
).get("patch_targets", {})


def _is_trio(name: str) -> bool:
    return name == "trio" or name.startswith("trio.")


def _is_test_module(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in ("trio._tests", "trio._core._tests"))


def _retargeted(name: str) -> str:
    return PACKAGE + name[len("trio") :]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    if node.level > 1:
        parts = parts[: -(node.level - 1)]
    base = ".".join(parts)
    return f"{base}.{node.module}" if node.module else base


def _rewrite_import(node: ast.Import) -> str | None:
    if not any(_is_trio(alias.name) for alias in node.names):
        return None
    statements = []
    for alias in node.names:
        if not _is_trio(alias.name):
            statements.append(f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else ""))
        elif _is_test_module(alias.name):
            target = _retargeted(alias.name)
            if alias.asname:
                statements.append(f"import {target} as {alias.asname}")
            else:
                # binds `trio`: the shim forwards trio._tests.x to the copy
                statements.append(f"import {target}; trio = _trio_shim.module('trio')")
        elif alias.asname:
            statements.append(f"{alias.asname} = _trio_shim.module({alias.name!r})")
        else:
            statements.append("trio = _trio_shim.module('trio')")
    return SHIM + "; ".join(statements)


def _rewrite_from(node: ast.ImportFrom, package: str) -> str | None:
    module = _absolute(node, package)
    if not _is_trio(module):
        return None
    if _is_test_module(module):
        if node.level:
            return None  # between copied test modules: unchanged
        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
        return f"from {_retargeted(module)} import {names}"
    if node.names[0].name == "*":
        return SHIM + f"globals().update(_trio_shim.star({module!r}))"
    targets = ", ".join(a.asname or a.name for a in node.names)
    names = ", ".join(repr(a.name) for a in node.names)
    return SHIM + f"{targets} = _trio_shim.import_names({module!r}, {names})"


_WARNING_ACTIONS = ("error", "ignore", "always", "default", "module", "once")


def _retargeted_warning_filter(text: str) -> str | None:
    """``text`` if it is a warning filter spec (action:message:category...)
    whose category is a trio class, with ringtrio's class instead; else None."""
    parts = text.split(":")
    if len(parts) < 3 or parts[0] not in _WARNING_ACTIONS or not parts[2].startswith("trio."):
        return None
    parts[2] = "ringtrio." + parts[2][len("trio.") :]
    return ":".join(parts)


def rewrite_source(source: str, trio_module: str) -> str:
    """The source of the trio module ``trio_module`` with its trio imports retargeted."""
    package = trio_module.rpartition(".")[0]
    if trio_module.endswith(".__init__"):
        package = trio_module[: -len(".__init__")]
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits: list[tuple[ast.stmt | ast.expr, str]] = []
    for node in ast.walk(tree):
        new: str | None = None
        if isinstance(node, ast.Import):
            new = _rewrite_import(node)
        elif isinstance(node, ast.ImportFrom):
            new = _rewrite_from(node, package)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in PATCH_TARGETS:
                new = repr(PATCH_TARGETS[node.value])
            elif (spec := _retargeted_warning_filter(node.value)) is not None:
                new = repr(spec)
        if new is not None:
            edits.append((node, new))
    # Apply from the end so earlier positions stay valid.  ast offsets are
    # UTF-8 byte offsets within a line.
    for node, new in sorted(edits, key=lambda e: (e[0].lineno, e[0].col_offset), reverse=True):
        assert node.end_lineno is not None and node.end_col_offset is not None
        first = lines[node.lineno - 1].encode()
        last = lines[node.end_lineno - 1].encode()
        head = first[: node.col_offset].decode()
        tail = last[node.end_col_offset :].decode()
        # Same number of lines as the statement replaced.
        filler = "\n" * (node.end_lineno - node.lineno)
        lines[node.lineno - 1 : node.end_lineno] = [head + new + filler + tail]
    return _named_as_trio("".join(lines), trio_module)


def _named_as_trio(source: str, trio_module: str) -> str:
    """Give the copy trio's module name (``__name__``), on an existing line.

    Tests compare names that contain the module of the function they were
    given (worker thread names, task names in messages): a copy named
    ``retargeted._tests.x`` would fail them for no fault of ringtrio's.
    ``__package__`` stays, so relative imports between copies still work.
    """
    if trio_module.endswith(".__init__"):
        return source
    tree = ast.parse(source)
    body = tree.body
    index = 0
    while index < len(body) and (
        (isinstance(body[index], ast.Expr) and isinstance(getattr(body[index], "value", None), ast.Constant))
        or (isinstance(body[index], ast.ImportFrom) and body[index].module == "__future__")
    ):
        index += 1
    lines = source.splitlines(keepends=True)
    assignment = f"__name__ = {trio_module!r}"
    if index < len(body) and not isinstance(
        body[index], (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.Try, ast.For, ast.While, ast.With)
    ):
        line = body[index].lineno - 1  # a simple statement: put it in front
        lines[line] = assignment + "; " + lines[line]
    elif index > 0:  # after the docstring or future import, on its last line
        last = body[index - 1]
        assert last.end_lineno is not None
        line = last.end_lineno - 1
        text = lines[line].rstrip("\n")
        lines[line] = text[: last.end_col_offset] + "; " + assignment + text[last.end_col_offset :] + "\n"
    else:
        return source
    renamed = "".join(lines)
    compile(renamed, trio_module, "exec")  # fails loudly rather than run a broken copy
    return renamed


def prepare(trio_root: Path, out: Path) -> list[Path]:
    """Copy and rewrite trio's test trees into ``out/retargeted``; the test files written."""
    package_dir = out / PACKAGE
    if package_dir.exists():
        shutil.rmtree(package_dir)
    written = []
    for tree in TREES:
        source_dir = trio_root / tree
        for path in sorted(source_dir.rglob("*")):
            if "__pycache__" in path.parts or path.is_dir():
                continue
            relative = path.relative_to(trio_root)
            target = package_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix != ".py":
                shutil.copyfile(path, target)
                continue
            trio_module = "trio." + ".".join(relative.with_suffix("").parts)
            target.write_text(rewrite_source(path.read_text(), trio_module))
            written.append(target)
    # The packages above the copied trees (trio/__init__.py, trio/_core/__init__.py
    # are library code, not copied).
    for init in (package_dir / "__init__.py", package_dir / "_core" / "__init__.py"):
        init.write_text('"""Written by tools/trio_suite: trio\'s tests, retargeted to ringtrio."""\n')
    return written
