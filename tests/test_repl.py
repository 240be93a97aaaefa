"""``python -m ringtrio``: the async REPL, driven through a subprocess's stdin.

The semantics are ``python -m trio``'s (trio/_tests/test_repl.py): top-level
``await`` runs in one ringtrio run that lasts the session; an exception is
printed and the console goes on, a BaseException and an exception group
holding a SystemExit too; a bare SystemExit ends it with its code; Ctrl-C
interrupts the running statement, or the line being typed, and the console
goes on.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

TIMEOUT = 60


def repl(lines: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """Feed ``lines`` to the console and return what it printed (stdout:
    prompts and results; stderr: banner and tracebacks)."""
    return subprocess.run(
        [sys.executable, "-m", "ringtrio", *args],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def printed(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines the statements printed, without the prompts."""
    out = []
    for line in proc.stdout.splitlines():
        while line.startswith((">>> ", "... ")):
            line = line[4:]
        if line:
            out.append(line)
    return out


def test_statements_and_top_level_await() -> None:
    proc = repl(
        [
            "x = 1",
            "print(f'{x=}')",
            "'hello'",  # an expression's value is shown
            "def func():",
            "  print(x + 1)",
            "",
            "func()",
            "async def afunc():",
            "  await ringtrio.sleep(0.01)",
            "  return 4",
            "",
            "await afunc()",
            "import sniffio",
            "print(sniffio.current_async_library())",
            # Statements run in the run's main task, one run for the session.
            "print(ringtrio.lowlevel.current_root_task() is ringtrio.lowlevel.current_task().parent_nursery.parent_task)",
            "token = ringtrio.lowlevel.current_trio_token()",
            "print(token is ringtrio.lowlevel.current_trio_token())",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert printed(proc) == ["x=1", "'hello'", "2", "4", "ringtrio", "True", "True"]
    assert "ringtrio REPL" in proc.stderr
    assert 'Use "await" directly instead of "ringtrio.run()".' in proc.stderr
    assert ">>> import ringtrio" in proc.stderr


def test_tasks_outlive_the_statement_that_started_them() -> None:
    proc = repl(
        [
            "events = []",
            "async def ticker():",
            "  events.append('started')",
            "  await ringtrio.sleep_forever()",
            "",
            "task = ringtrio.lowlevel.spawn_system_task(ticker)",
            "await ringtrio.sleep(0.01)",
            "print(events)",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert printed(proc) == ["['started']"]


@pytest.mark.parametrize(
    ("statement", "shown"),
    [
        ("raise ValueError('boom')", "ValueError: boom"),
        ("raise BaseException('base')", "BaseException: base"),
        ("raise ExceptionGroup('eg', [KeyError('k')])", "ExceptionGroup: eg"),
        # A SystemExit inside a group came from failing tasks: shown, not an exit.
        ("raise BaseExceptionGroup('', [RuntimeError(), SystemExit()])", "SystemExit"),
        ("async def f():\n  raise BaseException('from a coroutine')\n\nawait f()", "BaseException: from a coroutine"),
    ],
)
def test_exceptions_are_shown_and_the_console_goes_on(statement: str, shown: str) -> None:
    proc = repl([statement, "print('AFTER')"])
    assert proc.returncode == 0, proc.stderr
    assert printed(proc)[-1] == "AFTER"
    assert shown in proc.stderr
    # The traceback starts at the user's statement: no REPL or thread internals.
    assert 'File "<console>"' in proc.stderr
    assert "_repl.py" not in proc.stderr and "_threads.py" not in proc.stderr


@pytest.mark.parametrize(("lines", "code"), [(["exit()"], 0), (["raise SystemExit(3)", "print('not run')"], 3), ([], 0)])
def test_system_exit_or_end_of_input_ends_the_console(lines: list[str], code: int) -> None:
    proc = repl(lines)
    assert proc.returncode == code, proc.stderr
    assert printed(proc) == []


def test_trio_mode_console() -> None:
    proc = repl(
        [
            "import sys, sniffio",
            "print(trio is ringtrio, sys.modules['trio'] is ringtrio)",
            "await trio.sleep(0)",
            "print(sniffio.current_async_library())",
        ],
        "--trio-mode",
    )
    assert proc.returncode == 0, proc.stderr
    assert printed(proc) == ["True True", "trio"]
    assert ">>> import trio" in proc.stderr
    assert 'instead of "trio.run()"' in proc.stderr


class Console:
    """A console in a subprocess, read up to a marker with a deadline."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "ringtrio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.pending = b""

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def read_until(self, marker: bytes) -> bytes:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        while marker not in self.pending:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no {marker!r} within {TIMEOUT} s; got {self.pending!r}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"console ended before {marker!r}; got {self.pending!r}")
            self.pending += chunk
        end = self.pending.index(marker) + len(marker)
        seen, self.pending = self.pending[:end], self.pending[end:]
        return seen


@pytest.fixture
def console() -> Iterator[Console]:
    c = Console()
    try:
        c.read_until(b">>> import ringtrio\n>>> ")
        yield c
    finally:
        if c.proc.poll() is None:
            c.proc.kill()
        c.proc.wait(TIMEOUT)
        assert c.proc.stdin is not None and c.proc.stdout is not None
        c.proc.stdin.close()
        c.proc.stdout.close()


def test_ctrl_c_interrupts_a_running_statement(console: Console) -> None:
    console.send('print("READY"); await ringtrio.sleep_forever()')
    console.read_until(b"READY\n")
    os.kill(console.proc.pid, signal.SIGINT)
    shown = console.read_until(b">>> ")
    assert b"KeyboardInterrupt" in shown
    assert b'File "<console>"' in shown
    # The run and the console go on.
    console.send("await ringtrio.sleep(0); print('AFTER')")
    assert b"AFTER" in console.read_until(b">>> ")
    console.send("exit()")
    assert console.proc.wait(TIMEOUT) == 0


def test_ctrl_c_at_the_prompt_discards_the_line(console: Console) -> None:
    os.kill(console.proc.pid, signal.SIGINT)
    # A pipe is no terminal: the console cannot type Enter for the user and
    # asks for it; the line that ends the wait is discarded.
    console.read_until(b"(press Enter)")
    console.send("print('DISCARDED')")
    shown = console.read_until(b">>> ")
    assert b"KeyboardInterrupt" in shown
    assert b"DISCARDED" not in shown
    console.send("print('AFTER')")
    assert b"AFTER" in console.read_until(b">>> ")
    console.send("exit()")
    assert console.proc.wait(TIMEOUT) == 0


def test_ctrl_c_at_a_terminal_prompt() -> None:
    # On a terminal the console types the Enter itself (TIOCSTI), so Ctrl-C
    # at the prompt gives a fresh prompt at once, as in Python's console.
    # Where the kernel refuses TIOCSTI (dev.tty.legacy_tiocsti=0) it asks
    # for Enter instead; the test presses it then.  Either way the line is
    # discarded and the console goes on.
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: the console, with the pty as its terminal
        os.execv(sys.executable, [sys.executable, "-u", "-m", "ringtrio"])
    seen = b""

    def read_until(*markers: bytes) -> bytes:
        nonlocal seen
        deadline = time.monotonic() + TIMEOUT
        while not any(m in seen for m in markers):
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            assert ready, f"none of {markers!r} within {TIMEOUT} s; got {seen!r}"
            seen += os.read(fd, 65536)
        found, seen = seen, b""
        return found

    try:
        read_until(b">>> import ringtrio\r\n>>> ")
        os.write(fd, b"half-typed")
        read_until(b"half-typed")
        os.kill(pid, signal.SIGINT)
        shown = read_until(b"KeyboardInterrupt\r\n>>> ", b"(press Enter)")
        if b"(press Enter)" in shown:
            os.write(fd, b"\n")
            shown += read_until(b"KeyboardInterrupt\r\n>>> ")
        os.write(fd, b"print('AFTER')\n")
        assert b"AFTER\r\n>>> " in read_until(b"AFTER\r\n>>> ")
        os.write(fd, b"exit()\n")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
