"""SSLStream / SSLListener and the TLS-over-TCP helpers.

Certificates come from trustme (a throwaway CA per test session).  Most
tests run TLS over in-memory streams, where the test controls exactly when
ciphertext moves; the last ones run over real TCP on 127.0.0.1.
"""

from __future__ import annotations

import ssl
from functools import partial
from typing import Any

import pytest
import trustme

import ringtrio
from ringtrio._ssl import (
    NeedHandshakeError,
    SSLListener,
    SSLStream,
    open_ssl_over_tcp_listeners,
    open_ssl_over_tcp_stream,
    serve_ssl_over_tcp,
)
from ringtrio.testing import wait_all_tasks_blocked
from ringtrio.testing._check_streams import check_two_way_stream
from ringtrio.testing._memory_streams import (
    lockstep_stream_pair,
    memory_stream_pair,
    memory_stream_pump,
)

pytestmark = pytest.mark.ringtrio

# Wall-clock bound for any one test body (a hang fails the test, not the run).
LIMIT = 120.0

HOSTNAME = "ringtrio-test.example.org"

CA = trustme.CA()
SERVER_CERT = CA.issue_cert(HOSTNAME, "localhost", "127.0.0.1", "::1")


def make_server_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    SERVER_CERT.configure_cert(ctx)
    return ctx


SERVER_CTX = make_server_ctx()


@pytest.fixture(params=["tls12", "tls13"])
def client_ctx(request: pytest.FixtureRequest) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    CA.configure_trust(ctx)
    if request.param == "tls12":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def ssl_pair(
    transport_pair: tuple[Any, Any],
    client_ctx: ssl.SSLContext,
    server_ctx: ssl.SSLContext = SERVER_CTX,
    **kwargs: Any,
) -> tuple[SSLStream[Any], SSLStream[Any]]:
    client_transport, server_transport = transport_pair
    client = SSLStream(client_transport, client_ctx, server_hostname=HOSTNAME, **kwargs)
    server = SSLStream(server_transport, server_ctx, server_side=True, **kwargs)
    return client, server


async def handshake_both(client: SSLStream[Any], server: SSLStream[Any]) -> None:
    async with ringtrio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)


# ----------------------------------------------------------- basic exchange


@pytest.mark.parametrize("transport", ["memory", "lockstep"])
async def test_handshake_and_echo(client_ctx: ssl.SSLContext, transport: str) -> None:
    pair = memory_stream_pair() if transport == "memory" else lockstep_stream_pair()
    client, server = ssl_pair(pair, client_ctx)
    expected_version = "TLSv1.3" if client_ctx.minimum_version == ssl.TLSVersion.TLSv1_3 else "TLSv1.2"

    async def echo_server() -> None:
        while True:
            data = await server.receive_some()
            if not data:
                break
            await server.send_all(data)
        await server.aclose()

    with ringtrio.fail_after(LIMIT):
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(echo_server)
            await client.do_handshake()
            assert client.version() == expected_version
            for size in (1, 1000, 100_000):
                payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
                await client.send_all(payload)
                got = bytearray()
                while len(got) < size:
                    chunk = await client.receive_some()
                    assert chunk
                    got += chunk
                assert got == payload
            await client.aclose()


async def test_peer_certificate_and_alpn(client_ctx: ssl.SSLContext) -> None:
    server_ctx = make_server_ctx()
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    client_ctx.set_alpn_protocols(["foo", "http/1.1"])
    client, server = ssl_pair(memory_stream_pair(), client_ctx, server_ctx)

    for name in ("getpeercert", "selected_alpn_protocol", "cipher", "version"):
        with pytest.raises(NeedHandshakeError):
            getattr(client, name)
    # Not handshake-dependent, so forwarded straight away.
    assert client.server_side is False
    assert server.server_side is True
    assert client.server_hostname == HOSTNAME
    assert client.context is client_ctx
    assert "selected_alpn_protocol" in dir(client)
    with pytest.raises(AttributeError):
        client.no_such_attribute  # noqa: B018

    with ringtrio.fail_after(LIMIT):
        await handshake_both(client, server)
        # A second do_handshake is a no-op (and a checkpoint).
        await client.do_handshake()

    cert = client.getpeercert()
    assert ("DNS", HOSTNAME) in cert["subjectAltName"]
    assert client.selected_alpn_protocol() == "http/1.1"
    assert server.selected_alpn_protocol() == "http/1.1"
    assert client.cipher() == server.cipher()
    assert server.getpeercert() is None  # no client certificate requested


