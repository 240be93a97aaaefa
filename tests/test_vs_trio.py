"""Differential tests: run the same scenario under trio and ringtrio.

Every scenario is ``async def scenario(lib, log)``: ``lib`` is the module under
test (``trio`` or ``ringtrio``) and ``log`` is a list the scenario appends
observations to.  ``run_both`` runs the scenario once per library and asserts
that the observation logs are identical.  trio is the oracle.

Rules the scenarios follow so that the trio side is deterministic:

* no observation depends on the relative order in which *sibling* tasks run
  (trio shuffles each batch of runnable tasks); where several siblings report,
  their reports are collected separately and sorted;
* deadlines that are meant to fire are short (~0.05 s) and deadlines that are
  meant not to fire are long (>= 5 s); elapsed times are only checked against
  very generous bounds;
* exceptions are recorded by type name (messages are implementation detail),
  and exception groups by their nested structure with children sorted.

While ringtrio is not importable, the scenarios can be checked against trio on
both sides with ``RINGTRIO_VS_LIBS=trio,trio``.  The default (and what CI runs)
is ``trio,ringtrio``.
"""

from __future__ import annotations

import importlib
import math
import os
import signal
import traceback

import outcome
import pytest
import sniffio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LIB_NAMES = os.environ.get("RINGTRIO_VS_LIBS", "trio,ringtrio").split(",")
assert len(LIB_NAMES) == 2, "RINGTRIO_VS_LIBS must name exactly two modules"
LIBS = [importlib.import_module(name.strip()) for name in LIB_NAMES]


# --------------------------------------------------------------------------
# harness
# --------------------------------------------------------------------------

SCENARIOS: dict = {}

# Per-library state for scenarios that span several calls to ``run``.  It is
# reset by ``observe`` before each library's series of runs.
_STATE: dict = {}


def scenario(fn=None, *, runs=1):
    """Register ``fn`` as a differential scenario (run ``runs`` times per lib)."""

    def register(f):
        assert f.__name__ not in SCENARIOS, f.__name__
        f.runs = runs
        SCENARIOS[f.__name__] = f
        return f

    return register(fn) if fn is not None else register


def norm_exc(exc):
    """Normalise an exception to its type name, groups to nested structure."""
    if isinstance(exc, BaseExceptionGroup):
        children = sorted((norm_exc(e) for e in exc.exceptions), key=repr)
        return (type(exc).__name__, tuple(children))
    return type(exc).__name__


# No scenario needs more than ~6 s; a run that takes longer is reported as
# hung (via SIGALRM) instead of blocking the whole test session.  After a
# hang the library's run state is abandoned mid-flight, so later tests in
# the same process may fail too: look at the first "run hung" failure.
HANG_SECONDS = 20


class _Hung(BaseException):
    pass


def _on_alarm(signum, frame):
    _hung_flag.append(True)
    raise _Hung(f"lib.run did not finish within {HANG_SECONDS} s")


_hung_flag: list = []


def guarded_run(lib, fn, *args):
    """``lib.run(fn, *args)`` -> ("run returned", value) / ("run raised", ...)."""
    _hung_flag.clear()
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        try:
            return ("run returned", lib.run(fn, *args)), None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    except BaseException as exc:  # noqa: BLE001 - everything is an observation
        if _hung_flag:
            return ("run hung",), exc
        return ("run raised", norm_exc(exc)), exc


def observe(lib, scen):
    """Run ``scen`` under ``lib``; return (log, raw exceptions escaping run)."""
    log: list = []
    escaped: list = []
    _STATE.clear()
    for _ in range(scen.runs):
        entry, exc = guarded_run(lib, scen, lib, log)
        log.append(entry)
        if exc is not None:
            escaped.append(exc)
    return log, escaped


def _describe(escaped):
    return "".join(
        "".join(traceback.format_exception(exc)) for exc in escaped
    ) or "(nothing escaped run)\n"


def run_both(scen):
    (log_a, esc_a), (log_b, esc_b) = (observe(lib, scen) for lib in LIBS)
    if log_a != log_b:
        msg = (
            f"observations differ for {scen.__name__}\n"
            f"--- {LIB_NAMES[0]}:\n" + "\n".join(map(repr, log_a)) + "\n"
            f"--- {LIB_NAMES[1]}:\n" + "\n".join(map(repr, log_b)) + "\n"
            f"--- escaped {LIB_NAMES[0]}.run:\n{_describe(esc_a)}"
            f"--- escaped {LIB_NAMES[1]}.run:\n{_describe(esc_b)}"
        )
        assert log_a == log_b, msg


async def settle(lib, n=10):
    """Let every runnable task make progress until it blocks.

    With one checkpoint the current task goes to the back of the run queue;
    after ``n`` of them every other task has had ``n`` chances to run, so any
    sibling that needs fewer than ``n`` steps to reach a blocking call is
    blocked there.  Used instead of trio.testing.wait_all_tasks_blocked, which
    ringtrio does not provide.
    """
    for _ in range(n):
        await lib.lowlevel.checkpoint()


def eff(lib, t0):
    """current_effective_deadline normalised relative to the anchor ``t0``."""
    d = lib.current_effective_deadline()
    if d == -math.inf:
        return "-inf"
    if d == math.inf:
        return "inf"
    return round(d - t0, 3)


def catch(log, label, lib=None):
    """Context manager recording whether the body raised, and what."""
    return _Catch(log, label)


class _Catch:
    def __init__(self, log, label):
        self.log = log
        self.label = label

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if exc is None:
            self.log.append((self.label, "ok"))
        else:
            self.log.append((self.label, norm_exc(exc)))
        # swallow Exceptions, let BaseExceptions (Cancelled...) continue
        return exc is None or isinstance(exc, Exception)


# --------------------------------------------------------------------------
# cancellation basics
# --------------------------------------------------------------------------


@scenario
async def cancel_before_checkpoint_raises_at_next_checkpoint(lib, log):
    with lib.CancelScope() as cs:
        log.append(("cancel_called before", cs.cancel_called))
        cs.cancel()
        log.append("cancel() itself does not raise")
        log.append(("cancel_called after", cs.cancel_called))
        await lib.lowlevel.checkpoint()
        log.append("UNREACHABLE")
    log.append(("cancelled_caught", cs.cancelled_caught))
    log.append(("cancel_called", cs.cancel_called))


@scenario
async def cancel_scope_cancelled_caught_only_when_delivered(lib, log):
    with lib.CancelScope() as cs:
        await lib.lowlevel.checkpoint()
        cs.cancel()
        log.append("no checkpoint after cancel")
    log.append(("cancel_called", cs.cancel_called))
    log.append(("cancelled_caught", cs.cancelled_caught))


@scenario
async def cancelled_scope_is_level_triggered(lib, log):
    L = lib.lowlevel
    with lib.CancelScope() as cs:
        cs.cancel()
        steps = [
            ("checkpoint", L.checkpoint),
            ("sleep(0)", lambda: lib.sleep(0)),
            ("sleep(5)", lambda: lib.sleep(5)),
            ("sleep_until", lambda: lib.sleep_until(lib.current_time() + 5)),
            ("sleep_forever", lib.sleep_forever),
            ("checkpoint_if_cancelled", L.checkpoint_if_cancelled),
            ("checkpoint again", L.checkpoint),
        ]
        for name, step in steps:
            try:
                await step()
                log.append((name, "returned"))
            except lib.Cancelled:
                log.append((name, "Cancelled"))
        log.append(("eff", eff(lib, 0)))
    # every Cancelled was swallowed, so nothing reached the scope's exit
    log.append(("cancelled_caught", cs.cancelled_caught))


@scenario
async def cancelled_reraised_from_except_handler_is_caught(lib, log):
    with lib.CancelScope() as cs:
        cs.cancel()
        try:
            await lib.lowlevel.checkpoint()
        except lib.Cancelled as exc:
            log.append(("caught", type(exc).__name__))
            log.append(("is BaseException only", not isinstance(exc, Exception)))
            try:
                await lib.lowlevel.checkpoint()
            except lib.Cancelled:
                log.append("raised again inside the handler")
                raise
    log.append(("cancelled_caught", cs.cancelled_caught))


