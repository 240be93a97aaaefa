"""socket.set_custom_hostname_resolver / set_custom_socket_factory with
abc.HostnameResolver / abc.SocketFactory, lowlevel.encode_hostname, and the
high-level helpers on a fake network built from them.

Every scenario runs under trio and under ringtrio and must observe the same
thing (trio's fake-network tests in test_highlevel_open_tcp_stream.py and
test_highlevel_open_tcp_listeners.py use these hooks the same way).
"""

from __future__ import annotations

import errno
import socket as stdsocket
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import pytest
import trio

import ringtrio

from _differential import lib, same_under_both  # noqa: F401  (lib: a fixture)


def run_both_on_mock_clock(scenario: Callable[[ModuleType], Awaitable[Any]]) -> Any:
    """same_under_both, on an autojumping MockClock (timing scenarios)."""
    results = []
    for module in (trio, ringtrio):
        clock = module.testing.MockClock(autojump_threshold=0)
        results.append(module.run(scenario, module, clock=clock))
    assert results[1] == results[0], f"trio: {results[0]!r}\nringtrio: {results[1]!r}"
    return results[0]


def recording_resolver(lib: ModuleType, answers: dict[bytes, list[Any]]) -> Any:
    class Recording(lib.abc.HostnameResolver):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            self.calls: list[Any] = []

        async def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
            self.calls.append(("getaddrinfo", host, port, family, type, proto, flags))
            await lib.lowlevel.checkpoint()
            return answers.get(host, [])

        async def getnameinfo(self, sockaddr: Any, flags: int) -> Any:
            self.calls.append(("getnameinfo", sockaddr, flags))
            return ("fake.name", "fake-service")

    return Recording()


def test_resolver_is_asked_for_names_only_and_gets_encoded_bytes() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        entry = (stdsocket.AF_INET, stdsocket.SOCK_STREAM, 6, "", ("10.0.0.1", 80))
        resolver = recording_resolver(lib, {b"example.test": [entry], b"xn--caf-dma.test": [entry]})
        seen: list[Any] = [("first set returns", lib.socket.set_custom_hostname_resolver(resolver))]
        seen.append(await lib.socket.getaddrinfo("example.test", 80))
        seen.append(await lib.socket.getaddrinfo(b"example.test", "80", stdsocket.AF_INET, stdsocket.SOCK_STREAM))
        seen.append(await lib.socket.getaddrinfo("café.test", 80))
        # Numeric: resolved on the spot, never asked.
        seen.append(len(await lib.socket.getaddrinfo("127.0.0.1", 80)) > 0)
        seen.append(await lib.socket.getnameinfo(("127.0.0.1", 80), 0))
        seen.append(resolver.calls)
        seen.append(("second set returns the first", lib.socket.set_custom_hostname_resolver(None) is resolver))
        seen.append(("then None", lib.socket.set_custom_hostname_resolver(None)))
        return seen

    seen = same_under_both(scenario)
    assert seen[0] == ("first set returns", None)
    assert seen[6] == [
        ("getaddrinfo", b"example.test", 80, 0, 0, 0, 0),
        ("getaddrinfo", b"example.test", "80", stdsocket.AF_INET, stdsocket.SOCK_STREAM, 0, 0),
        ("getaddrinfo", b"xn--caf-dma.test", 80, 0, 0, 0, 0),
        ("getnameinfo", ("127.0.0.1", 80), 0),
    ]


def test_resolver_is_per_run() -> None:
    async def install(lib: ModuleType) -> None:
        lib.socket.set_custom_hostname_resolver(recording_resolver(lib, {}))

    async def read_back(lib: ModuleType) -> Any:
        return lib.socket.set_custom_hostname_resolver(None)

    for module in (trio, ringtrio):
        module.run(install, module)
        assert module.run(read_back, module) is None


def test_connect_to_a_name_goes_through_the_resolver() -> None:
    # A real socket and a real listener, reached by a name only the fake
    # resolver knows.
    async def scenario(lib: ModuleType) -> list[Any]:
        listener = lib.socket.socket()
        await listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        entry = (stdsocket.AF_INET, stdsocket.SOCK_STREAM, 6, "", ("127.0.0.1", port))
        resolver = recording_resolver(lib, {b"loopback.test": [entry]})
        lib.socket.set_custom_hostname_resolver(resolver)
        stream = await lib.open_tcp_stream("loopback.test", port)
        server, _ = await listener.accept()
        await stream.send_all(b"hi")
        got = await server.recv(2)
        for closeable in (server, listener):
            closeable.close()
        await stream.aclose()
        return [got, [call[:2] for call in resolver.calls]]

    assert same_under_both(scenario) == [b"hi", [("getaddrinfo", b"loopback.test")]]


# --------------------------------------------------------------------------
# Socket factory
# --------------------------------------------------------------------------