async def test_concurrent_handshake_callers_share_one_handshake(
    client_ctx: ssl.SSLContext,
) -> None:
    client, server = ssl_pair(memory_stream_pair(), client_ctx)
    with ringtrio.fail_after(LIMIT):
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(server.do_handshake)
        # Handshake on first use: send_all and receive_some trigger it.
        client2, server2 = ssl_pair(memory_stream_pair(), client_ctx)
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(client2.send_all, b"implicit")
            assert await server2.receive_some() == b"implicit"


# -------------------------------------------------------------- conformance


@pytest.mark.parametrize("https_compatible", [False, True])
async def test_ssl_stream_conformance(
    client_ctx: ssl.SSLContext, https_compatible: bool
) -> None:
    async def stream_maker() -> tuple[SSLStream[Any], SSLStream[Any]]:
        return ssl_pair(memory_stream_pair(), client_ctx, https_compatible=https_compatible)

    async def clogged_stream_maker() -> tuple[SSLStream[Any], SSLStream[Any]]:
        client, server = ssl_pair(lockstep_stream_pair(), client_ctx)
        # Without buffering, a handshake started lazily by the checker's
        # receive_some would itself block on the clogged side; do it first.
        await handshake_both(client, server)
        return client, server

    with ringtrio.fail_after(LIMIT):
        await check_two_way_stream(stream_maker, clogged_stream_maker)


# -------------------------------------------------------------------- unwrap


async def test_unwrap_returns_transport_and_trailing_bytes(
    client_ctx: ssl.SSLContext,
) -> None:
    client_transport, server_transport = memory_stream_pair()
    client, server = ssl_pair((client_transport, server_transport), client_ctx)

    with ringtrio.fail_after(LIMIT):
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"x")
            assert await server.receive_some() == b"x"

        # Hold server->client traffic so the server's close_notify and the
        # plaintext after it reach the client together.
        server_transport.send_stream.send_all_hook = None
        results: dict[str, Any] = {}

        async def client_side() -> None:
            results["client"] = await client.unwrap()

        async def server_side() -> None:
            results["server"] = await server.unwrap()
            await server_transport.send_all(b"plain")
            memory_stream_pump(server_transport.send_stream, client_transport.receive_stream)

        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(client_side)
            nursery.start_soon(server_side)

    client_raw, client_trailing = results["client"]
    server_raw, server_trailing = results["server"]
    assert client_raw is client_transport
    assert server_raw is server_transport
    assert client_trailing == b"plain"
    assert server_trailing == b""
    assert client.transport_stream is None

    # The transports carry plaintext from here on...
    server_transport.send_stream.send_all_hook = None
    await client_raw.send_all(b"raw")
    assert await server_raw.receive_some() == b"raw"
    # ...and the SSLStreams are closed.
    with pytest.raises(ringtrio.ClosedResourceError):
        await client.send_all(b"y")
    with pytest.raises(ringtrio.ClosedResourceError):
        await server.receive_some()
    await client.aclose()  # still fine: already closed


# ------------------------------------------------------------------ closing


