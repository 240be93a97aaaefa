"""pytest plugin of the trio suite: applies exclusions.toml, classifies every outcome.

Loaded by run.py (``-p trio_suite_plugin``) in the pytest process that runs
the retargeted copies of trio's tests.  It appends one JSON line per test to
``$TRIO_SUITE_OUT/results.jsonl`` as soon as the test ends, and writes the id
of the test in progress to ``$TRIO_SUITE_OUT/current``, so that run.py can
name the test that hung or crashed the process and carry on without it.

Outcomes (``outcome`` in a record):

* ``passed``
* ``missing``: the failure is a name ringtrio lacks -- trio_shim's
  MissingName, or an AttributeError raised in the test's own code on a
  ringtrio object.
* ``behaviour``: any other failure; ``kind`` is ``hang`` for a per-test
  timeout, ``crash`` when the process died (run.py), ``internal-error`` for a
  RingtrioInternalError, ``collection`` for a module that failed to import,
  else ``exception``.
* ``deliberate``: a behaviour failure of a test listed in exclusions.toml's
  ``[deliberate]``: ringtrio differs from trio there on purpose, and the
  reason is in docs/reference.md ("Differences from trio").  The test still
  runs; if it passes it is ``passed`` (and run.py says the entry is stale).
* ``n/a``: listed in exclusions.toml (with its reason), not run.
* ``unclassified``: the test reached a trio internal (SetAside) or was
  skipped by trio's own markers, and is not listed in exclusions.toml: list
  it there with the reason, or fix the rule that sent it to an internal.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import time
import tomllib
import types
from pathlib import Path
from typing import Any, Iterator

import pytest

import trio_shim

HERE = Path(__file__).parent
PACKAGE = "retargeted"
OUT = Path(os.environ.get("TRIO_SUITE_OUT", "build/trio-suite"))
CI = os.environ.get("TRIO_SUITE_CI") == "1"

_RECORD = pytest.StashKey[dict[str, Any]]()


def load_exclusions() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(not applicable, left out of the CI subset, deliberate differences):
    id or id prefix -> reason."""
    data = tomllib.loads((HERE / "exclusions.toml").read_text())
    return data.get("not_applicable", {}), data.get("ci", {}), data.get("deliberate", {})


def match(table: dict[str, str], test_id: str) -> str | None:
    """The reason of the first key that names ``test_id``.

    A key names a test id, its directory, file, class or function (every
    parameter), or is a pattern matched against the whole id where ``*``
    stands for any text (nothing else is special: ``[`` is a bracket).
    """
    for key, reason in table.items():
        if "*" in key:
            if re.fullmatch(".*".join(map(re.escape, key.split("*"))), test_id):
                return reason
        elif test_id == key or test_id.startswith((key + "::", key + "[", key + "/")):
            return reason
    return None


def trio_id(nodeid: str) -> str:
    """``retargeted/_tests/test_x.py::t`` -> ``trio/_tests/test_x.py::t`` (trio's own path)."""
    if nodeid.startswith(PACKAGE + "/"):
        return "trio/" + nodeid[len(PACKAGE) + 1 :]
    return nodeid


def tests_in_file(path: Path) -> Iterator[str]:
    """The test functions a module defines (for modules that are never imported)."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            yield node.name
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test"):
                    yield f"{node.name}::{item.name}"


# ---------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ in ("builtins", "trio_shim"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def _walk(exc: BaseException) -> Iterator[BaseException]:
    """exc, its group members, causes and contexts, each once."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen or len(seen) > 200:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(reversed(current.exceptions))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def _raised_in_test_code(exc: BaseException) -> bool:
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"/{PACKAGE}/" in tb.tb_frame.f_code.co_filename


def _ringtrio_owner(obj: object) -> str | None:
    """The qualified name of a ringtrio module, class, or object's class."""
    if isinstance(obj, types.ModuleType):
        name = obj.__name__
    elif isinstance(obj, type):
        name = f"{obj.__module__}.{obj.__qualname__}"
    else:
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    return name if name.startswith("ringtrio") else None


