"""Sockets on the ring: ``ringtrio.socket``.

Mirrors ``trio.socket`` (and so the stdlib): the same constructors, the same
constants, a :class:`SocketType` whose blocking methods are async.

Every async method is **one** ring operation (``IORING_OP_ACCEPT``,
``CONNECT``, ``RECV``, ``SEND``, ``RECVMSG``, ``SENDMSG``; ``POLL_ADD`` only
for the explicit :meth:`SocketType.wait_readable` / ``wait_writable``) built
as a :class:`ringtrio.lowlevel.RingOp` and awaited with
:func:`ringtrio.lowlevel.submit_and_wait`.  There is no readiness loop: the
kernel does the waiting.  Sockets are still put in non-blocking mode at the
OS level (as trio does), so a stray synchronous call can never hang the run.

Memory handed to the kernel (buffers, ``sockaddr``, ``msghdr``/``iovec``) is
allocated with cffi and held by the op's ``keepalive`` until its CQE.  A
caller's buffer is pinned by a private memoryview of it (the core's
``pin_view``), never by a buffer export held while the op waits: see
``ringtrio/_core/_op_memory.py`` for the interpreter crash that avoids.

``recv`` (and so ``SocketStream.receive_some``) does not pin a buffer while
it waits: it selects from the run's provided-buffer ring
(:mod:`ringtrio._core._buffers`) and copies the bytes out when they arrive.
"""

from __future__ import annotations

import errno
import operator
import os
import select
import socket as _stdlib_socket
import struct
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ._core import BusyResourceError, ClosedResourceError, RunVar
from ._core import _ring
from ._core._buffers import runtime_recv_ring
from ._core._internal_api import StandInPollOp, _local, address_of, pin_view
from ._core._ring import _load_native
from ._core import (
    RingOp,
    cancel_ring_op,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    submit_and_wait,
)

if TYPE_CHECKING:
    from typing_extensions import Buffer, Self

    from ._abc import HostnameResolver, SocketFactory

__all__ = [
    "SocketType",
    "encode_hostname",
    "from_stdlib_socket",
    "fromfd",
    "getaddrinfo",
    "getnameinfo",
    "set_custom_hostname_resolver",
    "set_custom_socket_factory",
    "socket",
    "socketpair",
    "wait_readable",
    "wait_writable",
]

_ffi, _lib = _load_native()

AddressFormat = Any
T = TypeVar("T")

_AF_INET = _stdlib_socket.AF_INET
_AF_INET6 = _stdlib_socket.AF_INET6
_AF_UNIX = _stdlib_socket.AF_UNIX

# accept4() flags for accepted sockets: non-blocking (like every ringtrio
# socket) and close-on-exec (like the stdlib's accept).
_ACCEPT_FLAGS = _stdlib_socket.SOCK_NONBLOCK | _stdlib_socket.SOCK_CLOEXEC
_MSG_NOSIGNAL = _stdlib_socket.MSG_NOSIGNAL
_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT

_ENOBUFS = -errno.ENOBUFS
_F_BUFFER = _ring.IORING_CQE_F_BUFFER
_BUFFER_SHIFT = _ring.IORING_CQE_BUFFER_SHIFT

# The receive size used when the runtime buffer ring is empty (ENOBUFS): a
# private buffer just for that call.
_FALLBACK_RECV_SIZE = 64 * 1024

# sizeof(struct sockaddr_storage)
_SOCKADDR_MAX = 128

# struct msghdr on LP64 Linux (x86_64, aarch64):
#   void *msg_name; socklen_t msg_namelen; (pad 4)
#   struct iovec *msg_iov; size_t msg_iovlen;
#   void *msg_control; size_t msg_controllen;
#   int msg_flags; (pad 4)
_MSGHDR = struct.Struct("=QI4xQQQQi4x")
_MSGHDR_NAMELEN_OFF = 8
_MSGHDR_CONTROLLEN_OFF = 40
_MSGHDR_FLAGS_OFF = 48
_IOVEC = struct.Struct("=QQ")
# struct cmsghdr: size_t cmsg_len; int cmsg_level; int cmsg_type; data aligned to 8.
_CMSGHDR = struct.Struct("=Qii")
assert _MSGHDR.size == 56 and _CMSGHDR.size == 16


def _addr_of(cdata: Any) -> int:
    return int(_ffi.cast("uintptr_t", cdata))


def _buffer_address(buf: Any) -> int:
    """The address of a cffi array or of a pinned view."""
    return address_of(buf) if type(buf) is memoryview else _addr_of(buf)


def _nbytes(payload: bytes | memoryview) -> int:
    return payload.nbytes if type(payload) is memoryview else len(payload)


def _align8(n: int) -> int:
    return (n + 7) & ~7


def _errno_error(res: int, what: str = "") -> OSError:
    # OSError(errno, msg) picks the right subclass (ConnectionRefusedError ...).
    code = -res
    msg = os.strerror(code)
    if what:
        msg = f"{msg} ({what})"
    return OSError(code, msg)


def _writable_buffer(buffer: Any, what: str) -> memoryview:
    # (A released memoryview raises the stdlib's ValueError.)
    try:
        return pin_view(buffer, writable=True)
    except (TypeError, BufferError):
        raise TypeError(
            f"{what}() needs a writable, contiguous bytes-like object (e.g. a bytearray "
            f"or memoryview of one), not {type(buffer).__name__}"
        ) from None


def _readable_buffer(data: Any, what: str) -> bytes | memoryview:
    if isinstance(data, str):
        raise TypeError(
            f"{what}() needs a bytes-like object, not 'str' (encode it first, "
            "e.g. text.encode())"
        )
    if type(data) is bytes:
        return data
    try:
        return pin_view(data)
    except (TypeError, BufferError):
        raise TypeError(
            f"{what}() needs a contiguous bytes-like object, not {type(data).__name__}"
        ) from None


def _check_size(value: Any, name: str, what: str) -> int:
    # The stdlib's rules (and so trio's): any integer, bool included (True
    # is 1), that fits a C ssize_t.
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{what}(): {name} must be an int, not {type(value).__name__}") from None
    if value < 0:
        raise ValueError(f"negative {name} in {what}() ({value}); it must be >= 0")
    if value > sys.maxsize:
        raise OverflowError(f"{what}(): {name} must fit a C ssize_t (at most {sys.maxsize}), got {value}")
    return value


def _check_nbytes(nbytes: Any, size: int, what: str) -> int:
    """recv_into's nbytes against the buffer's size (0: all of it)."""
    nbytes = _check_size(nbytes, "buffersize", what)
    if nbytes == 0:
        return size
    if nbytes > size:
        raise ValueError(f"{what}(): buffer too small for requested bytes ({size} < {nbytes})")
    return nbytes


