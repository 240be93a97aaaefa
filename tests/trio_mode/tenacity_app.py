"""tenacity's async retry with a wait, on ringtrio in trio mode.

tenacity sleeps with ``trio.sleep`` when sniffio says "trio" (and with
``asyncio.sleep`` otherwise): in trio mode that is ringtrio's sleep.  Proof:
under a MockClock that jumps ahead, the retries' waits (minutes of them)
pass in virtual time at once and advance ringtrio's clock by exactly what
tenacity waited; with the real clock, the waits go through the ring."""

from __future__ import annotations

import _harness  # first: enables trio mode

import sniffio
import tenacity
import trio
import trio.testing

WAIT = 60.0  # seconds of virtual time per retry
ATTEMPTS = 4


def flaky(attempts: list[float]):  # type: ignore[no-untyped-def]
    @tenacity.retry(wait=tenacity.wait_fixed(WAIT), stop=tenacity.stop_after_attempt(ATTEMPTS), reraise=True)
    async def call() -> str:
        attempts.append(trio.current_time())
        if len(attempts) < ATTEMPTS:
            raise ConnectionError("not yet")
        return "done"

    return call


async def virtual_time() -> dict[str, object]:
    attempts: list[float] = []
    value = await flaky(attempts)()
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    return {"sniffio": sniffio.current_async_library(), "value": value, "gaps": gaps}


async def real_time() -> dict[str, object]:
    attempts: list[float] = []
    before = _harness.ring_counts()

    @tenacity.retry(wait=tenacity.wait_fixed(0.01), stop=tenacity.stop_after_attempt(3), reraise=True)
    async def call() -> int:
        attempts.append(trio.current_time())
        if len(attempts) < 3:
            raise ConnectionError("not yet")
        return len(attempts)

    with trio.fail_after(60):
        value = await call()
    return {"value": value, "ring": _harness.grew(before, _harness.ring_counts())}


clock = trio.testing.MockClock(autojump_threshold=0)
_harness.report(virtual=trio.run(virtual_time, clock=clock), real=trio.run(real_time))
