"""Shared pieces of the tests that run one scenario under both trio and
ringtrio (``lib`` is the module under test)."""

from __future__ import annotations

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
