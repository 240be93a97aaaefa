"""The in-memory streams of ringtrio.testing, and the stream conformance
checkers run against them.

The checkers are also run against deliberately broken streams, to show that
they catch contract violations instead of passing everything.
"""

from __future__ import annotations

from typing import Any

import pytest

import ringtrio
from ringtrio import abc
from ringtrio.testing import assert_checkpoints, wait_all_tasks_blocked
from ringtrio.testing._check_streams import (
    check_half_closeable_stream,
    check_one_way_stream,
    check_two_way_stream,
)
from ringtrio.testing._memory_streams import (
    MemoryReceiveStream,
    MemorySendStream,
    lockstep_stream_one_way_pair,
    lockstep_stream_pair,
    memory_stream_one_way_pair,
    memory_stream_pair,
    memory_stream_pump,
)

pytestmark = pytest.mark.ringtrio

# Wall-clock bound for one checker run: a hang fails the test instead of the
# suite (a full run takes well under a second on an idle machine).
LIMIT = 120.0


# ------------------------------------------------------------ memory streams


async def test_memory_send_stream_buffers_and_hooks() -> None:
    log: list[str] = []

    async def send_hook() -> None:
        log.append("send")

    async def wait_hook() -> None:
        log.append("wait")

    def close_hook() -> None:
        log.append("close")

    s = MemorySendStream(send_hook, wait_hook, close_hook)
    with assert_checkpoints():
        await s.send_all(b"abc")
    await s.send_all(memoryview(b"de"))
    with assert_checkpoints():
        await s.wait_send_all_might_not_block()
    assert log == ["send", "send", "wait"]

    assert s.get_data_nowait(2) == b"ab"
    assert await s.get_data() == b"cde"
    with pytest.raises(ringtrio.WouldBlock):
        s.get_data_nowait()
    with pytest.raises(ValueError):
        s.get_data_nowait(0)

    # get_data blocks until data arrives; an empty wait hook does not wake it.
    async with ringtrio.open_nursery() as nursery:

        async def getter() -> None:
            assert await s.get_data() == b"late"

        nursery.start_soon(getter)
        await wait_all_tasks_blocked()
        await s.wait_send_all_might_not_block()
        await wait_all_tasks_blocked()
        await s.send_all(b"late")

    await s.send_all(b"tail")
    with assert_checkpoints():
        await s.aclose()
    assert log[-1] == "close"
    with pytest.raises(ringtrio.ClosedResourceError):
        await s.send_all(b"x")
    with pytest.raises(ringtrio.ClosedResourceError):
        await s.wait_send_all_might_not_block()
    # Buffered data survives the close, then an empty read marks the end.
    assert await s.get_data() == b"tail"
    assert await s.get_data() == b""


async def test_memory_send_stream_conflict() -> None:
    s = MemorySendStream()
    with pytest.raises(BaseExceptionGroup) as info:
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(s.send_all, b"1")
            nursery.start_soon(s.send_all, b"2")
    assert info.group_contains(ringtrio.BusyResourceError)


async def test_memory_receive_stream() -> None:
    log: list[str] = []

    async def receive_hook() -> None:
        log.append("receive")

    r = MemoryReceiveStream(receive_hook, lambda: log.append("close"))
    r.put_data(b"hello")
    with assert_checkpoints():
        assert await r.receive_some(2) == b"he"
    assert await r.receive_some() == b"llo"
    r.put_data(b"x")
    r.put_eof()
    assert await r.receive_some() == b"x"
    assert await r.receive_some() == b""
    assert await r.receive_some() == b""
    assert log == ["receive"] * 5
    with pytest.raises(ringtrio.ClosedResourceError):
        r.put_data(b"after eof")

    r2 = MemoryReceiveStream()
    r2.put_data(b"dropped")
    r2.close()
    with pytest.raises(ringtrio.ClosedResourceError):
        await r2.receive_some()


async def test_memory_receive_stream_close_wakes_receiver() -> None:
    r = MemoryReceiveStream()

    async def receiver() -> None:
        with pytest.raises(ringtrio.ClosedResourceError):
            await r.receive_some(10)

    async with ringtrio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await wait_all_tasks_blocked()
        await r.aclose()


async def test_memory_stream_pump() -> None:
    s = MemorySendStream()
    r = MemoryReceiveStream()
    assert not memory_stream_pump(s, r)
    await s.send_all(b"12345")
    assert memory_stream_pump(s, r, max_bytes=2)
    assert await r.receive_some() == b"12"
    assert memory_stream_pump(s, r)
    assert await r.receive_some() == b"345"
    s.close()
    assert memory_stream_pump(s, r)  # the EOF moves too
    assert await r.receive_some() == b""

    s2, r2 = MemorySendStream(), MemoryReceiveStream()
    await s2.send_all(b"x")
    r2.close()
    with pytest.raises(ringtrio.BrokenResourceError):
        memory_stream_pump(s2, r2)


