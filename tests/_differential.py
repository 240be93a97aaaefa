"""Shared pieces of the tests that run one scenario under both trio and
ringtrio (``lib`` is the module under test)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import pytest
import trio

import ringtrio

LIBS = [pytest.param(trio, id="trio"), pytest.param(ringtrio, id="ringtrio")]

# Generous bound on checkpoints needed for spawned tasks to reach a state.
# Anything needing more than this is a hang, not slowness.
MAX_CHECKPOINTS = 100


@pytest.fixture(params=LIBS)
def lib(request: pytest.FixtureRequest) -> ModuleType:
    return request.param  # type: ignore[no-any-return]


async def settle(lib: ModuleType, done: Callable[[], bool], what: str = "") -> None:
    """Checkpoint until ``done()`` holds; fail after MAX_CHECKPOINTS."""
    for _ in range(MAX_CHECKPOINTS):
        if done():
            return
        await lib.lowlevel.checkpoint()
    raise AssertionError(f"not reached after {MAX_CHECKPOINTS} checkpoints: {what}")


async def settle_count(lib: ModuleType, get: Callable[[], int], expected: int) -> None:
    """Checkpoint until ``get()`` returns ``expected``; fail after MAX_CHECKPOINTS."""
    for _ in range(MAX_CHECKPOINTS):
        if get() == expected:
            return
        await lib.lowlevel.checkpoint()
    raise AssertionError(
        f"count still {get()} (expected {expected}) after {MAX_CHECKPOINTS} checkpoints"
    )


def same_under_both(scenario: Callable[..., Awaitable[Any]], *args: Any, hang: float = 60) -> Any:
    """Run ``scenario(lib, *args)`` under trio, then under ringtrio (each in
    its own run, with ``hang`` seconds as a guard against a hang); the two
    results must be equal.  Returns trio's, for the test to check as well."""
    results = []
    for lib in (trio, ringtrio):

        async def guarded(lib: ModuleType = lib) -> Any:
            with lib.fail_after(hang):
                return await scenario(lib, *args)

        results.append(lib.run(guarded))
    assert results[1] == results[0], f"trio: {results[0]!r}\nringtrio: {results[1]!r}"
    return results[0]


def ctrl_c_child(code: str, *args: str, send: bool = True, release: str = "") -> dict[str, Any]:
    """Run ``python -c code *args`` (a scenario under one library), wait for
    it to print ``ready``, then (``send``) give it a SIGINT as Ctrl-C would,
    then write ``release`` to its stdin.  Returns the JSON report it prints
    last.

    No timing: a child that does not end after the signal fails the test
    after a minute, as the hang it is.  Its stdin stays open until it has
    exited, so a thread of the scenario that waits for a line nobody writes
    waits for good (a run that waited for such a thread would hang)."""
    with subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        # (A copy of the pipe's end that keeps it open once proc.stdin is
        # closed.)
        keep_stdin_open = os.dup(proc.stdin.fileno())
        try:
            line = proc.stdout.readline()
            assert line == "ready\n", (line, proc.stderr.read())
            if send:
                time.sleep(0.05)  # into the busy loop / the wait
                proc.send_signal(signal.SIGINT)
            try:
                proc.stdin.write(release)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # it ended without reading (the pipe is closed all the same)
            proc.wait(timeout=60)
            # (Not communicate(): readline() may have buffered the rest of
            # stdout, which only proc.stdout's own read() sees.)
            out, err = proc.stdout.read(), proc.stderr.read()
        finally:
            os.close(keep_stdin_open)
            if proc.poll() is None:  # pragma: no cover - a hang
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    return json.loads(out.splitlines()[-1])