@scenario
async def cancel_before_enter_raises_at_first_checkpoint(lib, log):
    cs = lib.CancelScope()
    cs.cancel()
    log.append(("cancel_called before enter", cs.cancel_called))
    with cs:
        log.append("entered without raising")
        await lib.lowlevel.checkpoint()
        log.append("UNREACHABLE")
    log.append(("cancelled_caught", cs.cancelled_caught))


@scenario
async def inner_cancel_caught_by_inner_scope(lib, log):
    with lib.CancelScope() as outer:
        with lib.CancelScope() as inner:
            inner.cancel()
            await lib.lowlevel.checkpoint()
            log.append("UNREACHABLE")
        log.append("outer continues after inner absorbed its cancel")
        await lib.lowlevel.checkpoint()
        log.append("outer checkpoint fine")
    log.append(("inner", inner.cancel_called, inner.cancelled_caught))
    log.append(("outer", outer.cancel_called, outer.cancelled_caught))


@scenario
async def outer_cancel_passes_through_inner_scope(lib, log):
    with lib.CancelScope() as outer:
        with lib.CancelScope() as inner:
            outer.cancel()
            log.append(("eff inside inner", eff(lib, 0)))
            await lib.lowlevel.checkpoint()
            log.append("UNREACHABLE")
        log.append("UNREACHABLE 2")
    log.append(("inner", inner.cancel_called, inner.cancelled_caught))
    log.append(("outer", outer.cancel_called, outer.cancelled_caught))


@scenario
async def both_cancelled_outermost_scope_catches(lib, log):
    with lib.CancelScope() as a:
        with lib.CancelScope() as b:
            with lib.CancelScope() as c:
                c.cancel()
                a.cancel()
                await lib.lowlevel.checkpoint()
    log.append(("a", a.cancelled_caught, "b", b.cancelled_caught, "c", c.cancelled_caught))
    log.append(("called", a.cancel_called, b.cancel_called, c.cancel_called))


@scenario
async def cancelled_scope_does_not_swallow_other_exceptions(lib, log):
    try:
        with lib.CancelScope() as cs:
            cs.cancel()
            raise ValueError("boom")
    except ValueError:
        log.append("ValueError passed through")
    log.append(("cancelled_caught", cs.cancelled_caught, cs.cancel_called))


@scenario
async def cancel_scope_cannot_be_entered_twice(lib, log):
    cs = lib.CancelScope()
    with cs:
        pass
    try:
        with cs:
            log.append("UNREACHABLE")
    except RuntimeError:
        log.append("RuntimeError on re-entry")


@scenario
async def cancel_scope_argument_validation(lib, log):
    with catch(log, "deadline=nan", lib):
        lib.CancelScope(deadline=math.nan)
    with catch(log, "relative_deadline=-1", lib):
        lib.CancelScope(relative_deadline=-1)
    with catch(log, "relative_deadline=nan", lib):
        lib.CancelScope(relative_deadline=math.nan)
    with catch(log, "both deadlines", lib):
        lib.CancelScope(deadline=1, relative_deadline=1)
    cs = lib.CancelScope()
    with catch(log, "shield=1 (not bool)", lib):
        cs.shield = 1
    with catch(log, "deadline setter nan", lib):
        cs.deadline = math.nan
    log.append(("defaults", cs.deadline, cs.shield, cs.cancel_called, cs.cancelled_caught))


@scenario
async def cancel_is_idempotent(lib, log):
    with lib.CancelScope() as cs:
        cs.cancel()
        cs.cancel()
        await lib.lowlevel.checkpoint()
    cs.cancel()  # after exit: no effect, no error
    log.append(("caught", cs.cancelled_caught, "called", cs.cancel_called))


# --------------------------------------------------------------------------
# shielding
# --------------------------------------------------------------------------


@scenario
async def shield_blocks_outer_cancel_until_scope_exit(lib, log):
    with lib.CancelScope() as outer:
        outer.cancel()
        with lib.CancelScope(shield=True) as inner:
            await lib.lowlevel.checkpoint()
            await lib.sleep(0)
            log.append(("shielded checkpoints fine; eff", eff(lib, 0)))
        log.append(("inner caught", inner.cancelled_caught))
        log.append(("eff after shield", eff(lib, 0)))
        await lib.lowlevel.checkpoint()
        log.append("UNREACHABLE")
    log.append(("outer caught", outer.cancelled_caught))


@scenario
async def shield_cleared_lets_pending_cancel_land(lib, log):
    with lib.CancelScope() as outer:
        with lib.CancelScope(shield=True) as inner:
            outer.cancel()
            await lib.lowlevel.checkpoint()
            log.append("shielded")
            inner.shield = False
            log.append(("shield now", inner.shield, "eff", eff(lib, 0)))
            try:
                await lib.lowlevel.checkpoint()
            except lib.Cancelled:
                log.append("Cancelled after unshield")
                raise
    log.append(("inner caught", inner.cancelled_caught, "outer caught", outer.cancelled_caught))


@scenario
async def shield_does_not_block_own_cancel(lib, log):
    with lib.CancelScope(shield=True) as cs:
        cs.cancel()
        await lib.lowlevel.checkpoint()
        log.append("UNREACHABLE")
    log.append(("caught", cs.cancelled_caught))


@scenario
async def shield_toggled_off_while_blocked(lib, log):
    async def child(task_status):
        scopes = []
        task_status.started(scopes)  # filled before this task first blocks
        with lib.CancelScope() as outer:
            with lib.CancelScope(shield=True) as inner:
                scopes += [outer, inner]
                try:
                    await lib.sleep_forever()
                except lib.Cancelled:
                    log.append("child: Cancelled in sleep_forever")
                    raise
        log.append(("child: inner caught", inner.cancelled_caught, "outer caught", outer.cancelled_caught))

    async with lib.open_nursery() as nursery:
        outer, inner = await nursery.start(child)
        outer.cancel()
        await settle(lib)
        log.append("parent: child still blocked after outer.cancel()")
        inner.shield = False
        log.append("parent: shield cleared")
    log.append("nursery done")


@scenario
async def shield_toggled_on_while_blocked(lib, log):
    async def child(task_status):
        scopes = []
        task_status.started(scopes)  # filled before this task first blocks
        with lib.CancelScope() as outer:
            with lib.CancelScope() as inner:
                scopes += [outer, inner]
                try:
                    await lib.sleep_forever()
                except lib.Cancelled:
                    log.append("child: Cancelled")
                    raise
            log.append("child: continues in outer after inner absorbed")
        log.append(("child: inner caught", inner.cancelled_caught, "outer caught", outer.cancelled_caught))

    async with lib.open_nursery() as nursery:
        outer, inner = await nursery.start(child)
        inner.shield = True
        outer.cancel()
        await settle(lib)
        log.append("parent: shielded child not woken by outer.cancel()")
        inner.cancel()
    log.append("nursery done")


@scenario
async def shielded_nursery_children_ignore_outer_cancel(lib, log):
    seen = []

    async def child(name):
        await lib.sleep(0.05)
        seen.append(name)

    with lib.CancelScope() as outer:
        with lib.CancelScope(shield=True):
            async with lib.open_nursery() as nursery:
                nursery.start_soon(child, "a")
                nursery.start_soon(child, "b")
                outer.cancel()
        log.append(("children finished", sorted(seen)))
        await lib.lowlevel.checkpoint()
    log.append(("outer caught", outer.cancelled_caught))


# --------------------------------------------------------------------------
# timeouts
# --------------------------------------------------------------------------


@scenario
async def move_on_after_expires(lib, log):
    t0 = lib.current_time()
    with lib.move_on_after(0.05) as cs:
        await lib.sleep(5)
        log.append("UNREACHABLE")
    elapsed = lib.current_time() - t0
    log.append(("caught", cs.cancelled_caught, "called", cs.cancel_called))
    log.append(("elapsed in (0.04, 4)", 0.04 < elapsed < 4))


@scenario
async def move_on_after_does_not_fire_early(lib, log):
    with lib.move_on_after(60) as cs:
        log.append(("relative eff", eff(lib, lib.current_time()) > 30))
        await lib.sleep(0.01)
        log.append("slept")
    log.append(("caught", cs.cancelled_caught, "called", cs.cancel_called))