async def test_memory_stream_one_way_pair_flows_and_stalls() -> None:
    s, r = memory_stream_one_way_pair()
    await s.send_all(b"abc")
    assert await r.receive_some() == b"abc"

    # Unhook the pump: data stalls until pumped by hand.
    s.send_all_hook = None
    await s.send_all(b"stalled")
    with ringtrio.move_on_after(0.05) as scope:
        await r.receive_some()
    assert scope.cancelled_caught
    assert memory_stream_pump(s, r)
    assert await r.receive_some() == b"stalled"

    await s.aclose()  # the close hook pumps the EOF
    assert await r.receive_some() == b""


async def test_memory_stream_pair_is_bidirectional() -> None:
    left, right = memory_stream_pair()
    assert isinstance(left, abc.Stream)
    assert isinstance(left.send_stream, MemorySendStream)
    assert isinstance(left.receive_stream, MemoryReceiveStream)
    await left.send_all(b"123")
    assert await right.receive_some() == b"123"
    await right.send_all(b"456")
    assert await left.receive_some() == b"456"

    # Rewire left->right so that bytes move one at a time, by hand.
    left.send_stream.send_all_hook = None
    await left.send_all(b"xyz")
    got = []
    while memory_stream_pump(left.send_stream, right.receive_stream, max_bytes=1):
        got.append(await right.receive_some())
    assert got == [b"x", b"y", b"z"]

    await left.send_eof()
    assert memory_stream_pump(left.send_stream, right.receive_stream)
    assert await right.receive_some() == b""


# --------------------------------------------------------- lockstep streams


async def test_lockstep_send_waits_for_receiver() -> None:
    s, r = lockstep_stream_one_way_pair()
    log: list[str] = []

    async def sender() -> None:
        await s.send_all(b"abcdef")
        log.append("sent")

    async with ringtrio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await wait_all_tasks_blocked()
        assert log == []
        assert await r.receive_some(4) == b"abcd"
        await wait_all_tasks_blocked()
        assert log == []
        assert await r.receive_some() == b"ef"
    assert log == ["sent"]

    # wait_send_all_might_not_block returns only once a receiver waits.
    async with ringtrio.open_nursery() as nursery:

        async def waiter() -> None:
            await s.wait_send_all_might_not_block()
            log.append("writable")
            nursery.cancel_scope.cancel()

        nursery.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert log == ["sent"]
        await r.receive_some()
    assert log == ["sent", "writable"]

    s.close()
    assert await r.receive_some() == b""
    with pytest.raises(ringtrio.ClosedResourceError):
        await s.send_all(b"x")


async def test_lockstep_pair_roundtrip() -> None:
    left, right = lockstep_stream_pair()

    async def echo() -> None:
        data = await right.receive_some()
        await right.send_all(data.upper())

    async with ringtrio.open_nursery() as nursery:
        nursery.start_soon(echo)
        await left.send_all(b"ping")
        assert await left.receive_some() == b"PING"


# ------------------------------------------------------- checkers: passing


async def one_way_memory() -> tuple[Any, Any]:
    return memory_stream_one_way_pair()


async def one_way_lockstep() -> tuple[Any, Any]:
    return lockstep_stream_one_way_pair()


async def two_way_memory() -> tuple[Any, Any]:
    return memory_stream_pair()


async def two_way_lockstep() -> tuple[Any, Any]:
    return lockstep_stream_pair()


async def test_check_one_way_memory_stream() -> None:
    # Memory streams never clog, so there is no clogged maker of their own.
    with ringtrio.fail_after(LIMIT):
        await check_one_way_stream(one_way_memory, None)


async def test_check_one_way_memory_stream_with_lockstep_clog() -> None:
    with ringtrio.fail_after(LIMIT):
        await check_one_way_stream(one_way_memory, one_way_lockstep)


async def test_check_one_way_lockstep_stream() -> None:
    with ringtrio.fail_after(LIMIT):
        await check_one_way_stream(one_way_lockstep, one_way_lockstep)


async def test_check_two_way_memory_stream() -> None:
    with ringtrio.fail_after(LIMIT):
        await check_two_way_stream(two_way_memory, two_way_lockstep)


async def test_check_two_way_lockstep_stream() -> None:
    with ringtrio.fail_after(LIMIT):
        await check_two_way_stream(two_way_lockstep, two_way_lockstep)


async def test_check_half_closeable_memory_stream() -> None:
    with ringtrio.fail_after(LIMIT):
        await check_half_closeable_stream(two_way_memory, None)


async def test_check_half_closeable_lockstep_stream() -> None:
    # No clogged maker: a stapled lockstep stream's send_eof closes its send
    # side, which (correctly) wakes a blocked send_all with
    # ClosedResourceError rather than reporting a conflict.
    with ringtrio.fail_after(LIMIT):
        await check_half_closeable_stream(two_way_lockstep, None)


# ---------------------------------------------- checkers: catching bad streams


def assert_assertion_error(exc: BaseException) -> None:
    """A checker failure: an AssertionError, possibly raised inside one of
    the checker's nurseries (and so wrapped in exception groups)."""
    if isinstance(exc, BaseExceptionGroup):
        matched, _ = exc.split(AssertionError)
        assert matched is not None, f"no AssertionError in {exc!r}"
    else:
        assert isinstance(exc, AssertionError), f"unexpected {exc!r}"