def _check_flags(flags: Any, what: str) -> int:
    """MSG_* flags: a C int for the stdlib; the SQE holds them as 32 bits."""
    if type(flags) is int and 0 <= flags <= 0x7FFFFFFF:
        return flags
    try:
        flags = operator.index(flags)
    except TypeError:
        raise TypeError(f"{what}(): flags must be an int, not {type(flags).__name__}") from None
    if not -(2**31) <= flags < 2**31:
        raise OverflowError(f"{what}(): flags must fit a C int, got {flags}")
    return flags & 0xFFFFFFFF


def _closed_socket_error() -> OSError:
    return OSError(errno.EBADF, "Bad file descriptor (this socket was closed)")


async def _completed_at_once() -> None:
    """trio's shape for an operation that completed without waiting: a
    cancellation check that does not yield, then a schedule point that
    cannot raise Cancelled (the operation happened)."""
    await checkpoint_if_cancelled()
    await cancel_shielded_checkpoint()


async def _fail_at_once(exc: BaseException) -> NoReturn:
    """Raise ``exc``, the error of an operation that failed before it was
    submitted (a closed socket, a bad argument), as trio does: still a
    checkpoint -- Cancelled wins in a cancelled scope -- with a schedule
    point that cannot turn the error into Cancelled."""
    await _completed_at_once()
    raise exc


# ---------------------------------------------------------------------------
# sockaddr encoding/decoding (what the kernel reads and writes)
# ---------------------------------------------------------------------------


def _encode_sockaddr(family: int, address: Any) -> bytes:
    """A resolved Python address -> the kernel's struct sockaddr bytes."""
    if family == _AF_INET:
        host, port = address
        try:
            packed = _stdlib_socket.inet_pton(_AF_INET, host)
        except (OSError, TypeError):
            raise OSError(
                errno.EINVAL, f"{host!r} is not a numeric IPv4 address"
            ) from None
        if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
            raise OverflowError(f"port must be 0-65535, got {port!r}")
        return struct.pack("=H", _AF_INET) + struct.pack("!H", port) + packed + b"\0" * 8
    if family == _AF_INET6:
        host, port, flowinfo, scope_id = (tuple(address) + (0, 0))[:4]
        try:
            packed = _stdlib_socket.inet_pton(_AF_INET6, host)
        except (OSError, TypeError):
            raise OSError(
                errno.EINVAL, f"{host!r} is not a numeric IPv6 address"
            ) from None
        if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
            raise OverflowError(f"port must be 0-65535, got {port!r}")
        if not 0 <= flowinfo <= 0xFFFFF:
            raise OverflowError(f"flowinfo must be 0-1048575, got {flowinfo!r}")
        return (
            struct.pack("=H", _AF_INET6)
            + struct.pack("!HI", port, flowinfo)
            + packed
            + struct.pack("=I", scope_id)
        )
    if family == _AF_UNIX:
        path = os.fsencode(address) if not isinstance(address, (bytes, bytearray)) else bytes(address)
        # sun_path is 108 bytes; a filesystem path also needs its NUL.
        limit = 108 if path[:1] == b"\0" else 107
        if len(path) > limit:
            raise OSError(errno.ENAMETOOLONG, f"AF_UNIX path too long ({len(path)} > {limit} bytes)")
        return struct.pack("=H", _AF_UNIX) + path
    raise OSError(
        errno.EAFNOSUPPORT,
        f"ringtrio sockets can address AF_INET, AF_INET6 and AF_UNIX only, not family {family!r}",
    )


def _decode_sockaddr(buf: Any, length: int) -> Any:
    """The kernel's struct sockaddr bytes -> a Python address (as the stdlib)."""
    if length < 2:
        return None
    raw = bytes(buf[:length])
    (family,) = struct.unpack_from("=H", raw)
    if family == _AF_INET and length >= 8:
        (port,) = struct.unpack_from("!H", raw, 2)
        return (_stdlib_socket.inet_ntop(_AF_INET, raw[4:8]), port)
    if family == _AF_INET6 and length >= 28:
        port, flowinfo = struct.unpack_from("!HI", raw, 2)
        (scope_id,) = struct.unpack_from("=I", raw, 24)
        return (_stdlib_socket.inet_ntop(_AF_INET6, raw[8:24]), port, flowinfo, scope_id)
    if family == _AF_UNIX:
        path = raw[2:]
        if path[:1] == b"\0":
            return path  # abstract namespace: bytes, as the stdlib
        return os.fsdecode(path.split(b"\0", 1)[0])
    return (family, raw[2:])


# ---------------------------------------------------------------------------
# Name resolution
# ---------------------------------------------------------------------------

_NUMERIC_ONLY = _stdlib_socket.AI_NUMERICHOST | _stdlib_socket.AI_NUMERICSERV


def encode_hostname(hostname: str) -> bytes:
    """The bytes ``getaddrinfo`` looks up for ``hostname`` (public as
    ``ringtrio.lowlevel.encode_hostname``, trio's name): ASCII as it is,
    anything else by IDNA 2008 with UTS 46 mapping (the ``idna`` package;
    the stdlib's codec implements the older IDNA 2003, which sends some
    names to another host).  As in trio.

    Raises:
      idna.IDNAError (a UnicodeError): not a valid internationalized name.
    """
    try:
        return hostname.encode("ascii")
    except UnicodeEncodeError:
        import idna

        return idna.encode(hostname, uts46=True)


# The hooks of one run: a custom resolver asked by getaddrinfo/getnameinfo,
# a custom factory asked by socket() (fake networks in tests).
_custom_resolver: RunVar[HostnameResolver | None] = RunVar("ringtrio.socket hostname resolver", None)
_custom_socket_factory: RunVar[SocketFactory | None] = RunVar("ringtrio.socket socket factory", None)


def _run_hook(var: RunVar[T | None]) -> T | None:
    # Outside a run there is no hook (and, unlike trio, socket() and the
    # resolver functions still work there).
    return var.get() if _local.runner is not None else None


def _require_methods(obj: object, methods: tuple[str, ...], what: str, setter: str) -> None:
    missing = [name for name in methods if not callable(getattr(obj, name, None))]
    if missing:
        raise TypeError(
            f"{setter}() needs a {what} (an object with {' and '.join(methods)}() methods, "
            f"e.g. a ringtrio.abc.{what} subclass) or None, but {obj!r} has no "
            f"{', '.join(missing)}()"
        )


def set_custom_hostname_resolver(hostname_resolver: HostnameResolver | None) -> HostnameResolver | None:
    """Make :func:`getaddrinfo` and :func:`getnameinfo` ask
    ``hostname_resolver`` (a :class:`ringtrio.abc.HostnameResolver`) for the
    rest of this run, or the system again with None.  Returns the resolver
    it replaces (None: the system's).  As in trio.

    Everything in ringtrio that resolves names goes through those two
    functions (``open_tcp_stream``, ``connect`` and ``sendto`` with a host
    name ...); numeric addresses never reach the resolver."""
    if hostname_resolver is not None:
        _require_methods(
            hostname_resolver, ("getaddrinfo", "getnameinfo"), "HostnameResolver", "set_custom_hostname_resolver"
        )
    previous = _custom_resolver.get()
    _custom_resolver.set(hostname_resolver)
    return previous