def fake_socket_class(lib: ModuleType) -> Any:
    class FakeSocket(lib.socket.SocketType):  # type: ignore[name-defined,misc]
        def __init__(self, family: int, type_: int, proto: int) -> None:
            super().__init__()
            self._family, self._type, self._proto = family, type_, proto
            self.closed = False

        @property
        def family(self) -> Any:
            return self._family

        @property
        def type(self) -> Any:
            return self._type

        @property
        def proto(self) -> int:
            return self._proto

        def close(self) -> None:
            self.closed = True

    return FakeSocket


def test_socket_factory_makes_sockets_without_fileno_only() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        FakeSocket = fake_socket_class(lib)
        calls: list[Any] = []

        class Factory(lib.abc.SocketFactory):  # type: ignore[name-defined,misc]
            def socket(self, family: Any = None, type: Any = None, proto: Any = None) -> Any:
                calls.append((family, type, proto))
                return FakeSocket(family, type, proto)

        factory = Factory()
        seen: list[Any] = [lib.socket.set_custom_socket_factory(factory)]
        fake = lib.socket.socket(stdsocket.AF_INET6, stdsocket.SOCK_DGRAM)
        seen.append((type(fake).__name__, isinstance(fake, lib.socket.SocketType), fake.family, fake.type))
        default = lib.socket.socket()
        seen.append((type(default).__name__, default.proto))
        # With fileno=, a real socket wraps the fd: the factory is not asked.
        real = stdsocket.socket()
        wrapped = lib.socket.socket(fileno=real.detach())
        seen.append(type(wrapped).__name__ == "FakeSocket")
        wrapped.close()
        seen.append(calls)
        seen.append(lib.socket.set_custom_socket_factory(None) is factory)
        plain = lib.socket.socket()
        seen.append(type(plain).__name__ == "FakeSocket")
        plain.close()
        return seen

    assert same_under_both(scenario) == [
        None,
        ("FakeSocket", True, stdsocket.AF_INET6, stdsocket.SOCK_DGRAM),
        ("FakeSocket", 0),
        False,
        [(stdsocket.AF_INET6, stdsocket.SOCK_DGRAM, 0), (stdsocket.AF_INET, stdsocket.SOCK_STREAM, 0)],
        True,
        False,
    ]


def test_socket_type_itself_cannot_be_instantiated(lib: ModuleType) -> None:
    with pytest.raises(TypeError):
        lib.socket.SocketType()


class HappyEyeballsNet:
    """A fake network for open_tcp_stream: each address connects after a
    delay, or fails.  Both a resolver and a socket factory (as trio's
    Scenario)."""

    def __init__(self, lib: ModuleType, plan: dict[str, tuple[float, str]], families: set[int]) -> None:
        self.lib = lib
        self.plan = plan
        self.families = families
        self.connect_times: dict[str, float] = {}
        self.sockets: list[Any] = []

    def install(self) -> None:
        lib, net = self.lib, self
        FakeSocket = fake_socket_class(lib)

        class ConnectingSocket(FakeSocket):  # type: ignore[valid-type,misc]
            async def connect(self, address: Any) -> None:
                net.connect_times[address[0]] = lib.current_time()
                delay, result = net.plan[address[0]]
                await lib.sleep(delay)
                if result == "error":
                    raise OSError(errno.ECONNREFUSED, f"{address[0]} refused")
                self.peer = address[0]

            def setsockopt(self, *args: Any) -> None:
                pass

        class Resolver(lib.abc.HostnameResolver):  # type: ignore[name-defined,misc]
            async def getaddrinfo(self, host: Any, port: Any, *args: Any) -> Any:
                return [
                    (
                        stdsocket.AF_INET6 if ":" in ip else stdsocket.AF_INET,
                        stdsocket.SOCK_STREAM,
                        6,
                        "",
                        (ip, port, 0, 0) if ":" in ip else (ip, port),
                    )
                    for ip in net.plan
                ]

            async def getnameinfo(self, sockaddr: Any, flags: int) -> Any:
                raise NotImplementedError

        class Factory(lib.abc.SocketFactory):  # type: ignore[name-defined,misc]
            def socket(self, family: Any = None, type: Any = None, proto: Any = None) -> Any:
                if family not in net.families:
                    raise OSError(errno.EAFNOSUPPORT, "pretending not to support this family")
                sock = ConnectingSocket(family, type, proto)
                net.sockets.append(sock)
                return sock

        lib.socket.set_custom_hostname_resolver(Resolver())
        lib.socket.set_custom_socket_factory(Factory())


