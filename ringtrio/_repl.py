"""``python -m ringtrio``: an interactive console where ``await`` works at the top level.

The shape is the one ``python -m trio`` has.  The main task of a
``ringtrio.run`` hands the console to a worker thread
(``to_thread.run_sync``) and waits there.  The console reads a statement in
that thread, compiles it with ``PyCF_ALLOW_TOP_LEVEL_AWAIT``, and sends it
back into the run with ``from_thread.run`` (an ``await`` in it) or
``from_thread.run_sync``.  Either way it runs *inside the main task* (the
task that waits for the worker), so:

* what it awaits runs in the run, with the run's clock, threads and ring;
* Ctrl-C while it runs is the run's ordinary KeyboardInterrupt, delivered to
  the main task: the statement ends with a KeyboardInterrupt traceback and
  the console carries on;
* a cancel scope, nursery or task it starts lives in the run, which lasts
  for the whole session (a task started with
  ``lowlevel.spawn_system_task`` goes on running between statements).

Ctrl-C at the prompt: ``input()`` blocks a worker thread, which no signal
interrupts.  While the console waits for a line, SIGINT has a handler of
its own that marks the line as interrupted and, on a terminal that allows
it (``TIOCSTI``), types a newline to end the ``input()``; the line is then
discarded and the console shows ``KeyboardInterrupt``, as Python's own
console does.  Where the newline cannot be typed for the user, the console
says to press Enter.

``SystemExit`` (``exit()``, ``raise SystemExit(3)``) ends the console and
the run, with its code; any other exception, also a BaseException or an
exception group holding a SystemExit, is printed and the console goes on.
"""

from __future__ import annotations

import ast
import code
import contextlib
import signal
import sys
import types
import warnings
from typing import Any

import outcome

from . import from_thread, lowlevel, to_thread
from ._core import run

# The bit that marks a code object as a coroutine function's: a statement with
# an `await` at its top level compiles to one under PyCF_ALLOW_TOP_LEVEL_AWAIT.
_CO_COROUTINE = 0x80


def _type_newline() -> None:
    """Make the blocked ``input()`` return, as if Enter had been pressed."""
    import fcntl
    import termios

    try:
        fcntl.ioctl(sys.stdin, termios.TIOCSTI, b"\n")  # type: ignore[attr-defined,unused-ignore]
    except (OSError, ValueError, AttributeError):
        sys.stderr.write("\nKeyboardInterrupt (press Enter)")
        sys.stderr.flush()


class RingtrioConsole(code.InteractiveConsole):
    """An InteractiveConsole whose statements run in the ringtrio run that
    started it (see the module's docstring)."""

    def __init__(self, repl_locals: dict[str, Any] | None = None) -> None:
        super().__init__(locals=repl_locals)
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self._interrupted = False

    def runcode(self, code: types.CodeType) -> None:  # noqa: A002 - the base class's name
        statement = types.FunctionType(code, self.locals)  # type: ignore[arg-type]
        result: outcome.Outcome[Any]
        if code.co_flags & _CO_COROUTINE:
            result = from_thread.run(outcome.acapture, statement)
        else:
            result = from_thread.run_sync(outcome.capture, statement)
        if isinstance(result, outcome.Error):
            # (outcome leaves its own frame out of the traceback: it starts
            # at the user's statement, as in Python's console.)
            error = result.error
            if isinstance(error, SystemExit):
                # Only a bare SystemExit ends the console: one inside an
                # exception group came out of tasks that failed together,
                # which is an error to show, not a request to quit.
                raise error
            sys.last_type, sys.last_value, sys.last_traceback = type(error), error, error.__traceback__
            sys.excepthook(type(error), error, error.__traceback__)
        # A Ctrl-C that arrived after the statement's last checkpoint is
        # still pending for the main task; take it now (it surfaces here as
        # KeyboardInterrupt, which the console reports), not in the middle of
        # the next statement.
        from_thread.run(lowlevel.checkpoint_if_cancelled)

    def raw_input(self, prompt: str = "") -> str:
        def on_sigint(signum: int, frame: types.FrameType | None) -> None:
            self._interrupted = True
            _type_newline()

        # signal.signal() works only in the main thread: the run's thread.
        previous = from_thread.run_sync(signal.signal, signal.SIGINT, on_sigint)
        try:
            line = input(prompt)
        finally:
            from_thread.run_sync(signal.signal, signal.SIGINT, previous)
        if self._interrupted:
            self._interrupted = False
            raise KeyboardInterrupt  # the console prints it and prompts again
        return line


def banner(trio_mode: bool) -> str:
    name = "trio" if trio_mode else "ringtrio"
    note = " (trio mode: `trio` is ringtrio)" if trio_mode else ""
    return (
        f"ringtrio REPL{note}, Python {sys.version} on {sys.platform}\n"
        f'Use "await" directly instead of "{name}.run()".\n'
        'Type "help", "copyright", "credits" or "license" for more information.\n'
        f"{getattr(sys, 'ps1', '>>> ')}import {name}"
    )


async def run_console(console: RingtrioConsole, banner_text: str) -> None:
    try:
        await to_thread.run_sync(console.interact, banner_text, "")
    finally:
        # A statement interrupted before its coroutine started leaves that
        # coroutine unawaited; its warning at exit would only be noise.
        warnings.filterwarnings("ignore", message=r"^coroutine .* was never awaited$", category=RuntimeWarning)


def main(trio_mode: bool = False) -> None:
    """Run the console until end of input or ``exit()``."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - line editing and history for input()
    ringtrio = sys.modules["ringtrio"]
    repl_locals: dict[str, Any] = {"__name__": "__main__", "__doc__": None, "ringtrio": ringtrio}
    if trio_mode:
        repl_locals["trio"] = ringtrio  # what `import trio` gives in trio mode
    run(run_console, RingtrioConsole(repl_locals), banner(trio_mode))