def set_custom_socket_factory(socket_factory: SocketFactory | None) -> SocketFactory | None:
    """Make :func:`socket` (without ``fileno``) return what
    ``socket_factory.socket(family, type, proto)`` returns (a
    :class:`ringtrio.abc.SocketFactory`) for the rest of this run, or real
    sockets again with None.  Returns the factory it replaces.  As in trio."""
    if socket_factory is not None:
        _require_methods(socket_factory, ("socket",), "SocketFactory", "set_custom_socket_factory")
    previous = _custom_socket_factory.get()
    _custom_socket_factory.set(socket_factory)
    return previous


async def getaddrinfo(
    host: bytes | str | None,
    port: bytes | str | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[tuple[Any, Any, int, str, Any]]:
    """:func:`socket.getaddrinfo`, async.  Numeric hosts and ports are
    resolved at once; a name is encoded (:func:`encode_hostname`) and looked
    up by the run's custom resolver if one is set
    (:func:`set_custom_hostname_resolver`), else in a worker thread (a
    cancellation abandons the thread)."""
    try:
        result = _stdlib_socket.getaddrinfo(host, port, family, type, proto, flags | _NUMERIC_ONLY)
    except _stdlib_socket.gaierror as exc:
        if exc.errno != _stdlib_socket.EAI_NONAME:
            await checkpoint()
            raise
    else:
        await checkpoint()
        return result
    from . import to_thread

    if isinstance(host, str):
        host = encode_hostname(host)
    resolver = _run_hook(_custom_resolver)
    if resolver is not None:
        return await resolver.getaddrinfo(host, port, family, type, proto, flags)
    return await to_thread.run_sync(
        _stdlib_socket.getaddrinfo, host, port, family, type, proto, flags, abandon_on_cancel=True
    )


async def getnameinfo(sockaddr: tuple[Any, ...], flags: int) -> tuple[str, str]:
    """:func:`socket.getnameinfo`, async: the run's custom resolver if one is
    set, else a worker thread."""
    from . import to_thread

    resolver = _run_hook(_custom_resolver)
    if resolver is not None:
        return await resolver.getnameinfo(sockaddr, flags)
    return await to_thread.run_sync(
        _stdlib_socket.getnameinfo, sockaddr, flags, abandon_on_cancel=True
    )


async def getprotobyname(name: str) -> int:
    """:func:`socket.getprotobyname`, async (in a worker thread)."""
    from . import to_thread

    return await to_thread.run_sync(_stdlib_socket.getprotobyname, name, abandon_on_cancel=True)


async def _resolve_address(
    family: int, type_: int, proto: int, address: Any, *, local: bool, v6only: bool
) -> Any:
    """Turn a user's address into one the kernel takes (numeric)."""
    # The ValueErrors say trio's words, which code matches on.
    if family == _AF_INET:
        if not isinstance(address, tuple) or len(address) != 2:
            raise ValueError("address should be a (host, port) tuple")
    elif family == _AF_INET6:
        if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
            raise ValueError("address should be a (host, port, [flowinfo, [scopeid]]) tuple")
    elif family == _AF_UNIX:
        if not isinstance(address, (str, bytes, os.PathLike)):
            raise TypeError(
                f"an AF_UNIX address must be a str, bytes or path-like, not {type(address).__name__}"
            )
        return os.fspath(address)
    else:
        return address
    host, port, *rest = address
    if host is not None and not isinstance(host, (str, bytes)):
        raise TypeError(f"host must be a str or bytes, not {type(host).__name__}")
    if isinstance(port, int) and not isinstance(port, bool):
        if not 0 <= port <= 0xFFFF:
            raise OverflowError(f"port must be 0-65535, got {port}")
        if isinstance(host, str):
            # The common case: an IP address already.  No resolution at all
            # (this is every sendto of a UDP socket).
            try:
                _stdlib_socket.inet_pton(family, host)
            except OSError:
                pass
            else:
                return address
    elif not isinstance(port, (str, bytes)):
        raise TypeError(f"port must be an int (or a service name), not {type(port).__name__}")
    if host == "" or host == b"":
        host = None
    if host == "<broadcast>":
        host = "255.255.255.255"
    flags = _stdlib_socket.AI_PASSIVE if local else 0
    if family == _AF_INET6 and not v6only:
        flags |= _stdlib_socket.AI_V4MAPPED
    infos = await getaddrinfo(host, port, family, type_, proto, flags)
    if not infos:  # pragma: no cover - getaddrinfo never returns []
        raise OSError(f"getaddrinfo({host!r}, {port!r}) returned no address")
    normed = infos[0][4]
    if family == _AF_INET6:
        normed = list(normed)
        # Keep the caller's flowinfo / scope_id.
        for i, value in enumerate(rest, start=2):
            normed[i] = value
        return tuple(normed)
    return normed


# ---------------------------------------------------------------------------
# Ring ops with extra behaviour
# ---------------------------------------------------------------------------


class _SelectRecvOp(RingOp):
    """RECV with IOSQE_BUFFER_SELECT from a :class:`BufferRing`.

    The bytes are copied out and the buffer recycled right in the CQE
    dispatch, whatever happens to the task: a buffer can never stay taken
    because its reader went away."""

    __slots__ = ("bufring", "data")
    bufring: Any
    data: Any

    def _on_cqe(self, res: int, flags: int) -> None:
        if flags & _F_BUFFER:
            self.data = self.bufring.take(flags >> _BUFFER_SHIFT, res if res > 0 else 0)
        RingOp._on_cqe(self, res, flags)


# ---------------------------------------------------------------------------
# Constructors
# ---------------------------------------------------------------------------


def from_stdlib_socket(sock: _stdlib_socket.socket) -> SocketType:
    """Wrap a stdlib socket as a ringtrio socket (it is made non-blocking).

    The stdlib object stays the caller's: closing it (``sock.close()``,
    ``with sock:``) closes the connection as usual, so ringtrio keeps no
    operation in flight on such a socket between calls (see
    docs/design.md, "Sockets": its streams receive with one-shot
    receives)."""
    if type(sock) is not _stdlib_socket.socket:
        # Exactly socket.socket, as in trio: a subclass may change what its
        # methods mean (an ssl.SSLSocket's bytes are TLS records: reading
        # its fd directly would bypass the encryption).
        raise TypeError(
            f"expected an object of type socket.socket, not {type(sock).__name__} (wrap a "
            "plain socket; for TLS, wrap the stream in ringtrio.SSLStream)"
        )
    return SocketType._wrap(sock, owned=False)


def _sniff_socket_kind(fd: int, family: int, type_: int, proto: int) -> tuple[int, int, int]:
    """The real family, type and protocol of the socket ``fd`` (trio's
    fromfd does the same): the caller's guesses, when wrong, would make
    every later family-dependent step (address encoding, SocketStream's
    checks) go wrong.  A non-socket fd raises OSError (ENOTSOCK)."""
    probe = _stdlib_socket.socket(family, type_, proto, fileno=fd)
    try:
        return (
            probe.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_DOMAIN),
            probe.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_TYPE),
            probe.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_PROTOCOL),
        )
    finally:
        probe.detach()  # the fd is not ours to close


