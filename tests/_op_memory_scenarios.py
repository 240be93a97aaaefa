"""Scenarios for tests/test_op_memory.py: I/O on a caller's memoryview that
ends in an exception (the resource closed by another task, a cancel, an
error), after which the garbage collector runs.

Run as a script (``python _op_memory_scenarios.py LIB NAME...``) each named
scenario runs three times under LIB (``trio`` or ``ringtrio``), with
``gc.collect()`` after each run, and prints a line with its name and what
the first run observed.  The failures these
pin were interpreter crashes, so the tests run them in a subprocess and look
at the exit status.
"""

from __future__ import annotations

import array
import gc
import importlib
import os
import socket
import sys
import tempfile
import weakref
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

# Enough to fill a socketpair's or a pipe's kernel buffer, so a send blocks.
BIG = 1 << 22


async def _victim_until(
    lib: ModuleType, op: Callable[[], Awaitable[Any]], end: Callable[[Any], Awaitable[None]]
) -> list[str]:
    """Run ``op`` over and over in a task until it blocks, then ``end(nursery)``
    (close the resource, or cancel): the names of the exceptions the task
    and the nursery raised."""
    seen: list[str] = []

    async def victim() -> None:
        try:
            while True:
                await op()
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise

    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(victim)
            await lib.testing.wait_all_tasks_blocked()
            await end(nursery)
    except BaseException as exc:
        seen.append("nursery raised " + type(exc).__name__)
    return seen


async def _cancel(nursery: Any) -> None:
    nursery.cancel_scope.cancel()


def _closer(resource: Any) -> Callable[[Any], Awaitable[None]]:
    async def close(nursery: Any) -> None:
        if hasattr(resource, "aclose"):  # a stream
            await resource.aclose()
        else:  # a socket
            resource.close()

    return close


def _socketpair(lib: ModuleType, type_: int = socket.SOCK_STREAM) -> tuple[Any, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, type_)
    return lib.socket.from_stdlib_socket(a), b


# -- sends --------------------------------------------------------------------


async def send_memoryview_closed(lib: ModuleType) -> list[str]:
    sock, peer = _socketpair(lib)
    with peer:
        return await _victim_until(lib, lambda: sock.send(memoryview(bytes(65536))), _closer(sock))


async def send_memoryview_slice_cancelled(lib: ModuleType) -> list[str]:
    sock, peer = _socketpair(lib)
    with sock, peer:
        data = bytearray(65536)
        return await _victim_until(lib, lambda: sock.send(memoryview(data)[1:]), _cancel)


async def send_all_memoryview_slice_closed(lib: ModuleType) -> list[str]:
    sock, peer = _socketpair(lib)
    stream = lib.SocketStream(sock)
    data = bytearray(BIG)
    with peer:
        return await _victim_until(lib, lambda: stream.send_all(memoryview(data)[1:]), _closer(stream))


async def send_all_memoryview_slice_cancelled(lib: ModuleType) -> list[str]:
    sock, peer = _socketpair(lib)
    stream = lib.SocketStream(sock)
    data = bytearray(BIG)
    with peer:
        seen = await _victim_until(lib, lambda: stream.send_all(memoryview(data)[1:]), _cancel)
        await stream.aclose()
        return seen


async def sendmsg_memoryviews_closed(lib: ModuleType) -> list[str]:
    sock, peer = _socketpair(lib)
    with peer:
        return await _victim_until(
            lib,
            lambda: sock.sendmsg([memoryview(bytes(65536)), memoryview(bytearray(10))[2:]]),
            _closer(sock),
        )


async def sendto_memoryview_closed(lib: ModuleType) -> list[str]:
    # A datagram sender blocks once the receiving socket's queue is full.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "receiver")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
            receiver.bind(path)
            sock = lib.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            return await _victim_until(
                lib, lambda: sock.sendto(memoryview(bytes(4096)), path), _closer(sock)
            )


async def fdstream_send_all_memoryview_closed(lib: ModuleType) -> list[str]:
    r, w = os.pipe()
    stream = lib.lowlevel.FdStream(w)
    data = bytearray(BIG)
    try:
        return await _victim_until(lib, lambda: stream.send_all(memoryview(data)[3:]), _closer(stream))
    finally:
        os.close(r)


async def file_write_memoryview_fails(lib: ModuleType) -> list[str]:
    # A write to a pipe with no reader: EPIPE, raised from the write.
    r, w = os.pipe()
    os.close(r)
    seen = []
    try:
        f = await lib.open_file(f"/proc/self/fd/{w}", "wb", buffering=0)
        try:
            await f.write(memoryview(bytes(1000))[1:])
        except OSError as exc:
            seen.append(type(exc).__name__)
        await f.aclose()
    finally:
        os.close(w)
    return seen


async def file_write_memoryview_cancelled(lib: ModuleType) -> list[str]:
    # (ringtrio only: trio writes files in a thread, which a cancel waits for.)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fifo")
        os.mkfifo(path)
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never read
        try:
            f = await lib.open_file(path, "wb", buffering=0)
            # Writes of PIPE_BUF bytes: each fits whole or waits.
            data = bytearray(1 + 4096)
            seen = await _victim_until(lib, lambda: f.write(memoryview(data)[1:]), _cancel)
            await f.aclose()
        finally:
            os.close(reader)
        return seen


