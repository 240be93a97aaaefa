"""run(..., restrict_keyboard_interrupt_to_checkpoints=True), trio's argument.

With True, Ctrl-C raises KeyboardInterrupt in the main task at its next
checkpoint (or wakes it from a wait), never in the middle of code: the same
under trio and ringtrio.  (False, trio's default, raises it anywhere in
trio; in ringtrio that is being built, see docs/reference.md, so only True
is compared here.)
"""

from __future__ import annotations

import signal
from types import ModuleType
from typing import Any

import pytest
import trio

import ringtrio

LIBS = [pytest.param(trio, id="trio"), pytest.param(ringtrio, id="ringtrio")]

SPINS = 20_000


def run_restricted(lib: ModuleType, main: Any) -> list[Any]:
    log: list[Any] = []
    try:
        lib.run(main, lib, log, restrict_keyboard_interrupt_to_checkpoints=True)
    except KeyboardInterrupt:
        log.append("run raised KeyboardInterrupt")
    except BaseExceptionGroup as group:
        leaves = group.split(KeyboardInterrupt)[0]
        log.append(("run raised a group of", type(leaves.exceptions[0]).__name__ if leaves else None))
    return log


async def interrupted_while_spinning(lib: ModuleType, log: list[Any]) -> None:
    signal.raise_signal(signal.SIGINT)
    total = 0
    for i in range(SPINS):  # no checkpoint: the interrupt must wait
        total += i
    log.append(("spin finished", total))
    try:
        await lib.lowlevel.checkpoint()
    except KeyboardInterrupt:
        log.append("KeyboardInterrupt at the checkpoint")
        raise
    log.append("checkpoint passed")  # pragma: no cover - must not happen


async def interrupted_while_waiting(lib: ModuleType, log: list[Any]) -> None:
    async def interrupt_soon() -> None:
        await lib.testing.wait_all_tasks_blocked()
        signal.raise_signal(signal.SIGINT)
        log.append("interrupt sent")

    async with lib.open_nursery() as nursery:
        nursery.start_soon(interrupt_soon)
        try:
            await lib.sleep_forever()
        except KeyboardInterrupt:
            log.append("KeyboardInterrupt woke the wait")
            raise


def test_interrupt_waits_for_the_next_checkpoint() -> None:
    logs = [run_restricted(lib, interrupted_while_spinning) for lib in (trio, ringtrio)]
    assert logs[0] == logs[1] == [
        ("spin finished", SPINS * (SPINS - 1) // 2),
        "KeyboardInterrupt at the checkpoint",
        "run raised KeyboardInterrupt",
    ]


def test_interrupt_wakes_a_waiting_main_task() -> None:
    logs = [run_restricted(lib, interrupted_while_waiting) for lib in (trio, ringtrio)]
    assert logs[0] == logs[1] == [
        "interrupt sent",
        "KeyboardInterrupt woke the wait",
        ("run raised a group of", "KeyboardInterrupt"),
    ]


@pytest.mark.parametrize("lib", LIBS)
def test_the_argument_is_keyword_only_and_the_sigint_handler_is_restored(lib: ModuleType) -> None:
    async def main() -> str:
        return "done"

    before = signal.getsignal(signal.SIGINT)
    assert lib.run(main, restrict_keyboard_interrupt_to_checkpoints=True) == "done"
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(TypeError):
        lib.run(main, None, None, True)