class _NoCheckpointSend(abc.SendStream):
    """Buffers like a memory stream but never yields in send_all."""

    def __init__(self, inner: MemorySendStream) -> None:
        self.inner = inner

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.inner._outgoing.append(data)
        if self.inner.send_all_hook is not None:
            await self.inner.send_all_hook()

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CorruptingReceive(abc.ReceiveStream):
    """Delivers every chunk upper-cased."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return bytes(await self.inner.receive_some(max_bytes)).upper()

    async def aclose(self) -> None:
        await self.inner.aclose()


class _EofAfterClose(abc.ReceiveStream):
    """Reports end of stream, instead of ClosedResourceError, once closed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.closed = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.closed:
            await ringtrio.lowlevel.checkpoint()
            return b""
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()


@pytest.mark.parametrize("flaw", ["no_checkpoint", "corrupting", "eof_after_close"])
async def test_checker_catches_broken_streams(flaw: str) -> None:
    async def maker() -> tuple[Any, Any]:
        s, r = memory_stream_one_way_pair()
        if flaw == "no_checkpoint":
            return _NoCheckpointSend(s), r
        if flaw == "corrupting":
            return s, _CorruptingReceive(r)
        return s, _EofAfterClose(r)

    with pytest.raises(BaseException) as info:
        with ringtrio.fail_after(LIMIT):
            await check_one_way_stream(maker, None)
    assert_assertion_error(info.value)


async def test_half_closeable_checker_rejects_plain_stream() -> None:
    class NotHalfCloseable(abc.Stream):
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def send_all(self, data: bytes | bytearray | memoryview) -> None:
            await self.inner.send_all(data)

        async def wait_send_all_might_not_block(self) -> None:
            await self.inner.wait_send_all_might_not_block()

        async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
            return await self.inner.receive_some(max_bytes)

        async def aclose(self) -> None:
            await self.inner.aclose()

    async def maker() -> tuple[Any, Any]:
        a, b = memory_stream_pair()
        return NotHalfCloseable(a), NotHalfCloseable(b)

    # The two-way part passes; the half-close part must not.
    with ringtrio.fail_after(LIMIT):
        await check_two_way_stream(maker, None)
    with pytest.raises(BaseException) as info:
        with ringtrio.fail_after(LIMIT):
            await check_half_closeable_stream(maker, None)
    assert_assertion_error(info.value)
    assert "half-closeable" in str(info.value)


# ------------------------------------------------- checkers: real sockets


async def _fill(stream: Any) -> None:
    """Send until the kernel buffers are full and send_all blocks."""

    async def pour() -> None:
        while True:
            await stream.send_all(b"x" * 65536)

    async with ringtrio.open_nursery() as nursery:
        nursery.start_soon(pour)
        await wait_all_tasks_blocked(0.01)
        nursery.cancel_scope.cancel()


def _clogged(maker: Any) -> Any:
    async def clogged_maker() -> tuple[Any, Any]:
        left, right = await maker()
        await _fill(left)
        await _fill(right)
        return left, right

    return clogged_maker


async def tcp_pair() -> tuple[Any, Any]:
    from ringtrio.testing._check_streams import open_stream_to_socket_listener

    listeners = await ringtrio.open_tcp_listeners(0, host="127.0.0.1")
    (listener,) = listeners
    try:
        client = await open_stream_to_socket_listener(listener)
        server = await listener.accept()
    finally:
        await listener.aclose()
    return client, server


async def unix_socketpair() -> tuple[Any, Any]:
    left, right = ringtrio.socket.socketpair()
    return ringtrio.SocketStream(left), ringtrio.SocketStream(right)


async def test_check_half_closeable_tcp_stream() -> None:
    with ringtrio.fail_after(LIMIT):
        await check_half_closeable_stream(tcp_pair, _clogged(tcp_pair))


async def test_check_half_closeable_unix_stream() -> None:
    with ringtrio.fail_after(LIMIT):
        await check_half_closeable_stream(unix_socketpair, _clogged(unix_socketpair))


async def test_open_stream_to_socket_listener_wildcard_and_unix(tmp_path: Any) -> None:
    from ringtrio.testing._check_streams import open_stream_to_socket_listener

    with ringtrio.fail_after(LIMIT):
        # A listener on the IPv4 wildcard is reached through loopback.
        sock = ringtrio.socket.socket()
        sock.bind(("0.0.0.0", 0))
        sock.listen(1)
        listener = ringtrio.SocketListener(sock)
        async with listener:
            client = await open_stream_to_socket_listener(listener)
            server = await listener.accept()
            async with client, server:
                await client.send_all(b"hi")
                assert await server.receive_some() == b"hi"

        # And a Unix-domain listener by its path.
        path = str(tmp_path / "sock")
        usock = ringtrio.socket.socket(ringtrio.socket.AF_UNIX)
        usock.bind(path)
        usock.listen(1)
        async with ringtrio.SocketListener(usock) as ulistener:
            client = await open_stream_to_socket_listener(ulistener)
            server = await ulistener.accept()
            async with client, server:
                await server.send_all(b"yo")
                assert await client.receive_some() == b"yo"
