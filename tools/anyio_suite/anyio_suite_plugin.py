"""pytest plugin for running AnyIO's own test suite on trio and ringtrio.

Loaded by ``run.py`` (through ``pytest.main(plugins=...)``, after it has
added ``"ringtrio"`` to AnyIO's backend list, see there).  It

* keeps the tests that run on trio or ringtrio (the ``anyio_backend``
  parameter, or any other parameter naming a backend, such as the portal
  tests' ``target_backend``) and the backend-independent ones, and drops
  the asyncio-only variants: the point of the run is trio against ringtrio;
* optionally leaves out the backend-independent tests
  (``--anyio-suite-no-common``: the CI guard compares backends, and they run
  on neither), the tests whose keys (see :func:`test_key`) a file lists
  (``--anyio-suite-skip``: the CI guard's timing-sensitive ones) and
  the node ids another file lists (``--anyio-suite-done``: those a run that
  was ended by a hung test already ran);
* records every test's start and outcome (setup, call and teardown) as
  JSON lines for ``run.py``, which folds them into one outcome per test.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest

BACKENDS = ("trio", "ringtrio")


def test_key(nodeid: str) -> str:
    """The name a test goes by in the exclusion file: its node
    id with the backend left out, so that one key names the trio and the
    ringtrio variant (``tests/test_x.py::test_y[ringtrio]`` ->
    ``tests/test_x.py::test_y[BACKEND]``)."""
    return nodeid.replace("ringtrio", "BACKEND").replace("trio", "BACKEND")


def _backends_named(value: object) -> set[str]:
    if isinstance(value, str):
        return {value} if value in (*BACKENDS, "asyncio") else set()
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        return _backends_named(value[0])
    return set()


def backend_of(item: pytest.Item) -> str | None:
    """"ringtrio", "trio", "common" (no backend parameter), or None for a
    variant that runs on asyncio only."""
    callspec = getattr(item, "callspec", None)
    named: set[str] = set()
    if callspec is not None:
        for value in callspec.params.values():
            named |= _backends_named(value)
    if "ringtrio" in named:
        return "ringtrio"
    if "trio" in named:
        return "trio"
    return None if named else "common"


_ORIGINAL_BACKENDS: tuple[str, ...] | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests() -> None:
    # AnyIO lists its backends in a module constant, which its conftest and
    # several test modules read to parametrize tests (``anyio_backend``, the
    # portal tests' ``target_backend``): "ringtrio" is added there for the
    # collection, and removed again once it is over, so that tests which
    # count backends at run time (the pytest plugin's own tests, running
    # pytest in pytest) see AnyIO's list, as its plugin did when imported.
    # (Imported here, not at the top: pytest must import anyio first, to
    # rewrite its plugin's asserts.)
    global _ORIGINAL_BACKENDS
    import anyio._core._eventloop as eventloop

    # Importing ringtrio installs the finder AnyIO's backend lookup needs
    # (ringtrio's own pytest plugin, which would import it, is disabled).
    import ringtrio  # noqa: F401

    _ORIGINAL_BACKENDS = eventloop.BACKENDS
    if "ringtrio" not in eventloop.BACKENDS:
        eventloop.BACKENDS = (*eventloop.BACKENDS, "ringtrio")


def pytest_collection_finish() -> None:
    import anyio._core._eventloop as eventloop

    if _ORIGINAL_BACKENDS is not None:
        eventloop.BACKENDS = _ORIGINAL_BACKENDS


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("anyio-suite")
    group.addoption("--anyio-suite-results", default=None, help="write outcomes here (JSON)")
    group.addoption("--anyio-suite-skip", default=None, help="leave out the keys in this file")
    group.addoption("--anyio-suite-done", default=None, help="leave out the node ids in this file")
    group.addoption(
        "--anyio-suite-no-common", action="store_true", help="leave out the backend-independent tests"
    )


def _read_keys(path: str) -> set[str]:
    keys = set()
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            keys.add(line)
    return keys


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_file = config.getoption("--anyio-suite-skip")
    skip = _read_keys(skip_file) if skip_file else set()
    done_file = config.getoption("--anyio-suite-done")
    done = set(Path(done_file).read_text().splitlines()) if done_file else set()
    no_common = config.getoption("--anyio-suite-no-common")
    keep, drop = [], []
    for item in items:
        backend = backend_of(item)
        if (
            backend is None
            or (no_common and backend == "common")
            or item.nodeid in done
            or test_key(item.nodeid) in skip
        ):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


class _Recorder:
    """Appends one JSON line per event to the results file, flushed at once:
    if a test hangs and pytest-timeout's thread method ends the process,
    everything up to it is kept, and the test that started without
    finishing is the one that hung (run.py then resumes after it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.backends: dict[str, str] = {}

    def _write(self, record: dict[str, Any]) -> None:
        # Opened for each line: a file kept open could have its descriptor
        # closed under it by a test that closes descriptors (and the number
        # reused by a socket of another test).
        with open(self.path, "a") as file:
            file.write(json.dumps(record) + "\n")

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            self.backends[item.nodeid] = backend_of(item) or "asyncio"

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self._write({"nodeid": nodeid, "event": "start", "backend": self.backends.get(nodeid, "common")})

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.outcome == "skipped" and hasattr(report, "wasxfail"):
            outcome = "xfailed"
        else:
            outcome = report.outcome
        record: dict[str, Any] = {
            "nodeid": report.nodeid,
            "event": report.when,
            "outcome": outcome,
            "duration": report.duration,
        }
        if report.outcome == "failed":
            record["message"] = _first_line(report)
        self._write(record)


_failed_calls: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.failed:
        _failed_calls.add(report.nodeid)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    # A failed test often leaves objects in reference cycles through its
    # traceback (unclosed sockets, in tests that fail in this environment on
    # both backends); collected later, their ResourceWarnings would fail
    # whichever test runs then.  Collected now, in the failed test's own
    # teardown, they stay with it.
    if item.nodeid in _failed_calls:
        gc.collect()


def _first_line(report: pytest.TestReport) -> str:
    text = report.longreprtext.strip().splitlines()
    return text[-1][:300] if text else ""


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--anyio-suite-results")
    if path:
        config.pluginmanager.register(_Recorder(path), "anyio-suite-recorder")
