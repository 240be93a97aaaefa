"""Resident memory per idle connection: N connections, each with a handler
blocked in ``receive_some(65536)``.  Not a unit test; run it directly:

    python tests/measure_idle_memory.py [ringtrio|trio] [N]

The clients live in a separate process so that only the server's memory is
measured.  Prints RSS before/after and the delta per connection.
"""

from __future__ import annotations

import gc
import importlib
import resource
import socket
import subprocess
import sys
import textwrap

CLIENT = textwrap.dedent(
    """
    import socket, sys
    port, n = int(sys.argv[1]), int(sys.argv[2])
    conns = []
    for _ in range(n):
        conns.append(socket.create_connection(("127.0.0.1", port)))
    sys.stdout.write("connected\\n"); sys.stdout.flush()
    sys.stdin.readline()
    """
)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def main() -> None:
    libname = sys.argv[1] if len(sys.argv) > 1 else "ringtrio"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    lib = importlib.import_module(libname)
    to_thread = importlib.import_module(libname + ".to_thread")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * n + 100)), hard))

    blocked = 0

    async def handler(stream: object) -> None:
        nonlocal blocked
        blocked += 1
        while await stream.receive_some(65536):  # type: ignore[attr-defined]
            pass

    async def wait_for(count: int) -> None:
        while blocked < count:
            await lib.sleep(0.01)
        await lib.sleep(0.3)  # let every receive reach the kernel

    async def run_clients(port: int, count: int) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(port), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = await to_thread.run_sync(proc.stdout.readline)  # type: ignore[union-attr]
        assert line.strip() == "connected", line
        return proc

    async def amain() -> None:
        async with lib.open_nursery() as nursery:
            listeners = await nursery.start(
                lambda task_status: lib.serve_tcp(handler, 0, host="127.0.0.1", task_status=task_status)
            )
            port = listeners[0].socket.getsockname()[1]
            # Warm up: code paths, the runtime buffer ring, thread pool.
            warm = await run_clients(port, 50)
            await wait_for(50)
            gc.collect()
            before = rss_bytes()
            main_proc = await run_clients(port, n)
            await wait_for(50 + n)
            gc.collect()
            after = rss_bytes()
            print(
                f"{libname}: N={n} RSS before={before / 2**20:.1f} MiB after={after / 2**20:.1f} MiB "
                f"per idle connection={(after - before) / n / 1024:.2f} KiB"
            )
            for proc in (warm, main_proc):
                proc.stdin.close()  # type: ignore[union-attr]
                proc.wait()
            nursery.cancel_scope.cancel()

    lib.run(amain)


if __name__ == "__main__":
    main()