async def test_aclose_sends_close_notify(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_pair(memory_stream_pair(), client_ctx)
    with ringtrio.fail_after(LIMIT):
        await handshake_both(client, server)
        await client.send_all(b"last words")
        await client.aclose()
        assert await server.receive_some() == b"last words"
        assert await server.receive_some() == b""  # close_notify, not an error
        await server.aclose()

    for stream in (client, server):
        with pytest.raises(ringtrio.ClosedResourceError):
            await stream.send_all(b"x")
        with pytest.raises(ringtrio.ClosedResourceError):
            await stream.receive_some()
        with pytest.raises(ringtrio.ClosedResourceError):
            await stream.do_handshake()
        with pytest.raises(ringtrio.ClosedResourceError):
            await stream.wait_send_all_might_not_block()
        with pytest.raises(ringtrio.ClosedResourceError):
            await stream.unwrap()
        await stream.aclose()


async def test_aclose_tolerates_vanished_peer(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = memory_stream_pair()
    client, server = ssl_pair((client_transport, server_transport), client_ctx)
    with ringtrio.fail_after(LIMIT):
        await handshake_both(client, server)
        # The peer's transport disappears without any TLS goodbye: sending
        # our close_notify fails, which aclose must swallow.
        await server_transport.aclose()
        await client.aclose()
    with pytest.raises(ringtrio.ClosedResourceError):
        await client.send_all(b"x")


async def test_aclose_while_peer_is_closing_too(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_pair(memory_stream_pair(), client_ctx)
    with ringtrio.fail_after(LIMIT):
        await handshake_both(client, server)
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(client.aclose)
            nursery.start_soon(server.aclose)


async def test_cancelled_aclose_closes_transport(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = lockstep_stream_pair()
    client, server = ssl_pair((client_transport, server_transport), client_ctx)
    with ringtrio.fail_after(LIMIT):
        await handshake_both(client, server)
        # Nobody reads on the lockstep transport: the close_notify cannot go
        # out, so aclose blocks until cancelled -- and then still closes.
        with ringtrio.move_on_after(0.05):
            await client.aclose()
        with pytest.raises(ringtrio.ClosedResourceError):
            await client_transport.send_all(b"x")
        with pytest.raises(ringtrio.ClosedResourceError):
            await client.receive_some()


@pytest.mark.parametrize("https_compatible", [False, True])
async def test_transport_eof_without_close_notify(
    client_ctx: ssl.SSLContext, https_compatible: bool
) -> None:
    client_transport, server_transport = memory_stream_pair()
    client, server = ssl_pair(
        (client_transport, server_transport), client_ctx, https_compatible=https_compatible
    )
    with ringtrio.fail_after(LIMIT):
        await handshake_both(client, server)
        await server.send_all(b"data")
        # The server's transport ends with no close_notify: a possible
        # truncation attack, unless the protocol is HTTPS-like.
        await server_transport.send_eof()
        assert await client.receive_some() == b"data"
        if https_compatible:
            assert await client.receive_some() == b""
        else:
            with pytest.raises(ringtrio.BrokenResourceError) as info:
                await client.receive_some()
            assert isinstance(info.value.__cause__, ssl.SSLError)
            # Broken for good.
            with pytest.raises(ringtrio.BrokenResourceError):
                await client.send_all(b"x")
        await client.aclose()


async def test_eof_during_handshake(client_ctx: ssl.SSLContext) -> None:
    for https_compatible in (False, True):
        client_transport, server_transport = memory_stream_pair()
        client = SSLStream(
            client_transport,
            client_ctx,
            server_hostname=HOSTNAME,
            https_compatible=https_compatible,
        )
        with ringtrio.fail_after(LIMIT):
            # The "server" hangs up without a word: the ClientHello goes
            # out, and the reply is end of stream.
            await server_transport.send_eof()
            if https_compatible:
                assert await client.receive_some() == b""
            else:
                with pytest.raises(ringtrio.BrokenResourceError):
                    await client.receive_some()
            await client.aclose()


async def test_concurrent_use_is_busy(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_pair(memory_stream_pair(), client_ctx)
    with ringtrio.fail_after(LIMIT):
        await handshake_both(client, server)
        with pytest.raises(BaseExceptionGroup) as info:
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(client.receive_some)
                nursery.start_soon(client.receive_some)
        assert info.group_contains(ringtrio.BusyResourceError)

        # unwrap needs both directions to itself.
        client2, server2 = ssl_pair(memory_stream_pair(), client_ctx)
        await handshake_both(client2, server2)
        with pytest.raises(BaseExceptionGroup) as info:
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(client2.receive_some)
                await wait_all_tasks_blocked()
                nursery.start_soon(client2.unwrap)
        assert info.group_contains(ringtrio.BusyResourceError)


async def test_transport_failure_breaks_stream(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = memory_stream_pair()
    client, server = ssl_pair((client_transport, server_transport), client_ctx)
    with ringtrio.fail_after(LIMIT):
        await handshake_both(client, server)
        await server_transport.receive_stream.aclose()
        # The transport's own error comes through, and the stream is broken.
        with pytest.raises(ringtrio.BrokenResourceError):
            await client.send_all(b"x" * 100)
        with pytest.raises(ringtrio.BrokenResourceError):
            await client.send_all(b"x")
        with pytest.raises(ringtrio.BrokenResourceError):
            await client.receive_some()
        await client.aclose()
        with pytest.raises(ringtrio.ClosedResourceError):
            await client.send_all(b"x")


async def test_corrupt_record_breaks_stream(client_ctx: ssl.SSLContext) -> None:
    client_transport, server_transport = memory_stream_pair()
    client, server = ssl_pair((client_transport, server_transport), client_ctx)
    with ringtrio.fail_after(LIMIT):
        await handshake_both(client, server)
        await server_transport.send_all(b"\x17\x03\x03\x00\x10" + b"\x00" * 16)
        with pytest.raises(ringtrio.BrokenResourceError) as info:
            await client.receive_some()
        assert isinstance(info.value.__cause__, ssl.SSLError)


async def test_cancelled_send_all_breaks_stream(client_ctx: ssl.SSLContext) -> None:
    client, server = ssl_pair(lockstep_stream_pair(), client_ctx)
    with ringtrio.fail_after(LIMIT):
        await handshake_both(client, server)
        # Nobody reads: the record is stuck half-sent when the cancel hits.
        with ringtrio.move_on_after(0.05) as scope:
            await client.send_all(b"x" * 100_000)
        assert scope.cancelled_caught
        with pytest.raises(ringtrio.BrokenResourceError):
            await client.send_all(b"more")
        await client.aclose()
        with pytest.raises(ringtrio.ClosedResourceError):
            await client.send_all(b"more")


async def test_cancelled_handshake_breaks_stream_and_wakes_waiters(
    client_ctx: ssl.SSLContext,
) -> None:
    client_transport, server_transport = memory_stream_pair()
    client = SSLStream(client_transport, client_ctx, server_hostname=HOSTNAME)
    outcomes: list[str] = []

    async def second_caller() -> None:
        try:
            await client.do_handshake()
        except ringtrio.BrokenResourceError:
            outcomes.append("broken")

    with ringtrio.fail_after(LIMIT):
        async with ringtrio.open_nursery() as nursery:
            # The server never answers, so the first handshake hangs.
            with ringtrio.move_on_after(0.05):
                async with ringtrio.open_nursery() as inner:
                    inner.start_soon(client.do_handshake)
                    await wait_all_tasks_blocked()
                    nursery.start_soon(second_caller)
                    await wait_all_tasks_blocked()
        assert outcomes == ["broken"]
        with pytest.raises(ringtrio.BrokenResourceError):
            await client.do_handshake()
        with pytest.raises(ringtrio.BrokenResourceError):
            await client.receive_some()
        await client.aclose()


# --------------------------------------------------------- bad certificates


@pytest.mark.parametrize("problem", ["untrusted", "wrong_hostname"])
async def test_bad_certificate(client_ctx: ssl.SSLContext, problem: str) -> None:
    if problem == "untrusted":
        ctx = ssl.create_default_context()
        trustme.CA().configure_trust(ctx)  # some other CA
        hostname = HOSTNAME
    else:
        ctx = client_ctx
        hostname = "not-the-server.example.org"
    client_transport, server_transport = memory_stream_pair()
    client = SSLStream(client_transport, ctx, server_hostname=hostname)
    server = SSLStream(server_transport, SERVER_CTX, server_side=True)
    errors: dict[str, BaseException] = {}

    async def attempt(name: str, stream: SSLStream[Any]) -> None:
        try:
            await stream.do_handshake()
        except ringtrio.BrokenResourceError as exc:
            errors[name] = exc
        finally:
            await stream.aclose()

    with ringtrio.fail_after(LIMIT):
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(attempt, "client", client)
            nursery.start_soon(attempt, "server", server)

    assert isinstance(errors["client"].__cause__, ssl.SSLCertVerificationError)
    # The server learns of it through the client's alert (or the closed
    # transport): broken either way.
    assert "server" in errors
    with pytest.raises(ringtrio.ClosedResourceError):
        await client.send_all(b"x")


async def test_bad_certificate_then_operations_are_broken(client_ctx: ssl.SSLContext) -> None:
    ctx = ssl.create_default_context()  # trusts the system CAs, not ours
    client_transport, server_transport = memory_stream_pair()
    client = SSLStream(client_transport, ctx, server_hostname=HOSTNAME)
    server = SSLStream(server_transport, SERVER_CTX, server_side=True)

    async def serve() -> None:
        with pytest.raises(ringtrio.BrokenResourceError):
            await server.do_handshake()

    with ringtrio.fail_after(LIMIT):
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(serve)
            with pytest.raises(ringtrio.BrokenResourceError) as info:
                await client.send_all(b"secret")
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
            for op in (client.send_all(b"x"), client.receive_some(), client.do_handshake()):
                with pytest.raises(ringtrio.BrokenResourceError):
                    await op
            # As in trio, no alert is sent from the error path; the server
            # learns of the failure when the transport closes.
            await client.aclose()


# ------------------------------------------------------------- SSLListener


async def test_ssl_listener_wraps_accepted_streams(client_ctx: ssl.SSLContext) -> None:
    class PairListener(ringtrio.abc.Listener[Any]):
        def __init__(self) -> None:
            self.closed = False
            self.client_ends: list[Any] = []

        async def accept(self) -> Any:
            await ringtrio.lowlevel.checkpoint()
            client_end, server_end = memory_stream_pair()
            self.client_ends.append(client_end)
            return server_end

        async def aclose(self) -> None:
            self.closed = True

    transport_listener = PairListener()
    listener = SSLListener(transport_listener, SERVER_CTX, https_compatible=True)
    assert listener.transport_listener is transport_listener
    with ringtrio.fail_after(LIMIT):
        server = await listener.accept()
        assert isinstance(server, SSLStream)
        assert server.server_side
        client = SSLStream(
            transport_listener.client_ends[0], client_ctx, server_hostname=HOSTNAME
        )
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"hello")
            assert await server.receive_some() == b"hello"
        await listener.aclose()
    assert transport_listener.closed


# --------------------------------------------------------------- real TCP


async def test_ssl_echo_over_tcp(client_ctx: ssl.SSLContext) -> None:
    async def echo(stream: SSLStream[Any]) -> None:
        async for chunk in stream:
            await stream.send_all(chunk)

    with ringtrio.fail_after(LIMIT):
        async with ringtrio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(serve_ssl_over_tcp, echo, 0, SERVER_CTX, host="127.0.0.1")
            )
            (listener,) = listeners
            assert isinstance(listener, SSLListener)
            port = listener.transport_listener.socket.getsockname()[1]

            stream = await open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=client_ctx)
            async with stream:
                await stream.do_handshake()
                assert ("IP Address", "127.0.0.1") in stream.getpeercert()["subjectAltName"]
                payload = bytes(range(256)) * 1024
                sent = received = 0

                async def sender() -> None:
                    nonlocal sent
                    for i in range(0, len(payload), 10_000):
                        await stream.send_all(payload[i : i + 10_000])
                        sent += 1

                got = bytearray()
                async with ringtrio.open_nursery() as inner:
                    inner.start_soon(sender)
                    while len(got) < len(payload):
                        chunk = await stream.receive_some()
                        assert chunk
                        got += chunk
                        received += 1
                assert got == payload
            nursery.cancel_scope.cancel()


async def test_ssl_over_tcp_conformance(client_ctx: ssl.SSLContext) -> None:
    async def stream_maker() -> tuple[SSLStream[Any], SSLStream[Any]]:
        listeners = await open_ssl_over_tcp_listeners(0, SERVER_CTX, host="127.0.0.1")
        (listener,) = listeners
        port = listener.transport_listener.socket.getsockname()[1]
        try:
            client = await open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=client_ctx)
            server = await listener.accept()
        finally:
            await listener.aclose()
        return client, server

    with ringtrio.fail_after(LIMIT):
        await check_two_way_stream(stream_maker, None)


async def test_open_ssl_over_tcp_stream_checks_hostname_by_default() -> None:
    async def close_it(stream: SSLStream[Any]) -> None:
        await stream.aclose()

    # The default context trusts the system CAs, not our throwaway CA.
    with ringtrio.fail_after(LIMIT):
        async with ringtrio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(serve_ssl_over_tcp, close_it, 0, SERVER_CTX, host="127.0.0.1")
            )
            port = listeners[0].transport_listener.socket.getsockname()[1]
            stream = await open_ssl_over_tcp_stream("127.0.0.1", port)
            with pytest.raises(ringtrio.BrokenResourceError) as info:
                await stream.do_handshake()
            assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_receive_some_with_ciphertext_queued_survives_deadlines_shorter_than_a_pass() -> None:
    # Issue 11: 20 TLS streams over socketpairs with data waiting; every
    # receive_some(100) under a 10 us deadline, far shorter than one
    # scheduler pass over the readers.  A read whose ciphertext is already
    # in the transport takes it (the transport's receive checks for
    # cancellation, takes the data, then yields shielded) and the transport
    # lock is taken without a yield when free.  (trio 0.35 delivers on none
    # of these attempts: its lock acquisition yields, the deadline expires
    # meanwhile, and the transport receive raises Cancelled every time.)
    readers, attempts = 20, 40
    client_ctx = ssl.create_default_context()
    CA.configure_trust(client_ctx)

    counts = [0] * readers

    async def reader(i: int) -> None:
        a, b = ringtrio.socket.socketpair()
        client = SSLStream(ringtrio.SocketStream(a), client_ctx, server_hostname=HOSTNAME)
        server = SSLStream(ringtrio.SocketStream(b), SERVER_CTX, server_side=True)
        async with client, server:
            await handshake_both(client, server)
            await server.send_all(b"y" * (100 * attempts))
            for _ in range(attempts):
                with ringtrio.move_on_after(10e-6):
                    await client.receive_some(100)
                    counts[i] += 1

    async with ringtrio.open_nursery() as nursery:
        for i in range(readers):
            nursery.start_soon(reader, i)
    assert min(counts) >= attempts // 2, counts
