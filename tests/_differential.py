"""Shared pieces of the tests that run one scenario under both trio and
ringtrio (``lib`` is the module under test)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

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
