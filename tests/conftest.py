"""Test-suite configuration.

In CI (CI=true) hypothesis runs derandomized: the same examples every time,
so a run is reproducible and never fails by drawing a new rare example.
Locally, hypothesis explores freely (and remembers failures in .hypothesis/).

The suite runs on whichever backend ``ringtrio.run`` picks: io_uring, or the
epoll backend with ``RINGTRIO_BACKEND=epoll`` (``make test`` runs it both
ways).  A test that asserts a fact of the io_uring backend alone says so
with ``@pytest.mark.ring_only("why")`` and is skipped, with that reason, on
the epoll backend -- the one kind of skip the suite allows, so that
``grep -rn ring_only tests`` lists them all.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

_suite_backend: str | None = None


def suite_backend() -> str:
    """The backend ringtrio.run uses in this test session ("io_uring" or
    "epoll"), found by asking a run once."""
    global _suite_backend
    if _suite_backend is None:
        import ringtrio
        from ringtrio import lowlevel

        async def name() -> str:
            return lowlevel.current_backend().name

        _suite_backend = ringtrio.run(name)
    return _suite_backend


@pytest.fixture
def backend_name() -> str:
    """The backend ringtrio.run uses in this session: "io_uring" or "epoll"."""
    return suite_backend()


def pytest_configure(config: Any) -> None:
    # A background job of a non-interactive shell (`make test &` in a script,
    # some CI runners) starts with SIGINT ignored, and Python then installs
    # no KeyboardInterrupt handler: every Ctrl-C test here and in the
    # children it starts would wait for an interrupt that never comes (a
    # hang).  The suite runs with Python's usual handler whatever started it.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line(
        "markers",
        "ring_only(reason): asserts a fact of the io_uring backend alone; skipped, "
        "with the reason, when ringtrio.run uses the epoll backend",
    )
    config.addinivalue_line(
        "markers",
        "backend_independent: never starts a ringtrio run (the C rings driven "
        "directly, the package build, typing, import layering); make test's "
        "epoll pass leaves these out, the first pass ran them",
    )


def pytest_runtest_setup(item: Any) -> None:
    marker = item.get_closest_marker("ring_only")
    if marker is not None and suite_backend() == "epoll":
        reason = marker.args[0] if marker.args else marker.kwargs.get("reason")
        if not reason:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.ring_only needs a reason")
        pytest.skip(f"ring-only: {reason}")


def pytest_report_header(config: Any) -> str:
    return f"ringtrio backend: {suite_backend()} (RINGTRIO_BACKEND={os.environ.get('RINGTRIO_BACKEND', '')!r})"
