"""as_safe_channel: an async generator function made into a context manager
that yields a receive channel (trio 0.35's ``trio.as_safe_channel``).

Why not iterate the generator directly: a generator that yields from inside
a cancel scope or a nursery hands control to its caller while that scope is
still open -- a cancellation aimed at the caller can land in the generator,
and one aimed at the generator in the caller (PEP 789) -- and a generator
abandoned half-way is finalized whenever the garbage collector gets to it
(PEP 533).  Here the generator runs in a task of its own, in a nursery that
the ``async with`` block owns, and hands each value over an unbuffered
memory channel.  The block's end is the generator's end: it is closed (its
``finally`` blocks run) before the ``async with`` statement finishes.

The rules, as trio's:

* The generator computes a value only when the receiver asks for one: each
  ``receive()`` first adds one unit of demand, and the producer task waits
  for demand before calling ``__anext__``.  A receiver that stops asking
  never makes the generator run ahead (and a generator that is never asked
  is never started).
* When the generator is exhausted the channel ends (``EndOfChannel``, so
  ``async for`` stops).  When it raises, the error comes out of the
  ``async with`` statement.
* Leaving the block cancels the producer and closes the generator with
  ``aclose()``.  The ``GeneratorExit`` that ``aclose()`` throws in is
  expected and dropped, also when the generator's own nursery wraps it in a
  group; a group that holds more than one ``GeneratorExit`` is a bug
  somewhere else and becomes an ``AssertionError``.
* What comes out of the block: the one error if there is one (the body's or
  the generator's, not wrapped in the nursery's group), else the
  ``Cancelled`` if there is one; a ``KeyboardInterrupt`` or ``SystemExit``
  anywhere at the top of the group wins and is raised afresh from the group;
  several errors (say, the body's and the generator's cleanup's) come out as
  the group itself, with a note saying why it could not be unwrapped.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import NoReturn, ParamSpec, TypeVar

from ._abc import ReceiveChannel
from ._channel import MemoryReceiveChannel, MemorySendChannel, open_memory_channel
from ._core import (
    TASK_STATUS_IGNORED,
    BrokenResourceError,
    Cancelled,
    TaskStatus,
    open_nursery,
)
from ._sync import Semaphore

__all__ = ["as_safe_channel"]

P = ParamSpec("P")
T = TypeVar("T")

_CANNOT_UNWRAP_NOTE = (
    "Encountered exception during cleanup of generator object, as well as "
    "exception in the contextmanager body - unable to unwrap."
)


class _OnDemandReceiveChannel(ReceiveChannel[T]):
    """The receive channel ``as_safe_channel`` yields.  Every ``receive()``
    first grants the producer one value's worth of demand, so the generator
    runs only as far as the receivers ask."""

    __slots__ = ("_channel", "_demand")

    def __init__(self, channel: MemoryReceiveChannel[T], demand: Semaphore) -> None:
        self._channel = channel
        self._demand = demand

    async def receive(self) -> T:
        self._demand.release()
        return await self._channel.receive()

    async def aclose(self) -> None:
        await self._channel.aclose()

    def _close(self) -> None:
        # Without a checkpoint: the context manager calls it on its way out,
        # where a checkpoint could raise Cancelled over the error leaving.
        self._channel.close()


async def _close_generator(agen: AsyncGenerator[object, None]) -> None:
    """``agen.aclose()``, dropping the ``GeneratorExit`` it throws in even
    when the generator's own nursery hands it back wrapped in a group."""
    try:
        await agen.aclose()
    except BaseExceptionGroup as group:
        genexits, rest = group.split(GeneratorExit)
        # One GeneratorExit is the one aclose() threw in.  More than one
        # means somebody else raised GeneratorExit too (a child task of the
        # generator's nursery, say); dropping those would hide that bug.
        if genexits is not None and _count_leaves(genexits) > 1:
            extra = AssertionError(
                f"closing the async generator {agen!r} gave {_count_leaves(genexits)} "
                "GeneratorExit exceptions; only the one aclose() throws in is expected "
                "(did a task in the generator's nursery raise GeneratorExit?)"
            )
            rest = group.derive([extra]) if rest is None else rest.derive([*rest.exceptions, extra])
        if rest is not None:
            raise rest from None


