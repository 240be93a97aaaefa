"""Copy a directory tree concurrently with ringtrio's file API.

    python examples/copy_tree.py SRC DST [--jobs N]

DST must not exist yet: it is created, and removed again if the copy fails or
is interrupted (Ctrl-C), so a failed copy leaves nothing half-done behind.
Directories are listed in a worker thread (io_uring has no getdents);
everything else — mkdir, open, read, write, symlink, stat — runs on the ring.
At most N files are copied at once (a CapacityLimiter).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

import ringtrio
from ringtrio import Path, open_file

CHUNK = 1 << 20


class CopyError(Exception):
    """A problem with the command line's paths, reported in one line."""


async def copy_file(src: Path, dst: Path, limiter: ringtrio.CapacityLimiter) -> int:
    async with limiter:
        async with await open_file(src, "rb") as fin, await open_file(dst, "wb") as fout:
            copied = 0
            while data := await fin.read(CHUNK):
                await fout.write(data)
                copied += len(data)
        mode = (await src.stat()).st_mode & 0o7777
        os.chmod(dst, mode)
        return copied


async def copy_tree(src: Path, dst: Path, jobs: int = 32) -> tuple[int, int]:
    """Copy ``src`` into a new directory ``dst``; returns (files, bytes)."""
    if not await src.is_dir():
        what = "is not a directory" if await src.exists() else "does not exist"
        raise CopyError(f"source {str(src)!r} {what}")
    try:
        await dst.mkdir()
    except FileExistsError:
        raise CopyError(f"destination {str(dst)!r} already exists; name a new directory") from None
    except OSError as exc:
        raise CopyError(f"cannot create {str(dst)!r}: {exc.strerror}") from None

    limiter = ringtrio.CapacityLimiter(jobs)
    totals = [0, 0]

    async def one(s: Path, d: Path) -> None:
        # Not `totals[1] += await ...`: that reads totals[1] before the await,
        # and every other copy finishing meanwhile would be lost.
        copied = await copy_file(s, d, limiter)
        totals[0] += 1
        totals[1] += copied

    async def walk(s: Path, d: Path, nursery: ringtrio.Nursery) -> None:
        for entry in await s.iterdir():
            target = d / entry.name
            if await entry.is_symlink():
                await target.symlink_to(await entry.readlink())
            elif await entry.is_dir():
                await target.mkdir()
                nursery.start_soon(walk, entry, target, nursery)
            else:
                nursery.start_soon(one, entry, target)

    try:
        async with ringtrio.open_nursery() as nursery:
            await walk(src, dst, nursery)
    except BaseException:
        # Failed or interrupted: dst is ours (we created it above), and a
        # partial copy is worse than none.  Shielded, so that the clean-up
        # runs to the end even though we are being cancelled.
        with ringtrio.CancelScope(shield=True):
            await ringtrio.to_thread.run_sync(shutil.rmtree, dst, True)
        raise
    return totals[0], totals[1]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="copy_tree.py", description="Copy the directory SRC to the new directory DST."
    )
    parser.add_argument("src", metavar="SRC", type=Path, help="directory to copy")
    parser.add_argument("dst", metavar="DST", type=Path, help="new directory to create")
    parser.add_argument("--jobs", type=positive_int, default=32, help="files copied at once (default 32)")
    args = parser.parse_args(argv)

    # `return` is not allowed in an except* block: the outcome goes here.
    status = 0
    try:
        files, nbytes = ringtrio.run(copy_tree, args.src, args.dst, args.jobs)
    except* CopyError as group:
        print(f"copy_tree: {group.exceptions[0]}", file=sys.stderr)
        status = 1
    except* OSError as group:
        # Errors of the copy itself (a file that cannot be read ...), raised
        # by the tasks of the nursery and so collected in a group.
        errors = list(_leaves(group))
        print(f"copy_tree: copy failed, {str(args.dst)!r} removed: {errors[0]}", file=sys.stderr)
        if len(errors) > 1:
            print(f"copy_tree: ({len(errors) - 1} more errors)", file=sys.stderr)
        status = 1
    except* KeyboardInterrupt:
        print(f"copy_tree: interrupted, {str(args.dst)!r} removed", file=sys.stderr)
        status = 130  # the shell's convention for "stopped by SIGINT"
    else:
        print(f"copied {files} files, {nbytes} bytes")
    return status


def _leaves(group: BaseExceptionGroup[OSError]) -> list[OSError]:
    leaves: list[OSError] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


if __name__ == "__main__":
    sys.exit(main())
