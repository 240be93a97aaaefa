"""Cancellation integrity: an echo server and its clients in one run, every
receive under a random short deadline that is simply retried, every byte
stream hashed at both ends (issue 11, "Proof").

What must hold, for ``receive_some`` and for ``receive_buffers`` loops:

* a cancelled receive either returned its bytes or took none, so what each
  end hashes is exactly what the other sent: nothing lost, duplicated or
  reordered;
* every reader makes progress: each connection completes, within a bound
  on attempts (a count, not a time), although most deadlines are shorter
  than one scheduler pass over the connections.

Clients alternate between streams ringtrio created (``open_tcp_stream``:
multishot receives) and stdlib sockets wrapped with ``from_stdlib_socket``
(one-shot receives).
"""

from __future__ import annotations

import functools
import hashlib
import random
import socket as stdsocket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import ringtrio
from ringtrio import lowlevel

CONNECTIONS = 16
BYTES_PER_CONNECTION = 192 * 1024
# Deadlines: mostly far shorter than a scheduler pass, some long enough to
# wait for the peer.  Each attempt draws one.
DEADLINES = [2e-6, 10e-6, 50e-6, 200e-6]
# A reader that needs more attempts than this starves.  With trio's shape a
# receive fails only when nothing was queued yet (it parked and the deadline
# fired): at most about one failure per chunk the peer sends.
MAX_ATTEMPTS_PER_READER = 50_000
TIME_LIMIT = 60.0  # a hang fails the test, not the run (noisy 2-core VM)


class Reader:
    """Receives under random short deadlines, retrying; hashes what it got."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.digest = hashlib.sha256()
        self.received = 0
        self.attempts = 0
        self.delivered = 0

    def deadline(self) -> float:
        self.attempts += 1
        assert self.attempts <= MAX_ATTEMPTS_PER_READER, (
            f"starved: {self.delivered} deliveries in {self.attempts} attempts"
        )
        return self.rng.choice(DEADLINES)

    def took(self, data: bytes | memoryview) -> None:
        self.digest.update(data)
        self.received += len(data)
        self.delivered += 1

    async def receive_some(self, stream: Any) -> bytes:
        """One chunk (b"" at EOF), retried until a deadline lets it through."""
        while True:
            with ringtrio.move_on_after(self.deadline()):
                data: bytes = await stream.receive_some(self.rng.choice([1, 100, 1000, 65536]))
                if data:
                    self.took(data)
                return data

    async def receive_buffers(self, stream: Any, group: ringtrio.BufferGroup) -> bytes:
        """One lease, copied (b"" at EOF), from a new `async for` per
        attempt: a loop left by a cancellation or by break is restarted."""
        while True:
            with ringtrio.move_on_after(self.deadline()):
                async for buf in stream.receive_buffers(group):
                    with buf:
                        data = bytes(buf)
                    self.took(data)
                    return data
                return b""


async def echo_with(reader: Reader, receive: Callable[[], Awaitable[bytes]], stream: Any) -> None:
    # Sends are never cancelled (a cancelled send_all leaves the stream in
    # an unknown state, as in trio); every receive is.
    while True:
        data = await receive()
        if not data:
            break
        await stream.send_all(data)
    await stream.send_eof()


async def client(
    port: int, i: int, mode: str, group: ringtrio.BufferGroup, results: dict[int, Any]
) -> None:
    rng = random.Random(i)
    payload = rng.randbytes(BYTES_PER_CONNECTION)
    if i % 2:
        raw = stdsocket.create_connection(("127.0.0.1", port))
        stream = ringtrio.SocketStream(ringtrio.socket.from_stdlib_socket(raw))
    else:
        stream = await ringtrio.open_tcp_stream("127.0.0.1", port)
    reader = Reader(rng)
    async with stream:

        async def send() -> None:
            sent = 0
            while sent < len(payload):
                n = rng.choice([1, 10, 1000, 8000])
                await stream.send_all(payload[sent : sent + n])
                sent += n
            await stream.send_eof()

        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(send)
            if mode == "receive_some":
                while await reader.receive_some(stream):
                    pass
            else:
                while await reader.receive_buffers(stream, group):
                    pass
    results[i] = (hashlib.sha256(payload).digest(), reader)


@pytest.mark.parametrize("mode", ["receive_some", "receive_buffers"])
def test_echo_under_random_short_deadlines_loses_nothing_and_everyone_progresses(mode: str) -> None:
    server_readers: dict[int, Reader] = {}

    async def main() -> dict[int, Any]:
        results: dict[int, Any] = {}
        with ringtrio.fail_after(TIME_LIMIT):
            async with ringtrio.open_nursery() as nursery:
                group = nursery.buffer_group(count=256, size=1024)

                async def handler(stream: ringtrio.SocketStream) -> None:
                    reader = Reader(random.Random(1000 + len(server_readers)))
                    server_readers[len(server_readers)] = reader
                    if mode == "receive_some":
                        await echo_with(reader, functools.partial(reader.receive_some, stream), stream)
                    else:
                        await echo_with(
                            reader, functools.partial(reader.receive_buffers, stream, group), stream
                        )

                listeners = await nursery.start(
                    functools.partial(ringtrio.serve_tcp, handler, 0, host="127.0.0.1")
                )
                port = listeners[0].socket.getsockname()[1]
                async with ringtrio.open_nursery() as clients:
                    for i in range(CONNECTIONS):
                        clients.start_soon(client, port, i, mode, group, results)
                nursery.cancel_scope.cancel()
        assert lowlevel.current_statistics().ops_in_flight == 0
        return results

    results = ringtrio.run(main)
    assert len(results) == CONNECTIONS
    for i, (sent_digest, reader) in sorted(results.items()):
        # The echo came back whole: the server's receives and the client's
        # lost, duplicated and reordered nothing.
        assert reader.received == BYTES_PER_CONNECTION, (i, reader.received)
        assert reader.digest.digest() == sent_digest, i
    # The server end hashed exactly what the clients sent, too.
    assert sorted(r.digest.digest() for r in server_readers.values()) == sorted(
        d for d, _ in results.values()
    )
    # Progress: every reader got its data through (bounded attempts, checked
    # in Reader.deadline), and short deadlines were really exercised.
    readers = [r for _, r in results.values()] + list(server_readers.values())
    assert all(r.delivered > 0 for r in readers)
    assert sum(r.attempts - r.delivered for r in readers) > 0
