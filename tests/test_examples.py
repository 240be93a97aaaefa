"""The programs in examples/ run and do what they say (each in a subprocess,
as a user would start them)."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 60  # generous: a noisy 2-core VM


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
    )


def test_demo():
    out = run_example(str(EXAMPLES / "demo.py"))
    assert out.returncode == 0, out.stderr
    assert "order: ['fast', 'medium', 'slow']" in out.stdout
    assert "cancelled_caught=True" in out.stdout
    assert "read b'hello from the ring'" in out.stdout
    assert "caught (ValueError('child failed'),)" in out.stdout
    assert "ops in flight" in out.stdout


def read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    """One line of the process's stdout, or AssertionError at the deadline
    (never blocks past it)."""
    assert proc.stdout is not None
    line = ""
    fd = proc.stdout.fileno()
    while not line.endswith("\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no complete line from the server in time (got {line!r})")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 1)
            if not chunk:
                raise AssertionError(
                    f"server exited early (rc={proc.poll()}), partial line {line!r}"
                )
            line += chunk.decode()
    return line


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C the server; SIGKILL it if it does not go.  Returns the rest
    of its output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate(timeout=15)


def test_echo_server_and_client():
    server = subprocess.Popen(
        [sys.executable, "-u", str(EXAMPLES / "echo_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    rest = ("", "")
    try:
        first = read_line(server, time.monotonic() + TIMEOUT)
        match = re.fullmatch(r"listening on 127\.0\.0\.1 port (\d+)\n", first)
        assert match, first
        port = int(match.group(1))
        assert port != 0

        for count in (3, 20):
            out = run_example(
                str(EXAMPLES / "echo_client.py"), "--port", str(port), "--count", str(count)
            )
            assert out.returncode == 0, out.stderr
            expected = [f"connecting to 127.0.0.1 port {port}"]
            expected += [f"echo: line {i}: hello from ringtrio" for i in range(count)]
            expected += [f"done: {count} lines echoed"]
            assert out.stdout.splitlines() == expected
    finally:
        rest = stop(server)
    stdout, stderr = rest
    # Stopped with Ctrl-C: a clean exit, after serving both clients.
    assert server.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert stdout.count("connection from 127.0.0.1") == 2, stdout
    assert "closed after echoing" in stdout, stdout
    assert stdout.rstrip().endswith("server stopped"), stdout


def test_echo_client_without_server():
    # Nobody listening: a clear error, not a hang.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        out = run_example(str(EXAMPLES / "echo_client.py"), "--port", str(port), "--count", "1")
    assert out.returncode != 0
    assert "OSError" in out.stderr or "ConnectionRefusedError" in out.stderr, out.stderr
