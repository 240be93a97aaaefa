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