@scenario
async def move_on_after_argument_validation(lib, log):
    with catch(log, "move_on_after(-1)", lib):
        lib.move_on_after(-1)
    with catch(log, "move_on_after(nan)", lib):
        lib.move_on_after(math.nan)
    with catch(log, "fail_after(-1)", lib):
        with lib.fail_after(-1):
            pass
    with catch(log, "sleep(-1)", lib):
        await lib.sleep(-1)
    with catch(log, "move_on_at(nan)", lib):
        lib.move_on_at(math.nan)


@scenario
async def move_on_at_expires_and_past_deadline_cancels_immediately(lib, log):
    t0 = lib.current_time()
    with lib.move_on_at(t0 + 0.05) as cs:
        log.append(("deadline", round(cs.deadline - t0, 3)))
        await lib.sleep_forever()
    log.append(("caught", cs.cancelled_caught))
    with lib.move_on_at(lib.current_time() - 1) as cs2:
        log.append(("entered past deadline; cancel_called", cs2.cancel_called))
        log.append(("eff", eff(lib, 0)))
        await lib.lowlevel.checkpoint()
        log.append("UNREACHABLE")
    log.append(("past caught", cs2.cancelled_caught))


@scenario
async def fail_after_raises_too_slow(lib, log):
    log.append(("TooSlowError is Exception", issubclass(lib.TooSlowError, Exception)))
    try:
        with lib.fail_after(0.05) as cs:
            await lib.sleep(5)
            log.append("UNREACHABLE")
    except lib.TooSlowError as exc:
        log.append(("raised", type(exc).__name__))
        log.append(("scope caught", cs.cancelled_caught))
    with lib.fail_after(5):
        await lib.sleep(0.01)
    log.append("fail_after(5) finished normally")


@scenario
async def fail_at_raises_too_slow(lib, log):
    t0 = lib.current_time()
    try:
        with lib.fail_at(t0 + 0.05):
            await lib.sleep_forever()
    except lib.TooSlowError:
        log.append("TooSlowError")
    with lib.fail_at(lib.current_time() + 5):
        await lib.lowlevel.checkpoint()
    log.append("fail_at(+5) finished normally")


@scenario
async def fail_after_manual_cancel_also_raises_too_slow(lib, log):
    try:
        with lib.fail_after(5) as cs:
            cs.cancel()
            await lib.lowlevel.checkpoint()
    except lib.TooSlowError:
        log.append("TooSlowError")


@scenario
async def fail_after_lets_other_errors_and_outer_cancel_through(lib, log):
    try:
        with lib.fail_after(5):
            raise KeyError("x")
    except KeyError:
        log.append("KeyError passed through")
    with lib.CancelScope() as outer:
        try:
            with lib.fail_after(5):
                outer.cancel()
                await lib.lowlevel.checkpoint()
        except lib.TooSlowError:
            log.append("WRONG: TooSlowError for outer cancel")
        except lib.Cancelled:
            log.append("Cancelled (not TooSlowError) for outer cancel")
            raise
    log.append(("outer caught", outer.cancelled_caught))


@scenario
async def nested_deadlines_effective_is_minimum(lib, log):
    t0 = lib.current_time()
    log.append(("no deadline", eff(lib, t0)))
    with lib.CancelScope(deadline=t0 + 100):
        log.append(("100", eff(lib, t0)))
        with lib.CancelScope(deadline=t0 + 50):
            log.append(("100,50", eff(lib, t0)))
            with lib.CancelScope(deadline=t0 + 200):
                log.append(("100,50,200", eff(lib, t0)))
                with lib.CancelScope(shield=True):
                    log.append(("shielded, no deadline", eff(lib, t0)))
                    with lib.CancelScope(deadline=t0 + 300):
                        log.append(("shielded, 300", eff(lib, t0)))
                with lib.CancelScope(shield=True, deadline=t0 + 400):
                    log.append(("shielded with own 400", eff(lib, t0)))
        log.append(("back to 100", eff(lib, t0)))
    log.append(("after all", eff(lib, t0)))


@scenario
async def effective_deadline_cancel_and_shield(lib, log):
    t0 = lib.current_time()
    with lib.CancelScope(deadline=t0 + 10) as outer:
        outer.cancel()
        log.append(("cancelled", eff(lib, t0)))
        with lib.CancelScope(shield=True):
            log.append(("shielded", eff(lib, t0)))
            with lib.CancelScope(deadline=t0 + 7):
                log.append(("shielded + 7", eff(lib, t0)))
            with lib.CancelScope() as inner:
                inner.cancel()
                log.append(("shielded + cancelled", eff(lib, t0)))
        with lib.CancelScope(deadline=t0 + 3):
            log.append(("cancelled outer + 3", eff(lib, t0)))


@scenario
async def deadline_attribute_changes_effective_deadline(lib, log):
    t0 = lib.current_time()
    with lib.CancelScope() as cs:
        log.append(("initial", cs.deadline, eff(lib, t0)))
        cs.deadline = t0 + 30
        log.append(("set 30", round(cs.deadline - t0, 3), eff(lib, t0)))
        cs.deadline += 5
        log.append(("+= 5", eff(lib, t0)))
        cs.deadline = math.inf
        log.append(("inf", eff(lib, t0)))
        await lib.lowlevel.checkpoint()
    log.append(("caught", cs.cancelled_caught, cs.cancel_called))


@scenario
async def relative_deadline_semantics(lib, log):
    cs = lib.CancelScope(relative_deadline=100)
    log.append(("unentered relative_deadline", cs.relative_deadline))
    with catch(log, "unentered relative: read deadline", lib):
        cs.deadline
    t0 = lib.current_time()
    with cs:
        log.append(("deadline ~ enter+100", round(cs.deadline - t0)))
        log.append(("relative_deadline ~ 100", round(cs.relative_deadline)))
        cs.relative_deadline = 50
        log.append(("after set 50", round(cs.relative_deadline), round(eff(lib, t0))))
        with catch(log, "relative_deadline = -1", lib):
            cs.relative_deadline = -1
    absolute = lib.CancelScope(deadline=t0 + 5)
    with catch(log, "unentered absolute: read relative_deadline", lib):
        absolute.relative_deadline
    with catch(log, "unentered absolute: set relative_deadline", lib):
        absolute.relative_deadline = 3
    plain = lib.CancelScope()
    log.append(("plain relative_deadline", plain.relative_deadline))
    plain.relative_deadline = 7
    log.append(("plain set 7", plain.relative_deadline))


@scenario
async def relative_deadline_expires(lib, log):
    with lib.CancelScope(relative_deadline=0.05) as cs:
        await lib.sleep_forever()
    log.append(("caught", cs.cancelled_caught, "called", cs.cancel_called))


@scenario
async def deadline_moved_later_while_blocked_does_not_fire(lib, log):
    async def child(task_status):
        scopes = []
        task_status.started(scopes)  # filled before this task first blocks
        # (Moved before it passes: 0.5 s is far more than a loaded machine
        # stalls the parent between start() and the move.)
        with lib.CancelScope(deadline=lib.current_time() + 0.5) as cs:
            scopes.append(cs)
            try:
                await lib.sleep_forever()
            except lib.Cancelled:
                log.append("child: Cancelled")
                raise
        log.append(("child caught", cs.cancelled_caught))

    async with lib.open_nursery() as nursery:
        [cs] = await nursery.start(child)
        cs.deadline = lib.current_time() + 1000
        await lib.sleep(0.7)
        log.append(("parent: child scope called after 0.7s", cs.cancel_called))
        cs.cancel()


@scenario
async def deadline_moved_earlier_while_blocked_fires(lib, log):
    async def child(task_status):
        scopes = []
        task_status.started(scopes)  # filled before this task first blocks
        with lib.CancelScope(deadline=lib.current_time() + 1000) as cs:
            scopes.append(cs)
            try:
                await lib.sleep(500)
            except lib.Cancelled:
                log.append("child: Cancelled")
                raise
        log.append(("child caught", cs.cancelled_caught))

    t0 = lib.current_time()
    async with lib.open_nursery() as nursery:
        [cs] = await nursery.start(child)
        cs.deadline = lib.current_time() + 0.05
    log.append(("nursery done well before old deadline", lib.current_time() - t0 < 50))


