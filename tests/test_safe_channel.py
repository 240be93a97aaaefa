"""as_safe_channel: an async generator function as a context manager that
yields a receive channel.

Every scenario runs under trio and under ringtrio (``same_under_both``) and
returns what it observed: trio's test_channel.py scenarios for
as_safe_channel restated (values on demand only, what leaves the block when
the body, the generator or its cleanup raise, GeneratorExit filtering,
closing the channel at each point), plus the generator's cleanup order and
the unwrapped error's context.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from types import ModuleType
from typing import Any

import pytest
import trio

import ringtrio

from _differential import same_under_both


# The exceptions the scenarios raise themselves: their messages are
# compared.  Those the libraries make (a nursery's group, the AssertionError
# for extra GeneratorExits, ClosedResourceError ...) are compared by type:
# their wording is each library's own.
SCENARIO_RAISED = (ValueError, TypeError, KeyError, NotImplementedError)


def outcome_of(exc: BaseException) -> Any:
    """An exception as comparable data: type name (and message, see
    SCENARIO_RAISED); a group as ("group", its message if the scenario made
    it, its sorted children, its notes)."""
    if isinstance(exc, BaseExceptionGroup):
        children = sorted((outcome_of(e) for e in exc.exceptions), key=repr)
        message = "<nursery>" if exc.message.startswith("Exceptions from") else exc.message
        return ("group", message, tuple(children), tuple(getattr(exc, "__notes__", ())))
    if isinstance(exc, SCENARIO_RAISED):
        return (type(exc).__name__, str(exc))
    return type(exc).__name__


async def observe(body: Any) -> Any:
    """``await body()``: ("returned", value), or the exception as data."""
    try:
        return ("returned", await body())
    except BaseException as exc:  # noqa: BLE001 - the scenario's observation
        return outcome_of(exc)


async def observe_block(lib: ModuleType, cm: Any, body: Any) -> Any:
    """``async with cm as channel: await body(channel)``, observed."""

    async def run() -> None:
        async with cm as channel:
            await body(channel)

    return await observe(run)


def test_values_arrive_in_order_and_the_channel_ends() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        seen: list[Any] = []

        @lib.as_safe_channel
        async def numbers(limit: int, *, step: int = 1) -> AsyncGenerator[int]:
            for i in range(0, limit, step):
                seen.append(("computing", i))
                yield i

        async with numbers(5, step=2) as channel:
            seen.append(("is a ReceiveChannel", isinstance(channel, lib.abc.ReceiveChannel)))
            async for value in channel:
                seen.append(("got", value))
        seen.append(("name kept", numbers.__name__))
        return seen

    assert same_under_both(scenario)[-1] == ("name kept", "numbers")


def test_generator_computes_only_what_is_received() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        computed: list[int] = []

        @lib.as_safe_channel
        async def counter() -> AsyncGenerator[int]:
            i = 0
            while True:
                computed.append(i)
                yield i
                i += 1

        async with counter() as channel:
            await lib.testing.wait_all_tasks_blocked()
            before_first = list(computed)
            first = await channel.receive()
            await lib.testing.wait_all_tasks_blocked()
            after_first = list(computed)
            second = await channel.receive()
            await lib.testing.wait_all_tasks_blocked()
        return [before_first, first, after_first, second, computed]

    assert same_under_both(scenario) == [[], 0, [0], 1, [0, 1]]


def test_generator_never_asked_is_never_started() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        events: list[str] = []

        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[None]:
            events.append("started")
            yield

        async with agen():
            await lib.testing.wait_all_tasks_blocked()
        return events

    assert same_under_both(scenario) == []


def test_cancel_before_consumption_does_not_run_the_generator() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        events: list[str] = []

        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[None]:
            events.append("started")
            yield

        with lib.CancelScope() as scope:
            async with agen():
                scope.cancel()
        return [events, scope.cancelled_caught]

    assert same_under_both(scenario) == [[], True]


def test_a_receiver_that_stops_asking_leaves_the_generator_at_its_yield() -> None:
    # trio's test_as_safe_channel_buffer_size_too_small: the block waits
    # forever after the first value; the generator must not be asked again.
    async def scenario(lib: ModuleType) -> list[Any]:
        events: list[str] = []

        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[int]:
            try:
                yield 1
                events.append("asked for a second value")
                yield 2
            finally:
                events.append("closed")

        with lib.move_on_after(0.05) as scope:
            async with agen() as channel:
                async for value in channel:
                    events.append(f"got {value}")
                    await lib.sleep_forever()
        return [events, scope.cancelled_caught]

    assert same_under_both(scenario) == [["got 1", "closed"], True]


def test_closing_the_channel_then_receiving_is_closed_resource_error() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        events: list[Any] = []

        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[int]:
            try:
                yield 1
                events.append("asked again")
                yield 2
            finally:
                events.append("closed")

        async with agen() as channel:
            events.append(await channel.__anext__())
            await channel.aclose()
            events.append(await observe(channel.__anext__))
        events.append("block left")
        return events

    assert same_under_both(scenario) == [1, "ClosedResourceError", "closed", "block left"]


def test_closing_before_and_during_iteration() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        events: list[Any] = []

        @lib.as_safe_channel
        async def never() -> AsyncGenerator[None]:
            events.append("never started")
            yield

        async with never() as channel:
            await channel.aclose()
            events.append(await observe(channel.receive))

        @lib.as_safe_channel
        async def closes_its_receiver() -> AsyncGenerator[int]:
            yield 1
            await holder[0].aclose()
            while True:
                yield 2

        holder: list[Any] = []
        async with closes_its_receiver() as channel:
            holder.append(channel)

            async def drain() -> None:
                async for value in channel:
                    events.append(("got", value))

            events.append(await observe(drain))
            await lib.testing.wait_all_tasks_blocked()

        async with closes_its_receiver() as channel, lib.open_nursery() as nursery:
            holder[0] = channel

            async def close_soon() -> None:
                await lib.lowlevel.checkpoint()
                await channel.aclose()

            nursery.start_soon(close_soon)

            async def drain_all() -> None:
                async for _ in channel:
                    pass

            events.append(await observe(drain_all))
        return events

    assert same_under_both(scenario) == [
        "ClosedResourceError",
        ("got", 1),
        "ClosedResourceError",
        "ClosedResourceError",
    ]


def test_generator_error_leaves_the_block_unwrapped() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[int]:
            yield 1
            raise ValueError("from the generator")

        got: list[int] = []

        async def body(channel: Any) -> None:
            async for value in channel:
                got.append(value)

        return [await observe_block(lib, agen(), body), got]

    assert same_under_both(scenario) == [("ValueError", "from the generator"), [1]]


def test_body_error_leaves_the_block_unwrapped_with_its_context() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        events: list[Any] = []

        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[int]:
            try:
                yield 1
            finally:
                events.append("closed")

        try:
            async with agen() as channel:
                await channel.receive()
                try:
                    raise KeyError("context")
                except KeyError:
                    raise ValueError("from the body") from None
        except ValueError as exc:
            events.append(("ValueError", str(exc)))
            events.append(("context", repr(exc.__context__)))
            events.append(("suppressed", exc.__suppress_context__))
        return events

    assert same_under_both(scenario) == [
        "closed",
        ("ValueError", "from the body"),
        ("context", "KeyError('context')"),
        ("suppressed", True),
    ]


def test_user_exception_group_is_not_unwrapped() -> None:
    async def scenario(lib: ModuleType) -> Any:
        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[None]:
            raise NotImplementedError("not entered")
            yield  # pragma: no cover - makes this a generator

        async def body(channel: Any) -> None:
            raise ExceptionGroup("foo", [ValueError("bar")])

        return await observe_block(lib, agen(), body)

    assert same_under_both(scenario) == ("group", "foo", (("ValueError", "bar"),), ())


def test_errors_from_body_and_cleanup_come_out_as_a_group_with_a_note() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        events: list[str] = []

        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[int]:
            try:
                yield 1
            except BaseException as exc:
                events.append(repr(exc))
                raise
            finally:
                events.append("finally")
                raise ValueError("agen")

        async def body(channel: Any) -> None:
            async for _ in channel:
                raise TypeError("iterator")

        return [await observe_block(lib, agen(), body), events]

    result = same_under_both(scenario)
    kind, _, children, notes = result[0]
    assert (kind, children) == ("group", (("TypeError", "iterator"), ("ValueError", "agen")))
    assert len(notes) == 1 and "unable to unwrap" in notes[0]
    assert result[1] == ["GeneratorExit()", "finally"]


def test_cancellation_reaches_body_then_generator_cleanup() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        events: list[str] = []

        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[None]:
            try:
                yield
            finally:
                try:
                    await lib.lowlevel.checkpoint()
                except lib.Cancelled:
                    events.append("agen cancel")
                    raise

        with lib.CancelScope() as scope:
            try:
                async with agen() as channel:
                    async for _ in channel:
                        scope.cancel()
                        try:
                            await lib.lowlevel.checkpoint()
                        except lib.Cancelled:
                            events.append("body cancel")
                            raise
            except lib.Cancelled:
                events.append("Cancelled left the block alone")
                raise
        return events

    assert same_under_both(scenario) == ["body cancel", "agen cancel", "Cancelled left the block alone"]


def test_generator_cancel_scope_does_not_leak_into_the_body() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        events: list[Any] = []

        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[int]:
            yield 1
            with lib.CancelScope() as inner:
                inner.cancel()
                yield 2

        async with agen() as channel:
            async for value in channel:
                events.append(value)
                await lib.lowlevel.checkpoint()  # not cancelled
        events.append("left normally")
        return events

    # The second value is never delivered (the producer's send runs inside
    # the generator's cancelled scope), and the block ends normally.
    assert same_under_both(scenario) == [1, "left normally"]


def test_generator_exit_from_its_own_nursery_is_dropped() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        events: list[Any] = []

        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[None]:
            try:
                async with lib.open_nursery():
                    yield
            except BaseException as exc:
                events.append(outcome_of(exc))
                raise

        async with agen() as channel:
            async for _ in channel:
                break
        events.append("left normally")
        return events

    assert same_under_both(scenario) == [("group", "<nursery>", ("GeneratorExit",), ()), "left normally"]


def test_generator_exit_filtering() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        async def raise_when_cancelled(exc_type: type[BaseException]) -> None:
            try:
                await lib.sleep_forever()
            except lib.Cancelled:
                raise exc_type from None

        @lib.as_safe_channel
        async def agen(*extra: type[BaseException]) -> AsyncGenerator[None]:
            async with lib.open_nursery() as nursery:
                for exc_type in extra:
                    nursery.start_soon(raise_when_cancelled, exc_type)
                yield

        async def body(channel: Any) -> None:
            async for _ in channel:
                break

        results = []
        for extra in [(ValueError,), (GeneratorExit, GeneratorExit), (ValueError, GeneratorExit)]:
            results.append(await observe_block(lib, agen(*extra), body))

        @lib.as_safe_channel
        async def plain() -> AsyncGenerator[None]:
            yield

        async def body_raising_genexit(channel: Any) -> None:
            async with lib.open_nursery():
                await channel.receive()
                raise GeneratorExit

        results.append(await observe_block(lib, plain(), body_raising_genexit))
        return results

    results = same_under_both(scenario)
    assert results == [
        ("group", "<nursery>", (("ValueError", ""),), ()),
        ("group", "<nursery>", ("AssertionError",), ()),
        ("group", "<nursery>", ("AssertionError", ("ValueError", "")), ()),
        ("group", "<nursery>", ("GeneratorExit",), ()),
    ]


def test_several_receivers_share_the_values() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        ready = lib.Event()

        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[int]:
            await ready.wait()
            yield 0
            yield 1

        got: list[int] = []

        async def receive_one(channel: Any, task_status: Any = lib.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            got.append(await channel.receive())

        async with agen() as channel, lib.open_nursery() as nursery:
            await nursery.start(receive_one, channel)
            await nursery.start(receive_one, channel)
            ready.set()
        return sorted(got)

    assert same_under_both(scenario) == [0, 1]


def test_nested_channels() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[int]:
            for i in range(2):
                yield i

        pairs = []
        async with agen() as outer:
            async for i in outer:
                async with agen() as inner:
                    async for j in inner:
                        pairs.append((i, j))
        return pairs

    assert same_under_both(scenario) == [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_win_over_other_errors(exc_type: type[BaseException]) -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        @lib.as_safe_channel
        async def agen() -> AsyncGenerator[int]:
            try:
                yield 1
            finally:
                raise exc_type("stop")

        try:
            async with agen() as channel:
                await channel.receive()
                raise ValueError("body")
        except exc_type as exc:
            return [type(exc).__name__, exc.args, outcome_of(exc.__cause__)[0]]
        return ["nothing raised"]  # pragma: no cover

    assert same_under_both(scenario) == [exc_type.__name__, ("stop",), "group"]


def test_decorated_function_types() -> None:
    # What a type checker sees: the arguments of the generator function,
    # and a receive channel of its item type.
    @ringtrio.as_safe_channel
    async def agen(limit: int) -> AsyncGenerator[int]:
        yield limit

    async def main() -> list[int]:
        async with agen(3) as channel:
            return [value async for value in channel]

    assert ringtrio.run(main) == [3]
    assert trio.as_safe_channel.__name__ == ringtrio.as_safe_channel.__name__
