"""Error messages that code matches on: the same exception, word for word, as trio.

trio's own tests pin these messages with anchored patterns
(``match=r"^total_tokens must be >= 0$"``), and so may any code written
for trio, which runs on ringtrio unchanged (trio mode).  Each case runs
one bad call under trio and under ringtrio and compares the exception's
type and text.  Messages that no one can match exactly (they name an
object's address, say) are not here; ringtrio's own words are free there.
"""

from __future__ import annotations

import math
import socket as stdlib_socket
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import pytest
from _differential import same_under_both

NAN = math.nan


async def _raised(call: Callable[[], Any]) -> tuple[str, str]:
    """(type name, message) of what ``call()`` raises (awaited if it returns an awaitable)."""
    try:
        result = call()
        if isinstance(result, Awaitable):
            await result
    except Exception as exc:
        return type(exc).__name__, str(exc)
    raise AssertionError("no exception")


def _scope(cm: Any) -> None:
    with cm:
        pass  # pragma: no cover - entering raises


def _set(obj: Any, name: str, value: object) -> Callable[[], None]:
    return lambda: setattr(obj, name, value)


def _two_clocks(lib: ModuleType) -> Callable[[], Any]:
    async def body(a: object, b: object) -> None:  # pragma: no cover - never runs
        pass

    clock = lib.testing.MockClock
    return lambda: lib.testing.trio_test(body)(a=clock(), b=clock())


def _reset_with_other_token(lib: ModuleType) -> None:
    one, other = lib.lowlevel.RunVar("one"), lib.lowlevel.RunVar("other")
    one.reset(other.set(1))


# name -> a function of the library giving the bad call
CASES: dict[str, Callable[[ModuleType], Callable[[], Any]]] = {
    "open_memory_channel(-1)": lambda lib: lambda: lib.open_memory_channel(-1),
    "Semaphore(-1)": lambda lib: lambda: lib.Semaphore(-1),
    "Semaphore(2, max_value=1)": lambda lib: lambda: lib.Semaphore(2, max_value=1),
    "Semaphore(1, max_value=1).release()": lambda lib: lib.Semaphore(1, max_value=1).release,
    "CapacityLimiter(-1)": lambda lib: lambda: lib.CapacityLimiter(-1),
    "CapacityLimiter.total_tokens = -1": lambda lib: _set(lib.CapacityLimiter(1), "total_tokens", -1),
    "MockClock(rate=-1)": lambda lib: lambda: lib.testing.MockClock(rate=-1),
    "MockClock.rate = -1": lambda lib: _set(lib.testing.MockClock(), "rate", -1),
    "trio_test with two clocks": _two_clocks,
    "move_on_after(-1)": lambda lib: lambda: _scope(lib.move_on_after(-1)),
    "move_on_after(nan)": lambda lib: lambda: _scope(lib.move_on_after(NAN)),
    "move_on_at(nan)": lambda lib: lambda: _scope(lib.move_on_at(NAN)),
    "fail_after(-1)": lambda lib: lambda: _scope(lib.fail_after(-1)),
    "fail_after(nan)": lambda lib: lambda: _scope(lib.fail_after(NAN)),
    "fail_at(nan)": lambda lib: lambda: _scope(lib.fail_at(NAN)),
    "RunVar.reset(another RunVar's token)": lambda lib: lambda: _reset_with_other_token(lib),
    "sleep(-1)": lambda lib: lambda: lib.sleep(-1),
    "sleep(nan)": lambda lib: lambda: lib.sleep(NAN),
    "sleep_until(nan)": lambda lib: lambda: lib.sleep_until(NAN),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_error_as_trio(case: str) -> None:
    async def scenario(lib: ModuleType) -> tuple[str, str]:
        return await _raised(CASES[case](lib))

    same_under_both(scenario)


async def _socket_errors(lib: ModuleType) -> list[tuple[str, str]]:
    errors = []
    with lib.socket.socket(type=stdlib_socket.SOCK_DGRAM) as udp:
        errors.append(await _raised(lambda: lib.SocketStream(udp)))
        errors.append(await _raised(lambda: lib.SocketListener(udp)))
    with lib.socket.socket() as tcp:
        await tcp.bind(("127.0.0.1", 0))
        errors.append(await _raised(lambda: lib.SocketListener(tcp)))  # not listening
    # (A connect that fails closes its socket, as in trio: one socket each.)
    for family, address in [
        (stdlib_socket.AF_INET, "localhost"),
        (stdlib_socket.AF_INET, ("1.2.3.4",)),
        (stdlib_socket.AF_INET, ("1.2.3.4", 80, 0, 0)),
        (stdlib_socket.AF_INET6, "::1"),
        (stdlib_socket.AF_INET6, ("::1", 80, 0, 0, 0)),
    ]:
        with lib.socket.socket(family=family) as sock:
            errors.append(await _raised(lambda: sock.connect(address)))
    return errors


def test_socket_errors_as_trio() -> None:
    """Sockets and socket streams given the wrong kind of socket or address."""
    errors = same_under_both(_socket_errors)
    assert errors[0] == ("ValueError", "SocketStream requires a SOCK_STREAM socket")


def _sync_fn() -> None:  # pragma: no cover - never called as a task
    pass


async def _async_gen() -> Any:  # pragma: no cover - never iterated
    yield


async def _async_fn() -> None:  # pragma: no cover - called, never awaited
    pass


# Phrases trio's tests search for in messages that go on to name objects
# (pytest.raises(match=...) unanchored): the bad call -> the phrase.
PHRASES: dict[str, tuple[Callable[[ModuleType], Callable[[], Any]], str]] = {
    "from_thread.run(sync function)": (
        lambda lib: lambda: lib.to_thread.run_sync(lib.from_thread.run, _sync_fn),
        "'_sync_fn' appears to be synchronous",
    ),
    "start_soon(sync function)": (
        lambda lib: lambda: _start_soon(lib, _sync_fn),
        "'_sync_fn' appears to be synchronous",
    ),
    "start_soon(async generator function)": (
        lambda lib: lambda: _start_soon(lib, _async_gen),
        "expected an async function but got an async generator",
    ),
    "start_soon(coroutine object)": (
        lambda lib: lambda: _start_soon(lib, _async_fn()),
        "was expecting an async function, but instead it got a coroutine object <coroutine object _async_fn at ",
    ),
}


async def _start_soon(lib: ModuleType, fn: Any) -> None:
    # (Raised outside the nursery, so not wrapped in its group.)
    async with lib.open_nursery() as nursery:
        try:
            nursery.start_soon(fn)
        except TypeError as exc:
            error = exc
    raise error


@pytest.mark.parametrize("case", list(PHRASES))
def test_same_phrase_as_trio(case: str) -> None:
    bad_call, phrase = PHRASES[case]

    async def scenario(lib: ModuleType) -> tuple[str, bool]:
        name, message = await _raised(bad_call(lib))
        return name, phrase in message

    assert same_under_both(scenario) == ("TypeError", True)