def _count_leaves(group: BaseExceptionGroup[BaseException]) -> int:
    return sum(_count_leaves(e) if isinstance(e, BaseExceptionGroup) else 1 for e in group.exceptions)


async def _produce(
    agen: AsyncGenerator[T, None],
    send_channel: MemorySendChannel[T],
    demand: Semaphore,
    task_status: TaskStatus[None] = TASK_STATUS_IGNORED,
) -> None:
    """The producer task: one value from ``agen`` per unit of demand, sent
    on ``send_channel``, until the generator ends or nobody can receive."""
    # A plain `with` (closing without a checkpoint): an `async with` would
    # checkpoint in its exit and could replace the error leaving this task
    # with a Cancelled.
    with send_channel:
        try:
            task_status.started()
            while True:
                await demand.acquire()
                if send_channel._state.open_receive_channels == 0:
                    # The receiver is closed: whatever the generator would
                    # compute next could never be delivered.
                    return
                try:
                    value = await agen.__anext__()
                except StopAsyncIteration:
                    return
                try:
                    await send_channel.send(value)
                except BrokenResourceError:
                    return  # the receiver was closed while we computed
        finally:
            await _close_generator(agen)


def _reraise_alone(exc: BaseException) -> NoReturn:
    """Raise ``exc`` without it picking up the group being handled as its
    ``__context__``."""
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context


def _raise_the_one_error(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """What leaves ``as_safe_channel``'s block when its nursery raised
    ``group`` (see the module docstring)."""
    for exc in group.exceptions:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise type(exc)(*exc.args) from group
    errors = [exc for exc in group.exceptions if not isinstance(exc, Cancelled)]
    if len(errors) == 1:
        _reraise_alone(errors[0])
    if not errors:
        _reraise_alone(group.exceptions[0])
    group.add_note(_CANNOT_UNWRAP_NOTE)
    raise group from None


def as_safe_channel(
    fn: Callable[P, AsyncGenerator[T, None]],
) -> Callable[P, AbstractAsyncContextManager[ReceiveChannel[T]]]:
    """Decorate an async generator function so that calling it gives an
    async context manager yielding a :class:`ringtrio.abc.ReceiveChannel`
    of the generator's values, as ``trio.as_safe_channel``::

        @ringtrio.as_safe_channel
        async def numbers(limit):
            for i in range(limit):
                await ringtrio.sleep(0.1)
                yield i

        async with numbers(3) as channel:
            async for value in channel:
                print(value)

    The generator runs in a task of its own, in a nursery the ``async with``
    block owns, so it may open nurseries and cancel scopes and yield from
    inside them; it computes a value only when one is received; and leaving
    the block closes it (its ``finally`` blocks run) before the block
    finishes.  An error raised by the generator or by the block comes out of
    the ``async with`` unwrapped; errors from both come out as an exception
    group.
    """

    @asynccontextmanager
    @functools.wraps(fn)
    async def open_channel(*args: P.args, **kwargs: P.kwargs) -> AsyncGenerator[ReceiveChannel[T], None]:
        send_channel, receive_channel = open_memory_channel[T](0)
        try:
            async with open_nursery(strict_exception_groups=True) as nursery:
                agen = fn(*args, **kwargs)
                demand = Semaphore(0)
                # start(), not start_soon(): once it returns, the producer's
                # `finally` owns send_channel and agen, whatever happens next.
                await nursery.start(_produce, agen, send_channel, demand)
                channel = _OnDemandReceiveChannel(receive_channel, demand)
                try:
                    yield channel
                finally:
                    channel._close()
                # The block is over: stop the producer (closing the generator
                # if it is still suspended at a yield).
                nursery.cancel_scope.cancel("exited the as_safe_channel context manager")
        except BaseExceptionGroup as group:
            _raise_the_one_error(group)

    return open_channel
