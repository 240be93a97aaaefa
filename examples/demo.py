"""A tour of ringtrio in one file: nurseries, cancel scopes, deadlines, and a
raw ring operation (a pipe read parked on its io_uring token).

Run it with `make demo` (which sets everything up first) or
`python examples/demo.py` in an environment where ringtrio is installed.
"""

import os

import ringtrio
from ringtrio import lowlevel


async def worker(name: str, delay: float, results: list[str]) -> None:
    await ringtrio.sleep(delay)
    results.append(name)
    print(f"  {name} finished after {delay:.2f}s")


async def read_pipe(fd: int) -> bytes:
    # Every I/O layer in ringtrio talks to the kernel this way: one RingOp,
    # submitted with the scheduler's next io_uring_enter, the task parked on
    # the op's token until its completion arrives.
    from ringtrio._native import ffi

    buf = ffi.new("char[]", 64)
    op = lowlevel.RingOp(
        lowlevel.IORING_OP_READ, fd, int(ffi.cast("uintptr_t", buf)), 64, keepalive=buf
    )
    res, _flags = await lowlevel.submit_and_wait(op)
    if res < 0:
        raise OSError(-res, os.strerror(-res))
    return bytes(ffi.buffer(buf, res))


async def main() -> None:
    print("1. three children in a nursery:")
    results: list[str] = []
    async with ringtrio.open_nursery() as nursery:
        for name, delay in [("slow", 0.15), ("fast", 0.05), ("medium", 0.1)]:
            nursery.start_soon(worker, name, delay, results)
    print(f"  order: {results}")

    print("2. a deadline cancels a blocked pipe read (in the kernel, via a linked timeout):")
    r, w = os.pipe()
    try:
        with ringtrio.move_on_after(0.1) as scope:
            await read_pipe(r)
        print(f"  cancelled_caught={scope.cancelled_caught}")

        print("3. data that arrives is never lost, even when a cancel races it:")
        os.write(w, b"hello from the ring")
        print(f"  read {await read_pipe(r)!r}")
    finally:
        os.close(r)
        os.close(w)

    print("4. errors from children leave as an exception group:")

    async def fails() -> None:
        await ringtrio.sleep(0.01)
        raise ValueError("child failed")

    try:
        async with ringtrio.open_nursery() as nursery:
            nursery.start_soon(fails)
            nursery.start_soon(ringtrio.sleep_forever)  # cancelled by the failure
    except* ValueError as group:
        print(f"  caught {group.exceptions!r}")

    # All the waiting above -- sleeps, deadlines, pipe reads -- happened in
    # io_uring_enter, the one system call through which ringtrio hands
    # requests to the kernel and collects the results, many per call.  The
    # cancelled pipe read is finished too: ringtrio waits for the kernel to
    # confirm a cancel, so nothing is left running.
    stats = lowlevel.current_statistics()
    print("5. under the hood:")
    print(f"  everything above took {stats.enters} io_uring_enter system calls")
    print(f"  operations still running in the kernel: {stats.ops_in_flight}")


if __name__ == "__main__":
    ringtrio.run(main)
