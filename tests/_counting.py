"""Count the completions that reach a receiver's Python ``_on_cqe``: the C
dispatch completes the common CQE itself, so a test of that fast path
checks that Python saw none (and, under RINGTRIO_NO_SPEEDUPS=1, all)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def counting_on_cqe(cls: Any, calls: list[int]) -> Iterator[None]:
    """Within the block, every ``cls._on_cqe(res, flags)`` call appends
    ``res`` to ``calls`` and then runs the original method."""
    original = cls._on_cqe

    def counting(self: Any, res: int, flags: int) -> None:
        calls.append(res)
        original(self, res, flags)

    cls._on_cqe = counting
    try:
        yield
    finally:
        cls._on_cqe = original
