"""I/O on a caller's memoryview never leaves anything that crashes the
interpreter (ringtrio/_core/_op_memory.py).

Each scenario (tests/_op_memory_scenarios.py) ends an operation on a
memoryview with an exception -- the resource closed by another task, a
cancel, an error -- or has the caller release or resize the memory while the
operation waits, then runs the garbage collector.  Holding a buffer export of
the caller's view while the op waited made a reference cycle that
``gc.collect()`` crashed on (SIGSEGV, CPython gh-77894).  So each scenario
runs in a subprocess, with the C accelerator and without it
(RINGTRIO_NO_SPEEDUPS=1); it must exit cleanly and observe what is
stated, and so must trio where it can run the scenario.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import trio
import trio.testing  # noqa: F401  (the scenarios use lib.testing)

import _op_memory_scenarios as scenarios

HERE = os.path.dirname(os.path.abspath(__file__))

CLOSED = ["ClosedResourceError", "nursery raised ExceptionGroup"]
CANCELLED = ["Cancelled"]

# Scenarios under both libraries: what each must observe (trio runs them
# here too, so that a scenario cannot pass by going wrong the same way).
SAME_AS_TRIO: dict[str, Any] = {
    "send_memoryview_closed": CLOSED,
    "send_memoryview_slice_cancelled": CANCELLED,
    "send_all_memoryview_slice_closed": CLOSED,
    "send_all_memoryview_slice_cancelled": CANCELLED,
    "sendmsg_memoryviews_closed": CLOSED,
    "sendto_memoryview_closed": CLOSED,
    "fdstream_send_all_memoryview_closed": CLOSED,
    "file_write_memoryview_fails": ["BrokenPipeError"],
    "recv_into_memoryview_closed": CLOSED,
    "recv_into_memoryview_cancelled": CANCELLED,
    "recvfrom_into_memoryview_closed": CLOSED,
    "recvmsg_into_memoryviews_closed": CLOSED,
    "send_released_memoryview": ["ValueError"],
    # The view the receive waits with pins the bytearray: no resize.
    "resize_bytearray_while_receiving": ["BufferError", 5, b"\0\0hello\0\0\0"],
}

# Scenarios trio cannot run (its file I/O runs in threads a cancel waits
# for; it has no RingOp) or where it differs on purpose.
RINGTRIO_ONLY: dict[str, Any] = {
    "file_write_memoryview_cancelled": CANCELLED,
    "file_readinto_memoryview_cancelled": CANCELLED,
    # The receive is in the kernel with a view of its own: releasing the
    # caller's view is allowed and the bytes land in the bytearray.
    "release_view_while_receiving": ["released", 5, b"hello\0\0\0\0\0"],
    # The array outlives the caller's view while the op waits (True), and
    # nothing holds it after the completion (True).
    "ring_op_on_a_view_the_caller_releases": [True, 5, True],
}

MODES = {"speedups": {}, "no-speedups": {"RINGTRIO_NO_SPEEDUPS": "1"}}


def _run_scenarios(env: dict[str, str]) -> dict[str, str]:
    """Every scenario under ringtrio, in as few subprocesses as it takes:
    one, unless one of them ends the process (then its result says how,
    and the rest run in a new one).  Name -> what it printed."""
    results: dict[str, str] = {}
    todo = sorted(SAME_AS_TRIO) + sorted(RINGTRIO_ONLY)
    while todo:
        proc = subprocess.run(
            [sys.executable, os.path.join(HERE, "_op_memory_scenarios.py"), "ringtrio", *todo],
            env=dict(os.environ, **env),
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        for line in proc.stdout.splitlines():
            name, _, printed = line.partition("\t")
            results[name] = printed
        done = [name for name in todo if name in results]
        todo = todo[len(done) :]
        if "Exception ignored" in proc.stderr or proc.returncode != 0:
            # The collector complained ("Exception ignored in tp_clear of
            # memoryview" comes before the crash) or the process died: in
            # the last scenario that printed, or the first that did not.
            culprit = todo.pop(0) if proc.returncode != 0 and todo else done[-1]
            results[culprit] = f"exit status {proc.returncode}: {proc.stderr[-3000:]}"
    return results


@pytest.fixture(scope="module", params=sorted(MODES))
def observed(request: pytest.FixtureRequest) -> dict[str, str]:
    return _run_scenarios(MODES[request.param])


@pytest.mark.parametrize("name", sorted(SAME_AS_TRIO))
def test_memoryview_io_ending_in_an_exception_survives_the_collector(
    name: str, observed: dict[str, str]
) -> None:
    assert trio.run(getattr(scenarios, name), trio) == SAME_AS_TRIO[name]
    assert observed[name] == repr(SAME_AS_TRIO[name])


@pytest.mark.parametrize("name", sorted(RINGTRIO_ONLY))
def test_memoryview_io_that_trio_cannot_run_survives_the_collector(name: str, observed: dict[str, str]) -> None:
    assert observed[name] == repr(RINGTRIO_ONLY[name])
