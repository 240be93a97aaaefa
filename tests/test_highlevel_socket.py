"""SocketStream, SocketListener, open_tcp_stream, serve_tcp ... (plain sync
tests around ringtrio.run)."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import resource
import socket as stdsocket
import struct
from typing import Any

import pytest

import ringtrio
import ringtrio.socket as rsocket
from ringtrio import lowlevel
from ringtrio._highlevel_open_tcp_stream import _reorder_targets
from ringtrio.testing import wait_all_tasks_blocked

TIMEOUT = 60  # generous: a noisy 2-core VM


def count_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def stream_pair() -> tuple[ringtrio.SocketStream, ringtrio.SocketStream]:
    [listener] = await ringtrio.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        port = listener.socket.getsockname()[1]
        async with ringtrio.open_nursery() as nursery:
            result: list[ringtrio.SocketStream] = []

            async def accept() -> None:
                result.append(await listener.accept())

            nursery.start_soon(accept)
            client = await ringtrio.open_tcp_stream("127.0.0.1", port)
    return client, result[0]


async def start_server(nursery: ringtrio.Nursery, handler: Any) -> tuple[str, int]:
    """serve_tcp(handler) on 127.0.0.1, port 0, in ``nursery``; its address."""
    listeners = await nursery.start(
        functools.partial(ringtrio.serve_tcp, handler, 0, host="127.0.0.1")
    )
    return listeners[0].socket.getsockname()  # type: ignore[no-any-return]


async def echo_handler(stream: ringtrio.SocketStream) -> None:
    async for chunk in stream:
        await stream.send_all(chunk)


def test_echo_through_serve_tcp_and_open_tcp_stream() -> None:
    async def main() -> None:
        before = count_fds()
        with ringtrio.fail_after(TIMEOUT):
            async with ringtrio.open_nursery() as nursery:
                port = (await start_server(nursery, echo_handler))[1]

                async def client(i: int) -> None:
                    async with await ringtrio.open_tcp_stream("127.0.0.1", port) as s:
                        assert s.getsockopt(stdsocket.IPPROTO_TCP, stdsocket.TCP_NODELAY)
                        for k in range(10):
                            msg = f"{i}:{k};".encode() * random.randint(1, 500)
                            await s.send_all(msg)
                            got = b""
                            while len(got) < len(msg):
                                got += await s.receive_some()
                            assert got == msg

                async with ringtrio.open_nursery() as clients:
                    for i in range(60):
                        clients.start_soon(client, i)
                nursery.cancel_scope.cancel()
        # The multishot accept's final CQE was awaited: nothing in flight.
        assert lowlevel.current_statistics().ops_in_flight == 0
        assert count_fds() == before

    ringtrio.run(main)


def test_serve_cancel_with_connections_racing_leaks_nothing() -> None:
    async def main() -> None:
        before = count_fds()
        handled = 0

        async def handler(stream: ringtrio.SocketStream) -> None:
            nonlocal handled
            handled += 1
            await stream.receive_some()

        for round_ in range(10):
            clients: list[stdsocket.socket] = []
            async with ringtrio.open_nursery() as nursery:
                addr = await start_server(nursery, handler)
                for _ in range(20 + round_):
                    clients.append(stdsocket.create_connection(addr))
                if round_ % 2:
                    await lowlevel.checkpoint()
                # Cancel while accepts are landing.
                nursery.cancel_scope.cancel()
            assert lowlevel.current_statistics().ops_in_flight == 0
            for c in clients:
                c.close()
        assert handled > 0
        assert count_fds() == before

    ringtrio.run(main)


def test_half_close() -> None:
    async def main() -> None:
        a, b = await stream_pair()
        async with a, b:
            await a.send_all(b"request")
            await a.send_eof()
            await a.send_eof()  # idempotent
            got = b""
            while chunk := await b.receive_some():
                got += chunk
            assert got == b"request"
            await b.send_all(b"response")
            await b.send_eof()
            assert await a.receive_some() == b"response"
            assert await a.receive_some() == b""
            with pytest.raises(ringtrio.ClosedResourceError, match="EOF"):
                await a.send_all(b"after eof")

    ringtrio.run(main)


def test_busy_resource_errors() -> None:
    async def main() -> None:
        a, b = await stream_pair()
        async with a, b:
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(a.receive_some)
                await wait_all_tasks_blocked()
                with pytest.raises(ringtrio.BusyResourceError, match="receiving"):
                    await a.receive_some()
                await b.send_all(b"x")
            # A send that cannot finish (the peer does not read).
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(a.send_all, b"x" * (32 * 1024 * 1024))
                await wait_all_tasks_blocked()
                with pytest.raises(ringtrio.BusyResourceError, match="sending"):
                    await a.send_all(b"y")
                with pytest.raises(ringtrio.BusyResourceError):
                    await a.send_eof()
                with pytest.raises(ringtrio.BusyResourceError):
                    await a.wait_send_all_might_not_block()
                nursery.cancel_scope.cancel()

    ringtrio.run(main)


def test_use_after_close_and_close_while_blocked() -> None:
    async def main() -> None:
        a, b = await stream_pair()
        errors: list[BaseException] = []

        async def blocked() -> None:
            try:
                await a.receive_some()
            except ringtrio.ClosedResourceError as exc:
                errors.append(exc)

        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(blocked)
            await wait_all_tasks_blocked()
            await a.aclose()
        assert len(errors) == 1
        await a.aclose()  # idempotent
        with pytest.raises(ringtrio.ClosedResourceError):
            await a.send_all(b"x")
        with pytest.raises(ringtrio.ClosedResourceError):
            await a.send_all(b"")
        with pytest.raises(ringtrio.ClosedResourceError):
            await a.receive_some()
        with pytest.raises(ringtrio.ClosedResourceError):
            await a.wait_send_all_might_not_block()
        with pytest.raises(ringtrio.ClosedResourceError):
            await a.send_eof()
        await b.aclose()

        [listener] = await ringtrio.open_tcp_listeners(0, host="127.0.0.1")
        async with ringtrio.open_nursery() as nursery:

            async def accept_blocked() -> None:
                with pytest.raises(ringtrio.ClosedResourceError):
                    await listener.accept()

            nursery.start_soon(accept_blocked)
            await wait_all_tasks_blocked()
            await listener.aclose()
        with pytest.raises(ringtrio.ClosedResourceError):
            await listener.accept()
        assert lowlevel.current_statistics().ops_in_flight == 0

    ringtrio.run(main)


def test_reset_by_peer_is_broken_resource_error() -> None:
    async def main() -> None:
        a, b = await stream_pair()
        # SO_LINGER 0: close sends an RST.
        b.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
        await b.aclose()
        with pytest.raises(ringtrio.BrokenResourceError) as info:
            with ringtrio.fail_after(TIMEOUT):
                for _ in range(1000):
                    await a.send_all(b"x" * 65536)
        assert isinstance(info.value.__cause__, (ConnectionResetError, BrokenPipeError))
        await a.aclose()

        c, d = await stream_pair()
        d.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
        await d.aclose()
        with pytest.raises(ringtrio.BrokenResourceError):
            await c.receive_some()
        await c.aclose()

    ringtrio.run(main)


def test_bad_arguments() -> None:
    async def main() -> None:
        a, b = await stream_pair()
        async with a, b:
            with pytest.raises(ValueError, match=">= 1"):
                await a.receive_some(0)
            with pytest.raises(ValueError, match=">= 1"):
                await a.receive_some(-5)
            with pytest.raises(TypeError):
                await a.receive_some("10")  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                await a.send_all("text")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="ringtrio socket"):
            ringtrio.SocketStream(stdsocket.socket())  # type: ignore[arg-type]
        with rsocket.socket(type=stdsocket.SOCK_DGRAM) as udp:
            with pytest.raises(ValueError, match="SOCK_STREAM"):
                ringtrio.SocketStream(udp)
        with rsocket.socket() as not_listening:
            with pytest.raises(ValueError, match="listen"):
                ringtrio.SocketListener(not_listening)
        with pytest.raises(ValueError, match="host must be"):
            await ringtrio.open_tcp_stream(None, 80)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="port must be"):
            await ringtrio.open_tcp_stream("127.0.0.1", "80")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="port must be"):
            await ringtrio.open_tcp_listeners("80")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="backlog"):
            await ringtrio.open_tcp_listeners(0, backlog=-1)
        with pytest.raises(TypeError):
            await ringtrio.open_unix_socket(123)  # type: ignore[arg-type]

    ringtrio.run(main)


def test_connection_refused_open_tcp_stream() -> None:
    async def main() -> None:
        before = count_fds()
        with stdsocket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            port = holder.getsockname()[1]
            with pytest.raises(OSError, match="all attempts to connect") as info:
                await ringtrio.open_tcp_stream("127.0.0.1", port)
            [cause] = info.value.__cause__.exceptions  # type: ignore[union-attr]
            assert isinstance(cause, ConnectionRefusedError)
        assert count_fds() == before

    ringtrio.run(main)


def test_happy_eyeballs_moves_on_to_the_next_address(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        [listener] = await ringtrio.open_tcp_listeners(0, host="127.0.0.1")
        port = listener.socket.getsockname()[1]
        refused = stdsocket.socket()
        refused.bind(("127.0.0.2", 0))
        real = rsocket.getaddrinfo

        async def fake_getaddrinfo(host, port_, *args, **kwargs):  # type: ignore[no-untyped-def]
            infos = await real("127.0.0.1", port_, *args, **kwargs)
            family, type_, proto, canon, _ = infos[0]
            return [
                # A black hole (never answers) and a refusal, then the real one.
                (family, type_, proto, canon, ("192.0.2.1", port_)),
                (family, type_, proto, canon, ("127.0.0.2", refused.getsockname()[1])),
                (family, type_, proto, canon, ("127.0.0.1", port_)),
            ]

        monkeypatch.setattr(rsocket, "getaddrinfo", fake_getaddrinfo)
        import ringtrio._socket as impl

        monkeypatch.setattr(impl, "getaddrinfo", fake_getaddrinfo)
        with ringtrio.fail_after(TIMEOUT):
            stream = await ringtrio.open_tcp_stream("example", port, happy_eyeballs_delay=0.05)
        assert stream.socket.getpeername() == ("127.0.0.1", port)
        await stream.aclose()
        await listener.aclose()
        refused.close()
        assert lowlevel.current_statistics().ops_in_flight == 0

    ringtrio.run(main)


def test_reorder_targets_puts_other_family_second() -> None:
    targets = [(10, "a"), (10, "b"), (2, "c"), (2, "d")]
    _reorder_targets(targets)
    assert targets == [(10, "a"), (2, "c"), (10, "b"), (2, "d")]


def test_open_tcp_listeners_ipv4_and_ipv6() -> None:
    async def main() -> None:
        listeners = await ringtrio.open_tcp_listeners(0, host="localhost")
        try:
            assert listeners
            for listener in listeners:
                assert listener.socket.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR)
                addr = listener.socket.getsockname()
                stream = await ringtrio.open_tcp_stream(addr[0], addr[1])
                server = await listener.accept()
                await stream.send_all(b"hi")
                assert await server.receive_some() == b"hi"
                await stream.aclose()
                await server.aclose()
        finally:
            for listener in listeners:
                await listener.aclose()
        with stdsocket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(OSError, match="while binding"):
                await ringtrio.open_tcp_listeners(taken.getsockname()[1], host="127.0.0.1")

    ringtrio.run(main)


def test_unix_socket_and_stapled_stream(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "sock")

    async def main() -> None:
        sock = rsocket.socket(stdsocket.AF_UNIX)
        sock.bind(path)
        sock.listen()
        async with ringtrio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: ringtrio.serve_listeners(
                    echo_handler, [ringtrio.SocketListener(sock)], task_status=task_status
                )
            )
            s1 = await ringtrio.open_unix_socket(path)
            s2 = await ringtrio.open_unix_socket(path)
            stapled = ringtrio.StapledStream(s1, s2)
            await stapled.send_all(b"to s1")
            assert await s1.receive_some() == b"to s1"
            await s2.send_all(b"to s2")
            assert await stapled.receive_some() == b"to s2"
            await stapled.send_eof()
            assert await s1.receive_some() == b""
            await ringtrio.aclose_forcefully(stapled)
            with pytest.raises(ringtrio.ClosedResourceError):
                await s2.receive_some()
            nursery.cancel_scope.cancel()
        with pytest.raises(FileNotFoundError):
            await ringtrio.open_unix_socket(path + ".missing")

    ringtrio.run(main)


def test_serve_backs_off_on_emfile(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="ringtrio.serve_listeners")

    async def main() -> None:
        handled = ringtrio.Event()

        async def handler(stream: ringtrio.SocketStream) -> None:
            await stream.send_all(b"served")
            handled.set()

        async with ringtrio.open_nursery() as nursery:
            addr = await start_server(nursery, handler)
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            client = stdsocket.socket()
            # Fill the fd table so that accepting fails with EMFILE.
            limit = count_fds() + 8
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
            fillers = []
            try:
                while True:
                    try:
                        fillers.append(os.open("/dev/null", os.O_RDONLY))
                    except OSError:
                        break
                client.connect(addr)
                with ringtrio.fail_after(TIMEOUT):
                    while not any("EMFILE" in r.getMessage() for r in caplog.records):
                        await ringtrio.sleep(0.02)
            finally:
                for fd in fillers:
                    os.close(fd)
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            # The server kept running and serves the connection now.
            with ringtrio.fail_after(TIMEOUT):
                await handled.wait()
            assert client.recv(10) == b"served"
            client.close()
            nursery.cancel_scope.cancel()
        assert lowlevel.current_statistics().ops_in_flight == 0

    ringtrio.run(main)


# ---------------------------------------------------------------------------
# The stress test: random cancellations, every byte hashed at both ends
# ---------------------------------------------------------------------------


def _stress(n_connections: int, bytes_per_connection: int, seed: int) -> None:
    rng = random.Random(seed)

    async def server_handler(stream: ringtrio.SocketStream) -> None:
        # Receive everything under random cancel scopes: a cancelled
        # receive_some either returned its bytes or consumed none.
        digest = hashlib.sha256()
        total = 0
        while True:
            with ringtrio.move_on_after(rng.choice([0, 0.0001, 0.001, 0.01])):
                data = await stream.receive_some(rng.choice([1, 100, 4096, 65536]))
                if not data:
                    break
                digest.update(data)
                total += len(data)
        await stream.send_all(struct.pack("!Q", total) + digest.digest())

    async def client(port: int, i: int, results: dict[int, bool]) -> None:
        stream = await ringtrio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            payload = rng.randbytes(bytes_per_connection)
            digest = hashlib.sha256()
            sent = 0
            lowlevel_send = i % 2 == 1
            while sent < len(payload):
                chunk = payload[sent : sent + rng.choice([1, 10, 1000, 20000, 100000])]
                if lowlevel_send:
                    # A socket-level send under a random cancel scope: the
                    # count it returns is exact; Cancelled means nothing went.
                    with ringtrio.move_on_after(rng.choice([0, 0.0001, 0.001])):
                        n = await stream.socket.send(chunk)
                        digest.update(chunk[:n])
                        sent += n
                else:
                    # send_all is never interrupted (a cancelled send_all
                    # leaves the stream in an unknown state, as in trio);
                    # the waits between sends are.
                    await stream.send_all(chunk)
                    digest.update(chunk)
                    sent += len(chunk)
                    with ringtrio.move_on_after(rng.choice([0, 0.0001])):
                        await ringtrio.sleep(rng.choice([0, 0.001]))
            await stream.send_eof()
            reply = b""
            while len(reply) < 40:
                with ringtrio.move_on_after(rng.choice([0, 0.001, 0.01])):
                    reply += await stream.receive_some(40 - len(reply))
            total, their_digest = struct.unpack("!Q", reply[:8])[0], reply[8:]
            results[i] = total == len(payload) and their_digest == digest.digest()

    async def main() -> None:
        before = count_fds()
        results: dict[int, bool] = {}
        with ringtrio.fail_after(TIMEOUT * 3):
            async with ringtrio.open_nursery() as nursery:
                port = (await start_server(nursery, server_handler))[1]
                async with ringtrio.open_nursery() as clients:
                    for i in range(n_connections):
                        clients.start_soon(client, port, i, results)
                nursery.cancel_scope.cancel()
        assert len(results) == n_connections
        assert all(results.values()), [i for i, ok in results.items() if not ok]
        assert lowlevel.current_statistics().ops_in_flight == 0
        assert count_fds() == before

    ringtrio.run(main)


def test_stress_random_cancellation_loses_no_byte() -> None:
    _stress(50, 100_000, seed=1)


@pytest.mark.slow
def test_stress_random_cancellation_loses_no_byte_200_connections() -> None:
    _stress(200, 200_000, seed=2)


# ---------------------------------------------------------------------------
# receive_some's multishot receive (_StreamReceiver)
# ---------------------------------------------------------------------------


def test_receive_some_cancelled_then_data_arrives_loses_nothing() -> None:
    async def main() -> None:
        a, b = await stream_pair()
        async with a, b:
            with ringtrio.move_on_after(0.05) as scope:
                await b.receive_some()
            assert scope.cancelled_caught
            # Arrives while nobody is receiving: queued by the armed receive.
            await a.send_all(b"hello")
            await wait_all_tasks_blocked(0.05)
            assert await b.receive_some(2) == b"he"  # split: the rest stays queued
            assert await b.receive_some() == b"llo"
            await a.send_eof()
            assert await b.receive_some() == b""
            assert await b.receive_some() == b""  # EOF is sticky

    ringtrio.run(main)


def test_receive_some_queued_data_is_still_a_checkpoint() -> None:
    async def main() -> None:
        a, b = await stream_pair()
        async with a, b:
            await a.send_all(b"x")
            await wait_all_tasks_blocked(0.05)
            with ringtrio.CancelScope() as scope:
                scope.cancel()
                with pytest.raises(ringtrio.Cancelled):
                    await b.receive_some()
                    # (never reached)
            assert await b.receive_some() == b"x"

    ringtrio.run(main)


def test_receive_some_pauses_a_reader_that_falls_behind() -> None:
    """More than the pause threshold is sent while the reader sleeps: the
    multishot is paused, re-armed as the reader catches up, and every byte
    arrives once, in order."""
    from ringtrio import _highlevel_socket

    data = random.Random(7).randbytes(4 * _highlevel_socket._RX_PAUSE_BYTES)

    async def main() -> None:
        a, b = await stream_pair()
        async with a, b:
            # Arm b's multishot receive first.
            await a.send_all(b"arm")
            assert await b.receive_some() == b"arm"
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(a.send_all, data)
                await wait_all_tasks_blocked(0.1)
                # The reader is asleep: the receive paused itself (cancelled,
                # final CQE in) once the threshold was queued.  (How far past
                # it depends on how many completions one pass brought.)
                rx = b._rx
                assert rx is not None and not rx.armed
                assert rx.queued >= _highlevel_socket._RX_PAUSE_BYTES
                got = bytearray()
                with ringtrio.fail_after(TIMEOUT):
                    while len(got) < len(data):
                        got += await b.receive_some(10_000)
            assert bytes(got) == data

    ringtrio.run(main)


def test_dropped_stream_ends_its_multishot_receive() -> None:
    import gc

    async def main() -> None:
        a, b = await stream_pair()
        with ringtrio.move_on_after(0.05):
            await b.receive_some()
        assert lowlevel.current_statistics().ops_in_flight >= 1
        sock = b.socket
        del b
        gc.collect()
        with ringtrio.fail_after(TIMEOUT):
            while lowlevel.current_statistics().ops_in_flight:
                await ringtrio.sleep(0.01)
        sock.close()
        await a.aclose()

    ringtrio.run(main)


def test_run_ends_with_an_armed_receive_and_leaks_nothing() -> None:
    before = count_fds()
    kept: list[object] = []

    async def main() -> None:
        a, b = await stream_pair()
        kept.extend((a, b))
        with ringtrio.move_on_after(0.05):
            await b.receive_some()
        # Returns with b's multishot receive still armed: the run cancels it
        # and frees the receive group after its final CQE.

    ringtrio.run(main)
    for s in kept:
        s.socket.close()  # type: ignore[attr-defined]
    kept.clear()
    assert count_fds() == before



def test_serve_tcp_closes_each_connection_when_its_handler_ends() -> None:
    """serve_tcp closes a connection when its handler returns or raises (the
    close runs as the handler task's finalizer); the handler's error still
    reaches the serving nursery, and nothing is left in flight."""
    before = count_fds()

    async def main() -> None:
        async def handler(stream: ringtrio.SocketStream) -> None:
            data = await stream.receive_some()
            if data == b"raise":
                raise ValueError("handler failed")
            await stream.send_all(data)

        with pytest.raises(BaseExceptionGroup) as info:
            with ringtrio.fail_after(TIMEOUT):
                async with ringtrio.open_nursery() as nursery:
                    port = (await start_server(nursery, handler))[1]
                    # A handler that returns: its connection is closed (EOF).
                    client = await ringtrio.open_tcp_stream("127.0.0.1", port)
                    await client.send_all(b"ping")
                    assert await client.receive_some() == b"ping"
                    assert await client.receive_some() == b""
                    await client.aclose()
                    # A handler that raises: closed too, and the error ends
                    # the server.
                    client = await ringtrio.open_tcp_stream("127.0.0.1", port)
                    await client.send_all(b"raise")
                    assert await client.receive_some() == b""
                    await client.aclose()
                    await ringtrio.sleep_forever()
        # (serve_tcp's own nurseries are strict, as trio's: the error comes
        # wrapped in exception groups.)
        matched, rest = info.value.split(ValueError)
        assert matched is not None and rest is None
        assert lowlevel.current_statistics().ops_in_flight == 0

    ringtrio.run(main)
    assert count_fds() == before