def fromfd(
    fd: Any,
    family: int = _AF_INET,
    type: int = _stdlib_socket.SOCK_STREAM,
    proto: int = 0,
) -> SocketType:
    """Like :func:`socket.fromfd` (duplicates ``fd``), returning a ringtrio
    socket.  As in trio, the family, type and protocol are read from the
    socket itself; the arguments are only a fallback."""
    family, type, proto = _sniff_socket_kind(operator.index(fd), family, type, proto)
    # The duplicate is ringtrio's own: nobody else holds a stdlib object
    # on it.
    return SocketType._wrap(_stdlib_socket.fromfd(fd, family, type, proto), owned=True)


def socketpair(
    family: int = _AF_UNIX, type: int = _stdlib_socket.SOCK_STREAM, proto: int = 0
) -> tuple[SocketType, SocketType]:
    """Like :func:`socket.socketpair`, returning ringtrio sockets."""
    left, right = _stdlib_socket.socketpair(family, type, proto)
    return (SocketType._wrap(left, owned=True), SocketType._wrap(right, owned=True))


def socket(
    family: int = _AF_INET,
    type: int = _stdlib_socket.SOCK_STREAM,
    proto: int = 0,
    fileno: int | None = None,
) -> SocketType:
    """Create a ringtrio socket; the arguments are those of :class:`socket.socket`.

    Inside a run with a custom socket factory
    (:func:`set_custom_socket_factory`), a call without ``fileno`` returns
    what the factory makes instead.  With ``fileno``, the socket's real
    family, type and protocol are used (as in trio), and the fd is treated
    as the caller's (see :func:`from_stdlib_socket`)."""
    if fileno is None:
        factory = _run_hook(_custom_socket_factory)
        if factory is not None:
            return factory.socket(family, type, proto)
        # SOCK_NONBLOCK in the type: the kernel creates it non-blocking and
        # the stdlib object knows it without another syscall.
        sock = _stdlib_socket.socket(family, type | _stdlib_socket.SOCK_NONBLOCK, proto)
        return SocketType._wrap(sock, owned=True)
    family, type, proto = _sniff_socket_kind(operator.index(fileno), family, type, proto)
    return SocketType._wrap(_stdlib_socket.socket(family, type, proto, fileno), owned=False)


class _Done:
    """The return value of :meth:`SocketType.bind`: ``await`` on it is a no-op,
    so trio code (``await sock.bind(addr)``) and stdlib-style code
    (``sock.bind(addr)``) both work."""

    __slots__ = ()

    def __await__(self) -> Any:
        return iter(())

    def __repr__(self) -> str:
        return "None"


_DONE = _Done()


# ---------------------------------------------------------------------------
# SocketType
# ---------------------------------------------------------------------------


