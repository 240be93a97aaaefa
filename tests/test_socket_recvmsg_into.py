"""SocketType.recvmsg_into: one RECVMSG whose iovecs are the caller's buffers.

Every scenario runs under trio and under ringtrio (``same_under_both``) and
must observe the same thing: datagrams scattered over several buffers, a
truncated datagram, a byte stream, file descriptors passed as ancillary
data, an empty buffer list, bad arguments, and a cancelled wait that loses
nothing.
"""

from __future__ import annotations

import array
import os
import socket as stdsocket
from types import ModuleType
from typing import Any

import pytest

import ringtrio

from _differential import same_under_both


def test_datagram_is_scattered_over_the_buffers() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        with lib.socket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM) as a, lib.socket.socket(
            stdsocket.AF_INET, stdsocket.SOCK_DGRAM
        ) as b:
            await a.bind(("127.0.0.1", 0))
            await b.bind(("127.0.0.1", 0))
            await a.sendto(b"0123456789", b.getsockname())
            first, second, third = bytearray(3), bytearray(4), bytearray(8)
            n, ancdata, msg_flags, address = await b.recvmsg_into([first, memoryview(second), third])
            return [n, bytes(first), bytes(second), bytes(third), ancdata, msg_flags, address == a.getsockname()]

    assert same_under_both(scenario) == [10, b"012", b"3456", b"789" + bytes(5), [], 0, True]


def test_a_datagram_too_long_for_the_buffers_is_truncated() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        a, b = lib.socket.socketpair(stdsocket.AF_UNIX, stdsocket.SOCK_DGRAM)
        with a, b:
            await a.send(b"abcdefgh")
            small = [bytearray(2), bytearray(3)]
            n, _, msg_flags, _ = await b.recvmsg_into(small)
            return [n, [bytes(x) for x in small], bool(msg_flags & stdsocket.MSG_TRUNC)]

    assert same_under_both(scenario) == [5, [b"ab", b"cde"], True]


def test_stream_bytes_fill_the_buffers_in_order() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        a, b = lib.socket.socketpair()
        with a, b:
            await a.send(b"hello world")
            buffers = [bytearray(5), bytearray(1), bytearray(10)]
            n, ancdata, msg_flags, address = await b.recvmsg_into(buffers, 0, 0)
            # Nothing left to read, the peer closes: 0 bytes, end of stream.
            a.close()
            eof = await b.recvmsg_into([bytearray(4)])
            return [n, [bytes(x) for x in buffers], ancdata, msg_flags, address, eof[0]]

    assert same_under_both(scenario) == [
        11,
        [b"hello", b" ", b"world" + bytes(5)],
        [],
        0,
        same_under_both_address_of_unnamed_unix(),
        0,
    ]


def same_under_both_address_of_unnamed_unix() -> Any:
    """What the stdlib reports as the peer of an unnamed AF_UNIX socket
    (trio passes it through; ringtrio must give the same)."""
    a, b = stdsocket.socketpair()
    with a, b:
        a.send(b"x")
        return b.recvmsg_into([bytearray(1)])[3]


def test_file_descriptors_arrive_as_ancillary_data() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        a, b = lib.socket.socketpair()
        read_end, write_end = os.pipe()
        try:
            with a, b:
                fds = array.array("i", [write_end])
                await a.sendmsg([b"fd"], [(stdsocket.SOL_SOCKET, stdsocket.SCM_RIGHTS, fds)])
                data = bytearray(2)
                n, ancdata, msg_flags, _ = await b.recvmsg_into([data], stdsocket.CMSG_SPACE(fds.itemsize))
                [(level, kind, raw)] = ancdata
                received = array.array("i")
                received.frombytes(raw)
                # The received descriptor is a new one for the same pipe.
                os.write(received[0], b"through the passed fd")
                os.close(received[0])
                return [n, bytes(data), level == stdsocket.SOL_SOCKET, kind == stdsocket.SCM_RIGHTS, msg_flags, os.read(read_end, 100)]
        finally:
            os.close(read_end)
            os.close(write_end)

    assert same_under_both(scenario) == [2, b"fd", True, True, 0, b"through the passed fd"]


