"""ringtrio.socket: ring-backed sockets (plain sync tests around ringtrio.run)."""

from __future__ import annotations

import array
import errno
import os
import random
import socket as stdsocket

import pytest

import ringtrio
import ringtrio.socket as rsocket
from ringtrio import lowlevel
from ringtrio._core import _buffers
from ringtrio.testing import wait_all_tasks_blocked


def count_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def has_ipv6() -> bool:
    try:
        with stdsocket.socket(stdsocket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


FAMILIES = [(stdsocket.AF_INET, "127.0.0.1")]
if has_ipv6():
    FAMILIES.append((stdsocket.AF_INET6, "::1"))


async def tcp_pair(family: int = stdsocket.AF_INET, host: str = "127.0.0.1"):
    """(listener, client, server) connected over loopback."""
    lst = rsocket.socket(family)
    lst.bind((host, 0))
    lst.listen()
    client = rsocket.socket(family)
    result = {}
    async with ringtrio.open_nursery() as nursery:

        async def accept() -> None:
            result["server"] = await lst.accept()

        nursery.start_soon(accept)
        await client.connect(lst.getsockname())
    server, addr = result["server"]
    assert addr == client.getsockname()
    return lst, client, server


def test_constants_and_helpers_are_reexported() -> None:
    for name in ("AF_INET", "AF_INET6", "AF_UNIX", "SOCK_STREAM", "SOCK_DGRAM", "SOL_SOCKET",
                 "SO_REUSEADDR", "IPPROTO_TCP", "TCP_NODELAY", "MSG_PEEK", "SHUT_WR", "AI_PASSIVE"):
        assert getattr(rsocket, name) == getattr(stdsocket, name), name
    assert rsocket.inet_pton is stdsocket.inet_pton
    assert rsocket.gaierror is stdsocket.gaierror
    assert not hasattr(rsocket, "gethostbyname")  # blocking: use getaddrinfo
    with pytest.raises(TypeError, match="cannot be instantiated"):
        rsocket.SocketType()


@pytest.mark.parametrize("family,host", FAMILIES)
def test_tcp_round_trip(family: int, host: str) -> None:
    async def main() -> None:
        lst, client, server = await tcp_pair(family, host)
        with lst, client, server:
            assert await client.send(b"hello") == 5
            assert await server.recv(100) == b"hello"
            buf = bytearray(10)
            await server.send(memoryview(b"world!"))
            assert await client.recv_into(buf) == 6
            assert buf[:6] == b"world!"
            assert await client.sendmsg([b"ab", b"cd"]) == 4
            data, anc, flags, addr = await server.recvmsg(10)
            assert (data, anc, flags) == (b"abcd", [], 0)
            await server.send(b"peek")
            assert await client.recv(10, stdsocket.MSG_PEEK) == b"peek"
            assert await client.recv(10) == b"peek"
            client.shutdown(stdsocket.SHUT_WR)
            assert client.did_shutdown_SHUT_WR
            assert await server.recv(10) == b""  # EOF
            assert lowlevel.current_statistics().ops_in_flight == 0

    ringtrio.run(main)


def test_socketpair_and_ancillary_data() -> None:
    async def main() -> None:
        a, b = rsocket.socketpair()
        r, w = os.pipe()
        try:
            with a, b:
                fds = array.array("i", [r])
                await a.sendmsg([b"x"], [(stdsocket.SOL_SOCKET, stdsocket.SCM_RIGHTS, fds)])
                data, anc, flags, _ = await b.recvmsg(10, stdsocket.CMSG_SPACE(fds.itemsize))
                assert data == b"x"
                [(level, type_, payload)] = anc
                assert (level, type_) == (stdsocket.SOL_SOCKET, stdsocket.SCM_RIGHTS)
                received = array.array("i")
                received.frombytes(payload)
                os.write(w, b"via passed fd")
                assert os.read(received[0], 100) == b"via passed fd"
                os.close(received[0])
                await b.send(b"back")
                assert await a.recvfrom(10) == (b"back", None)
        finally:
            os.close(r)
            os.close(w)

    ringtrio.run(main)


@pytest.mark.parametrize("family,host", FAMILIES)
def test_udp_round_trip(family: int, host: str) -> None:
    async def main() -> None:
        with rsocket.socket(family, stdsocket.SOCK_DGRAM) as a, rsocket.socket(
            family, stdsocket.SOCK_DGRAM
        ) as b:
            a.bind((host, 0))
            await b.bind((host, 0))  # trio style works too
            assert await b.sendto(b"ping", a.getsockname()) == 4
            data, addr = await a.recvfrom(100)
            assert data == b"ping"
            assert addr[:2] == b.getsockname()[:2]
            assert await a.sendto(b"pong", 0, addr) == 4
            buf = bytearray(2)
            # A datagram bigger than the buffer is truncated, as with the stdlib.
            n, addr2 = await b.recvfrom_into(buf)
            assert (n, bytes(buf)) == (2, b"po")
            assert addr2[:2] == a.getsockname()[:2]
            await b.connect(a.getsockname())
            await b.send(b"connected")
            assert await a.recv(100) == b"connected"

    ringtrio.run(main)


def test_getaddrinfo_and_getnameinfo() -> None:
    async def main() -> None:
        infos = await rsocket.getaddrinfo("localhost", 80, type=stdsocket.SOCK_STREAM)
        assert infos
        assert {info[4][0] for info in infos} <= {"127.0.0.1", "::1"}
        # Numeric: same answer as the stdlib, no thread needed.
        assert await rsocket.getaddrinfo("127.0.0.1", 80, type=stdsocket.SOCK_STREAM) == (
            stdsocket.getaddrinfo("127.0.0.1", 80, type=stdsocket.SOCK_STREAM)
        )
        host, port = await rsocket.getnameinfo(("127.0.0.1", 80), stdsocket.NI_NUMERICSERV)
        assert port == "80"
        with pytest.raises(stdsocket.gaierror):
            await rsocket.getaddrinfo("no-such-host.invalid", 80)

    ringtrio.run(main)


def test_connection_refused() -> None:
    async def main() -> None:
        # A port that is bound but not listening refuses connections.
        with stdsocket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            sock = rsocket.socket()
            with sock:
                with pytest.raises(ConnectionRefusedError, match="Error connecting to"):
                    await sock.connect(holder.getsockname())

    ringtrio.run(main)


def test_bad_input_gives_clear_errors() -> None:
    async def main() -> None:
        a, b = rsocket.socketpair()
        with a, b:
            with pytest.raises(ValueError, match="negative buffersize"):
                await a.recv(-1)
            with pytest.raises(TypeError, match="must be an int"):
                await a.recv(1.5)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="negative buffersize"):
                await a.recv_into(bytearray(4), -1)
            with pytest.raises(ValueError, match="buffer too small"):
                await a.recv_into(bytearray(4), 10)
            with pytest.raises(TypeError, match="writable"):
                await a.recv_into(b"readonly")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="negative"):
                await a.recvmsg(10, -1)
            with pytest.raises(ValueError, match="negative"):
                await a.recvfrom(-5)
            with pytest.raises(TypeError, match="not 'str'"):
                await a.send("text")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="iterable of buffers"):
                await a.sendmsg(b"not a list")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="level, type, data"):
                await a.sendmsg([b"x"], [("bad",)])  # type: ignore[list-item]
            assert await a.recv(0) == b""
        tcp = rsocket.socket()
        with tcp:
            with pytest.raises(ValueError, match=r"\(host, port\)"):
                await tcp.connect(("127.0.0.1",))
            with pytest.raises(ValueError, match=r"\(host, port\)"):
                await tcp.connect("127.0.0.1:80")
            with pytest.raises(OverflowError, match="0-65535"):
                await tcp.connect(("127.0.0.1", 70000))
            with pytest.raises(TypeError, match="host must be"):
                await tcp.connect((1234, 80))
            with pytest.raises(TypeError, match="port must be"):
                await tcp.connect(("127.0.0.1", None))
        # connect() closes the socket when it fails before/while connecting
        # only on cancellation; a bad address leaves it usable:
        udp = rsocket.socket(type=stdsocket.SOCK_DGRAM)
        with udp:
            with pytest.raises(TypeError, match="destination"):
                await udp.sendto(b"x", None)
            with pytest.raises(TypeError, match="2 or 3 arguments"):
                await udp.sendto(b"x")
            with pytest.raises(stdsocket.gaierror):
                await udp.sendto(b"x", ("no-such-host.invalid", 9))
        unix = rsocket.socket(stdsocket.AF_UNIX)
        with unix:
            with pytest.raises(OSError, match="too long"):
                await unix.connect("/tmp/" + "x" * 200)
            with pytest.raises(TypeError, match="AF_UNIX address"):
                await unix.connect(("127.0.0.1", 80))

    ringtrio.run(main)


