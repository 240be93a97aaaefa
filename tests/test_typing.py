"""The package type-checks: `mypy ringtrio` is clean (house rule)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# mypy on the sources: no run, no backend (make test's epoll pass leaves it out).
pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_is_clean_on_the_package() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "ringtrio"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _mypy_on(path: Path) -> subprocess.CompletedProcess[str]:
    """mypy on one file of user code, importing ringtrio as installed."""
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )

def test_task_status_annotations_type_check(tmp_path: Path) -> None:
    """``ringtrio.TaskStatus[T]`` works as trio's does in annotations: the
    value passed to ``started()`` is checked against T."""
    good = tmp_path / "good.py"
    good.write_text(
        "import ringtrio\n"
        "async def serve(task_status: ringtrio.TaskStatus[int] = ringtrio.TASK_STATUS_IGNORED) -> None:\n"
        "    task_status.started(8080)\n"
        "async def plain(task_status: ringtrio.TaskStatus[None] = ringtrio.TASK_STATUS_IGNORED) -> None:\n"
        "    task_status.started()\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import ringtrio\n"
        "async def serve(task_status: ringtrio.TaskStatus[int]) -> None:\n"
        "    task_status.started('not an int')\n"
    )
    for path, ok in ((good, True), (bad, False)):
        result = _mypy_on(path)
        assert (result.returncode == 0) is ok, result.stdout + result.stderr
        if not ok:
            assert "started" in result.stdout and "int" in result.stdout, result.stdout


# Calls whose arguments a type checker matches against the called function,
# as trio's signatures (TypeVarTuple) make it.  Each line marked "# rejected"
# must get an error from `mypy --strict`, and no other line may.
ARGUMENT_CHECKS = '''
from functools import partial

import ringtrio
from ringtrio import from_thread, lowlevel, to_thread


def takes_str(x: str) -> int:
    return len(x)


async def async_takes_str(x: str) -> int:
    return len(x)


async def in_a_task() -> None:
    n: int = await to_thread.run_sync(takes_str, "a")
    n = await to_thread.run_sync(len, "abc")
    n = await to_thread.run_sync(takes_str, "a", thread_name="t", abandon_on_cancel=True)
    await to_thread.run_sync(len, 1)  # rejected
    await to_thread.run_sync(takes_str, 1)  # rejected
    await to_thread.run_sync(takes_str)  # rejected
    await to_thread.run_sync(takes_str, "a", "b")  # rejected
    s: str = await to_thread.run_sync(takes_str, "a")  # rejected


def in_a_thread() -> None:
    n: int = from_thread.run(async_takes_str, "a")
    n = from_thread.run_sync(takes_str, "a")
    from_thread.run(async_takes_str, 1)  # rejected
    from_thread.run(async_takes_str("a"))  # rejected
    from_thread.run(takes_str, "a")  # rejected
    from_thread.run_sync(takes_str, 1)  # rejected
    s: str = from_thread.run_sync(takes_str, "a")  # rejected


async def h(x: str) -> None:
    pass


async def serve(port: int, *, task_status: ringtrio.TaskStatus[int] = ringtrio.TASK_STATUS_IGNORED) -> None:
    task_status.started(port)


async def serve_required(port: int, *, task_status: ringtrio.TaskStatus[int]) -> None:
    task_status.started(port)


async def main() -> int:
    async with ringtrio.open_nursery() as nursery:
        nursery.start_soon(h, "a")
        nursery.start_soon(h, "a", name="a task")
        nursery.start_soon(h, 1)  # rejected
        nursery.start_soon(h)  # rejected
        nursery.start_soon(h, "a", "b")  # rejected
        nursery.start_soon(h("a"))  # rejected
        port: int = await nursery.start(serve, 8080)
        port = await nursery.start(serve_required, 8080)
        port = await nursery.start(partial(serve, 8080))
        await nursery.start(serve, "8080")  # rejected
        await nursery.start(serve)  # rejected
        await nursery.start(h, "a")  # rejected
        await nursery.start(serve(8080))  # rejected
        lowlevel.spawn_system_task(h, "a")
        lowlevel.spawn_system_task(h, 1)  # rejected
    return port


ringtrio.run(h, "a")
ringtrio.run(h, 2)  # rejected
ringtrio.run(h)  # rejected
ringtrio.run(main())  # rejected
n: int = ringtrio.run(main)
s: str = ringtrio.run(main)  # rejected
'''


def test_strict_mypy_checks_the_arguments_passed_through(tmp_path: Path) -> None:
    path = tmp_path / "calls.py"
    path.write_text(ARGUMENT_CHECKS)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--follow-imports=silent", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = ARGUMENT_CHECKS.splitlines()
    rejected = {n for n, line in enumerate(lines, 1) if line.endswith("# rejected")}
    reported = {
        int(line.split(":")[1]) for line in result.stdout.splitlines() if line.startswith(str(path)) and ": error:" in line
    }
    assert reported == rejected, result.stdout


def test_mypy_sees_every_public_name_of_lowlevel(tmp_path: Path) -> None:
    """Every name in ``ringtrio.lowlevel.__all__`` is an attribute a type
    checker knows, the ring's opcode and flag constants included: they come
    in through ``from ._core._ring import *``, which a checker resolves by
    ``_ring.__all__`` alone, so that list must be one it can read (a literal).
    A computed one hid every constant: ``lowlevel.IORING_OP_READ`` was an
    attr-defined error in user code (and in tests/test_runner_edges.py)."""
    from ringtrio import lowlevel

    names = sorted(lowlevel.__all__)
    path = tmp_path / "names.py"
    path.write_text(
        "from ringtrio import lowlevel\n"
        + "".join(f"lowlevel.{name}\n" for name in names)
        + "from ringtrio.lowlevel import IORING_OP_READ, IOSQE_IO_LINK, OPCODE_NAMES\n"
    )
    result = _mypy_on(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rings_export_list_names_every_constant_it_defines() -> None:
    """``_ring.__all__`` is written out (for type checkers, above); it must
    not drift from the constants the module defines."""
    from ringtrio._core import _ring

    constants = {name for name in vars(_ring) if name.startswith(("IORING_", "IOSQE_"))}
    assert set(_ring.__all__) == constants | {"OPCODE_NAMES", "RingFeatures"}
    assert len(_ring.__all__) == len(set(_ring.__all__))
