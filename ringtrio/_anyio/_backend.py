"""``anyio.abc.AsyncBackend`` for ringtrio: AnyIO's calls, answered by
ringtrio's public API.

This module is what ``anyio._backends._ringtrio`` resolves to (see
``ringtrio/_anyio_hook.py``); AnyIO reads its ``backend_class``.  The
classes it returns live next to it (``_tasks``, ``_sync``, ``_sockets``,
``_processes``, ``_testing``); what is left here is one-line translations
and the thread plumbing.

Tokens: the token AnyIO sees is the run's ``TrioToken``, as with AnyIO's
trio backend (AnyIO keys its per-run state, ``anyio.lowlevel.RunVar``, by it
in a ``WeakKeyDictionary``: it is weakly referenceable and hashed by
identity).
"""

from __future__ import annotations

import math
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from contextvars import copy_context
from signal import Signals
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import sniffio
from anyio import TaskInfo, abc
from anyio._core._eventloop import claim_worker_thread
from anyio.abc import AsyncBackend, IPSockAddrType

import ringtrio
from ringtrio import from_thread, lowlevel, to_thread

from . import _processes, _sockets, _sync, _tasks, _tasks_info, _testing

if sys.version_info >= (3, 11):
    from typing import TypeVarTuple, Unpack

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike, StrOrBytesPath

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
PosArgsT = TypeVarTuple("PosArgsT")


_default_limiter: lowlevel.RunVar[_sync.CapacityLimiter] = lowlevel.RunVar(
    "ringtrio anyio default thread limiter"
)


def _trio_token(token: object) -> lowlevel.TrioToken | None:
    if token is None:
        return None
    if isinstance(token, lowlevel.TrioToken):
        return token
    raise TypeError(f"expected a token from the ringtrio backend, got {token!r}")


async def _wait_ready(
    wait: Callable[[Any], Awaitable[None]], obj: FileDescriptorLike, action: str
) -> None:
    """``lowlevel.wait_readable``/``wait_writable`` with AnyIO's errors."""
    try:
        await wait(obj)
    except ringtrio.ClosedResourceError as exc:
        raise anyio.ClosedResourceError().with_traceback(exc.__traceback__) from None
    except ringtrio.BusyResourceError:
        raise anyio.BusyResourceError(action) from None