def test_use_after_close_is_ebadf() -> None:
    async def main() -> None:
        a, b = rsocket.socketpair()
        b.close()
        a.close()
        a.close()  # idempotent
        assert a.fileno() == -1
        for op in (a.recv(1), a.send(b"x"), a.accept(), a.wait_readable()):
            with pytest.raises(OSError) as info:
                await op
            assert info.value.errno == errno.EBADF

    ringtrio.run(main)


def test_close_while_blocked_wakes_with_closed_resource_error() -> None:
    async def main() -> None:
        before = count_fds()
        a, b = rsocket.socketpair()
        lst = rsocket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        errors: list[BaseException] = []

        async def blocked(fn, *args) -> None:
            try:
                await fn(*args)
            except ringtrio.ClosedResourceError as exc:
                errors.append(exc)

        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(blocked, a.recv, 100)
            nursery.start_soon(blocked, a.recv_into, bytearray(10))
            nursery.start_soon(blocked, lst.accept)
            nursery.start_soon(blocked, a.wait_readable)
            await wait_all_tasks_blocked()
            assert lowlevel.current_statistics().ops_in_flight == 4
            a.close()
            lst.close()
        assert len(errors) == 4
        assert lowlevel.current_statistics().ops_in_flight == 0
        b.close()
        # The fd numbers were released once the kernel let go of them.
        assert count_fds() == before

    ringtrio.run(main)


