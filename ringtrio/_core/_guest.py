"""Guest mode: a run driven by another event loop (asyncio, Qt, ...) through
callbacks, as trio's ``lowlevel.start_guest_run``.

The host loop's thread runs the scheduler: each callback it runs for us is
one pass of the ordinary loop (``Runner._run_loop(one_pass=True)``): collect
completions, run callbacks and deadlines, run every runnable task once.
When a pass ends with nothing runnable, the run must wait for the ring --
and the host must not: a helper thread (:class:`_Waiter`) polls the ring's
fd until a completion arrives or the run's next deadline passes, then asks
the host, with ``run_sync_soon_threadsafe``, for the next pass.  So:

    host thread:    [pass] host runs ......... [pass] host runs ...
    helper thread:         poll(ring fd, timeout) ^

Only the host thread ever enters the ring: the pass that ends submits what
it queued (``rt_enter``, no wait) before the helper starts polling, and the
next pass collects (``rt_pass``, no wait).  The helper only polls, which
is why the ring is set up without ``DEFER_TASKRUN`` in guest mode
(``_ring.GUEST_SETUP_FLAGS``): a deferred completion is posted only when
the owning thread enters, and wakes no poller.  On the soft ring (no
io_uring) the fd is its epoll instance, and deadlines are kept out of the
soft ring's own timer heap (``Runner.__init__``), which only a pass looks at.

The host's own code may change what the wait is for -- wake a task
(``Event.set``), cancel a scope, move a deadline, queue a ``run_sync_soon``
callback, press Ctrl-C -- while the helper polls.  Each of those calls
``Runner._state_changed()``, which writes a byte to the run's wake-up pipe:
its READ, always pending on the ring, completes, and the helper returns.

Abandonment: nothing of the run refers to the :class:`_GuestRun` but the
callback the host holds (or the helper while it waits).  If the host drops
it without running it (it stopped), the object is collected: it warns, as
trio does, and closes the run (the ring drained and closed, the signal
handler and the async generator hooks put back).
"""

from __future__ import annotations

import functools
import math
import queue
import select
import signal
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import outcome
import sniffio

from ._exceptions import RingtrioInternalError
from ._local import _local
from ._introspect import check_dump_signal, install_dump_signal
from ._run import _close, _final_outcome, _install_sigint, _new_runner, _nothing, _start
from ._runner import Runner

if TYPE_CHECKING:
    from ._clock import Clock
    from ._instrumentation import Instrument


