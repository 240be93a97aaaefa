"""AnyIO's *trio* backend on ringtrio in trio mode: anyio.run(backend="trio")
and AnyIO code inside trio.run both run on ringtrio: task groups, cancel
scopes, threads (both ways), a TCP echo and a memory object stream."""

from __future__ import annotations

import _harness  # first: enables trio mode

import anyio
import anyio.abc
import sniffio
import trio
from anyio._core._eventloop import get_async_backend

import ringtrio


async def echo(stream: anyio.abc.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send(data)


async def main() -> dict[str, object]:
    result: dict[str, object] = {"sniffio": sniffio.current_async_library()}
    backend = get_async_backend()
    result["backend"] = backend.__module__
    before = _harness.ring_counts()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 0.01)
        result["thread"] = await anyio.to_thread.run_sync(lambda: anyio.from_thread.run_sync(sum, [1, 2, 3]))
        with anyio.move_on_after(0.01) as scope:
            await anyio.sleep_forever()
        result["move_on_caught"] = scope.cancelled_caught

        send, receive = anyio.create_memory_object_stream[int](1)
        async with anyio.create_task_group() as tg:
            async def produce() -> None:
                async with send:
                    for i in range(5):
                        await send.send(i)
            tg.start_soon(produce)
            async with receive:
                result["channel"] = [i async for i in receive]

        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, echo)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                # AnyIO's trio backend wraps trio's socket: here, ringtrio's.
                raw = client.extra(anyio.abc.SocketAttribute.raw_socket)
                result["stream_type"] = type(client._trio_socket).__module__
                result["raw_fileno_ok"] = raw.fileno() >= 0
                await client.send(b"ping" * 1000)
                got = b""
                while len(got) < 4000:
                    got += await client.receive()
                result["echo_ok"] = got == b"ping" * 1000
            tg.cancel_scope.cancel()
    result["ring"] = _harness.grew(before, _harness.ring_counts())
    return result


async def inside_trio_run() -> dict[str, object]:
    return await main()


from_anyio_run = anyio.run(main, backend="trio")
from_trio_run = trio.run(inside_trio_run)
_harness.report(anyio_run=from_anyio_run, trio_run=from_trio_run, ringtrio_run_is_trio_run=trio.run is ringtrio.run)
