"""Which backend ringtrio.run uses, and the fallback where io_uring is refused.

The choice (ringtrio/_core/_backend.py): run(backend=...) over
RINGTRIO_BACKEND over "auto"; "auto" falls back to the epoll backend when
io_uring cannot be set up or used, warning once per process.  The proof that
it works where the kernel refuses io_uring: subprocesses under a seccomp
filter (tests/_seccomp.py) that serve TCP, read files and sleep
(tests/_fallback_program.py).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import warnings
from typing import Any

import pytest

import ringtrio
from ringtrio import lowlevel
from ringtrio._core import _backend, _ring

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture
def fresh_process(monkeypatch: Any) -> None:
    """As if this were a new process: no verdict on io_uring yet, no warning
    given, no backend forced by the environment."""
    monkeypatch.setattr(_backend, "_refused", None)
    monkeypatch.setattr(_backend, "_warned", False)
    monkeypatch.delenv("RINGTRIO_BACKEND", raising=False)


async def _backend_now() -> tuple[lowlevel.Backend, lowlevel.RunStatistics]:
    await ringtrio.sleep(0)
    return lowlevel.current_backend(), lowlevel.current_statistics()


def test_auto_uses_io_uring_where_it_works(fresh_process: None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend, stats = ringtrio.run(_backend_now)
    assert backend == lowlevel.Backend("io_uring", "io_uring is available")
    assert (stats.backend, stats.backend_reason) == ("io_uring", "io_uring is available")


@pytest.mark.parametrize("err, words", [(errno.EPERM, "seccomp"), (errno.ENOSYS, "no io_uring support"),
                                        (errno.EACCES, "io_uring_disabled"), (errno.ENOMEM, "ulimit -l")])
def test_auto_falls_back_and_warns_once(fresh_process: None, monkeypatch: Any, err: int, words: str) -> None:
    monkeypatch.setattr(_ring, "_force_setup_errno", err)
    with pytest.warns(ringtrio.RingFallbackWarning) as record:
        backend, stats = ringtrio.run(_backend_now)
        again, _ = ringtrio.run(_backend_now)
    assert len(record) == 1
    warning = record[0]
    assert issubclass(warning.category, RuntimeWarning)
    assert warning.filename == __file__  # points at the run() call
    message = str(warning.message)
    # What refused io_uring, how to allow it (RingUnavailableError's own
    # text), and how to choose.
    assert words in message and "RINGTRIO_BACKEND=epoll" in message
    assert ringtrio.RingUnavailableError.from_errno(err).strerror.split(": ", 1)[1] in message
    assert backend.name == again.name == stats.backend == "epoll"
    assert words in backend.reason and backend.reason == stats.backend_reason


def test_refusal_is_remembered_for_the_process(fresh_process: None, monkeypatch: Any) -> None:
    monkeypatch.setattr(_ring, "_force_setup_errno", errno.EPERM)
    with pytest.warns(ringtrio.RingFallbackWarning):
        ringtrio.run(_backend_now)
    # io_uring would work again now, but the process's verdict stands.
    monkeypatch.setattr(_ring, "_force_setup_errno", 0)
    backend, _ = ringtrio.run(_backend_now)
    assert backend.name == "epoll"


def test_out_of_descriptors_is_not_a_fallback(fresh_process: None, monkeypatch: Any) -> None:
    # EMFILE is not io_uring being refused, and the epoll backend needs
    # descriptors too: the error stands.
    monkeypatch.setattr(_ring, "_force_setup_errno", errno.EMFILE)
    with pytest.raises(ringtrio.RingUnavailableError) as info:
        ringtrio.run(_backend_now)
    assert info.value.errno == errno.EMFILE
    assert _backend._refused is None


def test_an_old_kernel_falls_back(fresh_process: None, monkeypatch: Any) -> None:
    monkeypatch.setattr(_ring, "kernel_release", lambda: "5.15.0-91-generic")
    with pytest.warns(ringtrio.RingFallbackWarning, match=r"5\.15\.0-91-generic\) is older than 6\.0"):
        backend, _ = ringtrio.run(_backend_now)
    assert backend.name == "epoll"


@pytest.mark.parametrize("how", ["keyword", "environment"])
def test_epoll_can_be_chosen(fresh_process: None, monkeypatch: Any, how: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if how == "keyword":
            backend, _ = ringtrio.run(_backend_now, backend="epoll")
            assert backend.reason == "chosen with run(backend='epoll')"
        else:
            monkeypatch.setenv("RINGTRIO_BACKEND", "epoll")
            backend, _ = ringtrio.run(_backend_now)
            assert backend.reason == "chosen with RINGTRIO_BACKEND=epoll"
    assert backend.name == "epoll"


def test_ring_can_be_insisted_on(fresh_process: None, monkeypatch: Any) -> None:
    monkeypatch.setenv("RINGTRIO_BACKEND", "epoll")
    backend, _ = ringtrio.run(_backend_now, backend="ring")  # the keyword wins
    assert backend == lowlevel.Backend("io_uring", "chosen with run(backend='ring')")
    monkeypatch.setenv("RINGTRIO_BACKEND", "ring")
    monkeypatch.setattr(_ring, "_force_setup_errno", errno.EPERM)
    with pytest.raises(ringtrio.RingUnavailableError, match="seccomp"):
        ringtrio.run(_backend_now)


@pytest.mark.parametrize("how", ["keyword", "environment"])
def test_unknown_backend_is_refused_with_the_choices(fresh_process: None, monkeypatch: Any, how: str) -> None:
    if how == "keyword":
        with pytest.raises(ValueError, match=r"run\(backend='uring'\).*'auto', 'ring', 'epoll'"):
            ringtrio.run(_backend_now, backend="uring")  # type: ignore[arg-type]
    else:
        monkeypatch.setenv("RINGTRIO_BACKEND", "fast")
        with pytest.raises(ValueError, match="RINGTRIO_BACKEND=fast.*'auto', 'ring', 'epoll'"):
            ringtrio.run(_backend_now)


def test_backend_is_frozen() -> None:
    backend, _ = ringtrio.run(_backend_now)
    with pytest.raises(AttributeError):
        backend.name = "other"  # type: ignore[misc]


def test_current_backend_outside_a_run() -> None:
    with pytest.raises(RuntimeError, match="inside ringtrio.run"):
        lowlevel.current_backend()


# ---------------------------------------------------------------------------
# Where the kernel refuses io_uring: a seccomp filter, in a subprocess
# ---------------------------------------------------------------------------


def _under_seccomp(spec: str, *extra: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "RINGTRIO_BACKEND"}
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "_fallback_program.py"), spec, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    # Nothing else said: no "coroutine ignored GeneratorExit", no internal
    # error, no second warning.
    assert proc.stderr == ""
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "spec, call",
    [
        ("io_uring_setup=EPERM", "io_uring_setup was refused (EPERM)"),
        ("io_uring_setup=ENOSYS", "no io_uring support (io_uring_setup: ENOSYS"),
        # setup allowed, enter refused (issue 11, item 7): found by the NOP
        # that goes through io_uring_enter at setup.
        ("io_uring_enter=EPERM", "io_uring_enter was refused (EPERM)"),
        ("io_uring_enter=ENOSYS", "no io_uring support (io_uring_enter: ENOSYS"),
        ("io_uring_register=EPERM", "io_uring_register was refused (EPERM)"),
    ],
)
def test_refused_io_uring_serves_reads_and_sleeps_on_epoll(spec: str, call: str) -> None:
    out = _under_seccomp(spec)
    for run in out["runs"]:
        assert run["backend"] == run["stats_backend"] == "epoll"
        assert call in run["reason"]
        assert run["echoed"] and run["files"] and run["slept"]
    (warning,) = out["warnings"]
    assert warning["category"] == "RingFallbackWarning"
    assert call in warning["message"]
    assert warning["file"].endswith("_fallback_program.py")


def test_io_uring_refused_in_the_middle_of_a_run() -> None:
    # The filter comes after io_uring was set up and used: that run ends
    # with RingUnavailableError (not an internal error), the next one falls
    # back, with the warning.
    out = _under_seccomp("io_uring_enter=EPERM", "--midrun")
    first, second = out["runs"]
    assert first["error"] == "RingUnavailableError"
    assert "io_uring_enter was refused (EPERM)" in first["message"]
    assert second["backend"] == "epoll" and second["echoed"] and second["files"] and second["slept"]
    (warning,) = out["warnings"]
    assert "io_uring_enter was refused" in warning["message"]