@scenario
async def past_deadline_set_inside_scope(lib, log):
    with lib.CancelScope() as cs:
        cs.deadline = lib.current_time() - 1
        # reading cancel_called notices the expired deadline
        log.append(("cancel_called", cs.cancel_called))
        log.append(("eff", eff(lib, 0)))
        await lib.lowlevel.checkpoint()
        log.append("UNREACHABLE")
    log.append(("caught", cs.cancelled_caught))
    unentered = lib.CancelScope(deadline=lib.current_time() - 1)
    log.append(("unentered past deadline cancel_called", unentered.cancel_called))


@scenario
async def sleep_forever_raises_cancelled(lib, log):
    async def child(task_status):
        try:
            task_status.started()
            await lib.sleep_forever()
        except lib.Cancelled as exc:
            log.append(("child got", type(exc).__name__))
            raise

    async with lib.open_nursery() as nursery:
        await nursery.start(child)
        nursery.cancel_scope.cancel()
    log.append(("nursery caught", nursery.cancel_scope.cancelled_caught))


@scenario
async def sleep_until_past_time_is_checkpoint(lib, log):
    await lib.sleep_until(lib.current_time() - 10)
    log.append("returned")
    with lib.CancelScope() as cs:
        cs.cancel()
        await lib.sleep_until(lib.current_time() - 10)
    log.append(("caught", cs.cancelled_caught))
    t0 = lib.current_time()
    await lib.sleep_until(t0 + 0.05)
    log.append(("woke at or after target", lib.current_time() >= t0 + 0.05))


@scenario
async def current_time_is_monotonic_float(lib, log):
    a = lib.current_time()
    await lib.sleep(0.01)
    b = lib.current_time()
    log.append((type(a).__name__, b > a, 0.005 <= b - a < 5))


# --------------------------------------------------------------------------
# nurseries
# --------------------------------------------------------------------------


@scenario
async def nursery_body_error_cancels_children(lib, log):
    seen = []

    async def child(name):
        try:
            await lib.sleep_forever()
        except lib.Cancelled:
            seen.append(name)
            raise

    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(child, "a")
            nursery.start_soon(child, "b")
            await settle(lib)
            raise ValueError("body")
    except BaseExceptionGroup as eg:
        log.append(("group", norm_exc(eg)))
    log.append(("cancelled children", sorted(seen)))
    log.append(("nursery scope caught", nursery.cancel_scope.cancelled_caught))


@scenario
async def nursery_first_child_error_cancels_siblings(lib, log):
    seen = []

    async def sleeper(name):
        try:
            await lib.sleep_forever()
        except lib.Cancelled:
            seen.append(name)
            raise

    async def crasher():
        await settle(lib)
        raise KeyError("child")

    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(sleeper, "s1")
            nursery.start_soon(sleeper, "s2")
            nursery.start_soon(crasher)
        log.append("UNREACHABLE")
    except BaseExceptionGroup as eg:
        log.append(("group", norm_exc(eg)))
        log.append(("group is ExceptionGroup", isinstance(eg, ExceptionGroup)))
    log.append(("cancelled siblings", sorted(seen)))


@scenario
async def nursery_collects_multiple_errors(lib, log):
    async def raiser(exc_type):
        raise exc_type()

    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(raiser, ValueError)
            nursery.start_soon(raiser, KeyError)
            nursery.start_soon(raiser, IndexError)
    except* ValueError as eg:
        log.append(("ValueError part", norm_exc(eg)))
    except* LookupError as eg:
        log.append(("LookupError part", norm_exc(eg)))


@scenario
async def single_child_error_is_still_wrapped_in_group(lib, log):
    async def raiser():
        raise ValueError()

    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(raiser)
    except BaseException as exc:  # noqa: BLE001
        log.append(norm_exc(exc))


@scenario
async def nested_nurseries_nest_groups(lib, log):
    async def raiser(exc_type):
        # no checkpoint: both raise in their first step, before the first
        # error's cancellation can reach the other
        raise exc_type()

    async def inner_parent():
        async with lib.open_nursery() as inner:
            inner.start_soon(raiser, ValueError)
            inner.start_soon(raiser, KeyError)

    async with lib.open_nursery() as outer:
        outer.start_soon(inner_parent)
        outer.start_soon(lib.sleep_forever)
    log.append("UNREACHABLE")


@scenario
async def nursery_error_mixed_with_cancelled_inside_cancelled_scope(lib, log):
    async def quiet():
        await lib.sleep_forever()

    async def converts():
        try:
            await lib.sleep_forever()
        except lib.Cancelled:
            raise ValueError("converted")

    try:
        with lib.CancelScope() as cs:
            async with lib.open_nursery() as nursery:
                nursery.start_soon(quiet)
                nursery.start_soon(converts)
                await settle(lib)
                cs.cancel()
    except BaseException as exc:  # noqa: BLE001
        log.append(("escaped scope", norm_exc(exc)))
    log.append(("scope caught", cs.cancelled_caught))


@scenario
async def child_error_while_body_blocked(lib, log):
    async def crasher():
        await lib.sleep(0.05)
        raise ValueError("child")

    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(crasher)
            try:
                await lib.sleep_forever()
            except lib.Cancelled:
                log.append("body: Cancelled")
                raise
    except BaseExceptionGroup as eg:
        log.append(("group", norm_exc(eg)))


@scenario
async def child_error_while_body_runs_cleanup(lib, log):
    async def crasher():
        raise ValueError("child")

    try:
        async with lib.open_nursery() as nursery:
            nursery.start_soon(crasher)
            try:
                await lib.sleep_forever()
            finally:
                with lib.CancelScope(shield=True):
                    await lib.sleep(0.01)
                    log.append("body: shielded cleanup ran")
    except BaseExceptionGroup as eg:
        log.append(("group", norm_exc(eg)))


@scenario
async def nursery_waits_for_children(lib, log):
    async def child(name, delay):
        await lib.sleep(delay)
        log.append(("child done", name))

    async with lib.open_nursery() as nursery:
        nursery.start_soon(child, "slow", 0.1)
        log.append("body done")
    log.append("nursery exited after child")


@scenario
async def nursery_cancel_scope_cancels_children(lib, log):
    seen = []

    async def child(name):
        try:
            await lib.sleep_forever()
        except lib.Cancelled:
            seen.append(name)
            raise

    async with lib.open_nursery() as nursery:
        for name in "abc":
            nursery.start_soon(child, name)
        await settle(lib)
        nursery.cancel_scope.cancel()
        log.append("body continues after cancel() until a checkpoint")
        await lib.lowlevel.checkpoint()
        log.append("UNREACHABLE")
    log.append(("cancelled", sorted(seen)))
    log.append(("nursery scope caught", nursery.cancel_scope.cancelled_caught))


@scenario
async def cancelled_nursery_does_not_escape_run(lib, log):
    async with lib.open_nursery() as nursery:
        nursery.start_soon(lib.sleep_forever)
        nursery.cancel_scope.cancel()
    log.append("after nursery")
    return "finished"


@scenario
async def start_soon_on_closed_nursery_raises(lib, log):
    async with lib.open_nursery() as nursery:
        pass
    with catch(log, "start_soon after close", lib):
        nursery.start_soon(lib.sleep, 0)
    with catch(log, "start after close", lib):
        await nursery.start(lib.sleep, 0)


@scenario
async def child_can_start_soon_while_body_waits(lib, log):
    async def grandchild():
        await lib.lowlevel.checkpoint()
        log.append("late child ran")

    async def spawner(nursery):
        await lib.sleep(0.02)
        nursery.start_soon(grandchild)
        log.append("spawner scheduled late child")

    async with lib.open_nursery() as nursery:
        nursery.start_soon(spawner, nursery)
    log.append("nursery exited")


@scenario
async def start_returns_started_value(lib, log):
    async def server(arg, *, task_status=lib.TASK_STATUS_IGNORED):
        await lib.lowlevel.checkpoint()
        task_status.started(("port", arg))
        log.append("server runs on until its next checkpoint")
        await lib.lowlevel.checkpoint()

    async def no_value(task_status=lib.TASK_STATUS_IGNORED):
        task_status.started()

    async with lib.open_nursery() as nursery:
        value = await nursery.start(server, 8080)
        log.append(("start returned", value))
        log.append(("started() with no value", await nursery.start(no_value)))
    log.append("done")