class SocketType:
    """A socket whose blocking operations are async and run on the ring.

    Create one with :func:`socket`, :func:`socketpair`, :func:`fromfd` or
    :func:`from_stdlib_socket` (not by calling this class).  Fake sockets
    for a custom socket factory subclass it and override what they need.
    """

    __slots__ = (
        "_sock",
        "_ops",
        "_deferred_fd",
        "_did_shutdown_SHUT_WR",
        "_recv_op",
        "_send_op",
        "_send_park",
        "_owned",
        "__weakref__",
    )
    _sock: _stdlib_socket.socket
    _ops: list[RingOp] | None
    _deferred_fd: int | None
    _did_shutdown_SHUT_WR: bool
    # One recv and one send op object kept for reuse: an op whose final CQE
    # has arrived (op.done) can be submitted again, which saves building one
    # per call on the hot path of every stream.
    _recv_op: _SelectRecvOp | None
    _send_op: RingOp | None
    _send_park: Any
    # Created by ringtrio, so no stdlib object of it is in the user's hands
    # (socket(), socketpair(), accept, dup, fromfd): only such a socket may
    # keep an operation armed between calls (SocketStream's multishot
    # receive), because only ringtrio's close() can close it, and that
    # cancels the operation.  See docs/design.md, "Sockets".
    _owned: bool

    def __init__(self) -> None:
        # A subclass may be instantiated: that is how a custom socket
        # factory's fake sockets are made (trio's rule; such a class
        # overrides the methods its users call).  SocketType itself is only
        # made by the constructors, which wrap a real socket.
        if type(self) is SocketType:
            raise TypeError(
                "SocketType cannot be instantiated directly; use ringtrio.socket.socket() "
                "or ringtrio.socket.from_stdlib_socket()"
            )
        super().__init__()

    @classmethod
    def _wrap(cls, sock: _stdlib_socket.socket, *, owned: bool) -> SocketType:
        self = object.__new__(cls)
        self._owned = owned
        if sock.gettimeout() != 0.0:
            sock.setblocking(False)
        self._sock = sock
        # Ops in flight on this socket (None when there never were any): a
        # close cancels them.
        self._ops = None
        # Set by close() while ops are in flight: the fd is released only
        # when the kernel has let go of it (see close()).
        self._deferred_fd = None
        self._did_shutdown_SHUT_WR = False
        self._recv_op = None
        self._send_op = None
        self._send_park = None
        return self

    # -- plumbing -------------------------------------------------------

    def _fd(self) -> int:
        fd = self._sock.fileno()
        if fd < 0:
            raise _closed_socket_error()
        return fd

    async def _run_op(self, op: RingOp) -> tuple[int, int]:
        self._track(op)
        try:
            return await submit_and_wait(op)
        finally:
            self._op_finished(op)

    # _track and _op_finished are the two halves of _run_op, also used by hot
    # paths that await submit_and_wait themselves (one coroutine frame fewer
    # on every resume).
    def _op_finished(self, op: RingOp) -> None:
        ops = self._ops
        if ops is not None:
            ops.remove(op)
            if not ops and self._deferred_fd is not None:
                self._release_deferred_fd()

    def _track(self, op: RingOp) -> None:
        """Register an op submitted without a task (a multishot owned by a
        nursery) so that close() cancels it too.  Pair with :meth:`_untrack`
        once its final CQE arrived."""
        if self._ops is None:
            self._ops = []
        self._ops.append(op)

    def _untrack(self, op: RingOp) -> None:
        ops = self._ops
        if ops is not None and op in ops:
            ops.remove(op)
            if not ops and self._deferred_fd is not None:
                self._release_deferred_fd()

    def _release_deferred_fd(self) -> None:
        fd, self._deferred_fd = self._deferred_fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:  # pragma: no cover
                pass

    def _error(self, res: int, what: str) -> BaseException:
        if self._sock.fileno() < 0:
            # The op failed because another task closed the socket under it.
            return ClosedResourceError(f"{what} failed: another task closed this socket")
        return _errno_error(res)

    # -- closing --------------------------------------------------------

    def close(self) -> None:
        """Close the socket.  Tasks blocked in an operation on it get
        :exc:`ClosedResourceError` (or their result, if the operation
        completed in the race)."""
        sock = self._sock
        if sock.fileno() < 0:
            return
        ops = self._ops
        if not ops or all(op.done for op in ops):
            # Nothing in flight (an op still listed here after its final
            # CQE was ended by the run's shutdown drain).
            for op in ops or ():
                op.fd = -1
            sock.close()
            return
        for op in list(ops):
            # Cancelled by token, not by fd: the fd number could be reused
            # before the cancel runs.  And an op that gets resubmitted (a
            # moved deadline) must not find the old fd: -1 gives it EBADF.
            op.fd = -1
            on_close = getattr(op, "_on_socket_close", None)
            if on_close is not None:
                on_close()
            else:
                cancel_ring_op(op, ClosedResourceError("another task closed this socket"))
        # The kernel still refers to the fd through SQEs that may not have
        # been submitted yet (they go in at the end of this pass).  Closing
        # the number now would let a new socket take it and receive those
        # ops.  So the Python object is closed now, and the number is
        # released when the last op's CQE has arrived.
        self._deferred_fd = sock.detach()

    def detach(self) -> int:
        """Like :meth:`socket.socket.detach`.  Operations in flight get
        :exc:`ClosedResourceError`."""
        for op in list(self._ops or ()):
            on_close = getattr(op, "_on_socket_close", None)
            if on_close is not None:
                on_close()
            else:
                cancel_ring_op(op, ClosedResourceError("another task detached this socket"))
        return self._sock.detach()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A socket closed with ops in flight that never completed (the run
        # ended abruptly): release the fd number now.
        if getattr(self, "_deferred_fd", None) is not None and not self._ops:
            self._release_deferred_fd()

    # -- sync passthroughs ----------------------------------------------

    @property
    def family(self) -> _stdlib_socket.AddressFamily:
        return self._sock.family

    @property
    def type(self) -> _stdlib_socket.SocketKind:
        return self._sock.type

    @property
    def proto(self) -> int:
        return self._sock.proto

    @property
    def did_shutdown_SHUT_WR(self) -> bool:
        return self._did_shutdown_SHUT_WR

    def fileno(self) -> int:
        return self._sock.fileno()

    def getsockname(self) -> Any:
        return self._sock.getsockname()

    def getpeername(self) -> Any:
        return self._sock.getpeername()

    def setsockopt(self, level: int, optname: int, value: int | Buffer | None, optlen: int | None = None) -> None:
        if optlen is None:
            if value is None:
                raise TypeError(
                    "invalid value for argument 'value': setsockopt() needs optlen when value is None"
                )
            self._sock.setsockopt(level, optname, value)
        else:
            if value is not None:
                raise TypeError(
                    "invalid value for argument 'value': setsockopt() with optlen needs value=None"
                )
            self._sock.setsockopt(level, optname, None, optlen)

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        if buflen is None:
            return self._sock.getsockopt(level, optname)
        return self._sock.getsockopt(level, optname, buflen)

    def listen(self, backlog: int = min(_stdlib_socket.SOMAXCONN, 128)) -> None:
        self._sock.listen(backlog)

    def get_inheritable(self) -> bool:
        return self._sock.get_inheritable()

    def set_inheritable(self, inheritable: bool) -> None:
        self._sock.set_inheritable(inheritable)

    def dup(self) -> SocketType:
        return SocketType._wrap(self._sock.dup(), owned=True)

    def bind(self, address: AddressFormat) -> _Done:
        """Bind, synchronously (as the stdlib: binding never blocks; a host
        name is resolved by the stdlib).  The return value may be awaited, so
        trio-style ``await sock.bind(addr)`` works too."""
        if self._sock.family in (_AF_INET, _AF_INET6) and isinstance(address, tuple) and address:
            if address[0] == "<broadcast>":
                address = ("255.255.255.255", *address[1:])
        elif self._sock.family == _AF_UNIX and isinstance(address, os.PathLike):
            address = os.fspath(address)
        self._sock.bind(address)
        return _DONE

    def shutdown(self, flag: int) -> None:
        """Like :meth:`socket.socket.shutdown` (synchronous, as trio's)."""
        self._sock.shutdown(flag)
        if flag in (_stdlib_socket.SHUT_WR, _stdlib_socket.SHUT_RDWR):
            self._did_shutdown_SHUT_WR = True

    def is_readable(self) -> bool:
        """True if a receive would not block (data, EOF or an error pending)."""
        poller = select.poll()
        poller.register(self._fd(), select.POLLIN)
        return bool(poller.poll(0))

    def __repr__(self) -> str:
        return repr(self._sock).replace("socket.socket", "ringtrio.socket.socket", 1)

    # -- readiness --------------------------------------------------------

    async def _poll(self, events: int) -> int:
        fd = self._sock.fileno()
        if fd < 0:
            await _fail_at_once(_closed_socket_error())
        op = RingOp(_ring.IORING_OP_POLL_ADD, fd, 0, 0, 0, events)
        res, _ = await self._run_op(op)
        if res >= 0 and events == _POLLOUT and not res & _WRITABLE_OR_ERROR:
            res, _ = await _poll_writable_via_epoll(fd, self._run_op)
        if res < 0:
            raise self._error(res, "waiting for readiness")
        return res

    async def wait_readable(self) -> None:
        """Block until the socket is readable (IORING_OP_POLL_ADD).  Prefer
        the receive methods: they need no readiness wait."""
        await self._poll(_POLLIN)

    async def wait_writable(self) -> None:
        """Block until the socket is writable (IORING_OP_POLL_ADD)."""
        await self._poll(_POLLOUT)

    # -- resolution -------------------------------------------------------

    async def _resolve(self, address: Any, *, local: bool) -> Any:
        family = self._sock.family
        v6only = False
        if family == _AF_INET6:
            v6only = bool(self._sock.getsockopt(_stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_V6ONLY))
        return await _resolve_address(
            family, self._sock.type, self._sock.proto, address, local=local, v6only=v6only
        )

    # -- accept / connect ---------------------------------------------------

    async def accept(self) -> tuple[SocketType, Any]:
        """Like :meth:`socket.socket.accept`, async (one IORING_OP_ACCEPT).

        A cancelled accept that completed in the race returns the connection
        (the cancellation is delivered at the next checkpoint)."""
        fd = self._sock.fileno()
        if fd < 0:
            await _fail_at_once(_closed_socket_error())
        addrbuf = _ffi.new("char[]", _SOCKADDR_MAX)
        lenbuf = _ffi.new("uint32_t *", _SOCKADDR_MAX)
        op = RingOp(
            _ring.IORING_OP_ACCEPT,
            fd,
            _addr_of(addrbuf),
            0,
            _addr_of(lenbuf),
            _ACCEPT_FLAGS,
            keepalive=(addrbuf, lenbuf),
        )
        res, _ = await self._run_op(op)
        if res < 0:
            raise self._error(res, "accept")
        sock = _wrap_accepted(res, self._sock)
        return sock, _decode_sockaddr(_ffi.buffer(addrbuf), min(lenbuf[0], _SOCKADDR_MAX))

    async def connect(self, address: AddressFormat) -> None:
        """Like :meth:`socket.socket.connect`, async (one IORING_OP_CONNECT).

        As in trio, a connect cannot be half-undone: if it is cancelled (or
        fails with an exception), the socket is closed.  (If it completed in the race, it is connected and
        the cancellation lands at the next checkpoint.)"""
        try:
            address = await self._resolve(address, local=False)
            sa = _encode_sockaddr(self._sock.family, address)
            fd = self._sock.fileno()
            if fd < 0:
                await _fail_at_once(_closed_socket_error())
            buf = _ffi.new("char[]", sa)
            op = RingOp(_ring.IORING_OP_CONNECT, fd, _addr_of(buf), 0, len(sa), keepalive=buf)
            res, _ = await self._run_op(op)
            if res == -errno.EALREADY:
                # A previous attempt is still going (its op was cancelled by a
                # moved deadline and submitted again): wait for its outcome.
                await self.wait_writable()
                err = self._sock.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_ERROR)
                res = -err
        except BaseException:
            # Cancelled, Ctrl-C, a bad address...: as in trio, a connect
            # that did not finish leaves no half-connected socket behind.
            self.close()
            raise
        if res < 0:
            if self._sock.fileno() < 0:
                raise ClosedResourceError("connect failed: another task closed this socket")
            raise OSError(-res, f"Error connecting to {address!r}: {os.strerror(-res)}")

    # -- receiving ----------------------------------------------------------

    async def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Like :meth:`socket.socket.recv`, async.

        No buffer is pinned while waiting: the kernel picks one from the
        run's provided-buffer ring when data arrives and the bytes are copied
        out (so at most the ring's buffer size, 64 KiB, is returned)."""
        fd = self._sock.fileno()
        if type(bufsize) is not int or not 0 < bufsize <= sys.maxsize or fd < 0 or flags:
            try:
                bufsize = _check_size(bufsize, "buffersize", "recv")
                flags = _check_flags(flags, "recv")
                if bufsize == 0:
                    # As the stdlib (and so trio): no system call at all,
                    # whatever the socket's state.
                    fd = -1
                else:
                    fd = self._fd()
            except Exception as exc:
                await _fail_at_once(exc)
            if bufsize == 0:
                await _completed_at_once()
                return b""
        op = self._recv_op
        if op is not None and op.done and not op.bufring.closed:
            # Reuse (see _recv_op): same run, same buffer ring.
            bufring = op.bufring
            op.fd = fd
            op.length = bufsize if bufsize < bufring.size else bufring.size
            op.op_flags = flags
        else:
            op = None
            bufring = runtime_recv_ring()
        if op is None and bufring is not None:
            op = _SelectRecvOp(
                _ring.IORING_OP_RECV,
                fd,
                0,
                bufsize if bufsize < bufring.size else bufring.size,
                0,
                flags,
                sqe_flags=_ring.IOSQE_BUFFER_SELECT,
                buf_index=bufring.bgid,
            )
            op.bufring = bufring
            if self._recv_op is None or self._recv_op.done:
                self._recv_op = op
        if op is not None:
            op.data = b""
            ops = self._ops
            if ops is None:
                ops = self._ops = []
            ops.append(op)
            try:
                res, _ = await submit_and_wait(op)
            finally:
                self._op_finished(op)
            if res >= 0:
                return op.data  # type: ignore[no-any-return]
            if res != _ENOBUFS:
                raise self._error(res, "recv")
            # Every buffer of the ring is taken (a burst of completions):
            # this one call reads into a private buffer instead.
            bufsize = min(bufsize, _FALLBACK_RECV_SIZE)
            fd = self._fd()
        buf = _ffi.new("char[]", bufsize)
        plain = RingOp(_ring.IORING_OP_RECV, fd, _addr_of(buf), bufsize, 0, flags, keepalive=buf)
        res, _ = await self._run_op(plain)
        if res < 0:
            raise self._error(res, "recv")
        return _ffi.buffer(buf, res)[:]  # type: ignore[no-any-return]

    async def recv_into(self, buffer: Buffer, nbytes: int = 0, flags: int = 0) -> int:
        """Like :meth:`socket.socket.recv_into`, async; the kernel writes
        straight into ``buffer`` (which therefore stays pinned while waiting)."""
        try:
            view = _writable_buffer(buffer, "recv_into")
            nbytes = _check_nbytes(nbytes, view.nbytes, "recv_into")
            flags = _check_flags(flags, "recv_into")
            fd = self._fd()
        except Exception as exc:
            await _fail_at_once(exc)
        if nbytes == 0:
            await _completed_at_once()
            return 0
        op = RingOp(_ring.IORING_OP_RECV, fd, view, nbytes, 0, flags)
        res, _ = await self._run_op(op)
        if res < 0:
            raise self._error(res, "recv_into")
        return res

    async def _recvmsg_raw(
        self, data_buf: Any, nbytes: int, ancbufsize: int, flags: int, what: str
    ) -> tuple[int, Any, int, int, Any]:
        """One RECVMSG into one buffer (see :meth:`_recvmsg_iov`)."""
        return await self._recvmsg_iov(((data_buf, nbytes),), ancbufsize, flags, what)

    async def _recvmsg_iov(
        self, buffers: tuple[tuple[Any, int], ...], ancbufsize: int, flags: int, what: str
    ) -> tuple[int, Any, int, int, Any]:
        """One RECVMSG scattering into ``buffers`` ((buffer, length) pairs,
        one iovec each; a buffer is a cffi array or a pinned view).  Returns (nbytes, name buffer, namelen,
        msg_flags, ancillary bytes)."""
        try:
            flags = _check_flags(flags, what)
            fd = self._fd()
        except Exception as exc:
            await _fail_at_once(exc)
        name = _ffi.new("char[]", _SOCKADDR_MAX)
        iov = _ffi.new("char[]", _IOVEC.size * max(1, len(buffers)))
        iov_mem = _ffi.buffer(iov)
        for i, (buf, length) in enumerate(buffers):
            _IOVEC.pack_into(iov_mem, i * _IOVEC.size, _buffer_address(buf), length)
        control = _ffi.new("char[]", ancbufsize) if ancbufsize else _ffi.NULL
        msg = _ffi.new("char[]", _MSGHDR.size)
        _MSGHDR.pack_into(
            _ffi.buffer(msg),
            0,
            _addr_of(name),
            _SOCKADDR_MAX,
            _addr_of(iov),
            len(buffers),
            _addr_of(control) if ancbufsize else 0,
            ancbufsize,
            0,
        )
        op = RingOp(
            _ring.IORING_OP_RECVMSG,
            fd,
            _addr_of(msg),
            1,
            0,
            flags,
            keepalive=(msg, iov, name, control, buffers),
        )
        res, _ = await self._run_op(op)
        if res < 0:
            raise self._error(res, what)
        mbuf = _ffi.buffer(msg)
        (namelen,) = struct.unpack_from("=I", mbuf, _MSGHDR_NAMELEN_OFF)
        (controllen,) = struct.unpack_from("=Q", mbuf, _MSGHDR_CONTROLLEN_OFF)
        (msg_flags,) = struct.unpack_from("=i", mbuf, _MSGHDR_FLAGS_OFF)
        anc = _ffi.buffer(control, min(controllen, ancbufsize))[:] if ancbufsize else b""
        return res, _ffi.buffer(name), min(namelen, _SOCKADDR_MAX), msg_flags, anc

    async def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        """Like :meth:`socket.socket.recvfrom`, async (one IORING_OP_RECVMSG)."""
        try:
            bufsize = _check_size(bufsize, "buffersize", "recvfrom")
        except Exception as exc:
            await _fail_at_once(exc)
        buf = _ffi.new("char[]", max(bufsize, 1))
        n, name, namelen, _, _ = await self._recvmsg_raw(buf, bufsize, 0, flags, "recvfrom")
        return _ffi.buffer(buf, n)[:], _decode_sockaddr(name, namelen)

    async def recvfrom_into(self, buffer: Buffer, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        """Like :meth:`socket.socket.recvfrom_into`, async."""
        try:
            view = _writable_buffer(buffer, "recvfrom_into")
            nbytes = _check_nbytes(nbytes, view.nbytes, "recvfrom_into")
        except Exception as exc:
            await _fail_at_once(exc)
        n, name, namelen, _, _ = await self._recvmsg_raw(view, nbytes, 0, flags, "recvfrom_into")
        return n, _decode_sockaddr(name, namelen)

    async def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        """Like :meth:`socket.socket.recvmsg`, async (one IORING_OP_RECVMSG)."""
        try:
            bufsize = _check_size(bufsize, "buffersize", "recvmsg")
            ancbufsize = _check_size(ancbufsize, "ancillary buffer size", "recvmsg")
        except Exception as exc:
            await _fail_at_once(exc)
        buf = _ffi.new("char[]", max(bufsize, 1))
        n, name, namelen, msg_flags, anc = await self._recvmsg_raw(
            buf, bufsize, ancbufsize, flags, "recvmsg"
        )
        return _ffi.buffer(buf, n)[:], _parse_cmsgs(anc), msg_flags, _decode_sockaddr(name, namelen)

    async def recvmsg_into(
        self, buffers: Iterable[Buffer], ancbufsize: int = 0, flags: int = 0
    ) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        """Like :meth:`socket.socket.recvmsg_into`, async: one
        IORING_OP_RECVMSG whose iovecs are ``buffers`` (writable bytes-like
        objects, filled in order; they stay pinned while it waits).  Returns
        ``(nbytes, ancdata, msg_flags, address)``."""
        try:
            if isinstance(buffers, (bytes, bytearray, memoryview)):
                raise TypeError(
                    "recvmsg_into() takes an iterable of writable buffers (e.g. [bytearray(n)]), "
                    f"not a single {type(buffers).__name__}"
                )
            views = tuple(_writable_buffer(b, "recvmsg_into") for b in buffers)
            ancbufsize = _check_size(ancbufsize, "ancillary buffer size", "recvmsg_into")
        except Exception as exc:
            await _fail_at_once(exc)
        n, name, namelen, msg_flags, anc = await self._recvmsg_iov(
            tuple((view, view.nbytes) for view in views), ancbufsize, flags, "recvmsg_into"
        )
        return n, _parse_cmsgs(anc), msg_flags, _decode_sockaddr(name, namelen)

    # -- sending ------------------------------------------------------------

    async def send(self, data: Buffer, flags: int = 0) -> int:
        """Like :meth:`socket.socket.send`, async (one IORING_OP_SEND).
        Returns how many bytes were sent; a cancelled send that sent some
        bytes returns that count (the cancellation lands at the next
        checkpoint)."""
        try:
            payload = _readable_buffer(data, "send")
            flags = _check_flags(flags, "send")
            fd = self._fd()
        except Exception as exc:
            await _fail_at_once(exc)
        op = RingOp(_ring.IORING_OP_SEND, fd, payload, _nbytes(payload), 0, flags | _MSG_NOSIGNAL)
        res, _ = await self._run_op(op)
        if res < 0:
            raise self._error(res, "send")
        return res

    async def _sendmsg_raw(
        self, buffers: Iterable[Any], ancdata: Iterable[Any], flags: int, address: Any, what: str
    ) -> int:
        try:
            payloads = [_readable_buffer(b, what) for b in buffers]
            control = b"".join(_build_cmsg(item) for item in ancdata)
            flags = _check_flags(flags, what)
        except Exception as exc:
            await _fail_at_once(exc)
        # (As in trio, an address that cannot be resolved raises without a
        # checkpoint of its own; a host name is looked up in a thread.)
        if address is not None:
            address = await self._resolve(address, local=False)
            sa = _encode_sockaddr(self._sock.family, address)
        else:
            sa = b""
        fd = self._sock.fileno()
        if fd < 0:
            await _fail_at_once(_closed_socket_error())
        iov = _ffi.new("char[]", max(1, _IOVEC.size * len(payloads)))
        iov_mem = _ffi.buffer(iov)
        for i, payload in enumerate(payloads):
            _IOVEC.pack_into(iov_mem, i * _IOVEC.size, address_of(payload), _nbytes(payload))
        name = _ffi.new("char[]", sa) if sa else _ffi.NULL
        ctl = _ffi.new("char[]", control) if control else _ffi.NULL
        msg = _ffi.new("char[]", _MSGHDR.size)
        _MSGHDR.pack_into(
            _ffi.buffer(msg),
            0,
            _addr_of(name) if sa else 0,
            len(sa),
            _addr_of(iov),
            len(payloads),
            _addr_of(ctl) if control else 0,
            len(control),
            0,
        )
        op = RingOp(
            _ring.IORING_OP_SENDMSG,
            fd,
            _addr_of(msg),
            1,
            0,
            flags | _MSG_NOSIGNAL,
            keepalive=(msg, iov, name, ctl, payloads),
        )
        res, _ = await self._run_op(op)
        if res < 0:
            raise self._error(res, what)
        return res

    async def sendto(self, data: Buffer, *args: Any) -> int:
        """``sendto(data, address)`` or ``sendto(data, flags, address)``, like
        :meth:`socket.socket.sendto`, async (one IORING_OP_SENDMSG)."""
        if len(args) == 1:
            flags, address = 0, args[0]
        elif len(args) == 2:
            flags, address = args
        else:
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args) + 1} given)")
        if address is None:
            raise TypeError("sendto() needs a destination address (use send() on a connected socket)")
        return await self._sendmsg_raw((data,), (), flags, address, "sendto")

    async def sendmsg(
        self,
        buffers: Iterable[Buffer],
        ancdata: Iterable[tuple[int, int, Buffer]] = (),
        flags: int = 0,
        address: Any = None,
    ) -> int:
        """Like :meth:`socket.socket.sendmsg`, async (one IORING_OP_SENDMSG)."""
        if isinstance(buffers, (bytes, bytearray, memoryview, str)):
            raise TypeError("sendmsg() takes an iterable of buffers, not a single buffer")
        return await self._sendmsg_raw(buffers, ancdata, flags, address, "sendmsg")


