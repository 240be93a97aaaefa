"""Cancelled file reads lose nothing.

trio's rule, which ringtrio keeps for every reading method of every kind of
file (text and binary, buffered and unbuffered, regular files and pipes): a
cancelled call either returns what it took, or leaves it for the next call.
These tests cancel reads before they start, while they wait for the kernel
(deadlines that expire mid-call, cancels from another task) and between the
steps of a read that takes several, and check that the file comes back
exactly -- and, for reads that can complete without waiting, that short
deadlines never starve a reader (trio's shape: ``checkpoint_if_cancelled``,
take the data, ``cancel_shielded_checkpoint``).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ringtrio


# Lines of several lengths, with "\r\n" and "\r" endings and non-ASCII
# characters: text reads cross decoder chunks and newline translation.
_ENDS = ["\n", "\r\n", "\r"]
TEXT = "".join(f"{i:05d} {'é€x' * (i % 7)}{_ENDS[i % 3]}" for i in range(3000))
DATA = TEXT.encode("utf-8")

# (open_file keyword arguments, is text)
KINDS = {
    "text": ({"mode": "r", "encoding": "utf-8"}, True),
    "text-newline-empty": ({"mode": "r", "encoding": "utf-8", "newline": ""}, True),
    "binary": ({"mode": "rb"}, False),
    "binary-unbuffered": ({"mode": "rb", "buffering": 0}, False),
}

# Each call that is cancelled before it starts, as (name, call).
CALLS = {
    "read(4)": lambda f: f.read(4),
    "read()": lambda f: f.read(),
    "readline()": lambda f: f.readline(),
    "readline(2)": lambda f: f.readline(2),
    "readlines()": lambda f: f.readlines(),
    "readlines(5)": lambda f: f.readlines(5),
    "anext": lambda f: f.__anext__(),
    "seek(0)": lambda f: f.seek(0),
}


# ---------------------------------------------------------------------------
# Cancelled before the call: nothing is taken (the reports), as trio
# ---------------------------------------------------------------------------


def _both(scenario: Any, *args: Any) -> Any:
    """Run ``scenario(lib, *args)`` under trio and ringtrio; the observations
    must agree.  Returns trio's (the oracle's)."""
    want = trio.run(scenario, trio, *args)
    got = ringtrio.run(scenario, ringtrio, *args)
    assert got == want
    return want


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("call", list(CALLS))
def test_call_cancelled_before_it_starts_takes_nothing(tmp_path: Any, kind: str, call: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(DATA)
    kwargs, text = KINDS[kind]

    async def scenario(lib: ModuleType) -> list[object]:
        log: list[object] = []
        async with await lib.open_file(path, **kwargs) as f:
            log.append(await f.read(3))
            with lib.CancelScope() as cs:
                cs.cancel()
                log.append(await CALLS[call](f))
            log.append(("cancelled", cs.cancelled_caught))
            log.append(await f.read(3))
            log.append(await f.readline())
            log.append(await f.tell())
        return log

    log = _both(scenario)
    # (the report: the read after a cancelled read(4) gave '789')
    assert log[:3] == ([TEXT[:3], ("cancelled", True), TEXT[3:6]] if text else [DATA[:3], ("cancelled", True), DATA[3:6]])


# ---------------------------------------------------------------------------
# Cancelled while waiting for more, after taking something: it goes back
# ---------------------------------------------------------------------------

# A read on a pipe that holds part of what it needs takes that part, then
# waits in the kernel for the rest.  (trio cannot cancel a read blocked in a
# worker thread, so these are ringtrio's alone: the rule, not a comparison.)
PIPE_CALLS = {
    "read(10)": lambda f: f.read(10),
    "read()": lambda f: f.read(),
    "readline()": lambda f: f.readline(),
    "readline(20)": lambda f: f.readline(20),
    "readlines()": lambda f: f.readlines(),
    "readlines(5)": lambda f: f.readlines(5),
    "anext": lambda f: f.__anext__(),
    "readall": lambda f: f.readall(),
    "readinto": lambda f: f.readinto(bytearray(10)),
    "read1": lambda f: f.read1(10),
}
_BINARY_ONLY = {"readall", "readinto", "read1"}


def _as_data(result: Any, text: bool, call: str) -> Any:
    if call == "readinto":
        return None  # (the test reads the buffer itself)
    if isinstance(result, list):
        return ("" if text else b"").join(result)
    return result


@pytest.mark.parametrize(
    ("kind", "call"),
    [(k, c) for k in KINDS for c in PIPE_CALLS if not (KINDS[k][1] and c in _BINARY_ONLY)],
)
# What is in the pipe at first: part of a line, or a whole line and a part;
# either ends inside a two-byte character (the decoder holds that byte back).
@pytest.mark.parametrize("first", [b"abc\xc3", b"xy\nabc\xc3"], ids=["part", "line+part"])
def test_read_cancelled_while_waiting_gives_back_what_it_took(kind: str, call: str, first: bytes) -> None:
    kwargs, text = KINDS[kind]
    second = b"\xa9def\nghi\njkl\n"
    r, w = os.pipe()

    async def main() -> tuple[Any, Any]:
        async with await ringtrio.open_file(r, **kwargs) as f:
            os.write(w, first)
            taken: Any = None
            buf = bytearray(10)
            with ringtrio.CancelScope() as cs:

                async def cancel_when_blocked() -> None:
                    await ringtrio.testing.wait_all_tasks_blocked()
                    cs.cancel()

                async with ringtrio.open_nursery() as nursery:
                    nursery.start_soon(cancel_when_blocked)
                    if call == "readinto":
                        n = await f.readinto(buf)
                        taken = bytes(buf[:n])
                    else:
                        taken = _as_data(await PIPE_CALLS[call](f), text, call)
                    nursery.cancel_scope.cancel()
            os.write(w, second)
            os.close(w)
            rest = await f.read()
            return taken, rest

    taken, rest = ringtrio.run(main)
    whole = (first + second).decode("utf-8") if text else first + second
    assert (taken or whole[:0]) + rest == whole


# ---------------------------------------------------------------------------
# Random reads under random cancellation reassemble the file
# ---------------------------------------------------------------------------

# How a call is cancelled: not at all, before it starts, by a deadline
# (seconds from the call: 0 has passed before the read's first checkpoint,
# the others expire while it waits or during its last yield), or by another
# task after that many of its checkpoints.
cancellations = st.one_of(
    st.none(),
    st.just("before"),
    st.tuples(st.just("deadline"), st.sampled_from([0.0, 1e-6, 1e-5, 1e-4])),
    st.tuples(st.just("other"), st.integers(0, 3)),
)
sizes = st.one_of(st.integers(0, 40), st.integers(100, 40_000))

COMMON_OPS = [
    st.tuples(st.just("read"), sizes),
    st.tuples(st.just("read"), st.just(-1)),
    st.tuples(st.just("readline"), st.just(-1)),
    st.tuples(st.just("readline"), sizes),
    st.tuples(st.just("readlines"), st.just(-1)),
    st.tuples(st.just("readlines"), sizes),
    st.tuples(st.just("anext"), st.none()),
    st.tuples(st.just("mark"), st.none()),
    st.tuples(st.just("seek_mark"), st.integers(0, 5)),
]
BINARY_OPS = COMMON_OPS + [
    st.tuples(st.just("read1"), sizes),
    st.tuples(st.just("readinto"), sizes),
    st.tuples(st.just("readinto1"), sizes),
    st.tuples(st.just("readall"), st.none()),
    st.tuples(st.just("peek"), st.none()),
]


def _ops(kinds: list[Any]) -> Any:
    return st.lists(st.tuples(st.one_of(*kinds), cancellations), min_size=3, max_size=40)


async def _call(f: Any, name: str, arg: Any, rest: Any) -> Any:
    """One read; returns the data it consumed (peek checks and returns
    nothing), or a mark."""
    empty = rest[:0]
    if name in ("read", "read1", "readline"):
        return await getattr(f, name)(arg)
    if name in ("readinto", "readinto1"):
        buf = bytearray(arg)
        n = await getattr(f, name)(buf)
        return bytes(buf[:n])
    if name == "readlines":
        return empty.join(await f.readlines(arg))
    if name == "readall":
        return await f.readall()
    if name == "anext":
        try:
            return await f.__anext__()
        except StopAsyncIteration:
            return empty
    if name == "peek":
        peeked = await f.peek()
        assert rest.startswith(peeked), "peek() returned bytes that are not the next ones"
        return empty
    if name == "mark":
        return ("mark", await f.tell())
    raise AssertionError(name)


def _check_reads_reassemble(tmp_path: Any, data: bytes, kwargs: dict[str, Any], pipe: bool, ops: Any, expected: Any) -> None:
    path = tmp_path / "f"
    path.write_bytes(data)

    async def main() -> Any:
        if pipe:
            r, w = os.pipe()
            f = await ringtrio.open_file(r, **kwargs)
        else:
            f = await ringtrio.open_file(path, **kwargs)
        out = expected[:0]
        marks: list[tuple[int, int]] = []
        cancelled = 0
        async with f, ringtrio.open_nursery() as nursery:
            if pipe:

                async def writer() -> None:
                    # In pieces, each a ring op: readers wait for them.
                    async with await ringtrio.open_file(w, "wb", buffering=0) as wf:
                        for i in range(0, len(data), 3000):
                            await wf.write(data[i : i + 3000])

                nursery.start_soon(writer)

            async def cancel_after(cs: ringtrio.CancelScope, n: int) -> None:
                for _ in range(n):
                    await ringtrio.lowlevel.checkpoint()
                cs.cancel()

            for (name, arg), how in ops:
                if name == "seek_mark":
                    if pipe or not marks:
                        continue
                    cookie, length = marks[arg % len(marks)]
                    call: Any = lambda: f.seek(cookie)  # noqa: E731
                else:
                    call = lambda: _call(f, name, arg, expected[len(out):])  # noqa: E731
                if name == "mark" and pipe:
                    continue
                result: Any = _CANCELLED
                with ringtrio.CancelScope() as cs:
                    if how == "before":
                        cs.cancel()
                    elif how is not None and how[0] == "deadline":
                        cs.deadline = ringtrio.current_time() + how[1]
                    elif how is not None:
                        nursery.start_soon(cancel_after, cs, how[1])
                    result = await call()
                if result is _CANCELLED:
                    cancelled += 1
                elif name == "seek_mark":
                    # (what was read so far must be right; then the reading
                    # goes on from the mark, before or after the position)
                    assert out == expected[: len(out)]
                    out = expected[:length]
                elif name == "mark":
                    marks.append((result[1], len(out)))
                else:
                    out += result
            out += await f.read()
        return out, cancelled

    out, _cancelled = ringtrio.run(main)
    assert out == expected


_CANCELLED = object()


def _content(seed: int, size: int, text: bool) -> bytes:
    import random

    rng = random.Random(seed)
    if text:
        return "".join(rng.choice("ab\n\r é€") for _ in range(size)).encode("utf-8")
    return bytes(rng.choice(b"ab\n\r\x00\xff") for _ in range(size))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    seed=st.integers(0, 1000),
    size=st.sampled_from([0, 5, 100, 9000, 40_000]),
    buffering=st.sampled_from([-1, 0, 100]),
    pipe=st.booleans(),
    ops=_ops(BINARY_OPS),
)
def test_binary_reads_under_random_cancellation_reassemble_the_file(
    tmp_path: Any, seed: int, size: int, buffering: int, pipe: bool, ops: Any
) -> None:
    data = _content(seed, size, text=False)
    _check_reads_reassemble(tmp_path, data, {"mode": "rb", "buffering": buffering}, pipe, ops, data)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    seed=st.integers(0, 1000),
    size=st.sampled_from([0, 5, 100, 9000, 40_000]),
    newline=st.sampled_from([None, "", "\n", "\r\n", "\r"]),
    buffering=st.sampled_from([-1, 1, 100]),
    pipe=st.booleans(),
    ops=_ops(COMMON_OPS),
)
def test_text_reads_under_random_cancellation_reassemble_the_file(
    tmp_path: Any, seed: int, size: int, newline: str | None, buffering: int, pipe: bool, ops: Any
) -> None:
    data = _content(seed, size, text=True)
    (tmp_path / "expected").write_bytes(data)
    with open(tmp_path / "expected", encoding="utf-8", newline=newline) as f:
        expected = f.read()
    kwargs = {"mode": "r", "encoding": "utf-8", "newline": newline, "buffering": buffering}
    _check_reads_reassemble(tmp_path, data, kwargs, pipe, ops, expected)


# ---------------------------------------------------------------------------
# Short deadlines do not starve readers whose data is already buffered
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [False, True], ids=["binary", "text"])
def test_buffered_reads_never_starve_under_deadlines_shorter_than_a_pass(tmp_path: Any, text: bool) -> None:
    """16 readers, each with its whole file in the read-ahead, every read
    under a deadline of a few microseconds (a scheduler pass with 16 tasks
    takes longer): every read delivers.  (Before: text reads took their
    characters, then yielded with a full checkpoint, where the deadline
    cancelled them -- and the characters were gone.)"""
    readers, size, step = 16, 64 * 1024, 100
    contents = [_content(i, size, text=False) for i in range(readers)]
    if text:
        contents = [c.replace(b"\xff", b"y").replace(b"\x00", b"z") for c in contents]
    for i, c in enumerate(contents):
        (tmp_path / f"f{i}").write_bytes(c)
    kwargs: dict[str, Any] = {"mode": "r", "encoding": "ascii", "newline": ""} if text else {"mode": "rb"}
    kwargs["buffering"] = 2 * size  # one kernel read takes in the whole file
    attempts = [0] * readers
    started = [0] * readers
    delivered = [0] * readers
    results: list[Any] = [None] * readers

    async def reader(i: int) -> None:
        async with await ringtrio.open_file(tmp_path / f"f{i}", **kwargs) as f:
            out = [await f.read(1)]  # (fills the read-ahead, no deadline)
            got = 1
            while got < size:
                attempts[i] += 1
                with ringtrio.move_on_after([2e-5, 5e-5, 1e-4][attempts[i] % 3]) as cs:
                    # (A deadline can pass before the scope is even entered
                    # when the OS preempts us: trio then cancels at once.
                    # Only reads that start with a live deadline count.)
                    started[i] += not cs.cancel_called
                    piece = await (f.readline(step) if attempts[i] % 2 else f.read(step))
                    delivered[i] += 1
                    out.append(piece)
                    got += len(piece)
                assert attempts[i] < 10 * size // step, "a reader is starving"
            results[i] = out[0][:0].join(out)

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            for i in range(readers):
                nursery.start_soon(reader, i)

    ringtrio.run(main)
    assert delivered == started
    assert results == [c.decode("ascii") if text else c for c in contents]


# ---------------------------------------------------------------------------
# The proof for files: many readers, every read under a random deadline
# ---------------------------------------------------------------------------


def test_file_reads_survive_random_short_deadlines(tmp_path: Any) -> None:
    """Readers of every kind in one run -- text and binary, buffered and
    unbuffered, regular files and pipes fed by writer tasks -- each doing
    reads of random kinds and sizes, every one under a random short
    deadline and retried when cancelled: each gets its content back
    exactly (nothing lost, duplicated or reordered), and each finishes."""
    import random

    kinds = [
        ({"mode": "rb"}, False),
        ({"mode": "rb", "buffering": 0}, False),
        ({"mode": "rb", "buffering": 300}, False),
        ({"mode": "r", "encoding": "utf-8"}, True),
        ({"mode": "r", "encoding": "utf-8", "newline": ""}, True),
        ({"mode": "r", "encoding": "utf-8", "newline": "\r\n"}, True),
    ]
    readers = [(kw, text, pipe) for kw, text in kinds for pipe in (False, True)]
    deadlines = [0.0, 1e-6, 1e-5, 1e-4, 1e-3]
    max_attempts = 200_000  # in all; a few thousand are needed
    attempts = [0]
    cancelled = [0] * len(readers)
    finished = [False] * len(readers)
    mismatches: list[int] = []

    async def reader(i: int, nursery: Any) -> None:
        kwargs, text, pipe = readers[i]
        rng = random.Random(i)
        data = _content(i, 150_000, text)
        path = tmp_path / f"f{i}"
        path.write_bytes(data)
        with open(path, encoding="utf-8", newline=kwargs.get("newline")) if text else open(path, "rb") as sync:
            expected = sync.read()
        if pipe:
            r, w = os.pipe()
            f = await ringtrio.open_file(r, **kwargs)

            async def writer() -> None:
                # (on the ring: a full pipe parks the writer, not the run)
                async with await ringtrio.open_file(w, "wb", buffering=0) as wf:
                    for k in range(0, len(data), 4096):
                        await wf.write(data[k : k + 4096])

            nursery.start_soon(writer)
        else:
            f = await ringtrio.open_file(path, **kwargs)
        names = ["read", "readline", "readlines", "anext"] + ([] if text else ["read1", "readinto", "peek"])
        out = expected[:0]
        async with f:
            while len(out) < len(expected) and attempts[0] < max_attempts:
                attempts[0] += 1
                name = rng.choice(names)
                arg = rng.choice([1, 7, 100, 5000, 40_000]) if name != "anext" else None
                with ringtrio.move_on_after(rng.choice(deadlines)) as cs:
                    out += await _call(f, name, arg, expected[len(out) :])
                cancelled[i] += cs.cancelled_caught
            rest = await f.read()
        finished[i] = len(out) == len(expected) and not rest
        if out != expected:
            mismatches.append(i)

    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            for i in range(len(readers)):
                nursery.start_soon(reader, i, nursery)

    ringtrio.run(main)
    assert mismatches == []
    assert all(finished), (finished, attempts)
    assert sum(cancelled) > 0  # (the deadlines did cancel reads)


# ---------------------------------------------------------------------------
# Several tasks on one file: reads and writes take turns
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "rb"}, {"mode": "rb", "buffering": 0}, {"mode": "r", "encoding": "ascii"}],
    ids=["binary", "unbuffered", "text"],
)
def test_readers_sharing_a_file_get_every_line_once(tmp_path: Any, kwargs: dict[str, Any]) -> None:
    """Four tasks read one file object at once, with reads of several kinds,
    some under short deadlines.  Every line comes out exactly once, and
    every read(n) is n long.  (Before: two reads that waited asked the
    kernel for the same position, and the text layer's undo could restore
    characters another task had taken -- binary files duplicated data, text
    files lost a third of it; and a text read queued behind another took
    all the decoded text it found.  trio's thread-backed wrapper loses data
    here too.)"""
    lines = [b"%06d\n" % i for i in range(60_000)]  # each piece below is whole lines
    (tmp_path / "f").write_bytes(b"".join(lines))
    text = "b" not in kwargs["mode"]
    unbuffered = kwargs.get("buffering") == 0
    pieces: list[Any] = []

    async def reader(k: int, f: Any) -> None:
        import random

        rng = random.Random(k)
        while True:
            size = 7 * rng.choice([1, 3, 100, 3000])  # (whole lines)
            piece: Any = None
            with ringtrio.move_on_after(rng.choice([1e-5, 1e-4, 10])):
                # (An unbuffered read returns what the read-ahead holds when
                # it holds something, so only reads there: whole lines.)
                piece = await (f.readline() if k % 2 and not unbuffered else f.read(size))
            if piece is None:
                continue
            if not piece:
                return
            pieces.append(piece)

    async def main() -> None:
        async with await ringtrio.open_file(tmp_path / "f", **kwargs) as f:
            async with ringtrio.open_nursery() as nursery:
                for k in range(4):
                    nursery.start_soon(reader, k, f)

    ringtrio.run(main)
    got = sorted(line for piece in pieces for line in (piece.encode() if text else piece).splitlines(keepends=True))
    assert got == lines


def test_writers_sharing_a_file_do_not_overwrite_each_other(tmp_path: Any) -> None:
    """Four tasks write whole records to one file object at once (each write
    several kernel writes long): every record lands whole, none on top of
    another."""
    records = [bytes([65 + k]) * 300_000 for k in range(4)]

    async def main() -> None:
        async with await ringtrio.open_file(tmp_path / "f", "wb") as f:

            async def writer(k: int) -> None:
                for _ in range(3):
                    await f.write(records[k])

            async with ringtrio.open_nursery() as nursery:
                for k in range(4):
                    nursery.start_soon(writer, k)

    ringtrio.run(main)
    data = (tmp_path / "f").read_bytes()
    assert len(data) == 12 * 300_000
    chunks = [data[i : i + 300_000] for i in range(0, len(data), 300_000)]
    assert sorted(chunks) == sorted(records * 3)