@scenario
async def start_of_function_that_errors_before_started(lib, log):
    async def broken(task_status=lib.TASK_STATUS_IGNORED):
        await lib.lowlevel.checkpoint()
        raise ValueError("before started")

    async with lib.open_nursery() as nursery:
        try:
            await nursery.start(broken)
        except BaseException as exc:  # noqa: BLE001
            log.append(("start raised", norm_exc(exc)))
        log.append("nursery still usable")
        nursery.start_soon(lib.lowlevel.checkpoint)
    log.append("done")


@scenario
async def start_of_function_that_returns_without_started(lib, log):
    async def lazy(task_status=lib.TASK_STATUS_IGNORED):
        await lib.lowlevel.checkpoint()

    async with lib.open_nursery() as nursery:
        with catch(log, "start(lazy)", lib):
            await nursery.start(lazy)


@scenario
async def start_error_after_started_goes_to_nursery(lib, log):
    async def fails_later(task_status=lib.TASK_STATUS_IGNORED):
        task_status.started("up")
        await lib.lowlevel.checkpoint()
        raise KeyError("after started")

    try:
        async with lib.open_nursery() as nursery:
            log.append(("start returned", await nursery.start(fails_later)))
            await lib.sleep_forever()
    except BaseExceptionGroup as eg:
        log.append(("nursery group", norm_exc(eg)))


@scenario
async def started_called_twice_raises(lib, log):
    async def twice(task_status=lib.TASK_STATUS_IGNORED):
        task_status.started(1)
        try:
            task_status.started(2)
        except RuntimeError:
            log.append("second started() raised RuntimeError")

    async with lib.open_nursery() as nursery:
        log.append(("start returned", await nursery.start(twice)))


@scenario
async def task_status_ignored_allows_direct_call_and_start_soon(lib, log):
    async def service(task_status=lib.TASK_STATUS_IGNORED):
        task_status.started("ignored")
        task_status.started("ignored again is fine")
        log.append("service ran")

    await service()
    async with lib.open_nursery() as nursery:
        nursery.start_soon(service)
    log.append("done")


@scenario
async def start_child_cancelled_before_started(lib, log):
    async def slow_start(task_status=lib.TASK_STATUS_IGNORED):
        try:
            await lib.sleep_forever()
        except lib.Cancelled:
            log.append("child: Cancelled before started")
            raise

    with lib.CancelScope() as cs:
        async with lib.open_nursery() as nursery:
            cs.deadline = lib.current_time() + 0.05
            await nursery.start(slow_start)
            log.append("UNREACHABLE")
    log.append(("caught", cs.cancelled_caught))


@scenario
async def start_child_runs_inside_start_callers_cancel_scope_until_started(lib, log):
    # Before started(), the new task is protected by the cancel scopes around
    # the start() call; after it, by the target nursery's.
    async def child(task_status=lib.TASK_STATUS_IGNORED):
        with lib.CancelScope(shield=True):
            await lib.sleep(0.02)
        try:
            await lib.lowlevel.checkpoint()
        except lib.Cancelled:
            log.append("child: cancelled by start() caller's scope")
            raise

    async with lib.open_nursery() as nursery:
        with lib.CancelScope() as cs:
            cs.cancel()
            await nursery.start(child)
        log.append(("caller scope caught", cs.cancelled_caught))


@scenario
async def scope_entered_before_started_still_cancellable_after_start(lib, log):
    # start() moves the task into the target nursery once started() is
    # called; cancel scopes the task opened before that must keep working.
    async def child(task_status):
        with lib.CancelScope() as cs:
            task_status.started(cs)
            try:
                await lib.sleep_forever()
            except lib.Cancelled:
                log.append("child: Cancelled")
                raise
        log.append(("child caught", cs.cancelled_caught))

    with lib.move_on_after(5) as guard:  # turn a hang into an observation
        async with lib.open_nursery() as nursery:
            cs = await nursery.start(child)
            cs.cancel()
    log.append(("guard fired", guard.cancelled_caught))


@scenario
async def outer_deadline_reaches_task_after_start(lib, log):
    # after started(), the task is governed by the target nursery's scopes
    async def child(task_status):
        task_status.started()
        try:
            await lib.sleep_forever()
        except lib.Cancelled:
            log.append("child: Cancelled by nursery deadline")
            raise

    with lib.move_on_after(5) as guard:
        with lib.move_on_after(0.05) as cs:
            async with lib.open_nursery() as nursery:
                await nursery.start(child)
    log.append(("scope caught", cs.cancelled_caught, "guard fired", guard.cancelled_caught))


# --------------------------------------------------------------------------
# tasks and introspection
# --------------------------------------------------------------------------


@scenario
async def task_names_and_nursery_tree(lib, log):
    L = lib.lowlevel
    me = L.current_task()
    log.append(("child_nurseries initially", me.child_nurseries))

    async def named_child(task_status=lib.TASK_STATUS_IGNORED):
        task_status.started(L.current_task())
        await lib.sleep_forever()

    async def default_named_child():
        info.append(L.current_task().name)

    info: list = []
    async with lib.open_nursery() as nursery:
        log.append(("child_nurseries inside", me.child_nurseries == [nursery]))
        log.append(("nursery.parent_task is me", nursery.parent_task is me))
        task = await nursery.start(named_child, name="worker")
        log.append(("explicit name", task.name))
        log.append(("child parent_nursery", task.parent_nursery is nursery))
        log.append(("child child_nurseries", task.child_nurseries))
        log.append(("child_tasks contains worker", task in nursery.child_tasks))
        nursery.start_soon(default_named_child)
        await settle(lib)
        nursery.cancel_scope.cancel()
    log.append(("default name", info))
    log.append(("child_nurseries after", me.child_nurseries))


@scenario
async def task_names_given_as_empty_or_not_a_string(lib, log):
    # An empty name is a name (not "no name": only None is); anything else
    # is made a string.
    seen = []

    async def soon():
        seen.append(("start_soon", lib.lowlevel.current_task().name))

    async def started(task_status=lib.TASK_STATUS_IGNORED):
        seen.append(("start", lib.lowlevel.current_task().name))
        task_status.started()

    async with lib.open_nursery() as nursery:
        for name in ["", 0, "given"]:
            nursery.start_soon(soon, name=name)
            await nursery.start(started, name=name)
    log.append(sorted(seen, key=repr))


@scenario
async def main_task_and_root_task(lib, log):
    L = lib.lowlevel
    me = L.current_task()
    root = L.current_root_task()
    log.append(("main task name", me.name))
    log.append(("isinstance Task", isinstance(me, L.Task)))
    log.append(("main is root", me is root))
    log.append(("main's parent nursery belongs to root", me.parent_nursery.parent_task is root))
    log.append(("root has no parent nursery", root.parent_nursery is None))
    log.append(("current_task stable", L.current_task() is me))


@scenario
async def run_returns_value(lib, log):
    await lib.lowlevel.checkpoint()
    return ("value", 42)


@scenario
async def run_raises_main_task_exception_unwrapped(lib, log):
    await lib.lowlevel.checkpoint()
    raise KeyError("main")


@scenario
async def run_raises_group_from_nursery(lib, log):
    async def raiser():
        raise ValueError()

    async with lib.open_nursery() as nursery:
        nursery.start_soon(raiser)


@scenario
async def statistics_count_living_tasks(lib, log):
    L = lib.lowlevel
    base = L.current_statistics().tasks_living
    async with lib.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(lib.sleep_forever)
        await settle(lib)
        stats = L.current_statistics()
        log.append(("living delta", stats.tasks_living - base))
        log.append(("runnable while others blocked", stats.tasks_runnable))
        nursery.cancel_scope.cancel()
    log.append(("living delta after", L.current_statistics().tasks_living - base))
    with lib.CancelScope(deadline=lib.current_time() + 100):
        left = L.current_statistics().seconds_to_next_deadline
        log.append(("seconds_to_next_deadline in (90, 100]", 90 < left <= 100))