def test_no_buffers_receives_nothing_of_a_datagram() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        a, b = lib.socket.socketpair(stdsocket.AF_UNIX, stdsocket.SOCK_DGRAM)
        with a, b:
            await a.send(b"gone")
            n, _, msg_flags, _ = await b.recvmsg_into([])
            return [n, bool(msg_flags & stdsocket.MSG_TRUNC)]

    assert same_under_both(scenario) == [0, True]


def test_bad_arguments_raise() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        seen = []
        a, b = lib.socket.socketpair()
        with a, b:
            await a.send(b"x")
            for buffers, ancbufsize in [([b"read-only"], 0), (bytearray(4), 0), ([bytearray(4)], -1)]:
                try:
                    await b.recvmsg_into(buffers, ancbufsize)
                except (TypeError, ValueError) as exc:
                    seen.append(type(exc).__name__)
            # A bad argument in a cancelled scope: Cancelled wins (the
            # call is a checkpoint, as every socket operation).
            with lib.CancelScope() as scope:
                scope.cancel()
                await b.recvmsg_into([b"read-only"])
            seen.append(("cancelled", scope.cancelled_caught))
            # The byte is still there.
            buffer = bytearray(1)
            seen.append((await b.recvmsg_into([buffer]))[0])
        return seen

    assert same_under_both(scenario) == ["TypeError", "TypeError", "ValueError", ("cancelled", True), 1]


def test_a_cancelled_wait_loses_nothing() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        a, b = lib.socket.socketpair()
        with a, b:
            buffer = bytearray(8)
            with lib.move_on_after(0.05) as scope:
                await b.recvmsg_into([buffer])
            await a.send(b"later")
            n, _, _, _ = await b.recvmsg_into([buffer])
            return [scope.cancelled_caught, bytes(buffer[:n])]

    assert same_under_both(scenario) == [True, b"later"]


def test_closed_socket_raises_oserror() -> None:
    async def scenario(lib: ModuleType) -> Any:
        a, b = lib.socket.socketpair()
        a.close()
        b.close()
        try:
            await b.recvmsg_into([bytearray(1)])
        except OSError as exc:
            return type(exc).__name__
        return "nothing raised"  # pragma: no cover

    assert same_under_both(scenario) == "OSError"


def test_recvmsg_into_is_one_ring_op(monkeypatch: pytest.MonkeyPatch) -> None:
    # ringtrio-only: the wait is the RECVMSG itself (no readiness poll), and
    # it goes through the one path, RingOp + submit_and_wait.
    submitted: list[int] = []
    real_run_op = ringtrio.socket.SocketType._run_op

    async def spy(self: Any, op: Any) -> Any:
        submitted.append(op.opcode)
        return await real_run_op(self, op)

    monkeypatch.setattr(ringtrio.socket.SocketType, "_run_op", spy)

    async def main() -> int:
        a, b = ringtrio.socket.socketpair()
        with a, b:
            async with ringtrio.open_nursery() as nursery:

                async def send_later() -> None:
                    await ringtrio.testing.wait_all_tasks_blocked()
                    await a.send(b"x")

                nursery.start_soon(send_later)
                n, _, _, _ = await b.recvmsg_into([bytearray(1)])
                return n

    assert ringtrio.run(main) == 1
    assert ringtrio.lowlevel.IORING_OP_RECVMSG in submitted
    assert ringtrio.lowlevel.IORING_OP_POLL_ADD not in submitted


@pytest.mark.parametrize("count", [1, 64])
def test_many_buffers(count: int) -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        a, b = lib.socket.socketpair()
        with a, b:
            payload = bytes(range(count))
            await a.send(payload)
            buffers = [bytearray(1) for _ in range(count)]
            n, _, _, _ = await b.recvmsg_into(buffers)
            return [n, b"".join(buffers) == payload]

    assert same_under_both(scenario) == [count, True]
