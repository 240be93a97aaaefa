"""AnyIO subprocesses and signal receivers on ringtrio's.

``ringtrio.lowlevel.open_process`` starts the child and gives ringtrio
streams (``FdStream`` pipes on the ring) for its standard streams; AnyIO
wants its own byte streams and exceptions, and a ``Process`` with AnyIO's
``aclose()`` (close the pipes, wait; if cancelled meanwhile, kill and wait
for that too).  ``ringtrio.open_signal_receiver`` yields signal numbers;
AnyIO's receiver yields ``signal.Signals``.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from signal import Signals
from typing import IO, Any

import anyio
from anyio import abc

import ringtrio
from ringtrio import lowlevel


class _ReceiveStream(abc.ByteReceiveStream):
    """An AnyIO byte stream reading one of the child's output pipes."""

    def __init__(self, stream: ringtrio.abc.ReceiveStream) -> None:
        self._stream = stream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        try:
            data = await self._stream.receive_some(max_bytes)
        except ringtrio.ClosedResourceError as exc:
            raise anyio.ClosedResourceError from exc.__cause__
        except ringtrio.BrokenResourceError as exc:
            raise anyio.BrokenResourceError from exc.__cause__
        if not data:
            raise anyio.EndOfStream
        return bytes(data)

    async def aclose(self) -> None:
        await self._stream.aclose()


class _SendStream(abc.ByteSendStream):
    """An AnyIO byte stream writing the child's standard input."""

    def __init__(self, stream: ringtrio.abc.SendStream) -> None:
        self._stream = stream

    async def send(self, item: bytes) -> None:
        try:
            await self._stream.send_all(item)
        except ringtrio.ClosedResourceError as exc:
            raise anyio.ClosedResourceError from exc.__cause__
        except ringtrio.BrokenResourceError as exc:
            raise anyio.BrokenResourceError from exc.__cause__

    async def aclose(self) -> None:
        await self._stream.aclose()


class Process(abc.Process):
    def __init__(self, process: ringtrio.Process) -> None:
        self._process = process
        self._stdin = _SendStream(process.stdin) if process.stdin is not None else None
        self._stdout = _ReceiveStream(process.stdout) if process.stdout is not None else None
        self._stderr = _ReceiveStream(process.stderr) if process.stderr is not None else None

    async def aclose(self) -> None:
        with ringtrio.CancelScope(shield=True):
            for stream in (self._stdin, self._stdout, self._stderr):
                if stream is not None:
                    await stream.aclose()
        try:
            await self.wait()
        except BaseException:
            # Cancelled (or worse) while waiting: the child must not outlive
            # us unseen.
            self.kill()
            with ringtrio.CancelScope(shield=True):
                await self.wait()
            raise

    async def wait(self) -> int:
        return await self._process.wait()

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()

    def send_signal(self, signal: Signals) -> None:
        self._process.send_signal(signal)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def stdin(self) -> abc.ByteSendStream | None:
        return self._stdin

    @property
    def stdout(self) -> abc.ByteReceiveStream | None:
        return self._stdout

    @property
    def stderr(self) -> abc.ByteReceiveStream | None:
        return self._stderr


def _as_str(item: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    path = os.fspath(item)
    return path if isinstance(path, str) else os.fsdecode(path)


async def open_process(
    command: Any,
    *,
    stdin: int | IO[Any] | None,
    stdout: int | IO[Any] | None,
    stderr: int | IO[Any] | None,
    **kwargs: Any,
) -> Process:
    # AnyIO's convention: one string (or path) is a shell command line, a
    # sequence is an argv.
    if isinstance(command, (str, bytes, os.PathLike)):
        process = await lowlevel.open_process(
            _as_str(command), stdin=stdin, stdout=stdout, stderr=stderr, shell=True, **kwargs
        )
    else:
        argv: Sequence[str] = [_as_str(item) for item in command]
        process = await lowlevel.open_process(
            argv, stdin=stdin, stdout=stdout, stderr=stderr, shell=False, **kwargs
        )
    return Process(process)


async def shut_down_process_pool(workers: set[abc.Process]) -> None:
    """A system task for ``anyio.to_process``: when the run ends (system
    tasks are cancelled then), kill the idle worker processes and reap them."""
    try:
        await ringtrio.sleep(math.inf)
    except ringtrio.Cancelled:
        for process in workers:
            if process.returncode is None:
                process.kill()
        with ringtrio.CancelScope(shield=True):
            for process in workers:
                await process.aclose()


class _SignalIterator:
    def __init__(self, numbers: AsyncIterator[int]) -> None:
        self._numbers = numbers

    def __aiter__(self) -> _SignalIterator:
        return self

    async def __anext__(self) -> Signals:
        return Signals(await self._numbers.__anext__())


@contextmanager
def open_signal_receiver(*signals: Signals) -> Iterator[AsyncIterator[Signals]]:
    with ringtrio.open_signal_receiver(*signals) as numbers:
        yield _SignalIterator(numbers)