def _waiting_counts(lib):
    io = lib.lowlevel.current_statistics().io_statistics
    return io.tasks_waiting_read, io.tasks_waiting_write


def _fill(sock):
    """Send until ``sock`` (non-blocking) would block: a full send buffer."""
    for _ in range(100_000):
        try:
            sock.send(b"x" * 65536)
        except BlockingIOError:
            return
    raise AssertionError("the socket's send buffer never filled")


@scenario
async def io_statistics_count_readiness_waits(lib, log):
    # trio's io_statistics: the backend's name, and (epoll's fields) the
    # tasks waiting to read and to write, as trio's test_io_manager_statistics
    # checks them.  Counted from what the idle run shows (trio's wake-up task
    # is one reader; ringtrio has none).
    import socket as stdlib_socket

    def counts():
        return _waiting_counts(lib)

    fill = _fill

    log.append(("backend", type(lib.lowlevel.current_statistics().io_statistics.backend).__name__))
    pairs = [stdlib_socket.socketpair() for _ in range(4)]
    try:
        for a, b in pairs:
            a.setblocking(False)
            b.setblocking(False)
        (a1, _), (a2, b2), (a3, _), (a4, _) = pairs
        fill(a1)
        fill(a3)
        await lib.testing.wait_all_tasks_blocked()
        r0, w0 = counts()
        log.append(("idle", (r0, w0) in ((0, 0), (1, 0))))
        sock4 = lib.socket.from_stdlib_socket(a4)
        async with lib.open_nursery() as nursery:
            nursery.start_soon(lib.lowlevel.wait_writable, a1)
            nursery.start_soon(lib.lowlevel.wait_readable, a2)
            nursery.start_soon(lib.lowlevel.wait_readable, b2)
            nursery.start_soon(lib.lowlevel.wait_writable, a3)
            nursery.start_soon(lib.lowlevel.wait_readable, a3)
            nursery.start_soon(lib.lowlevel.wait_readable, sock4)
            await lib.testing.wait_all_tasks_blocked()
            r, w = counts()
            log.append(("waiting", r - r0, w - w0))
            nursery.cancel_scope.cancel()
        r, w = counts()
        log.append(("after", r - r0, w - w0))
    finally:
        for a, b in pairs:
            a.close()
            b.close()


@scenario
async def io_statistics_count_a_writer_whose_peer_stopped_sending_as_a_writer(lib, log):
    # A task in wait_writable on a socket whose send buffer is full and
    # whose peer has shut down its sending side.  trio (epoll) waits for
    # EPOLLOUT and counts one writer.  io_uring's poll reports POLLRDHUP
    # whatever it is asked for, so ringtrio waits for writability there
    # through a private epoll instance (a POLL_ADD for POLLIN on it): it is
    # still a writer, not a reader.  Both wait_writable paths (raw fd, and
    # ringtrio.socket's method), beside a reader of another fd (a reader of
    # the same fd would not wait: the peer's shutdown makes it readable).
    import socket as stdlib_socket

    pairs = [stdlib_socket.socketpair() for _ in range(3)]
    try:
        for a, b in pairs:
            a.setblocking(False)
            b.setblocking(False)
        (a1, b1), (a2, b2), (a3, _) = pairs
        for a, b in ((a1, b1), (a2, b2)):
            _fill(a)
            b.shutdown(stdlib_socket.SHUT_WR)
        sock2 = lib.socket.from_stdlib_socket(a2)
        await lib.testing.wait_all_tasks_blocked()
        r0, w0 = _waiting_counts(lib)
        async with lib.open_nursery() as nursery:
            nursery.start_soon(lib.lowlevel.wait_writable, a1)
            nursery.start_soon(sock2.wait_writable)
            nursery.start_soon(lib.lowlevel.wait_readable, a3)
            await lib.testing.wait_all_tasks_blocked()
            r, w = _waiting_counts(lib)
            log.append(("waiting", r - r0, w - w0))
            nursery.cancel_scope.cancel()
        r, w = _waiting_counts(lib)
        log.append(("after", r - r0, w - w0))
    finally:
        for a, b in pairs:
            a.close()
            b.close()

@scenario
async def instruments_see_spawn_and_exit(lib, log):
    L = lib.lowlevel
    events = []

    class Probe:
        def task_spawned(self, task):
            if task.name.startswith("probe"):
                events.append(("spawned", task.name))

        def task_exited(self, task):
            if task.name.startswith("probe"):
                events.append(("exited", task.name))

    async def work():
        await lib.lowlevel.checkpoint()

    probe = Probe()
    L.add_instrument(probe)
    async with lib.open_nursery() as nursery:
        nursery.start_soon(work, name="probe-1")
    L.remove_instrument(probe)
    async with lib.open_nursery() as nursery:
        nursery.start_soon(work, name="probe-2")
    log.append(("events", events))
    with catch(log, "remove_instrument twice", lib):
        L.remove_instrument(probe)


# --------------------------------------------------------------------------
# low-level checkpoints and rescheduling
# --------------------------------------------------------------------------


@scenario
async def checkpoint_if_cancelled_only_raises_when_cancelled(lib, log):
    L = lib.lowlevel
    await L.checkpoint_if_cancelled()
    log.append("not cancelled: returned")
    with lib.CancelScope() as cs:
        cs.cancel()
        with lib.CancelScope(shield=True):
            await L.checkpoint_if_cancelled()
            log.append("shielded: returned")
        await L.checkpoint_if_cancelled()
        log.append("UNREACHABLE")
    log.append(("caught", cs.cancelled_caught))


@scenario
async def cancel_shielded_checkpoint_ignores_cancel(lib, log):
    L = lib.lowlevel
    with lib.CancelScope() as cs:
        cs.cancel()
        await L.cancel_shielded_checkpoint()
        await L.cancel_shielded_checkpoint()
        log.append("cancel_shielded_checkpoint returned twice")
        await L.checkpoint()
        log.append("UNREACHABLE")
    log.append(("caught", cs.cancelled_caught))


@scenario
async def checkpoint_yields_to_other_tasks(lib, log):
    # Parent and child land in the same batches, whose order trio shuffles,
    # so only progress bounds are observed: after the parent's k-th
    # checkpoint the child has taken at least k-1 steps.
    seen = []

    async def child():
        for i in range(3):
            seen.append(i)
            await lib.lowlevel.checkpoint()

    async with lib.open_nursery() as nursery:
        nursery.start_soon(child)
        log.append(("child not started synchronously", seen))
        await lib.lowlevel.checkpoint()
        await lib.lowlevel.checkpoint()
        log.append(("after 2 checkpoints child progressed", len(seen) >= 1))
        await lib.lowlevel.checkpoint()
        await lib.lowlevel.checkpoint()
        log.append(("after 4 checkpoints", seen))
    log.append("done")


@scenario
async def reschedule_with_value(lib, log):
    L = lib.lowlevel

    async def waiter(task_status=lib.TASK_STATUS_IGNORED):
        task_status.started(L.current_task())
        value = await L.wait_task_rescheduled(lambda raise_cancel: L.Abort.FAILED)
        log.append(("waiter got", value))

    async with lib.open_nursery() as nursery:
        task = await nursery.start(waiter)
        await settle(lib)
        log.append("waiter still blocked")
        L.reschedule(task, outcome.Value(42))
    log.append("done")


@scenario
async def reschedule_default_value_is_none(lib, log):
    L = lib.lowlevel

    async def waiter(task_status=lib.TASK_STATUS_IGNORED):
        task_status.started(L.current_task())
        value = await L.wait_task_rescheduled(lambda raise_cancel: L.Abort.FAILED)
        log.append(("waiter got", value))

    async with lib.open_nursery() as nursery:
        L.reschedule(await nursery.start(waiter))


@scenario
async def reschedule_with_error(lib, log):
    L = lib.lowlevel

    async def waiter(task_status=lib.TASK_STATUS_IGNORED):
        task_status.started(L.current_task())
        try:
            await L.wait_task_rescheduled(lambda raise_cancel: L.Abort.FAILED)
        except ValueError as exc:
            log.append(("waiter raised", type(exc).__name__, exc.args))

    async with lib.open_nursery() as nursery:
        task = await nursery.start(waiter)
        L.reschedule(task, outcome.Error(ValueError("injected")))