def _build_cmsg(item: Any) -> bytes:
    try:
        level, type_, data = item
    except (TypeError, ValueError):
        raise TypeError(
            f"ancillary data items must be (level, type, data) tuples, not {item!r}"
        ) from None
    data = bytes(data)
    header = _CMSGHDR.pack(_CMSGHDR.size + len(data), level, type_)
    return header + data + b"\0" * (_align8(len(data)) - len(data))


def _parse_cmsgs(control: bytes) -> list[tuple[int, int, bytes]]:
    out = []
    off = 0
    while off + _CMSGHDR.size <= len(control):
        length, level, type_ = _CMSGHDR.unpack_from(control, off)
        if length < _CMSGHDR.size:
            break
        out.append((level, type_, control[off + _CMSGHDR.size : off + length]))
        off += _align8(length)
    return out


def _wrap_accepted(fd: int, listener: _stdlib_socket.socket) -> SocketType:
    """Wrap an fd the kernel just accepted; the fd is closed if that fails."""
    try:
        # SOCK_NONBLOCK in the type tells the stdlib the fd is already
        # non-blocking (accept4 made it so): no extra syscall.
        sock = _stdlib_socket.socket(
            listener.family, listener.type | _stdlib_socket.SOCK_NONBLOCK, listener.proto, fd
        )
    except BaseException:
        os.close(fd)
        raise
    return SocketType._wrap(sock, owned=True)


