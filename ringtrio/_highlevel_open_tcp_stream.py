"""Connecting over TCP: :func:`open_tcp_stream`, with Happy Eyeballs."""

from __future__ import annotations

import socket as _stdlib_socket
from typing import Any

from . import _socket as rsocket
from ._core import open_nursery
from ._highlevel_socket import SocketStream
from ._sync import Event
from ._timeouts import move_on_after

__all__ = ["open_tcp_stream"]

# RFC 8305's recommended "connection attempt delay" is 250 ms (trio's too).
DEFAULT_DELAY = 0.250


def _format_host_port(host: str | bytes, port: Any) -> str:
    text = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def _reorder_targets(targets: list[Any]) -> None:
    # RFC 6555 section 5.4: try the first address first, and an address of
    # the other family second, so that a broken family costs one delay
    # rather than one per address.
    first_family = targets[0][0]
    for i in range(1, len(targets)):
        if targets[i][0] != first_family:
            targets.insert(1, targets.pop(i))
            return


async def open_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    happy_eyeballs_delay: float | None = DEFAULT_DELAY,
    local_address: str | None = None,
) -> SocketStream:
    """Connect to ``host``:``port`` and return a :class:`SocketStream`.

    Every address ``host`` resolves to is tried, Happy-Eyeballs style: the
    next attempt starts when the previous one failed or after
    ``happy_eyeballs_delay`` seconds (None: the default, 0.25), whichever
    comes first; the first connection to succeed wins and the others are
    cancelled and closed.  ``local_address`` binds the local end to that IP
    address (with a kernel-chosen port).

    Raises :exc:`OSError` if every attempt failed (the individual errors are
    its ``__cause__``, an :exc:`ExceptionGroup`).
    """
    if not isinstance(host, (str, bytes)):
        raise ValueError(f"host must be str or bytes, not {host!r}")
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"port must be an int, not {port!r}")
    if not 0 <= port <= 0xFFFF:
        # trio lets getaddrinfo() judge the port: a negative one is a
        # gaierror (EAI_SERVICE), so that is what we raise too (an OSError:
        # code that handles failed connections handles it), with a message
        # that says what is wrong.  (getaddrinfo takes a port above 65535
        # modulo 65536, so trio would connect to 70000 - 65536 = 4464: an
        # accident we do not copy; see docs/reference.md.)
        raise _stdlib_socket.gaierror(
            _stdlib_socket.EAI_SERVICE, f"port must be 0-65535, got {port}"
        )
    if happy_eyeballs_delay is None:
        happy_eyeballs_delay = DEFAULT_DELAY  # trio's meaning of None
    elif happy_eyeballs_delay < 0:
        raise ValueError(f"happy_eyeballs_delay must be >= 0, got {happy_eyeballs_delay}")
    targets = list(await rsocket.getaddrinfo(host, port, type=_stdlib_socket.SOCK_STREAM))
    if not targets:  # the system's getaddrinfo raises instead; a custom resolver may not
        raise OSError(f"no results found for hostname lookup: {_format_host_port(host, port)}")
    _reorder_targets(targets)

    errors: list[OSError] = []
    sockets: list[rsocket.SocketType] = []
    winner: rsocket.SocketType | None = None

    async def attempt(target: Any, failed: Event) -> None:
        nonlocal winner
        family, type_, proto, _, sockaddr = target
        try:
            sock = rsocket.socket(family, type_, proto)
            sockets.append(sock)
            if local_address is not None:
                # Let the kernel choose the port only at connect time, so
                # many outgoing connections from one address do not exhaust
                # the ephemeral ports.
                try:
                    sock.setsockopt(_stdlib_socket.IPPROTO_IP, _stdlib_socket.IP_BIND_ADDRESS_NO_PORT, 1)
                except (OSError, AttributeError):
                    pass
                try:
                    # Awaited: a custom factory's socket may have trio's
                    # async bind (ours returns an awaitable no-op).
                    await sock.bind((local_address, 0))
                except OSError:
                    raise OSError(
                        f"local_address={local_address!r} is incompatible with remote address "
                        f"{sockaddr!r}"
                    ) from None
            await sock.connect(sockaddr)
        except OSError as exc:
            errors.append(exc)
            failed.set()
            return
        # With ring ops, a connect that completed in the race with the
        # winner's cancel still returns: only the first one wins.
        if winner is None:
            winner = sock
            nursery.cancel_scope.cancel()

    try:
        async with open_nursery() as nursery:
            for target in targets:
                failed = Event()
                nursery.start_soon(attempt, target, failed)
                with move_on_after(happy_eyeballs_delay):
                    await failed.wait()
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    for sock in sockets:
        if sock is not winner:
            sock.close()
    if winner is None:
        msg = f"all attempts to connect to {_format_host_port(host, port)} failed"
        raise OSError(msg) from ExceptionGroup(msg, errors)
    try:
        return SocketStream(winner)
    except BaseException:
        winner.close()
        raise