@scenario
async def abort_succeeded_delivers_cancelled(lib, log):
    L = lib.lowlevel

    async def waiter(task_status=lib.TASK_STATUS_IGNORED):
        def abort_fn(raise_cancel):
            log.append(("abort_fn called", callable(raise_cancel)))
            return L.Abort.SUCCEEDED

        box = []
        task_status.started(box)  # filled before this task first blocks
        with lib.CancelScope() as cs:
            box.append(cs)
            try:
                await L.wait_task_rescheduled(abort_fn)
            except lib.Cancelled:
                log.append("waiter: Cancelled")
                raise
        log.append(("waiter scope caught", cs.cancelled_caught))

    async with lib.open_nursery() as nursery:
        [cs] = await nursery.start(waiter)
        cs.cancel()
        cs.cancel()  # abort_fn must not be called again
    log.append("done")


@scenario
async def abort_failed_then_rescheduled(lib, log):
    L = lib.lowlevel

    async def waiter(task_status=lib.TASK_STATUS_IGNORED):
        def abort_fn(raise_cancel):
            log.append("abort_fn called")
            return L.Abort.FAILED

        box = []
        task_status.started(box)  # filled before this task first blocks
        with lib.CancelScope() as cs:
            box += [cs, L.current_task()]
            value = await L.wait_task_rescheduled(abort_fn)
            log.append(("waiter got", value))
            try:
                await L.checkpoint()
            except lib.Cancelled:
                log.append("waiter: cancel still pending, raised at next checkpoint")
                raise
        log.append(("waiter scope caught", cs.cancelled_caught))

    async with lib.open_nursery() as nursery:
        cs, task = await nursery.start(waiter)
        cs.cancel()
        await settle(lib)
        log.append("parent: waiter still blocked after failed abort")
        L.reschedule(task, outcome.Value("late"))
    log.append("done")


@scenario
async def abort_fn_raise_cancel_raises_cancelled(lib, log):
    L = lib.lowlevel

    async def waiter(task_status=lib.TASK_STATUS_IGNORED):
        saved = []

        def abort_fn(raise_cancel):
            saved.append(raise_cancel)
            return L.Abort.FAILED

        box = []
        task_status.started(box)  # filled before this task first blocks
        with lib.CancelScope() as cs:
            box += [cs, L.current_task(), saved]
            try:
                await L.wait_task_rescheduled(abort_fn)
            except lib.Cancelled:
                log.append("waiter: Cancelled via raise_cancel outcome")
                raise
        log.append(("waiter scope caught", cs.cancelled_caught))

    async with lib.open_nursery() as nursery:
        cs, task, saved = await nursery.start(waiter)
        cs.cancel()
        log.append(("raise_cancel saved", len(saved)))
        L.reschedule(task, outcome.capture(saved[0]))


@scenario
async def rescheduling_sleep_forever_raises_runtime_error(lib, log):
    L = lib.lowlevel

    async def sleeper(task_status=lib.TASK_STATUS_IGNORED):
        task_status.started(L.current_task())
        try:
            await lib.sleep_forever()
        except RuntimeError:
            log.append("sleep_forever raised RuntimeError when rescheduled")

    async with lib.open_nursery() as nursery:
        L.reschedule(await nursery.start(sleeper))


# --------------------------------------------------------------------------
# ParkingLot
# --------------------------------------------------------------------------


async def _parker(lib, lot, name, log, task_status):
    task_status.started(lib.lowlevel.current_task())
    try:
        await lot.park()
        log.append(("woke", name))
    except lib.Cancelled:
        log.append(("park cancelled", name))
        raise


@scenario
async def parking_lot_unpark_is_fifo_with_statistics(lib, log):
    L = lib.lowlevel
    lot = L.ParkingLot()
    log.append(("empty", len(lot), bool(lot), lot.statistics().tasks_waiting))
    async with lib.open_nursery() as nursery:
        tasks = {}
        for name in ("p1", "p2", "p3"):
            tasks[name] = await nursery.start(_parker, lib, lot, name, log, name=name)
        log.append(("parked", len(lot), bool(lot), lot.statistics().tasks_waiting))
        woken = lot.unpark()
        log.append(("unpark() returned", [t.name for t in woken]))
        log.append(("left", lot.statistics().tasks_waiting))
        await settle(lib)
        woken = lot.unpark(count=5)
        log.append(("unpark(count=5) returned", [t.name for t in woken]))
        await settle(lib)
        log[-2:] = sorted(log[-2:], key=repr)  # p2/p3 wake in the same batch
        log.append(("unpark on empty", lot.unpark(), lot.unpark_all()))
    log.append("done")


@scenario
async def parking_lot_unpark_all(lib, log):
    L = lib.lowlevel
    lot = L.ParkingLot()
    woken_log: list = []
    async with lib.open_nursery() as nursery:
        for name in ("a", "b", "c"):
            await nursery.start(_parker, lib, lot, name, woken_log, name=name)
        woken = lot.unpark_all()
        log.append(("unpark_all returned in FIFO order", [t.name for t in woken]))
        log.append(("left", len(lot)))
    log.append(("woke", sorted(woken_log)))


@scenario
async def parking_lot_repark(lib, log):
    L = lib.lowlevel
    lot1, lot2 = L.ParkingLot(), L.ParkingLot()
    async with lib.open_nursery() as nursery:
        for name in ("x", "y", "z"):
            await nursery.start(_parker, lib, lot1, name, log, name=name)
        lot1.repark(lot2)
        log.append(("after repark(count=1)", len(lot1), len(lot2)))
        lot1.repark(lot2, count=1)
        log.append(("after second repark", len(lot1), len(lot2)))
        log.append(("unpark from lot2", [t.name for t in lot2.unpark()]))
        await settle(lib)
        log.append(("unpark from lot1", [t.name for t in lot1.unpark()]))
        await settle(lib)
        log.append(("unpark_all lot2", [t.name for t in lot2.unpark_all()]))
    log.append(("final", len(lot1), len(lot2)))


@scenario
async def parking_lot_cancelled_parker_leaves_lot(lib, log):
    L = lib.lowlevel
    lot = L.ParkingLot()
    async with lib.open_nursery() as nursery:
        await nursery.start(_parker, lib, lot, "c1", log, name="c1")
        log.append(("waiting", lot.statistics().tasks_waiting))
        nursery.cancel_scope.cancel()
        log.append(("waiting right after cancel", lot.statistics().tasks_waiting))
    log.append(("waiting after exit", lot.statistics().tasks_waiting))
    log.append(("unpark returns", lot.unpark()))


# --------------------------------------------------------------------------
# RunVar, system tasks, tokens, sniffio
# --------------------------------------------------------------------------


def _runvars(lib):
    if "runvars" not in _STATE:
        _STATE["runvars"] = (
            lib.lowlevel.RunVar("with_default", default="D"),
            lib.lowlevel.RunVar("no_default"),
        )
    return _STATE["runvars"]


@scenario(runs=2)
async def runvar_get_set_reset_default_across_runs(lib, log):
    with_default, no_default = _runvars(lib)
    log.append(("fresh run: default", with_default.get()))
    with catch(log, "no_default.get()", lib):
        no_default.get()
    log.append(("get(default=)", no_default.get("fallback")))
    token = with_default.set("first")
    token2 = with_default.set("second")
    log.append(("after two sets", with_default.get()))
    with_default.reset(token2)
    log.append(("reset to", with_default.get()))
    with catch(log, "reset same token twice", lib):
        with_default.reset(token2)
    with_default.reset(token)
    log.append(("reset to original", with_default.get()))
    with_default.set("leaks to end of this run only")
    nd_token = no_default.set(1)
    no_default.reset(nd_token)
    with catch(log, "no_default after reset to empty", lib):
        no_default.get()
    with catch(log, "reset with other var's token", lib):
        with_default.reset(nd_token)

    async def child():
        log.append(("child sees run-wide value", with_default.get()))
        with_default.set("set by child")

    async with lib.open_nursery() as nursery:
        nursery.start_soon(child)
    log.append(("parent sees child's set", with_default.get()))


