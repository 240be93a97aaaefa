"""Sequencer: make tasks take turns in a fixed order, for tests."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .._core import Cancelled
from .._final import final
from .._sync import Event


@final
class Sequencer:
    """``async with seq(n):`` blocks until every block with a smaller number
    has been entered and left. Numbers start at 0 and each may be used once.
    If a waiting block is cancelled the sequence is broken: that block
    raises :exc:`RuntimeError` instead of ``Cancelled``, and so does every
    block waiting or entered afterwards (as trio)."""

    def __init__(self) -> None:
        self._sequence_points: defaultdict[int, Event] = defaultdict(Event)
        self._claimed: set[int] = set()
        self._broken = False

    @asynccontextmanager
    async def __call__(self, position: int) -> AsyncIterator[None]:
        if position in self._claimed:
            raise RuntimeError(f"Sequencer position {position} was already used")
        self._claimed.add(position)
        if self._broken:
            raise RuntimeError("Sequencer is broken: an earlier position was cancelled")
        if position != 0:
            try:
                await self._sequence_points[position].wait()
            except Cancelled:
                # The test's order can no longer happen: say so loudly, in
                # this block too (a Cancelled would be swallowed by its scope
                # and the test would go on as if the sequence had run).
                self._broken = True
                for event in self._sequence_points.values():
                    event.set()
                raise RuntimeError(
                    f"Sequencer position {position} was cancelled while waiting "
                    "for its turn: the sequence is broken"
                ) from None
            if self._broken:
                raise RuntimeError("Sequencer is broken: an earlier position was cancelled")
        try:
            yield
        finally:
            self._sequence_points[position + 1].set()