class _Waiter:
    """The helper thread of a guest run: waits for the ring's fd to become
    readable or for a timeout, one wait at a time, and reports which."""

    def __init__(self, fd: int) -> None:
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        # (seconds, report) per wait; None: stop.
        self._jobs: queue.SimpleQueue[tuple[float, Callable[[bool], object]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="ringtrio guest run: waits for the ring", daemon=True)
        self._thread.start()

    def wait(self, timeout: float, report: Callable[[bool], object]) -> None:
        """Wait up to ``timeout`` seconds, then ``report(timed_out)`` (in the
        helper thread)."""
        self._jobs.put((timeout, report))

    def stop(self) -> None:
        self._jobs.put(None)

    def _main(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            timeout, report = job
            # poll() counts in milliseconds: round up, so that a deadline
            # has passed when it returns.  (Timeouts are at most a day:
            # Runner._MAX_WAIT.)
            ready = self._poll.poll(math.ceil(timeout * 1000))
            job = None
            try:
                report(not ready)
            except BaseException:  # noqa: BLE001 - the host refused the callback
                # (Its run_sync_soon_threadsafe raised, say because its loop
                # is closed.)  The run is abandoned; say why.
                sys.excepthook(*sys.exc_info())
            # Nothing of the run may stay referenced from here between
            # waits (see _GuestRun.__del__).
            del report


class _GuestRun:
    """What a guest run's callbacks carry from one pass to the next.  The
    runner does not refer to it, so that it is collected if the host drops
    its callback (see the module docstring)."""

    def __init__(
        self,
        runner: Runner,
        restore_signals: Callable[[], None],
        run_sync_soon_threadsafe: Callable[[Callable[[], object]], object],
        run_sync_soon_not_threadsafe: Callable[[Callable[[], object]], object],
        done_callback: Callable[[outcome.Outcome[Any]], object],
    ) -> None:
        self._runner: Runner | None = runner
        self._restore_signals = restore_signals
        self._run_sync_soon_threadsafe = run_sync_soon_threadsafe
        self._run_sync_soon_not_threadsafe = run_sync_soon_not_threadsafe
        self._done_callback = done_callback
        self._waiter = _Waiter(runner.ring.fd)

    def tick(self) -> None:
        """One pass, then the next step: another pass at once, or a wait in
        the helper thread."""
        runner = self._runner
        assert runner is not None, "a guest run was resumed after it finished"
        runner._guest_waiting = False
        # What sniffio says in our tasks: its thread-local, for the length
        # of the pass (see Runner.__init__), over whatever the host set.
        thread_local = sniffio.thread_local
        host_library, thread_local.name = thread_local.name, runner.sniffio_name
        try:
            runner._run_loop(one_pass=True)
            timeout = None if runner._done else runner._guest_prepare_wait()
        except BaseException as exc:
            error = exc if isinstance(exc, RingtrioInternalError) else None
            if error is None:
                error = RingtrioInternalError("internal error in ringtrio - please report it")
                error.__cause__ = exc
            self._finish(outcome.Error(error))
            return
        finally:
            thread_local.name = host_library
        if runner._done:
            if runner._instruments:
                runner._instrument("after_run")
            self._finish(None)
        elif timeout is None:
            self._run_sync_soon_not_threadsafe(self.tick)
        else:
            self._waiter.wait(timeout, self._waited)

    def _waited(self, timed_out: bool) -> None:
        # In the helper thread: the ring has something, or the wait timed out.
        self._run_sync_soon_threadsafe(functools.partial(self._after_wait, timed_out))

    def _after_wait(self, timed_out: bool) -> None:
        runner = self._runner
        assert runner is not None and runner._guest_wait is not None
        timeout, idle_primed, _ = runner._guest_wait
        runner._guest_wait = (timeout, idle_primed, timed_out)
        self.tick()

    def _finish(self, error: outcome.Outcome[Any] | None) -> None:
        runner = self._runner
        assert runner is not None
        self._runner = None
        self._waiter.stop()
        try:
            _close(runner, self._restore_signals)
        except BaseException as exc:  # noqa: BLE001 - reported to the host
            if error is None:
                error = outcome.Error(exc)
        self._done_callback(error if error is not None else _final_outcome(runner))

    def __del__(self) -> None:
        runner = self._runner
        if runner is None:
            return
        # The host dropped our callback without running it: the run can
        # never finish.  Say so (trio's words, so that code written for
        # trio recognises it), and close what the run holds.
        self._runner = None
        self._waiter.stop()
        try:
            warnings.warn(
                RuntimeWarning(
                    "Trio guest run got abandoned without properly finishing... weird "
                    "stuff might happen (ringtrio: the host loop dropped the callback "
                    "that would have run the next pass of a lowlevel.start_guest_run; "
                    "let the run finish, and its done_callback be called, before "
                    "stopping the host loop)"
                ),
                stacklevel=1,
            )
        finally:
            _close(runner, self._restore_signals)


def _point_wakeup_fd(runner: Runner) -> Callable[[], None]:
    """Make the signal module's wake-up fd our wake-up pipe (main thread
    only), as trio does for a guest whose host does not use it: a signal
    then wakes a helper thread waiting for the ring.  Warns if another
    library had set one."""
    if threading.get_ident() != threading.main_thread().ident:
        return _nothing
    old = signal.set_wakeup_fd(runner._wake_w, warn_on_full_buffer=False)
    if old != -1:
        warnings.warn(
            RuntimeWarning(
                "It looks like ringtrio's signal handling code might have collided with "
                "another library you're using: signal.set_wakeup_fd was already set. If "
                "you're running ringtrio in guest mode, you probably want "
                "host_uses_signal_set_wakeup_fd=True."
            ),
            stacklevel=3,
        )

    def restore() -> None:
        signal.set_wakeup_fd(old)

    return restore


def start_guest_run(
    async_fn: Callable[..., Awaitable[Any]],
    *args: object,
    run_sync_soon_threadsafe: Callable[[Callable[[], object]], object],
    done_callback: Callable[[outcome.Outcome[Any]], object],
    run_sync_soon_not_threadsafe: Callable[[Callable[[], object]], object] | None = None,
    host_uses_signal_set_wakeup_fd: bool = False,
    clock: Clock | None = None,
    instruments: tuple[Instrument, ...] | list[Instrument] = (),
    restrict_keyboard_interrupt_to_checkpoints: bool = False,
    strict_exception_groups: bool = True,
    backend: str | None = None,
    dump_tasks_on: int | None = None,
) -> None:
    """Start ``async_fn(*args)`` as a run inside another event loop (the
    *host*), as trio's ``lowlevel.start_guest_run``.

    The host runs the scheduler in its own thread: ``run_sync_soon_threadsafe(fn)``
    must arrange for the host to call ``fn()`` soon, from any thread;
    ``run_sync_soon_not_threadsafe`` (default: the same) is the cheaper
    version ringtrio calls from the host's thread.  When the run is over,
    ``done_callback(outcome)`` is called with what ``run`` would have
    returned or raised.  Errors in setting the run up are raised from here
    (``RingtrioInternalError``, ``RingUnavailableError``); everything else
    goes to ``done_callback``.  Once this returns, the run's system nursery
    exists: ``current_trio_token()``, ``spawn_system_task()`` and
    ``current_time()`` work from the host's code.

    ``host_uses_signal_set_wakeup_fd``: pass True if the host loop sets
    ``signal.set_wakeup_fd`` itself (asyncio does); otherwise ringtrio
    points it at its own wake-up pipe for the run.  The other arguments are
    ``run``'s, ``dump_tasks_on`` included (the tree is printed in the pass
    the signal causes; the wake-up fd stays whose it is, as above).
    """
    # (Checked before the runner opens its ring, which an error here would leak.)
    api = "ringtrio.lowlevel.start_guest_run"
    dump_signal = None if dump_tasks_on is None else check_dump_signal(dump_tasks_on, api)
    runner = _new_runner(
        api,
        async_fn,
        clock,
        instruments,
        strict_exception_groups,
        backend,
        guest=True,
    )
    _local.runner = runner
    restore_handler: Callable[[], None] = _nothing
    restore_wakeup: Callable[[], None] = _nothing

    def restore_signals() -> None:
        try:
            restore_handler()
        finally:
            restore_wakeup()

    try:
        restore_handler = _install_sigint(
            runner, restrict_keyboard_interrupt_to_checkpoints, set_wakeup_fd=False
        )
        if not host_uses_signal_set_wakeup_fd:
            restore_wakeup = _point_wakeup_fd(runner)
        if dump_signal is not None:
            # Put back first (restore_signals calls restore_handler first).
            restore_handler = install_dump_signal(runner, dump_signal, restore_handler, set_wakeup_fd=False)
        _start(runner, async_fn, args)
        # The first pass runs the init task only: it opens the system
        # nursery and spawns the main task, which has not run when we
        # return (as in trio).
        runner._run_loop(one_pass=True)
    except BaseException as exc:
        _close(runner, restore_signals)
        if isinstance(exc, RingtrioInternalError):
            raise
        raise RingtrioInternalError("internal error in ringtrio - please report it") from exc
    guest = _GuestRun(
        runner,
        restore_signals,
        run_sync_soon_threadsafe,
        run_sync_soon_not_threadsafe or run_sync_soon_threadsafe,
        done_callback,
    )
    (run_sync_soon_not_threadsafe or run_sync_soon_threadsafe)(guest.tick)