@pytest.mark.parametrize(
    "plan, delay",
    [
        # The first is slow, the third quick: attempts start 0.25 s apart.
        ({"1.1.1.1": (1, "ok"), "2.2.2.2": (1, "ok"), "3.3.3.3": (0.2, "ok")}, 0.25),
        # None means the default delay, as in trio.
        ({"1.1.1.1": (1, "ok"), "2.2.2.2": (1, "ok"), "3.3.3.3": (0.2, "ok")}, None),
        # A failure starts the next attempt at once.
        ({"1.1.1.1": (0.1, "error"), "2.2.2.2": (0.1, "error"), "::3": (0.5, "ok")}, 1.0),
        # IPv6 first; an IPv4 address moves up to second place.
        ({"::1": (5, "ok"), "::2": (0, "ok"), "1.1.1.1": (0.1, "ok")}, 0.25),
    ],
)
def test_open_tcp_stream_on_a_fake_network(plan: dict[str, tuple[float, str]], delay: float | None) -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        net = HappyEyeballsNet(lib, plan, {stdsocket.AF_INET, stdsocket.AF_INET6})
        net.install()
        stream = await lib.open_tcp_stream("fake.test", 80, happy_eyeballs_delay=delay)
        winner = stream.socket
        return [
            winner.peer,
            lib.current_time(),
            net.connect_times,
            sorted((sock.peer if hasattr(sock, "peer") else None, sock.closed) for sock in net.sockets if sock is not winner),
        ]

    run_both_on_mock_clock(scenario)


def test_open_tcp_stream_all_failing_and_no_results() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        seen: list[Any] = []
        net = HappyEyeballsNet(lib, {"1.1.1.1": (0.1, "error"), "::1": (0.2, "ok")}, {stdsocket.AF_INET})
        net.install()
        try:
            await lib.open_tcp_stream("fake.test", 80)
        except OSError as exc:
            seen.append(("all failed", type(exc.__cause__).__name__, sorted(str(e) for e in exc.__cause__.exceptions)))
        seen.append([sock.closed for sock in net.sockets])
        HappyEyeballsNet(lib, {}, {stdsocket.AF_INET}).install()
        try:
            await lib.open_tcp_stream("fake.test", 80)
        except OSError as exc:
            seen.append(("no results", "no results found" in str(exc)))
        return seen

    assert run_both_on_mock_clock(scenario) == [
        (
            "all failed",
            "ExceptionGroup",
            ["[Errno 111] 1.1.1.1 refused", "[Errno 97] pretending not to support this family"],
        ),
        [True],
        ("no results", True),
    ]


def test_open_tcp_listeners_with_no_supported_family() -> None:
    async def scenario(lib: ModuleType) -> list[Any]:
        net = HappyEyeballsNet(lib, {"1.1.1.1": (0, "ok"), "::1": (0, "ok")}, set())
        net.install()
        try:
            await lib.open_tcp_listeners(80, host="fake.test")
        except OSError as exc:
            cause = exc.__cause__
            return [
                exc.errno == errno.EAFNOSUPPORT,
                exc.strerror.startswith("This system doesn't support"),
                type(cause).__name__,
                [str(e) for e in cause.exceptions],
            ]
        return ["nothing raised"]  # pragma: no cover

    assert same_under_both(scenario) == [
        True,
        True,
        "ExceptionGroup",
        ["[Errno 97] pretending not to support this family"] * 2,
    ]


# --------------------------------------------------------------------------
# encode_hostname, and ringtrio's own rules
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["example.com", "::1", "Café.example", "xn--caf-dma.example", "ÉCOLE.fr"])
def test_encode_hostname_as_trio(name: str) -> None:
    assert ringtrio.lowlevel.encode_hostname(name) == trio.lowlevel.encode_hostname(name)


def test_encode_hostname_refuses_invalid_names_as_trio() -> None:
    for module in (trio, ringtrio):
        with pytest.raises(UnicodeError):
            module.lowlevel.encode_hostname("a\u200d.example")


def test_a_hook_without_its_methods_is_refused_with_a_message() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match=r"needs a HostnameResolver.*has no getnameinfo\(\)"):

            class Half:
                async def getaddrinfo(self, *args: Any) -> Any: ...

            ringtrio.socket.set_custom_hostname_resolver(Half())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"needs a SocketFactory.*has no socket\(\)"):
            ringtrio.socket.set_custom_socket_factory(object())  # type: ignore[arg-type]
        # Nothing was installed.
        assert ringtrio.socket.set_custom_hostname_resolver(None) is None
        assert ringtrio.socket.set_custom_socket_factory(None) is None

    ringtrio.run(main)


def test_outside_a_run_there_are_no_hooks_and_sockets_still_work() -> None:
    # Differs from trio (whose socket() raises RuntimeError outside a run):
    # ringtrio sockets may be made before the run starts.
    with ringtrio.socket.socket() as sock:
        assert isinstance(sock, ringtrio.socket.SocketType)
    with pytest.raises(RuntimeError):
        ringtrio.socket.set_custom_socket_factory(None)


def test_ssl_server_hostname_is_idna_2008() -> None:
    import ssl

    async def scenario(lib: ModuleType) -> list[Any]:
        a, b = lib.testing.memory_stream_pair()
        context = ssl.create_default_context()
        stream = lib.SSLStream(a, context, server_hostname="faß.de")
        return [stream.server_hostname, lib.lowlevel.encode_hostname("faß.de")]

    assert same_under_both(scenario) == ["xn--fa-hia.de", b"xn--fa-hia.de"]