# ---------------------------------------------------------------------------
# Readiness helpers on raw fds / objects with fileno()
# ---------------------------------------------------------------------------


def _as_fd(obj: Any) -> int:
    fd = obj if isinstance(obj, int) else obj.fileno()
    if fd < 0:
        raise OSError(errno.EBADF, "Bad file descriptor")
    return int(fd)


# Tasks waiting for readiness on raw fds, per run: {(fd, events): op}.  As in
# trio, one task at a time per fd and direction, and notify_closing(fd) wakes
# them with ClosedResourceError.
_fd_waiters: RunVar[dict[tuple[int, int], RingOp]] = RunVar("ringtrio.fd_waiters")


def _waiters() -> dict[tuple[int, int], RingOp]:
    try:
        return _fd_waiters.get()
    except LookupError:
        table: dict[tuple[int, int], RingOp] = {}
        _fd_waiters.set(table)
        return table


async def _wait_fd(obj: Any, events: int) -> None:
    fd = _as_fd(obj)
    table = _waiters()
    key = (fd, events)
    if key in table:
        raise BusyResourceError(
            f"another task is already waiting for fd {fd} to become "
            f"{'readable' if events == _POLLIN else 'writable'}"
        )

    async def run(op: RingOp) -> tuple[int, int]:
        # The op in flight is the one notify_closing() cancels.
        table[key] = op
        return await submit_and_wait(op)

    try:
        res, _ = await run(RingOp(_ring.IORING_OP_POLL_ADD, fd, 0, 0, 0, events))
        if res >= 0 and events == _POLLOUT and not res & _WRITABLE_OR_ERROR:
            res, _ = await _poll_writable_via_epoll(fd, run)
    finally:
        table.pop(key, None)
    if res < 0:
        raise _errno_error(res)


