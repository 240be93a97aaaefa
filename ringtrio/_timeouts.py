"""move_on_*/fail_*: cancel scopes with deadlines."""

from __future__ import annotations

import math
from collections.abc import Generator
from contextlib import contextmanager

from ._core import CancelScope, TooSlowError, current_time


def move_on_at(deadline: float, *, shield: bool = False) -> CancelScope:
    """A cancel scope that is cancelled at ``deadline`` (absolute)."""
    if math.isnan(deadline):
        raise ValueError("deadline must not be NaN")
    return CancelScope(deadline=deadline, shield=shield)


def move_on_after(seconds: float, *, shield: bool = False) -> CancelScope:
    """A cancel scope that is cancelled ``seconds`` after it is entered."""
    # trio's words, which code matches on.
    if math.isnan(seconds):
        raise ValueError("`seconds` must not be NaN")
    if seconds < 0:
        raise ValueError("`seconds` must be non-negative")
    return CancelScope(relative_deadline=seconds, shield=shield)


@contextmanager
def fail_at(deadline: float, *, shield: bool = False) -> Generator[CancelScope, None, None]:
    """Like :func:`move_on_at`, but raise :exc:`TooSlowError` if the deadline
    cancelled the block."""
    with move_on_at(deadline, shield=shield) as scope:
        yield scope
    if scope.cancelled_caught:
        raise TooSlowError


@contextmanager
def fail_after(seconds: float, *, shield: bool = False) -> Generator[CancelScope, None, None]:
    """Like :func:`move_on_after`, but raise :exc:`TooSlowError` if the
    deadline cancelled the block."""
    with move_on_after(seconds, shield=shield) as scope:
        yield scope
    if scope.cancelled_caught:
        raise TooSlowError


__all__ = ["move_on_at", "move_on_after", "fail_at", "fail_after", "current_time"]
