"""``ringtrio.socket``: the stdlib's socket module with async, ring-backed
sockets.  Mirrors ``trio.socket``.

Every constant of the stdlib module (``AF_*``, ``SOCK_*``, ``SO_*``,
``IPPROTO_*``, ``MSG_*`` ...) is re-exported, together with the functions
that never block (``inet_pton``, ``htons``, ``gethostname`` ...).  Functions
that may block on the network (``getaddrinfo``, ``getnameinfo``) are async
and run in worker threads; ``gethostbyname`` and friends are left out, as in
trio: use ``getaddrinfo``.
"""

import socket as _stdlib_socket

from ._socket import (
    SocketType,
    from_stdlib_socket,
    fromfd,
    getaddrinfo,
    getnameinfo,
    getprotobyname,
    set_custom_hostname_resolver,
    set_custom_socket_factory,
    socket,
    socketpair,
    wait_readable,
    wait_writable,
)

# Non-blocking helpers and types, passed through unchanged.
_PASSTHROUGH = (
    "AddressFamily",
    "SocketKind",
    "AddressInfo",
    "MsgFlag",
    "CMSG_LEN",
    "CMSG_SPACE",
    "error",
    "gaierror",
    "herror",
    "timeout",
    "gethostname",
    "sethostname",
    "ntohs",
    "ntohl",
    "htons",
    "htonl",
    "inet_aton",
    "inet_ntoa",
    "inet_pton",
    "inet_ntop",
    "if_nameindex",
    "if_nametoindex",
    "if_indextoname",
    "has_ipv6",
    "has_dualstack_ipv6",
)

_names: list[str] = []
for _name in _PASSTHROUGH:
    if hasattr(_stdlib_socket, _name):
        globals()[_name] = getattr(_stdlib_socket, _name)
        _names.append(_name)
# Every constant: upper-case names of the stdlib module.
for _name in dir(_stdlib_socket):
    if _name.isupper() and not _name.startswith("_") and _name not in globals():
        globals()[_name] = getattr(_stdlib_socket, _name)
        _names.append(_name)
del _name

__all__ = [
    "SocketType",
    "from_stdlib_socket",
    "fromfd",
    "getaddrinfo",
    "getnameinfo",
    "getprotobyname",
    "set_custom_hostname_resolver",
    "set_custom_socket_factory",
    "socket",
    "socketpair",
    "wait_readable",
    "wait_writable",
    *_names,
]