@scenario
async def system_task_runs_and_is_cancelled_when_main_exits(lib, log):
    L = lib.lowlevel

    async def system(task_status=None):
        me = L.current_task()
        log.append(("system task name", me.name))
        log.append(("system task parent is not main's nursery", me.parent_nursery is not main_nursery))
        try:
            await lib.sleep_forever()
        except lib.Cancelled:
            log.append("system task cancelled after main returned")
            raise

    main_nursery = L.current_task().parent_nursery
    task = L.spawn_system_task(system, name="sysprobe")
    log.append(("returned Task", isinstance(task, L.Task), task.name))
    await settle(lib)
    log.append("main returning")
    return "main result"


@scenario
async def run_sync_soon_from_inside_the_loop(lib, log):
    L = lib.lowlevel
    token = L.current_trio_token()
    log.append(("token stable", L.current_trio_token() is token))
    lot = L.ParkingLot()
    seen = []

    def callback(n):
        seen.append(n)
        if n == 3:
            lot.unpark_all()

    for n in (1, 2, 3):
        token.run_sync_soon(callback, n)
    log.append(("callbacks not run synchronously", list(seen)))
    await lot.park()
    log.append(("callbacks ran in order", seen))


@scenario
async def sniffio_reports_running_library(lib, log):
    log.append(("matches", sniffio.current_async_library() == lib.__name__))

    async def child():
        log.append(("child matches", sniffio.current_async_library() == lib.__name__))

    async with lib.open_nursery() as nursery:
        nursery.start_soon(child)


@scenario
async def sniffio_in_tasks_spawned_where_another_library_is_named(lib, log):
    # Code that told sniffio it is another library (its variable, and its
    # thread-local override) spawns tasks: each task, and a function that
    # makes the coroutine while being called at the spawn, sees the run's
    # library; the spawner sees its own setting again afterwards.
    seen = []

    def report(where):
        seen.append((where, sniffio.current_async_library() == lib.__name__))

    async def task(where):
        report(where)

    def makes_coroutine(where):
        report(where + " (call)")
        return task(where)

    async with lib.open_nursery() as nursery:
        token = sniffio.current_async_library_cvar.set("nullio")
        prev, sniffio.thread_local.name = sniffio.thread_local.name, "nullio"
        try:
            nursery.start_soon(task, "start_soon")
            nursery.start_soon(makes_coroutine, "sync function")
            lib.lowlevel.spawn_system_task(task, "system task")
            log.append(("spawner still says", sniffio.current_async_library()))
        finally:
            sniffio.thread_local.name = prev
            sniffio.current_async_library_cvar.reset(token)
    log.append(sorted(seen))


@scenario
async def exception_hierarchy(lib, log):
    log.append(("Cancelled is BaseException not Exception",
                issubclass(lib.Cancelled, BaseException) and not issubclass(lib.Cancelled, Exception)))
    for name in ("TooSlowError", "ClosedResourceError", "BrokenResourceError",
                 "BusyResourceError", "EndOfChannel", "WouldBlock", "RunFinishedError"):
        log.append((name, issubclass(getattr(lib, name), Exception)))


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


@pytest.mark.parametrize("scen", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_scenario(scen):
    run_both(scen)


def test_enough_scenarios():
    assert len(SCENARIOS) >= 30


def _outside_run(lib):
    log = []
    for label, call in [
        ("current_time", lambda: lib.current_time()),
        ("current_task", lambda: lib.lowlevel.current_task()),
        ("current_effective_deadline", lambda: lib.current_effective_deadline()),
        ("current_trio_token", lambda: lib.lowlevel.current_trio_token()),
        ("RunVar.get", lambda: lib.lowlevel.RunVar("outside").get()),
    ]:
        with catch(log, label, lib):
            call()
    return log


def test_calls_outside_run_raise_runtime_error():
    a, b = (_outside_run(lib) for lib in LIBS)
    assert a == b


# --- hypothesis: random trees of nested cancel scopes ----------------------
#
# A node is (shield, initial_deadline, actions).  initial_deadline is one of
# None / "past" / "far".  Actions:
#   "cp"        checkpoint, Cancelled caught and logged (level-triggering)
#   "cp!"       checkpoint, Cancelled propagates (ends this scope's actions)
#   "cic"       checkpoint_if_cancelled, caught and logged
#   "csc"       cancel_shielded_checkpoint
#   "cancel"    cancel this scope
#   ("cancel", k)  cancel the k-th enclosing scope (0 = this one)
#   "shield+" / "shield-"  toggle this scope's shield
#   "past"      set this scope's deadline in the past, then a
#               cancel_shielded_checkpoint so the run loop has processed it
#   "far"       set this scope's deadline far in the future
#   "nodl"      remove this scope's deadline
#   "eff"       log current_effective_deadline (normalised)
#   "called"    log cancel_called of this scope
#   ("node", child)  nested scope

SIMPLE_ACTIONS = st.sampled_from(
    ["cp", "cp!", "cic", "csc", "cancel", "shield+", "shield-", "past", "far",
     "nodl", "eff", "called"]
)


def _node(children):
    return st.tuples(
        st.booleans(),
        st.sampled_from([None, None, "past", "far"]),
        st.lists(children, max_size=6),
    )


ACTIONS = st.recursive(
    st.one_of(SIMPLE_ACTIONS, st.tuples(st.just("cancel"), st.integers(0, 3))),
    lambda children: st.tuples(st.just("node"), _node(children)),
    max_leaves=20,
)
TREES = _node(ACTIONS)


async def _run_tree(lib, log, node, stack, path):
    L = lib.lowlevel
    shield, initial, actions = node
    t0 = _STATE["t0"]
    kwargs = {"shield": shield}
    if initial == "past":
        kwargs["deadline"] = lib.current_time() - 1
    elif initial == "far":
        kwargs["deadline"] = t0 + 10_000
    cs = lib.CancelScope(**kwargs)
    try:
        with cs:
            stack.append(cs)
            try:
                for i, act in enumerate(actions):
                    here = f"{path}.{i}"
                    if isinstance(act, tuple) and act[0] == "node":
                        await _run_tree(lib, log, act[1], stack, here)
                    elif isinstance(act, tuple):
                        target = stack[max(0, len(stack) - 1 - act[1])]
                        target.cancel()
                    elif act == "cp":
                        try:
                            await L.checkpoint()
                            log.append((here, "cp ok"))
                        except lib.Cancelled:
                            log.append((here, "cp Cancelled"))
                    elif act == "cp!":
                        await L.checkpoint()
                        log.append((here, "cp! ok"))
                    elif act == "cic":
                        try:
                            await L.checkpoint_if_cancelled()
                            log.append((here, "cic ok"))
                        except lib.Cancelled:
                            log.append((here, "cic Cancelled"))
                    elif act == "csc":
                        await L.cancel_shielded_checkpoint()
                    elif act == "cancel":
                        cs.cancel()
                    elif act == "shield+":
                        cs.shield = True
                    elif act == "shield-":
                        cs.shield = False
                    elif act == "past":
                        cs.deadline = lib.current_time() - 1
                        await L.cancel_shielded_checkpoint()
                    elif act == "far":
                        cs.deadline = t0 + 10_000
                    elif act == "nodl":
                        cs.deadline = math.inf
                    elif act == "eff":
                        log.append((here, "eff", eff(lib, t0)))
                    elif act == "called":
                        log.append((here, "called", cs.cancel_called))
                    else:  # pragma: no cover
                        raise AssertionError(act)
            finally:
                stack.pop()
    except lib.Cancelled:
        log.append((path, "exit", "Cancelled escapes", cs.cancelled_caught, cs.cancel_called))
        raise
    log.append((path, "exit", "normal", cs.cancelled_caught, cs.cancel_called))


async def _tree_main(lib, log, tree):
    _STATE["t0"] = lib.current_time()
    with lib.CancelScope() as root:  # absorbs nothing unless cancelled via ("cancel", k)
        await _run_tree(lib, log, tree, [root], "r")
    log.append(("root", root.cancelled_caught))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=TREES)
def test_random_cancel_scope_trees(tree):
    logs = []
    for lib in LIBS:
        log: list = []
        _STATE.clear()
        log.append(guarded_run(lib, _tree_main, lib, log, tree)[0])
        logs.append(log)
    assert logs[0] == logs[1], f"tree={tree!r}"
