"""One TCP echo server in this (fresh) process, for the network rows.

    python bench/_echo_server.py SERVER [--cpu K]

SERVER is one of :data:`SERVERS`.  The server listens on 127.0.0.1, port 0,
prints one JSON line ``{"port": P, "version": ..., "loop": ...}`` once it
accepts connections, then serves until it is killed (``_net.py`` always kills
it).  If it cannot start it prints ``{"error": "Type: message"}`` instead and
exits 1.  ``--cpu K`` pins the process (before any library is imported), and
RLIMIT_NOFILE is raised to its hard limit so 10k connections fit.

Every handler echoes until EOF; a peer that disappears (reset, broken pipe)
just ends its handler, since the load generator exits with requests in flight.
Such errors are still logged (one line on stderr), so that a server which
drops connections by mistake can be diagnosed: the harness quotes the last
stderr line when the load generator fails.
"""

import argparse
import functools
import json
import os
import resource
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

HOST = "127.0.0.1"
BACKLOG = 4096
RECEIVE_SIZE = 65536
# ringtrio-bufs: one provided-buffer group shared by every connection.
GROUP_COUNT = 1024
GROUP_SIZE = 4096


def _ready(port, **info):
    sys.stdout.write(json.dumps(dict(port=port, **info)) + "\n")
    sys.stdout.flush()


def _log(exc):
    sys.stderr.write(f"handler ended: {type(exc).__name__}: {exc}\n")


def _peer_gone_errors(lib):
    names = ("BrokenResourceError", "ClosedResourceError")
    return tuple(getattr(lib, n) for n in names if hasattr(lib, n)) + (OSError,)


# ------------------------------------------------------------ trio-like
# The same functions serve trio and ringtrio: they take the library module.


async def _serve(lib, handler):
    async with lib.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(lib.serve_tcp, handler, 0, host=HOST, backlog=BACKLOG))
        version = getattr(lib, "__version__", None)
        if hasattr(lib, "lowlevel") and hasattr(lib.lowlevel, "current_backend"):
            version = f"{version} ({lib.lowlevel.current_backend().name} backend)"
        _ready(listeners[0].socket.getsockname()[1], version=version)


async def serve_streams(lib):
    """``serve_tcp`` + ``receive_some(65536)`` / ``send_all``."""
    gone = _peer_gone_errors(lib)

    async def handler(stream):
        try:
            while True:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    break
                await stream.send_all(data)
        except gone as exc:
            _log(exc)

    await _serve(lib, handler)


async def serve_buffers(lib):
    """``receive_buffers`` from one ``nursery.buffer_group`` shared by all."""
    gone = _peer_gone_errors(lib)
    async with lib.open_nursery() as owner:
        group = owner.buffer_group(count=GROUP_COUNT, size=GROUP_SIZE)

        async def handler(stream):
            try:
                async for buf in stream.receive_buffers(group):
                    with buf:
                        await stream.send_all(buf)
            except gone as exc:
                _log(exc)

        await _serve(lib, handler)


def run_trio_like(name, kind):
    import _registry

    lib = _registry.import_lib(name)
    lib.run(serve_buffers if kind == "buffers" else serve_streams, lib)


# ------------------------------------------------------------ asyncio-like


def _nodelay(transport):
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _asyncio_streams():
    import asyncio

    async def handler(reader, writer):
        _nodelay(writer.transport)
        try:
            while True:
                data = await reader.read(RECEIVE_SIZE)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except OSError as exc:
            _log(exc)
        finally:
            writer.close()

    server = await asyncio.start_server(handler, HOST, 0, backlog=BACKLOG)
    await _asyncio_ready(server)


async def _asyncio_protocol():
    import asyncio

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            _nodelay(transport)
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, HOST, 0, backlog=BACKLOG)
    await _asyncio_ready(server)


async def _asyncio_ready(server):
    import asyncio
    import platform

    loop = type(asyncio.get_running_loop())
    loop_name = f"{loop.__module__}.{loop.__qualname__}"
    if loop.__module__.startswith("uvloop"):
        import uvloop

        version = uvloop.__version__
    else:
        version = platform.python_version()
    _ready(server.sockets[0].getsockname()[1], version=version, loop=loop_name)
    async with server:
        await server.serve_forever()


def run_asyncio_like(name, kind):
    import asyncio

    body = _asyncio_protocol if kind == "protocol" else _asyncio_streams
    factory = None
    if name == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(body())


# ------------------------------------------------------------ registry

# server name -> (library, style); "c" servers are binaries run by _net.py.
SERVERS = {
    "ringtrio": ("ringtrio", "streams"),
    "ringtrio-bufs": ("ringtrio", "buffers"),
    # the same server on the epoll backend (where io_uring is refused)
    "ringtrio-epoll": ("ringtrio-epoll", "streams"),
    "trio": ("trio", "streams"),
    "asyncio": ("asyncio", "streams"),
    "asyncio-proto": ("asyncio", "protocol"),
    "uvloop": ("uvloop", "streams"),
    "uvloop-proto": ("uvloop", "protocol"),
    "c-uring": ("c", "io_uring"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=[s for s, (lib, _) in SERVERS.items() if lib != "c"])
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        # bench/ is sys.path[0]; the repo root next, so `import ringtrio`
        # is this working tree.
        if ROOT not in sys.path:
            sys.path.insert(1, ROOT)
        lib, kind = SERVERS[args.server]
        if lib in ("trio", "ringtrio", "ringtrio-epoll"):
            run_trio_like(lib, kind)
        else:
            run_asyncio_like(lib, kind)
    except KeyboardInterrupt:
        return 0
    except BaseException as exc:
        import traceback

        traceback.print_exc()
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        sys.stdout.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