def _missing_attribute(exc: BaseException) -> str | None:
    """The name, when ``exc`` is the test's own code asking a ringtrio object for it."""
    if not isinstance(exc, AttributeError) or isinstance(exc, trio_shim.MissingName):
        return None
    owner = _ringtrio_owner(getattr(exc, "obj", None))
    if owner is None or not exc.name or not _raised_in_test_code(exc):
        return None
    return f"{owner}.{exc.name}"


def _is_match_failure(exc: BaseException) -> bool:
    """pytest.raises(..., match=...) caught the right type with another message."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    in_pytest = tb is not None and "/_pytest/" in tb.tb_frame.f_code.co_filename
    text = str(exc)
    return isinstance(exc, AssertionError) and in_pytest and (
        "Regex pattern did not match" in text or text.lstrip("\n").startswith("- ")
    )


def _where(exc: BaseException) -> str:
    """The innermost line of the test's own code in the traceback, as trio's path."""
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if f"/{PACKAGE}/" in filename:
            where = "trio/" + filename.split(f"/{PACKAGE}/", 1)[1] + f":{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def classify(exc: BaseException) -> dict[str, Any]:
    record: dict[str, Any] = {
        "exc_type": _type_name(exc),
        "message": _first_line(exc),
        "where": _where(exc),
    }
    if isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in _walk(exc) if not isinstance(e, BaseExceptionGroup)]
        if leaves:
            record["leaf"] = f"{_type_name(leaves[0])}: {_first_line(leaves[0])}"
    if type(exc).__name__ == "Failed" and record["message"].startswith("Timeout"):
        return {**record, "outcome": "behaviour", "kind": "hang"}
    chain = list(_walk(exc))
    for e in chain:
        if isinstance(e, trio_shim.SetAside):
            return {**record, "outcome": "unclassified", "kind": "trio-internal", "name": e.trio_name}
    for e in chain:
        if isinstance(e, trio_shim.MissingName):
            return {**record, "outcome": "missing", "kind": "name", "name": e.trio_name}
        missing = _missing_attribute(e)
        if missing is not None:
            if missing.rpartition(".")[2].startswith("_") and not missing.endswith("__"):
                # trio's private attribute: the test reaches into trio's implementation
                return {**record, "outcome": "unclassified", "kind": "trio-internal", "name": missing}
            return {**record, "outcome": "missing", "kind": "attribute", "name": missing}
    if any(type(e).__name__ == "RingtrioInternalError" for e in chain):
        return {**record, "outcome": "behaviour", "kind": "internal-error"}
    if _is_match_failure(exc):
        lines = str(exc).splitlines()
        got = next((line[2:] for line in lines if line.startswith("- ")), "")
        expected = next((line[2:] for line in lines if line.startswith("+ ")), "")
        if "Regex pattern did not match" in str(exc):
            got = next((line.split(":", 1)[1].strip() for line in lines if "Actual message" in line), got)
            expected = next((line.split(":", 1)[1].strip() for line in lines if "Expected regex" in line), expected)
        message = f"message {got!r} does not match {expected!r}"
        return {**record, "outcome": "behaviour", "kind": "message", "message": message[:300]}
    return {**record, "outcome": "behaviour", "kind": "exception"}


def classify_text(text: str) -> dict[str, Any]:
    """Classify a collection error from its report text (pytest keeps no exception object)."""
    lines = [line for line in text.splitlines() if line.startswith("E ")]
    last = lines[-1][1:].strip() if lines else text.strip().splitlines()[-1]
    exc_type, _, message = last.partition(": ")
    record = {"exc_type": exc_type, "message": message[:300], "kind": "collection"}
    for line in lines:
        found = re.search(r"trio_shim\.(MissingName|SetAside): (.*)", line)
        if found:
            message = found[2]
            if found[1] == "MissingName":
                name = re.search(r"lacks trio's (\S+)", message)
                return {**record, "outcome": "missing", "message": message[:300], "name": name[1] if name else message}
            return {**record, "outcome": "unclassified", "kind": "trio-internal", "message": message[:300],
                    "name": message.split(" ", 1)[0]}
    return {**record, "outcome": "behaviour"}


# ---------------------------------------------------------------------------
# hooks
# ---------------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        self.path = OUT / "results.jsonl"
        self.done: set[str] = set()
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    self.done.add(json.loads(line)["id"])
        self.file = self.path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        if record["id"] in self.done:
            return
        self.done.add(record["id"])
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


_writer: _Writer | None = None
_not_applicable: dict[str, str] = {}
_ci_only: dict[str, str] = {}
_deliberate: dict[str, str] = {}


def _w() -> _Writer:
    global _writer
    if _writer is None:
        _writer = _Writer()
    return _writer


def pytest_configure(config: pytest.Config) -> None:
    global _not_applicable, _ci_only, _deliberate
    # trio's KeyboardInterrupt tests expect Python's own SIGINT handler; a
    # process started in the background (`make test &`, some CI runners)
    # inherits SIGINT ignored, and Python then installs none.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _not_applicable, _ci_only, _deliberate = load_exclusions()
    _w()


def _module_reason(table: dict[str, str], module_id: str) -> str | None:
    """The reason a whole module is listed (by itself or its directory), if it is."""
    for key, reason in table.items():
        if "::" not in key and "*" not in key and (module_id == key or module_id.startswith(key + "/")):
            return reason
    return None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    parts = collection_path.parts
    if PACKAGE not in parts:
        return None
    module_id = "trio/" + "/".join(parts[parts.index(PACKAGE) + 1 :])
    reason = _module_reason(_not_applicable, module_id)
    if reason is None:
        if CI and _module_reason(_ci_only, module_id) is not None:
            return True
        return None
    for test in tests_in_file(collection_path):
        _w().write({"id": f"{module_id}::{test}", "outcome": "n/a", "reason": reason})
    return True


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    writer = _w()
    for item in items:
        test_id = trio_id(item.nodeid)
        reason = match(_not_applicable, test_id)
        if reason is not None:
            writer.write({"id": test_id, "outcome": "n/a", "reason": reason})
            drop.append(item)
        elif test_id in writer.done or (CI and match(_ci_only, test_id) is not None):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if not report.failed or not report.nodeid.endswith(".py"):
        return
    module_id = trio_id(report.nodeid)
    record = classify_text(str(report.longrepr))
    path = Path(str(report.fspath))
    for test in tests_in_file(path):
        _w().write({"id": f"{module_id}::{test}", **record})


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    (OUT / "current").write_text(json.dumps({"id": trio_id(nodeid), "start": time.time()}))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    record = item.stash.setdefault(_RECORD, {"id": trio_id(item.nodeid), "outcome": "passed"})
    record["duration"] = round(record.get("duration", 0.0) + report.duration, 3)
    if record["outcome"] != "passed":
        return report  # the first failure or skip decides
    if report.skipped:
        if hasattr(report, "wasxfail"):
            record.update(outcome="unclassified", kind="xfail", message=str(report.wasxfail))
        else:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            record.update(outcome="unclassified", kind="skipped", message=reason)
    elif report.failed:
        if call.excinfo is not None:
            record.update(classify(call.excinfo.value))
        else:  # e.g. an xfail(strict) test that passed
            record.update(outcome="behaviour", kind="exception", exc_type="", message=str(report.longrepr)[:300])
        if report.when != "call":
            record["phase"] = report.when
        if record["outcome"] == "behaviour":
            reason = match(_deliberate, record["id"])
            if reason is not None:
                record.update(outcome="deliberate", reason=reason)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    result = yield
    record = item.stash.get(_RECORD, None)
    if record is not None:
        _w().write(record)
    return result


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _w().file.close()
    (OUT / "finished").write_text(str(exitstatus))
