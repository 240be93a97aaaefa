"""ringtrio as an AnyIO backend: small AnyIO programs run both ways.

Each program runs under ``anyio.run(..., backend="ringtrio")`` and as AnyIO
code inside ``ringtrio.run`` (AnyIO picks the backend from sniffio's
"ringtrio"), and checks that the work went through ringtrio: the run's ring
statistics grew, and AnyIO's objects are ringtrio's underneath.  AnyIO's own
test suite (tools/anyio_suite, tests/test_anyio_suite.py) covers the
semantics in depth; these pin the plumbing.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest
import sniffio

import ringtrio
from ringtrio import lowlevel

# Generous: only a hang should get near it.
SOON = 10.0


def run_both_ways(main: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run ``main`` under anyio.run(backend="ringtrio") and inside
    ringtrio.run; return both results."""

    async def in_ringtrio() -> Any:
        return await main()

    return [anyio.run(main, backend="ringtrio"), ringtrio.run(in_ringtrio)]


def ring_ops() -> int:
    return lowlevel.current_statistics().sqes_submitted


def test_backend_module_is_ringtrios_own() -> None:
    import anyio._backends._ringtrio as through_anyio

    import ringtrio._anyio._backend as own

    assert through_anyio is own
    assert own.backend_class.__name__ == "RingtrioBackend"


def test_importing_ringtrio_does_not_import_anyio() -> None:
    code = "import sys, ringtrio; print('anyio' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


def test_anyio_without_ringtrio_backend_still_reports_lookup_error() -> None:
    # The finder answers one module name only.
    with pytest.raises(LookupError, match="No such backend: nosuchbackend"):
        anyio.run(anyio.sleep, 0, backend="nosuchbackend")


def test_task_group_and_sleep_run_on_the_ring() -> None:
    async def main() -> tuple[str, list[int], bool]:
        before = ring_ops()
        done: list[int] = []

        async def child(n: int) -> None:
            await anyio.sleep(0.01)
            done.append(n)

        async with anyio.create_task_group() as tg:
            assert isinstance(tg.cancel_scope, anyio.CancelScope)
            for n in range(3):
                tg.start_soon(child, n)
        # A sleep parks on a deadline, not a ring op; a nop-free proof that
        # the ring ran is a socket op: a socketpair round trip.
        a, b = ringtrio.socket.socketpair()
        with a, b:
            await a.send(b"x")
            assert await b.recv(1) == b"x"
        return sniffio.current_async_library(), sorted(done), ring_ops() > before

    for library, done, grew in run_both_ways(main):
        assert library == "ringtrio"
        assert done == [0, 1, 2]
        assert grew


def test_cancel_scopes_and_timeouts() -> None:
    async def main() -> tuple[bool, bool, type[BaseException]]:
        with anyio.move_on_after(0.01) as scope:
            await anyio.sleep(SOON)
        timed_out = False
        try:
            with anyio.fail_after(0.01):
                await anyio.sleep(SOON)
        except TimeoutError:
            timed_out = True
        return scope.cancelled_caught, timed_out, anyio.get_cancelled_exc_class()

    for caught, timed_out, cancelled in run_both_ways(main):
        assert caught and timed_out
        assert cancelled is ringtrio.Cancelled


def test_tcp_echo_goes_through_ringtrio_sockets() -> None:
    async def main() -> tuple[bytes, int]:
        before = ring_ops()
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
        (listener,) = multi.listeners
        port = listener.extra(anyio.abc.SocketAttribute.local_port)

        async def serve_one() -> None:
            async with await listener.accept() as conn:
                await conn.send(await conn.receive())

        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(serve_one)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                raw = client.extra(anyio.abc.SocketAttribute.raw_socket)
                assert isinstance(raw, socket.socket)
                assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                await client.send(b"hello ring")
                echoed = await client.receive()
        # accept, connect, send and receive on both ends: at least 5 ops.
        return echoed, ring_ops() - before

    for echoed, ops in run_both_ways(main):
        assert echoed == b"hello ring"
        assert ops >= 5


def test_udp_round_trip() -> None:
    async def main() -> tuple[bytes, bytes]:
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as server:
            port = server.extra(anyio.abc.SocketAttribute.local_port)
            async with await anyio.create_connected_udp_socket("127.0.0.1", port) as client:
                await client.send(b"ping")
                data, address = await server.receive()
                await server.send((b"pong", address))
                return data, await client.receive()

    for got in run_both_ways(main):
        assert got == (b"ping", b"pong")


def test_closed_stream_raises_anyio_errors() -> None:
    async def main() -> list[str]:
        seen = []
        a, b = socket.socketpair()
        left = await anyio.abc.SocketStream.from_socket(a)
        right = await anyio.abc.SocketStream.from_socket(b)
        await right.aclose()
        try:
            await left.receive()
        except anyio.EndOfStream:
            seen.append("eof")
        await left.aclose()
        try:
            await left.receive()
        except anyio.ClosedResourceError:
            seen.append("closed")
        return seen

    for seen in run_both_ways(main):
        assert seen == ["eof", "closed"]


