"""Every public name of trio is in ringtrio, or in the table of docs/reference.md
that says why not.

The table ("trio names ringtrio does not have", under "Differences from
trio") is the one list: this test reads it from the document.  It checks
``dir()`` of each public trio module against the ringtrio module of the same
role, and the attributes of every public class both have; a name missing
from ringtrio must be in the table, and a name in the table must be one
trio has and ringtrio lacks (so a row goes when the name arrives).
"""

from __future__ import annotations

import __future__
import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
TABLE_HEADING = "## trio names ringtrio does not have"

# trio's public modules and ringtrio's modules of the same role.
MODULES = ["", ".lowlevel", ".testing", ".abc", ".socket", ".to_thread", ".from_thread"]


def documented_missing_names() -> dict[str, str]:
    """{qualified trio name: reason} from the table's rows."""
    text = REFERENCE.read_text()
    assert TABLE_HEADING in text, f"{REFERENCE} has no section {TABLE_HEADING!r}"
    section = text.split(TABLE_HEADING, 1)[1].split("\n#", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 2 or set(cells[1]) <= {"-", " "}:
            continue
        names = re.findall(r"`(trio[\w.]*)`", cells[0])
        if not names:
            continue  # the header row
        assert cells[1], f"row {line!r} gives no reason"
        for name in names:
            assert name not in rows, f"{name} is in the table twice"
            rows[name] = cells[1]
    return rows


def public_names(module: ModuleType) -> set[str]:
    # `annotations` (the __future__ feature of trio's own modules) is in
    # dir() but is not a name of trio's API.
    return {
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), __future__._Feature)
    }


def public_attributes(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def missing_from_ringtrio() -> set[str]:
    """Qualified names trio has and ringtrio does not: module names, and
    attributes of public classes that both have."""
    missing = set()
    for suffix in MODULES:
        trio_module = importlib.import_module("trio" + suffix)
        ringtrio_module = importlib.import_module("ringtrio" + suffix)
        ours = set(dir(ringtrio_module))
        for name in sorted(public_names(trio_module)):
            qualified = f"trio{suffix}.{name}"
            if name not in ours:
                missing.add(qualified)
                continue
            theirs_obj: Any = getattr(trio_module, name)
            ours_obj: Any = getattr(ringtrio_module, name)
            if inspect.isclass(theirs_obj) and inspect.isclass(ours_obj) and theirs_obj is not ours_obj:
                ours_attrs = set(dir(ours_obj))
                missing.update(
                    f"{qualified}.{attr}" for attr in public_attributes(theirs_obj) if attr not in ours_attrs
                )
    return missing


def test_every_trio_name_is_in_ringtrio_or_in_the_table() -> None:
    undocumented = sorted(missing_from_ringtrio() - set(documented_missing_names()))
    assert not undocumented, (
        f"trio {trio.__version__} has these public names and ringtrio does not: {undocumented}. "
        f"Add them to ringtrio with trio's semantics, or add a row saying why to the table "
        f"{TABLE_HEADING!r} in docs/reference.md."
    )


def test_every_row_of_the_table_is_still_missing() -> None:
    missing = missing_from_ringtrio()
    stale = sorted(name for name in documented_missing_names() if name not in missing)
    assert not stale, (
        f"docs/reference.md lists {stale} as trio names ringtrio does not have, but ringtrio "
        f"has them now (or trio {trio.__version__} does not): remove those rows."
    )


def test_the_table_is_read() -> None:
    # Guards the parser: the rows it must find, with their reasons.
    rows = documented_missing_names()
    assert "trio.DTLSEndpoint" in rows and "DTLS" in rows["trio.DTLSEndpoint"]
    assert "trio.DTLSChannelStatistics" in rows  # (the third name of a row)
    assert "trio.Path.link_to" in rows and "trio.PosixPath.link_to" in rows
    assert all(reason.strip() for reason in rows.values())


@pytest.mark.parametrize("suffix", MODULES)
def test_ringtrio_modules_export_what_they_show(suffix: str) -> None:
    # A name in trio's dir() that ringtrio has must also be importable with
    # `from ringtrio... import name` (in __all__ where the module has one).
    trio_module = importlib.import_module("trio" + suffix)
    ringtrio_module = importlib.import_module("ringtrio" + suffix)
    exported = set(getattr(ringtrio_module, "__all__", dir(ringtrio_module)))
    shared = public_names(trio_module) & set(dir(ringtrio_module))
    assert not sorted(shared - exported)


def _functions_both_have(suffix: str) -> list[tuple[str, Any, Any]]:
    trio_mod = importlib.import_module("trio" + suffix)
    ringtrio_mod = importlib.import_module("ringtrio" + suffix)
    both = []
    for name in sorted(dir(trio_mod)):
        ours = getattr(ringtrio_mod, name, None)
        theirs = getattr(trio_mod, name)
        if name.startswith("_") or ours is None or inspect.isclass(theirs) or not callable(theirs):
            continue
        both.append((f"trio{suffix}.{name}", theirs, ours))
    return both


@pytest.mark.parametrize("suffix", MODULES)
def test_public_functions_take_trio_parameters(suffix: str) -> None:
    # Same names, order and kinds (a keyword argument that works on trio
    # works on ringtrio); ringtrio may add parameters after trio's, with
    # defaults (run's backend=).
    different = []
    for qualname, theirs, ours in _functions_both_have(suffix):
        try:
            trio_params = list(inspect.signature(theirs).parameters.values())
            our_params = list(inspect.signature(ours).parameters.values())
        except (TypeError, ValueError):  # no signature to read (a builtin)
            continue
        shape = [(p.name, p.kind) for p in trio_params]
        extra = our_params[len(trio_params) :]
        if [(p.name, p.kind) for p in our_params[: len(trio_params)]] != shape or any(
            p.default is inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_KEYWORD
            for p in extra
        ):
            different.append(f"{qualname}: trio {inspect.signature(theirs)}, ringtrio {inspect.signature(ours)}")
    assert not different, "\n".join(different)