class RingtrioBackend(AsyncBackend):
    @classmethod
    def run(
        cls,
        func: Callable[[Unpack[PosArgsT]], Awaitable[T]],
        args: tuple[Unpack[PosArgsT]],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> T:
        # anyio.run() takes no keyword arguments for func; options are
        # ringtrio.run()'s own (clock=, instruments=, strict_exception_groups=).
        return ringtrio.run(func, *args, **options)

    @classmethod
    def current_token(cls) -> object:
        return lowlevel.current_trio_token()

    @classmethod
    def current_time(cls) -> float:
        return ringtrio.current_time()

    @classmethod
    def cancelled_exception_class(cls) -> type[BaseException]:
        return ringtrio.Cancelled

    @classmethod
    async def checkpoint(cls) -> None:
        await lowlevel.checkpoint()

    @classmethod
    async def checkpoint_if_cancelled(cls) -> None:
        await lowlevel.checkpoint_if_cancelled()

    @classmethod
    async def cancel_shielded_checkpoint(cls) -> None:
        await lowlevel.cancel_shielded_checkpoint()

    @classmethod
    async def sleep(cls, delay: float) -> None:
        await ringtrio.sleep(delay)

    @classmethod
    def create_cancel_scope(
        cls, *, deadline: float = math.inf, shield: bool = False
    ) -> anyio.CancelScope:
        return _tasks.CancelScope(deadline=deadline, shield=shield)

    @classmethod
    def current_effective_deadline(cls) -> float:
        return ringtrio.current_effective_deadline()

    @classmethod
    def create_task_group(cls) -> abc.TaskGroup:
        return _tasks.TaskGroup()

    @classmethod
    def create_event(cls) -> anyio.Event:
        return _sync.Event()

    @classmethod
    def create_lock(cls, *, fast_acquire: bool) -> anyio.Lock:
        return _sync.Lock(fast_acquire=fast_acquire)

    @classmethod
    def create_semaphore(
        cls, initial_value: int, *, max_value: int | None = None, fast_acquire: bool = False
    ) -> anyio.Semaphore:
        return _sync.Semaphore(initial_value, max_value=max_value, fast_acquire=fast_acquire)

    @classmethod
    def create_capacity_limiter(cls, total_tokens: float) -> anyio.CapacityLimiter:
        return _sync.CapacityLimiter(total_tokens)

    # -- threads ----------------------------------------------------------

    @classmethod
    async def run_sync_in_worker_thread(
        cls,
        func: Callable[[Unpack[PosArgsT]], T],
        args: tuple[Unpack[PosArgsT]],
        abandon_on_cancel: bool = False,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> T:
        token = cls.current_token()

        # anyio.from_thread in the worker finds the run through the token
        # claim_worker_thread leaves in AnyIO's thread-locals.
        def in_worker() -> T:
            with claim_worker_thread(RingtrioBackend, token):
                return func(*args)

        return await to_thread.run_sync(
            in_worker,
            abandon_on_cancel=abandon_on_cancel,
            limiter=_sync.native_limiter(limiter),  # type: ignore[arg-type]
        )

    @classmethod
    def check_cancelled(cls) -> None:
        from_thread.check_cancelled()

    @classmethod
    def run_async_from_thread(
        cls,
        func: Callable[[Unpack[PosArgsT]], Coroutine[Any, Any, T_co]],
        args: tuple[Unpack[PosArgsT]],
        token: object,
    ) -> T_co:
        try:
            return from_thread.run(func, *args, trio_token=_trio_token(token))
        except ringtrio.RunFinishedError:
            raise anyio.RunFinishedError from None

    @classmethod
    def run_sync_from_thread(
        cls,
        func: Callable[[Unpack[PosArgsT]], T],
        args: tuple[Unpack[PosArgsT]],
        token: object,
    ) -> T:
        try:
            return from_thread.run_sync(func, *args, trio_token=_trio_token(token))
        except ringtrio.RunFinishedError:
            raise anyio.RunFinishedError from None

    @classmethod
    def run_sync_soon(
        cls,
        func: Callable[[Unpack[PosArgsT]], object],
        args: tuple[Unpack[PosArgsT]],
        token: object,
    ) -> None:
        trio_token = _trio_token(token)
        assert trio_token is not None
        # The callback runs in a copy of the calling thread's context (as
        # AnyIO wants), with sniffio's name set back to ringtrio: the caller
        # may be another event loop's thread, whose name ringtrio code would
        # see otherwise (trio overrides it with a thread-local in its loop
        # thread; ringtrio sets only the context variable).
        context = copy_context()
        context.run(sniffio.current_async_library_cvar.set, "ringtrio")
        try:
            trio_token.run_sync_soon(context.run, func, *args)
        except ringtrio.RunFinishedError:
            raise anyio.RunFinishedError from None

    @classmethod
    def current_default_thread_limiter(cls) -> anyio.CapacityLimiter:
        limiter = _default_limiter.get(None)
        if limiter is None:
            limiter = _sync.CapacityLimiter._of(to_thread.current_default_thread_limiter())
            _default_limiter.set(limiter)
        return limiter

    # -- subprocesses and signals --------------------------------------------

    @classmethod
    async def open_process(
        cls,
        command: StrOrBytesPath | Sequence[StrOrBytesPath],
        *,
        stdin: int | IO[Any] | None,
        stdout: int | IO[Any] | None,
        stderr: int | IO[Any] | None,
        **kwargs: Any,
    ) -> abc.Process:
        return await _processes.open_process(
            command, stdin=stdin, stdout=stdout, stderr=stderr, **kwargs
        )

    @classmethod
    def setup_process_pool_exit_at_shutdown(cls, workers: set[abc.Process]) -> None:
        lowlevel.spawn_system_task(_processes.shut_down_process_pool, workers)

    @classmethod
    def open_signal_receiver(
        cls, *signals: Signals
    ) -> AbstractContextManager[AsyncIterator[Signals]]:
        return _processes.open_signal_receiver(*signals)

    # -- sockets ----------------------------------------------------------

    @classmethod
    async def connect_tcp(
        cls, host: str, port: int, local_address: IPSockAddrType | None = None
    ) -> abc.SocketStream:
        return await _sockets.connect_tcp(host, port, local_address)

    @classmethod
    async def connect_unix(
        cls,
        path: str | bytes,
        kind: Literal[socket.SocketKind.SOCK_STREAM, socket.SocketKind.SOCK_SEQPACKET],
    ) -> abc.UNIXSocketStream:
        return await _sockets.connect_unix(path, kind)

    @classmethod
    def create_tcp_listener(cls, sock: socket.socket) -> abc.SocketListener:
        return _sockets.TCPSocketListener(sock)

    @classmethod
    def create_unix_listener(cls, sock: socket.socket) -> abc.SocketListener:
        return _sockets.UNIXSocketListener(sock)

    @classmethod
    async def create_udp_socket(
        cls,
        family: socket.AddressFamily,
        local_address: IPSockAddrType | None,
        remote_address: IPSockAddrType | None,
        reuse_port: bool,
    ) -> abc.UDPSocket | abc.ConnectedUDPSocket:
        return await _sockets.create_udp_socket(family, local_address, remote_address, reuse_port)

    @classmethod
    async def create_unix_datagram_socket(  # type: ignore[override]
        cls, raw_socket: socket.socket, remote_path: str | bytes | None
    ) -> abc.UNIXDatagramSocket | abc.ConnectedUNIXDatagramSocket:
        return await _sockets.create_unix_datagram_socket(raw_socket, remote_path)

    @classmethod
    async def getaddrinfo(
        cls,
        host: bytes | str | None,
        port: str | int | None,
        *,
        family: int | socket.AddressFamily = 0,
        type: int | socket.SocketKind = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> Sequence[
        tuple[
            socket.AddressFamily,
            socket.SocketKind,
            int,
            str,
            tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes],
        ]
    ]:
        return await ringtrio.socket.getaddrinfo(host, port, family, type, proto, flags)

    @classmethod
    async def getnameinfo(cls, sockaddr: IPSockAddrType, flags: int = 0) -> tuple[str, str]:
        return await ringtrio.socket.getnameinfo(sockaddr, flags)

    @classmethod
    async def wait_readable(cls, obj: FileDescriptorLike) -> None:
        await _wait_ready(lowlevel.wait_readable, obj, "reading from")

    @classmethod
    async def wait_writable(cls, obj: FileDescriptorLike) -> None:
        await _wait_ready(lowlevel.wait_writable, obj, "writing to")

    @classmethod
    def notify_closing(cls, obj: FileDescriptorLike) -> None:
        lowlevel.notify_closing(obj)

    @classmethod
    async def wrap_listener_socket(cls, sock: socket.socket) -> abc.SocketListener:
        if sock.family == socket.AF_UNIX:
            return _sockets.UNIXSocketListener(sock)
        return _sockets.TCPSocketListener(sock)

    @classmethod
    async def wrap_stream_socket(cls, sock: socket.socket) -> abc.SocketStream:
        return _sockets.SocketStream(ringtrio.socket.from_stdlib_socket(sock))

    @classmethod
    async def wrap_unix_stream_socket(cls, sock: socket.socket) -> abc.UNIXSocketStream:
        return _sockets.UNIXSocketStream(ringtrio.socket.from_stdlib_socket(sock))

    @classmethod
    async def wrap_udp_socket(cls, sock: socket.socket) -> abc.UDPSocket:
        return _sockets.UDPSocket(ringtrio.socket.from_stdlib_socket(sock))

    @classmethod
    async def wrap_connected_udp_socket(cls, sock: socket.socket) -> abc.ConnectedUDPSocket:
        return _sockets.ConnectedUDPSocket(ringtrio.socket.from_stdlib_socket(sock))

    @classmethod
    async def wrap_unix_datagram_socket(cls, sock: socket.socket) -> abc.UNIXDatagramSocket:
        return _sockets.UNIXDatagramSocket(ringtrio.socket.from_stdlib_socket(sock))

    @classmethod
    async def wrap_connected_unix_datagram_socket(
        cls, sock: socket.socket
    ) -> abc.ConnectedUNIXDatagramSocket:
        return _sockets.ConnectedUNIXDatagramSocket(ringtrio.socket.from_stdlib_socket(sock))

    # -- testing and introspection ---------------------------------------------

    @classmethod
    def get_current_task(cls) -> TaskInfo:
        return _tasks_info.task_info(lowlevel.current_task())

    @classmethod
    def get_running_tasks(cls) -> Sequence[TaskInfo]:
        return _tasks_info.running_tasks()

    @classmethod
    async def wait_all_tasks_blocked(cls) -> None:
        await ringtrio.testing.wait_all_tasks_blocked()

    @classmethod
    def create_test_runner(cls, options: dict[str, Any]) -> abc.TestRunner:
        return _testing.TestRunner(**options)


backend_class = RingtrioBackend

__all__ = ["RingtrioBackend", "backend_class"]
