"""A client for examples/echo_server.py: sends numbered lines and prints
what comes back.

    python examples/echo_client.py --port PORT [--host HOST] [--count N]

Sending and receiving run in two tasks of one nursery, so the client keeps
reading while it writes (a client that wrote everything before reading
could deadlock against an echo server once both socket buffers fill up).
TCP is a byte stream, not a message stream: one `receive_some` may return
half a line or several lines, so the receiver splits what it gets at the
newlines itself.
"""

from __future__ import annotations

import argparse
import sys

import ringtrio


async def send_lines(stream: ringtrio.SocketStream, count: int) -> None:
    for i in range(count):
        await stream.send_all(f"line {i}: hello from ringtrio\n".encode())
        await ringtrio.sleep(0.01)
    # Half-close: "no more data from us".  The server sees the end of the
    # stream once it has echoed everything, and closes its side.
    await stream.send_eof()


async def receive_lines(stream: ringtrio.SocketStream, count: int) -> None:
    pending = b""
    received = 0
    async for data in stream:
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            print(f"echo: {line.decode()}", flush=True)
            received += 1
    if pending:
        raise RuntimeError(f"the server closed the connection mid-line: {pending!r}")
    if received != count:
        raise RuntimeError(f"sent {count} lines, got {received} back")
    print(f"done: {received} lines echoed", flush=True)


async def main(host: str, port: int, count: int) -> None:
    print(f"connecting to {host} port {port}", flush=True)
    async with await ringtrio.open_tcp_stream(host, port) as stream:
        with ringtrio.fail_after(30):
            async with ringtrio.open_nursery() as nursery:
                nursery.start_soon(send_lines, stream, count)
                nursery.start_soon(receive_lines, stream, count)


def first_error(exc: BaseException) -> BaseException:
    """The first exception inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def port_number(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port to connect to is 1-65535, got {value}")
    return value


def line_count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="client for the ringtrio echo server")
    parser.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, required=True, help="server port")
    parser.add_argument("--count", type=line_count, default=5, help="how many lines to send (default 5)")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    try:
        ringtrio.run(main, args.host, args.port, args.count)
    except* OSError as group:
        # Nobody listening there, or the host name does not resolve.  When
        # every connection attempt failed, the reasons are in the cause.
        error = first_error(group)
        if error.__cause__ is not None:
            error = first_error(error.__cause__)
        sys.exit(f"echo_client: cannot talk to {args.host} port {args.port}: {error}")
