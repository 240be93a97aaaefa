"""ringtrio._core._speedups (ringtrio/_core/_speedups.c): two of the
scheduler's per-operation loops in C, and the Python code they stand in
for."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import ringtrio
from ringtrio import lowlevel
from ringtrio._core import _run

HERE = os.path.dirname(os.path.abspath(__file__))


def test_speedups_are_built_and_used() -> None:
    if os.environ.get("RINGTRIO_NO_SPEEDUPS"):
        pytest.skip("RINGTRIO_NO_SPEEDUPS is set: the Python path is what runs")

    async def main() -> None:
        await lowlevel.submit_and_wait(lowlevel.RingOp(lowlevel.IORING_OP_NOP))

    ringtrio.run(main)
    assert _run._sp_submit is not None and _run._sp_dispatch is not None


def test_bad_sqe_fields_raise_and_release_their_token() -> None:
    """The C submit checks every field as the cffi call would: a ValueError
    naming the op, and nothing left taken."""

    async def main() -> None:
        before = lowlevel.current_statistics().ops_in_flight
        bad = [
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, fd=2**40),
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, length=-1),
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, off=-1),
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, buf_index=2**16),
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, addr=-5),
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, op_flags="x"),  # type: ignore[arg-type]
        ]
        for op in bad:
            with pytest.raises(ValueError, match="out of range for an SQE"):
                await lowlevel.submit_and_wait(op)
            assert op.task is None
        assert lowlevel.current_statistics().ops_in_flight == before
        # The run goes on normally: tokens were given back.
        for _ in range(10):
            res, _flags = await lowlevel.submit_and_wait(lowlevel.RingOp(lowlevel.IORING_OP_NOP))
            assert res == 0
        # A bytes object as the address (the send path's form).
        res, _flags = await lowlevel.submit_and_wait(
            lowlevel.RingOp(lowlevel.IORING_OP_NOP, addr=b"payload", keepalive=None)
        )
        assert res == 0

    ringtrio.run(main)


def test_the_python_path_still_works() -> None:
    """The core, socket and stream tests with RINGTRIO_NO_SPEEDUPS=1 (the
    Python code _speedups stands in for)."""
    env = dict(os.environ, RINGTRIO_NO_SPEEDUPS="1")
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            os.path.join(HERE, "test_core.py"),
            os.path.join(HERE, "test_socket.py"),
            os.path.join(HERE, "test_highlevel_socket.py"),
            os.path.join(HERE, "test_file_chains.py"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
