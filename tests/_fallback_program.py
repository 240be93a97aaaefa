"""A ringtrio program run under a seccomp filter that refuses io_uring (see
tests/test_backend.py): it serves TCP, reads files and sleeps, twice (two
runs), and prints what it saw as one JSON line.

    python tests/_fallback_program.py SPEC [--midrun]

SPEC is what to refuse, e.g. ``io_uring_setup=EPERM`` (tests/_seccomp.py).
With --midrun the filter is installed inside the first run, after io_uring
was set up and used: that run must end with RingUnavailableError, and the
second must fall back.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _seccomp  # noqa: E402

import ringtrio  # noqa: E402
from ringtrio import lowlevel  # noqa: E402


async def work(tmpdir: str) -> dict[str, object]:
    """TCP echo through serve_tcp, a file read two ways, a sleep."""

    async def echo(stream: ringtrio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some(65536):
                await stream.send_all(data)

    async with ringtrio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(ringtrio.serve_tcp, echo, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        echoed = []
        for i in range(3):
            async with await ringtrio.open_tcp_stream("127.0.0.1", port) as client:
                message = b"hello %d " % i * 1000
                await client.send_all(message)
                got = b""
                while len(got) < len(message):
                    got += await client.receive_some(65536)
                echoed.append(got == message)
        nursery.cancel_scope.cancel()
    path = os.path.join(tmpdir, "data")
    with open(path, "wb") as f:
        f.write(b"x" * 100_000)
    whole = await ringtrio.Path(path).read_bytes()
    async with await ringtrio.open_file(path, "rb") as f:
        head = await f.read(10)
    with ringtrio.move_on_after(0.01) as scope:
        await ringtrio.sleep(10)
    await ringtrio.sleep(0.001)
    backend = lowlevel.current_backend()
    stats = lowlevel.current_statistics()
    return {
        "backend": backend.name,
        "reason": backend.reason,
        "stats_backend": stats.backend,
        "echoed": all(echoed),
        "files": len(whole) == 100_000 and head == b"x" * 10,
        "slept": scope.cancelled_caught,
    }


def main() -> None:
    spec = _seccomp.parse(sys.argv[1])
    midrun = "--midrun" in sys.argv
    results: list[object] = []
    with tempfile.TemporaryDirectory() as tmpdir, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if not midrun:
            _seccomp.refuse(spec)
        for attempt in range(2):

            async def one() -> dict[str, object]:
                if midrun and attempt == 0:
                    await work(tmpdir)  # on io_uring, working
                    _seccomp.refuse(spec)
                return await work(tmpdir)

            try:
                results.append(ringtrio.run(one))
            except ringtrio.RingUnavailableError as exc:
                results.append({"error": type(exc).__name__, "message": str(exc)})
    print(
        json.dumps(
            {
                "runs": results,
                "warnings": [
                    {"category": w.category.__name__, "message": str(w.message), "file": w.filename}
                    for w in caught
                    if issubclass(w.category, RuntimeWarning)
                ],
            }
        )
    )


if __name__ == "__main__":
    main()