def test_cancelled_recv_loses_no_bytes() -> None:
    async def main() -> None:
        a, b = rsocket.socketpair()
        with a, b:
            got = bytearray()
            expected = bytearray()
            for i in range(200):
                payload = os.urandom(random.randint(1, 3000))
                expected += payload
                async with ringtrio.open_nursery() as nursery:

                    async def reader() -> None:
                        with ringtrio.CancelScope() as scope:
                            reader_scope.append(scope)
                            while len(got) < len(expected):
                                got.extend(await a.recv(random.randint(1, 4096)))

                    reader_scope: list[ringtrio.CancelScope] = []
                    nursery.start_soon(reader)
                    if i % 3 == 0:
                        await wait_all_tasks_blocked()
                    await b.send(payload)
                    if i % 2:
                        await lowlevel.checkpoint()
                    if reader_scope:
                        reader_scope[0].cancel()
                # whatever was not read is still in the socket
                while len(got) < len(expected):
                    got.extend(await a.recv(65536))
            assert got == expected

    ringtrio.run(main)


def test_cancelled_accept_and_connect_racing_completion_leak_no_fd() -> None:
    async def main() -> None:
        before = count_fds()
        lst = rsocket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(512)
        addr = lst.getsockname()
        accepted: list[rsocket.SocketType] = []
        outcomes = {"accepted": 0, "cancelled": 0, "connected": 0, "connect_cancelled": 0}
        clients: list[stdsocket.socket] = []
        for i in range(150):
            async with ringtrio.open_nursery() as nursery:
                scope = ringtrio.CancelScope()

                async def acceptor() -> None:
                    with scope:
                        sock, _ = await lst.accept()
                        accepted.append(sock)
                        outcomes["accepted"] += 1
                        return
                    outcomes["cancelled"] += 1

                nursery.start_soon(acceptor)
                if i % 2:
                    await wait_all_tasks_blocked()
                # The connection completes in the kernel right away (backlog)
                # and the cancel goes in with the same enter.
                c = stdsocket.create_connection(addr)
                clients.append(c)
                if i % 3 == 0:
                    await lowlevel.checkpoint()
                scope.cancel()
            # Racing connect: the socket is either connected (result
            # delivered) or closed (cancelled, as trio).
            conn = rsocket.socket()
            with ringtrio.CancelScope() as cscope:
                if i % 2:
                    cscope.cancel()
                    await conn.connect(addr)
                else:
                    async with ringtrio.open_nursery() as n2:
                        n2.start_soon(conn.connect, addr)
                        await lowlevel.checkpoint()
                        cscope.cancel()
            if conn.fileno() >= 0:
                outcomes["connected"] += 1
            else:
                outcomes["connect_cancelled"] += 1
            conn.close()
        # Connections whose accept was cancelled are still in the backlog:
        # drain them.  Every connection is accounted for exactly once.
        lst_std = stdsocket.socket(fileno=os.dup(lst.fileno()))
        lst_std.setblocking(False)
        backlog = []
        while True:
            try:
                backlog.append(lst_std.accept()[0])
            except BlockingIOError:
                break
        # (the racing connects also queued connections; they are in backlog too)
        assert outcomes["accepted"] + outcomes["cancelled"] == 150
        assert outcomes["accepted"] > 0 or outcomes["cancelled"] > 0
        for s in backlog:
            s.close()
        lst_std.close()
        for s in accepted:
            s.close()
        for c in clients:
            c.close()
        lst.close()
        assert lowlevel.current_statistics().ops_in_flight == 0
        print(outcomes)
        assert count_fds() == before, outcomes

    ringtrio.run(main)