def test_worker_threads_and_calls_back_into_the_run() -> None:
    async def main() -> tuple[str, int, str | None]:
        def in_thread() -> tuple[str, int]:
            # anyio.from_thread finds the run the worker came from.
            library = anyio.from_thread.run_sync(sniffio.current_async_library)
            value = anyio.from_thread.run(anyio_add, 2, 3)
            return library, value

        library, value = await anyio.to_thread.run_sync(in_thread)

        def detect() -> str | None:
            try:
                return sniffio.current_async_library()
            except sniffio.AsyncLibraryNotFoundError:
                return None

        return library, value, await anyio.to_thread.run_sync(detect)

    for library, value, in_worker in run_both_ways(main):
        assert library == "ringtrio"
        assert value == 5
        assert in_worker is None


async def anyio_add(a: int, b: int) -> int:
    await anyio.sleep(0)
    return a + b


def test_blocking_portal_runs_calls_in_a_ringtrio_thread() -> None:
    with anyio.from_thread.start_blocking_portal("ringtrio") as portal:
        assert portal.call(sniffio.current_async_library) == "ringtrio"
        assert portal.call(anyio_add, 20, 22) == 42
        thread = portal.call(threading.current_thread)
    assert thread is not threading.main_thread()


def test_create_task_with_context_runs_in_that_context() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> str:
        context = contextvars.copy_context()
        context.run(var.set, "given")

        async def read() -> str:
            await anyio.sleep(0)
            return var.get()

        async with anyio.create_task_group() as tg:
            handle = tg.create_task(read(), context=context)
        return await handle

    assert run_both_ways(main) == ["given", "given"]


def test_sync_primitives_are_ringtrios() -> None:
    async def main() -> list[object]:
        event, lock = anyio.Event(), anyio.Lock()
        semaphore, limiter = anyio.Semaphore(1), anyio.CapacityLimiter(1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(event.wait)
            await anyio.wait_all_tasks_blocked()
            assert event.statistics().tasks_waiting == 1
            event.set()
        async with lock, semaphore, limiter:
            owner = lock.statistics().owner
            assert owner == anyio.get_current_task()
            with pytest.raises(anyio.WouldBlock):
                semaphore.acquire_nowait()
        return [event._event, lock._lock, semaphore._semaphore, limiter._limiter]  # type: ignore[attr-defined]

    for natives in run_both_ways(main):
        assert [type(n) for n in natives] == [
            ringtrio.Event,
            ringtrio.Lock,
            ringtrio.Semaphore,
            ringtrio.CapacityLimiter,
        ]


def test_run_vars_are_per_run() -> None:
    counter: anyio.lowlevel.RunVar[int] = anyio.lowlevel.RunVar("counter", default=0)

    async def main() -> int:
        counter.set(counter.get() + 1)
        return counter.get()

    # A fresh run starts from the default again: the token is per run.
    assert run_both_ways(main) == [1, 1]


def test_token_is_the_runs_trio_token() -> None:
    # As with AnyIO's trio backend, the token AnyIO holds is the run's own
    # TrioToken (weakly referenceable, so AnyIO's RunVar store keys by it),
    # and the thread entry points take it.
    async def main() -> list[bool]:
        token = anyio.lowlevel.current_token()

        def in_thread() -> bool:
            return bool(anyio.from_thread.run_sync(lambda: True, token=token))

        return [
            token.native_token is lowlevel.current_trio_token(),
            anyio.lowlevel.current_token().native_token is token.native_token,
            await anyio.to_thread.run_sync(in_thread),
        ]

    assert run_both_ways(main) == [[True, True, True]] * 2


def test_send_blocked_when_another_task_closes_leaves_nothing_to_crash_the_collector() -> None:
    # A send blocked on a full socket buffer, the stream closed by another
    # task: the send fails with ClosedResourceError, and its frames end up
    # in a reference cycle with the memoryview the backend sends.  While the
    # socket layer held a buffer export of that view, collecting the cycle
    # crashed the interpreter (see ringtrio/_core/_op_memory.py).  In a
    # subprocess, since the failure is a crash.
    code = """
import gc, socket, anyio, ringtrio
from anyio.abc import SocketStream

async def main():
    a, b = socket.socketpair()
    left = await SocketStream.from_socket(a)
    right = await SocketStream.from_socket(b)

    async def flood():
        try:
            while True:
                await left.send(memoryview(bytes(65536)))
        except anyio.ClosedResourceError:
            pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(flood)
        await anyio.wait_all_tasks_blocked()
        await left.aclose()
    await right.aclose()

for _ in range(3):
    anyio.run(main, backend="ringtrio")
    gc.collect()
print("collected")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "collected"
