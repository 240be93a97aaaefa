"""trio_test: an async test function as a plain one, for test runners that
know nothing about ringtrio (trio's ``trio.testing.trio_test``)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from .._core import Clock, Instrument, run

# Ctrl-C raises KeyboardInterrupt in these helpers at once, as in the user's
# own code that they run (they are not the runtime: see _core/_ki.py).
_KI_PROTECTION = False

ArgsT = ParamSpec("ArgsT")
RetT = TypeVar("RetT")


def trio_test(fn: Callable[ArgsT, Awaitable[RetT]]) -> Callable[ArgsT, RetT]:
    """Turn an async test function into a synchronous one that runs it in a
    fresh :func:`ringtrio.run` and returns its result.  As in trio.

    Usage::

        @trio_test
        async def test_whatever():
            await ...

    Keyword arguments that are a :class:`ringtrio.abc.Clock` (for instance a
    ``MockClock`` pytest fixture) or :class:`ringtrio.abc.Instrument` are
    passed to ``run`` as its ``clock`` and ``instruments`` -- and to the test
    function as well, which asked for them.  Positional arguments are only
    passed on.

    Raises:
      ValueError: more than one keyword argument is a clock.
    """

    @functools.wraps(fn)
    def run_test(*args: ArgsT.args, **kwargs: ArgsT.kwargs) -> RetT:
        __tracebackhide__ = True
        clocks = [value for value in kwargs.values() if isinstance(value, Clock)]
        if len(clocks) > 1:
            # trio's words (a run has one clock; pass at most one Clock fixture).
            raise ValueError("too many clocks spoil the broth!")
        instruments = [value for value in kwargs.values() if isinstance(value, Instrument)]
        # A partial, so that the main task is named after the test function.
        test_body = functools.partial(fn, *args, **kwargs)
        return run(test_body, clock=clocks[0] if clocks else None, instruments=instruments)

    return run_test
