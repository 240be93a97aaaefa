"""Polling before a wait: a run whose loop has nothing to do polls the ring
for a bounded, adaptive window before it sleeps in io_uring_enter
(rt_ring_set_poll; docs/design.md, "Polling before a wait").  What a
program sees must not change: the same bytes, the same deadlines, wake-ups
from other threads; RINGTRIO_POLL_US bounds it or turns it off.

The window adapts to how long waits take, so whether a given wait polls
depends on timing; these tests pin it instead (a window of one second, which
never shrinks: no wait here is longer than the bound) to make every wait
poll, or turn polling off."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import ringtrio
from ringtrio import lowlevel
from ringtrio._core._local import _current_runner

SECOND_NS = 1_000_000_000


def poll_every_wait() -> bool:
    """Make every wait of the current run poll for up to a second (the
    window starts at the bound).  False on the epoll backend, which never
    polls."""
    bound = _current_runner().ring.set_poll(SECOND_NS, SECOND_NS)
    return bound == SECOND_NS


# The first echoes come this late: the run has long been waiting for them
# by then (it polls, with poll_every_wait), however loaded the machine.
# Without a delay the echoing thread often answers before the run waits at
# all, and a run of 200 trips could end without a single wait.
SLOW_ECHOES = 3
SLOW_ECHO_DELAY = 0.1


def echo_peer(sock: socket.socket) -> None:
    """Echo what arrives until the other end closes (in a thread); the
    first SLOW_ECHOES echoes SLOW_ECHO_DELAY seconds late."""
    with sock:
        echoes = 0
        while data := sock.recv(65536):
            if echoes < SLOW_ECHOES:
                time.sleep(SLOW_ECHO_DELAY)
            echoes += 1
            sock.sendall(data)


async def ping_pong(trips: int) -> list[bytes]:
    """``trips`` round trips with an echoing thread; the echoes."""
    a, b = socket.socketpair()
    peer = threading.Thread(target=echo_peer, args=(b,), daemon=True)
    peer.start()
    stream = ringtrio.SocketStream(ringtrio.socket.from_stdlib_socket(a))
    echoes = []
    for i in range(trips):
        message = bytes([i % 251]) * (1 + i * 37 % 4000)
        await stream.send_all(message)
        got = b""
        while len(got) < len(message):
            chunk = await stream.receive_some()
            assert chunk
            got += chunk
        echoes.append(got)
    await stream.aclose()
    peer.join(10)
    assert not peer.is_alive()
    return echoes


def expected(trips: int) -> list[bytes]:
    return [bytes([i % 251]) * (1 + i * 37 % 4000) for i in range(trips)]


def run(fn: Callable[[], Any]) -> Any:
    return ringtrio.run(fn)


def test_polling_waits_deliver_what_sleeping_waits_do() -> None:
    async def main() -> tuple[bool, list[bytes], Any]:
        polls = poll_every_wait()
        assert polls == (lowlevel.current_backend().name == "io_uring")
        echoes = await ping_pong(200)
        return polls, echoes, lowlevel.current_statistics().io_statistics

    polls, echoes, stats = run(main)
    assert echoes == expected(200)
    if polls:
        # Every wait for the thread's echo polled (at least the slow echoes
        # were waited for); the echoes that came within the window (all,
        # unless the thread was held off for a second) ended the poll.
        assert 0 < stats.poll_hits <= stats.polled_waits
        assert stats.poll_seconds > 0
    else:
        assert stats.polled_waits == stats.poll_hits == 0 and stats.poll_seconds == 0


def test_polling_wait_keeps_deadlines_and_thread_wakeups() -> None:
    async def main() -> tuple[bool, float, float, Any, Any, list[str]]:
        polls = poll_every_wait()
        before = lowlevel.current_statistics().io_statistics
        # A deadline shorter than the window: the wait polls until the
        # deadline, not the window.
        deadline = ringtrio.current_time() + 0.02
        await ringtrio.sleep_until(deadline)
        woke_at = ringtrio.current_time()
        with ringtrio.move_on_after(0.02) as scope:
            await ringtrio.sleep_forever()
        assert scope.cancelled_caught
        # Another thread's call into the run ends a poll too.
        token = lowlevel.current_trio_token()
        seen: list[str] = []
        done = ringtrio.Event()

        def called() -> None:
            seen.append("called")
            done.set()

        def from_thread() -> None:
            token.run_sync_soon(called)

        # (Late enough that the run is waiting by then, however loaded the
        # machine.)
        timer = threading.Timer(0.1, from_thread)
        timer.start()
        with ringtrio.fail_after(30):
            await done.wait()
        timer.join()
        return polls, deadline, woke_at, before, lowlevel.current_statistics().io_statistics, seen

    polls, deadline, woke_at, before, after, seen = run(main)
    assert woke_at >= deadline
    assert seen == ["called"]
    if polls:
        assert after.polled_waits >= before.polled_waits + 3
        # (The run_sync_soon call's wake-up ended a poll.)
        assert after.poll_hits > before.poll_hits
    else:
        assert after.polled_waits == 0


def test_poll_us_zero_turns_polling_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGTRIO_POLL_US", "0")

    async def main() -> tuple[list[bytes], Any]:
        echoes = await ping_pong(50)
        return echoes, lowlevel.current_statistics().io_statistics

    echoes, stats = run(main)
    assert echoes == expected(50)
    assert stats.polled_waits == stats.poll_hits == 0 and stats.poll_seconds == 0


@pytest.mark.parametrize("value", ["abc", "-1", "2e6", "nan"])
def test_poll_us_must_be_microseconds(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RINGTRIO_POLL_US", value)

    async def main() -> None:
        raise AssertionError("the run must not start")

    with pytest.raises(ValueError, match=r"RINGTRIO_POLL_US=.*microseconds.*0 \(never poll\)"):
        run(main)