# -- receives -----------------------------------------------------------------


async def recv_into_memoryview_closed(lib: ModuleType) -> list[str]:
    sock, peer = _socketpair(lib)
    buf = bytearray(100)
    with peer:
        return await _victim_until(lib, lambda: sock.recv_into(memoryview(buf)[10:]), _closer(sock))


async def recv_into_memoryview_cancelled(lib: ModuleType) -> list[str]:
    sock, peer = _socketpair(lib)
    buf = bytearray(100)
    with sock, peer:
        return await _victim_until(lib, lambda: sock.recv_into(memoryview(buf)[10:]), _cancel)


async def recvfrom_into_memoryview_closed(lib: ModuleType) -> list[str]:
    sock, peer = _socketpair(lib, socket.SOCK_DGRAM)
    buf = bytearray(100)
    with peer:
        return await _victim_until(lib, lambda: sock.recvfrom_into(memoryview(buf)[10:]), _closer(sock))


async def recvmsg_into_memoryviews_closed(lib: ModuleType) -> list[str]:
    sock, peer = _socketpair(lib)
    buf = bytearray(100)
    with peer:
        return await _victim_until(
            lib,
            lambda: sock.recvmsg_into([memoryview(buf)[10:], memoryview(bytearray(5))]),
            _closer(sock),
        )


async def file_readinto_memoryview_cancelled(lib: ModuleType) -> list[str]:
    # (ringtrio only, as file_write_memoryview_cancelled.)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fifo")
        os.mkfifo(path)
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        writer = os.open(path, os.O_WRONLY)  # never writes
        try:
            f = await lib.open_file(path, "rb", buffering=0)
            buf = bytearray(100)
            seen = await _victim_until(lib, lambda: f.readinto(memoryview(buf)[5:]), _cancel)
            await f.aclose()
        finally:
            os.close(writer)
            os.close(reader)
        return seen


# -- what the caller does to the memory meanwhile -------------------------------


async def send_released_memoryview(lib: ModuleType) -> list[str]:
    sock, peer = _socketpair(lib)
    view = memoryview(b"abc")
    view.release()
    seen = []
    with sock, peer:
        try:
            await sock.send(view)
        except Exception as exc:
            seen.append(type(exc).__name__)
    return seen


async def _meddle_while_receiving(lib: ModuleType, view: memoryview, meddle: Callable[[], str]) -> list[Any]:
    """A task receives into ``view``; once it waits, ``meddle()`` does
    something to the memory and says what happened; then bytes arrive."""
    sock, peer = _socketpair(lib)
    seen: list[Any] = []

    async def receive() -> None:
        seen.append(await sock.recv_into(view))

    with sock, peer:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(receive)
            await lib.testing.wait_all_tasks_blocked()
            seen.append(meddle())
            peer.send(b"hello")
    return seen


async def resize_bytearray_while_receiving(lib: ModuleType) -> list[Any]:
    buf = bytearray(10)

    def resize() -> str:
        try:
            buf.extend(bytes(1 << 20))
        except BufferError:
            return "BufferError"
        return "resized"

    return [*await _meddle_while_receiving(lib, memoryview(buf)[2:], resize), bytes(buf)]


async def release_view_while_receiving(lib: ModuleType) -> list[Any]:
    # (ringtrio only: trio reads once the socket is readable, so there the
    # recv_into sees the released view; ringtrio's receive is in the kernel
    # already, with a view of its own.)
    buf = bytearray(10)
    view = memoryview(buf)

    def release() -> str:
        view.release()
        return "released"

    return [*await _meddle_while_receiving(lib, view, release), bytes(buf)]


async def ring_op_on_a_view_the_caller_releases(lib: ModuleType) -> list[Any]:
    # (ringtrio only: lowlevel.RingOp.)  The caller's memoryview is the op's
    # addr, the view is released and the array dropped while the op waits:
    # the op's own view keeps the array alive until the completion.
    sock, peer = _socketpair(lib)
    arr = array.array("b", bytes(16))
    alive = weakref.ref(arr)
    view = memoryview(arr)
    del arr
    seen: list[Any] = []
    op = lib.lowlevel.RingOp(lib.lowlevel.IORING_OP_RECV, sock.fileno(), view, 16)

    async def receive() -> None:
        res, _ = await lib.lowlevel.submit_and_wait(op)
        seen.append(res)

    with sock, peer:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(receive)
            await lib.testing.wait_all_tasks_blocked()
            view.release()
            seen.append(alive() is not None)
            peer.send(b"hello")
    seen.append(alive() is None)
    return seen


def main(lib_name: str, names: list[str]) -> None:
    lib = importlib.import_module(lib_name)
    importlib.import_module(lib_name + ".testing")
    for name in names:
        scenario = globals()[name]
        results = []
        for _ in range(3):
            results.append(lib.run(scenario, lib))
            gc.collect()
        # One line per scenario, written before the next one starts: if
        # the process dies, the scenario it died in is the first missing.
        print(f"{name}\t{results[0]!r}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