# What ends a wait for writability: POLLOUT, or an error or hang-up (epoll,
# and so trio, always reports those).
_WRITABLE_OR_ERROR = select.POLLOUT | select.POLLERR | select.POLLHUP | select.POLLNVAL


async def _poll_writable_via_epoll(fd: int, run: Callable[[RingOp], Awaitable[tuple[int, int]]]) -> tuple[int, int]:
    """Wait until ``fd`` is writable after a POLL_ADD for POLLOUT came back
    with POLLRDHUP only (the peer shut down its sending side).

    io_uring's poll always reports POLLRDHUP, whatever it was asked for
    (the kernel adds it to every poll, with POLLERR and POLLHUP), so a new
    POLL_ADD would complete at once with it again: a busy loop.  epoll
    reports only what it was asked for plus POLLERR/POLLHUP, so the wait
    goes through a private epoll instance watching ``fd`` for EPOLLOUT;
    the ring polls the epoll fd for readability (``run`` submits that op and
    waits, cancellably, for its CQE).  Rare (a full send buffer towards a
    peer that stopped sending), so its three extra system calls do not
    matter.  Returns the POLL_ADD's (res, flags)."""
    ep = select.epoll(1)
    try:
        ep.register(fd, select.EPOLLOUT)
        # The op's CQE has arrived when run() returns or raises (a cancel
        # waits for it), so the epoll fd is closed with nothing in flight.
        # (A stand-in: the statistics count its task as the writer it is.)
        return await run(StandInPollOp(ep.fileno(), _POLLIN, waits_for=_POLLOUT))
    finally:
        ep.close()


async def wait_readable(fd: Any) -> None:
    """Block until ``fd`` (a file descriptor, or anything with ``fileno()``)
    is readable (one IORING_OP_POLL_ADD).  ``lowlevel.wait_readable`` in
    trio's terms."""
    if isinstance(fd, SocketType):
        return await fd.wait_readable()
    await _wait_fd(fd, _POLLIN)


async def wait_writable(fd: Any) -> None:
    """Block until ``fd`` (a file descriptor, or anything with ``fileno()``)
    is writable."""
    if isinstance(fd, SocketType):
        return await fd.wait_writable()
    await _wait_fd(fd, _POLLOUT)


def notify_closing(fd: Any) -> None:
    """Call before closing ``fd`` (a file descriptor, or anything with
    ``fileno()``) while tasks may be waiting on it with
    :func:`wait_readable`/:func:`wait_writable`: they wake with
    :exc:`ClosedResourceError` (or their result, if readiness raced it)."""
    fd = _as_fd(fd)
    table = _waiters()
    for events in (_POLLIN, _POLLOUT):
        op = table.pop((fd, events), None)
        if op is not None:
            cancel_ring_op(op, ClosedResourceError(f"fd {fd} was closed while a task waited on it"))

