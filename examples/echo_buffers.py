"""A TCP echo server whose connections all receive into ONE shared buffer group.

    python examples/echo_buffers.py [--host HOST] [--port PORT] [--count N] [--size S]
    python examples/echo_buffers.py --port 0 --self-test

`nursery.buffer_group(count=N, size=S)` registers N buffers of S bytes with
the kernel once.  Each connection runs one multishot receive
(`stream.receive_buffers(group)`): the kernel picks a buffer from the shared
group only when bytes arrive, so 10,000 idle connections hold no receive
buffer at all.  Each received chunk is a `ringtrio.Buffer` *lease*: echo it
straight from the group's memory with `send_all(buf)`, and leave the
`with` block to give the buffer back (no copy, no syscall).

When every buffer is leased the kernel stops the receives with ENOBUFS;
they resume by themselves as leases come back (back-pressure, nothing lost).

`--self-test` starts the server, connects a client, checks that a message
comes back intact, prints "self-test ok" and exits 0.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from functools import partial

import ringtrio

_ids = itertools.count(1)


def make_handler(group: ringtrio.BufferGroup, quiet: bool):
    async def echo(stream: ringtrio.SocketStream) -> None:
        ident = next(_ids)
        echoed = 0
        try:
            async for buf in stream.receive_buffers(group):
                with buf:  # the lease: released (and its view invalidated) at the end
                    await stream.send_all(buf)
                    echoed += len(buf)
        except ringtrio.BrokenResourceError as exc:
            if not quiet:
                print(f"[{ident}] connection broken: {exc}", flush=True)
            return
        if not quiet:
            print(f"[{ident}] closed after echoing {echoed} bytes", flush=True)

    return echo


async def self_test(port: int, group: ringtrio.BufferGroup) -> None:
    message = bytes(range(256)) * 64  # 16 KiB: several buffers' worth
    stream = await ringtrio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(message)
        got = b""
        while len(got) < len(message):
            chunk = await stream.receive_some()
            if not chunk:
                break
            got += chunk
    if got != message:
        raise SystemExit(f"self-test FAILED: sent {len(message)} bytes, got {len(got)} back")
    stats = group.statistics()
    print(f"self-test ok: {len(got)} bytes echoed; group {stats}", flush=True)


async def main(host: str, port: int, count: int, size: int, test: bool) -> None:
    # The group belongs to this nursery: it is unregistered and freed when
    # the nursery exits, after every connection handler has finished.
    async with ringtrio.open_nursery() as owner:
        group = owner.buffer_group(count=count, size=size)
        async with ringtrio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(ringtrio.serve_tcp, make_handler(group, quiet=test), port, host=host)
            )
            bound = listeners[0].socket.getsockname()
            mode = "incremental" if group.incremental else "plain"
            print(
                f"listening on {bound[0]} port {bound[1]} "
                f"(one group: {count} x {size} bytes, {mode} consumption)",
                flush=True,
            )
            if test:
                await self_test(bound[1], group)
                nursery.cancel_scope.cancel()
    if test:
        end = group.statistics()
        assert end.leased == 0 and end.closed, end


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


def buffer_count(text: str) -> int:
    value = int(text)
    # The kernel's limit for a provided-buffer ring.
    if not (1 <= value <= 32768 and value & (value - 1) == 0):
        raise argparse.ArgumentTypeError(f"must be a power of two from 1 to 32768, got {value}")
    return value


def buffer_size(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {value}")
    return value


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=0)
    parser.add_argument("--count", type=buffer_count, default=1024, help="buffers in the group (power of two)")
    parser.add_argument("--size", type=buffer_size, default=4096, help="bytes per buffer")
    parser.add_argument("--self-test", action="store_true", help="echo one message through the server and exit")
    args = parser.parse_args(argv)
    # `return` is not allowed in an except* block: the outcome goes here.
    status = 0
    try:
        ringtrio.run(main, args.host, args.port, args.count, args.size, args.self_test)
    except* KeyboardInterrupt:
        # Ctrl-C lands in the main task, which is waiting in a nursery, so it
        # leaves wrapped in an exception group.
        print("server stopped", flush=True)
    except* OSError as group:
        # Typically: the port is taken, or the host name does not resolve.
        print(f"echo_buffers: cannot serve on {args.host} port {args.port}: {first_error(group)}", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(cli())
