"""A TCP echo server: every byte a client sends comes straight back.

    python examples/echo_server.py [--host HOST] [--port PORT]

`serve_tcp` listens (one multishot accept on the ring per listening socket)
and runs `echo` in a new task for each connection; `echo` loops on
`receive_some` / `send_all` until the client hangs up.  With the default
`--port 0` the kernel picks a free port; the server prints it on its first
line of output, e.g. ``listening on 127.0.0.1 port 40123``.  Stop it with
Ctrl-C.

Try it with `python examples/echo_client.py --port PORT`.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from functools import partial

import ringtrio

_connection_ids = itertools.count(1)


async def echo(stream: ringtrio.SocketStream) -> None:
    ident = next(_connection_ids)
    peer = stream.socket.getpeername()
    print(f"[{ident}] connection from {peer[0]} port {peer[1]}", flush=True)
    received = 0
    try:
        # A ReceiveStream is async-iterable: one chunk (up to 64 KiB) per
        # step, until the client closes its end.
        async for data in stream:
            received += len(data)
            await stream.send_all(data)
    except ringtrio.BrokenResourceError as exc:
        # Reset by the peer, or similar: this client is gone, the server
        # carries on.
        print(f"[{ident}] connection broken: {exc}", flush=True)
    else:
        print(f"[{ident}] closed after echoing {received} bytes", flush=True)
    # serve_tcp closes the stream when this handler returns.


async def main(host: str, port: int) -> None:
    async with ringtrio.open_nursery() as nursery:
        # nursery.start() returns once the server is accepting, with the
        # listeners it opened: the way to learn which port 0 became.
        # (start() passes on positional arguments only: keyword arguments
        # go through functools.partial, as in trio.)
        listeners = await nursery.start(partial(ringtrio.serve_tcp, echo, port, host=host))
        for listener in listeners:
            address = listener.socket.getsockname()
            print(f"listening on {address[0]} port {address[1]}", flush=True)


def first_error(exc: BaseException) -> BaseException:
    """The first exception inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535 (0: any free port), got {value}")
    return value


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ringtrio TCP echo server")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=0, help="port to listen on (default 0: any free port)")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    try:
        ringtrio.run(main, args.host, args.port)
    except* KeyboardInterrupt:
        # Ctrl-C lands in the main task, which is waiting in the nursery,
        # so it leaves wrapped in an exception group.
        print("server stopped", flush=True)
    except* OSError as group:
        # Typically: the port is taken, or the host name does not resolve.
        sys.exit(f"echo_server: cannot listen on {args.host} port {args.port}: {first_error(group)}")