def test_wait_readable_writable() -> None:
    async def main() -> None:
        a, b = rsocket.socketpair()
        with a, b:
            await a.wait_writable()
            assert not a.is_readable()
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(a.wait_readable)
                await wait_all_tasks_blocked()
                await b.send(b"x")
            assert a.is_readable()
            await rsocket.wait_readable(a.fileno())
            await rsocket.wait_writable(b)

    ringtrio.run(main)


def test_from_stdlib_socket_and_fromfd() -> None:
    async def main() -> None:
        left, right = stdsocket.socketpair()
        a = rsocket.from_stdlib_socket(left)
        assert left.gettimeout() == 0.0  # made non-blocking
        b = rsocket.fromfd(right.fileno(), stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
        right.close()
        with a, b:
            await a.send(b"hi")
            assert await b.recv(10) == b"hi"
            assert a.family == stdsocket.AF_UNIX and a.type == stdsocket.SOCK_STREAM
            assert "ringtrio.socket.socket" in repr(a)
            d = a.dup()
            with d:
                await d.send(b"dup")
                assert await b.recv(10) == b"dup"
        with pytest.raises(TypeError):
            rsocket.from_stdlib_socket("nope")  # type: ignore[arg-type]

    ringtrio.run(main)


def test_recv_falls_back_when_the_buffer_ring_is_empty() -> None:
    # More receives completing in one pass than the ring has buffers: the
    # extra ones get ENOBUFS and read into a private buffer.  No byte lost.
    n = _buffers.RUNTIME_RECV_COUNT + 64
    rings: list[object] = []

    async def main() -> None:
        pairs = [rsocket.socketpair() for _ in range(n)]
        results: dict[int, bytes] = {}
        try:
            async with ringtrio.open_nursery() as nursery:

                async def reader(i: int) -> None:
                    results[i] = await pairs[i][0].recv(65536)

                for i in range(n):
                    nursery.start_soon(reader, i)
                await wait_all_tasks_blocked()
                for i in range(n):
                    pairs[i][1]._sock.send(b"%d" % i * 100)  # sync: all in one pass
            assert results == {i: b"%d" % i * 100 for i in range(n)}
            ring = _buffers.runtime_recv_ring()
            assert ring is not None
            rings.append(ring)
            stats = ring.statistics()
            assert stats.selected == stats.recycled
            assert stats.selected >= _buffers.RUNTIME_RECV_COUNT
        finally:
            for x, y in pairs:
                x.close()
                y.close()

    ringtrio.run(main)
    # Freed when the run ended.
    assert rings[0].closed  # type: ignore[attr-defined]


def test_lowlevel_wait_readable_on_a_pipe_and_notify_closing() -> None:
    import ringtrio.lowlevel as L

    r, w = os.pipe()
    log: list[object] = []

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:

            async def reader() -> None:
                await L.wait_readable(r)
                log.append("readable")

            nursery.start_soon(reader)
            await ringtrio.testing.wait_all_tasks_blocked()
            with pytest.raises(ringtrio.BusyResourceError):
                await L.wait_readable(r)
            os.write(w, b"x")

        async def blocked_writer_side() -> None:
            try:
                await L.wait_readable(w)  # a pipe's write end never becomes readable
            except ringtrio.ClosedResourceError:
                log.append("closed")

        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(blocked_writer_side)
            await ringtrio.testing.wait_all_tasks_blocked()
            L.notify_closing(w)
        # (A task's own code is not KI-protected: Ctrl-C raises in it.)
        assert not L.currently_ki_protected()

    try:
        ringtrio.run(main)
    finally:
        os.close(r)
        os.close(w)
    assert log == ["readable", "closed"]
