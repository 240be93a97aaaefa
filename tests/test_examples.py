"""The programs in examples/ run and do what they say (each in a subprocess,
as a user would start them)."""

from __future__ import annotations

import errno
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
    assert re.search(r"everything above took \d+ io_uring_enter system calls", out.stdout), out.stdout
    assert "operations still running in the kernel: 0" in out.stdout


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
        return proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate(timeout=TIMEOUT)


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


def assert_one_line_error(out: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    """A failure reported as a user should see it: one line, no traceback."""
    assert out.returncode == status, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    assert text in out.stderr, out.stderr


def test_echo_client_without_server():
    # Nobody listening: a clear error, not a hang or a traceback.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        out = run_example(str(EXAMPLES / "echo_client.py"), "--port", str(port), "--count", "1")
    assert_one_line_error(out, 1, f"echo_client: cannot talk to 127.0.0.1 port {port}: ")
    assert "Connection refused" in out.stderr
    assert len(out.stderr.splitlines()) == 1, out.stderr


@pytest.mark.parametrize("example", ["echo_server.py", "echo_buffers.py"])
def test_server_on_a_taken_port(example: str):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_example(str(EXAMPLES / example), "--port", str(port))
    assert_one_line_error(out, 1, f"port {port}: [Errno 98] Address already in use")
    assert len(out.stderr.splitlines()) == 1, out.stderr


BAD_ARGUMENTS = [
    ("echo_server.py", ["--port", "70000"], "argument --port: a port is 0-65535"),
    ("echo_server.py", ["--port", "eighty"], "argument --port: invalid port_number value: 'eighty'"),
    ("echo_client.py", [], "the following arguments are required: --port"),
    ("echo_client.py", ["--port", "0"], "argument --port: a port to connect to is 1-65535"),
    ("echo_client.py", ["--port", "1", "--count", "-1"], "argument --count: must be 0 or more"),
    ("echo_buffers.py", ["--count", "1000"], "argument --count: must be a power of two from 1 to 32768"),
    ("echo_buffers.py", ["--size", "0"], "argument --size: must be at least 1 byte"),
    ("copy_tree.py", ["only-one"], "the following arguments are required: DST"),
    ("copy_tree.py", ["a", "b", "--jobs", "0"], "argument --jobs: must be at least 1"),
    ("copy_tree.py", ["a", "b", "--jobs"], "argument --jobs: expected one argument"),
]


@pytest.mark.parametrize(("example", "args", "message"), BAD_ARGUMENTS)
def test_bad_arguments_get_a_usage_message(example: str, args: list[str], message: str):
    out = run_example(str(EXAMPLES / example), *args)
    assert_one_line_error(out, 2, message)
    assert out.stderr.startswith("usage: "), out.stderr


# -- echo_buffers.py -----------------------------------------------------------


def test_echo_buffers_self_test():
    out = run_example(str(EXAMPLES / "echo_buffers.py"), "--port", "0", "--self-test")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "self-test ok" in out.stdout


def test_echo_buffers_stops_cleanly_on_ctrl_c():
    server = subprocess.Popen(
        [sys.executable, "-u", str(EXAMPLES / "echo_buffers.py"), "--port", "0", "--count", "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        first = read_line(server, time.monotonic() + TIMEOUT)
        match = re.match(r"listening on 127\.0\.0\.1 port (\d+) ", first)
        assert match, first
        # Ctrl-C with a connection open, after it echoed something.
        with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=TIMEOUT) as client:
            client.sendall(b"ping")
            assert client.recv(4) == b"ping"
            stdout, stderr = stop(server)
    finally:
        if server.poll() is None:  # failed before the Ctrl-C: clean up
            stop(server)
    assert server.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert stdout.rstrip().endswith("server stopped"), stdout


# -- copy_tree.py --------------------------------------------------------------


def run_copy_tree(*args: object) -> subprocess.CompletedProcess[str]:
    return run_example(str(EXAMPLES / "copy_tree.py"), *map(str, args))


@pytest.mark.parametrize("jobs", [["--jobs=8"], ["--jobs", "8"], []], ids=["jobs=8", "jobs 8", "default"])
def test_copy_tree(tmp_path: Path, jobs: list[str]):
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    expected = {}
    for i in range(40):
        rel = ["", "sub/", "sub/deeper/"][i % 3] + f"f{i}"
        data = os.urandom(i * 5000)
        (src / rel).write_bytes(data)
        expected[rel] = data
    (src / "empty").mkdir()
    os.symlink("f0", src / "link")
    dst = tmp_path / "dst"
    out = run_copy_tree(src, dst, *jobs)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"copied 40 files, {sum(map(len, expected.values()))} bytes\n"
    for rel, data in expected.items():
        assert (dst / rel).read_bytes() == data
    assert os.readlink(dst / "link") == "f0"
    assert (dst / "empty").is_dir()


def test_copy_tree_refuses_an_existing_destination(tmp_path: Path):
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "keep").write_text("mine")
    out = run_copy_tree(tmp_path / "src", tmp_path / "dst")
    assert_one_line_error(out, 1, "already exists; name a new directory")
    assert (tmp_path / "dst" / "keep").read_text() == "mine"  # not touched


@pytest.mark.parametrize("source", ["missing", "a-file"])
def test_copy_tree_refuses_a_source_that_is_not_a_directory(tmp_path: Path, source: str):
    (tmp_path / "a-file").write_text("x")
    out = run_copy_tree(tmp_path / source, tmp_path / "dst")
    what = "does not exist" if source == "missing" else "is not a directory"
    assert_one_line_error(out, 1, f"copy_tree: source '{tmp_path / source}' {what}")
    assert not (tmp_path / "dst").exists()


def test_copy_tree_removes_a_failed_copy(tmp_path: Path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "fine").write_bytes(b"data")
    # A UNIX socket cannot be opened like a file (ENXIO), even by root.
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(src / "sub" / "socket"))
        out = run_copy_tree(src, tmp_path / "dst")
    assert_one_line_error(out, 1, "copy failed, ")
    assert "No such device or address" in out.stderr
    assert not (tmp_path / "dst").exists()


def test_copy_tree_stops_cleanly_on_ctrl_c(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "fine").write_bytes(b"data")
    # A FIFO: the copy opens it and waits for data that we never send, so
    # the copy is surely still running when Ctrl-C arrives.
    os.mkfifo(src / "slow")
    dst = tmp_path / "dst"
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "copy_tree.py"), str(src), str(dst)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    writer = None
    try:
        # Ready once the copy has opened the FIFO for reading: until then a
        # non-blocking open for writing fails with ENXIO.
        deadline = time.monotonic() + TIMEOUT
        while writer is None:
            try:
                writer = os.open(src / "slow", os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                assert exc.errno == errno.ENXIO, exc
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the copy never opened the FIFO"
                time.sleep(0.02)
        stdout, stderr = stop(proc)
    finally:
        if proc.poll() is None:  # failed before the Ctrl-C: clean up
            stop(proc)
        if writer is not None:
            os.close(writer)
    assert proc.returncode == 130, (stdout, stderr)
    assert stderr == f"copy_tree: interrupted, '{dst}' removed\n"
    assert not dst.exists()
