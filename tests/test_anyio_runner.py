"""AnyIO's pytest plugin on the ringtrio backend (``anyio_backend = "ringtrio"``):
the test runner in ringtrio/_anyio/_testing.py keeps one guest run alive
across fixtures and tests.  AnyIO's own suite (tests/test_anyio_suite.py)
covers the plugin in depth; this pins what the runner itself promises, in a
pytest of its own (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_TESTS = '''
import contextvars
import sys
import threading

import anyio
import pytest
import sniffio

import ringtrio

pytestmark = pytest.mark.anyio
seen = contextvars.ContextVar("seen", default=None)
tokens = []


@pytest.fixture(scope="module")
def anyio_backend():
    return "ringtrio"


@pytest.fixture(scope="module")
async def echo_port():
    # Its tasks must still run while the tests of the module run.
    async def handle(stream):
        async with stream:
            await stream.send((await stream.receive()).upper())

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, handle)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        group.cancel_scope.cancel()


@pytest.fixture
async def marked():
    seen.set("by the fixture")
    yield
    assert seen.get() == "by the fixture"


async def echo(port):
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"hi")
        return await stream.receive()


async def test_fixture_and_test_share_the_run(echo_port, marked):
    tokens.append(ringtrio.lowlevel.current_trio_token())
    assert sniffio.current_async_library() == "ringtrio"
    assert threading.current_thread() is threading.main_thread()
    assert seen.get() == "by the fixture"
    assert await echo(echo_port) == b"HI"
    with anyio.move_on_after(0.05) as scope:
        await anyio.sleep(10)
    assert scope.cancelled_caught
    assert await anyio.to_thread.run_sync(lambda: 42) == 42


async def test_the_next_test_too(echo_port):
    tokens.append(ringtrio.lowlevel.current_trio_token())
    assert tokens[0] is tokens[-1]
    assert await echo(echo_port) == b"HI"


def test_between_jobs_no_task_runs():
    # (The module's run is still alive: its fixtures are.)
    assert not ringtrio.lowlevel.in_ringtrio_task()
    assert sniffio.thread_local.name is None


async def test_fails_on_purpose(echo_port):
    # Its error is the test's failure; the run goes on.
    raise ValueError("on purpose")


async def test_after_the_failure(echo_port):
    tokens.append(ringtrio.lowlevel.current_trio_token())
    assert tokens[0] is tokens[-1]
    assert await echo(echo_port) == b"HI"


def test_no_greenlet():
    # The runner needs no greenlet: the run is a guest run.
    assert "greenlet" not in sys.modules
'''


def test_the_runner_keeps_one_run_across_fixtures_and_tests(tmp_path: Path) -> None:
    (tmp_path / "test_app.py").write_text(_TESTS)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:trio",
            "-p", "no:asyncio", "-W", "error", "test_app.py",
        ],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )
    # Exactly the one test that fails on purpose fails, with its error.
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 5 passed" in proc.stdout, proc.stdout
    assert "FAILED test_app.py::test_fails_on_purpose - ValueError: on purpose" in proc.stdout, proc.stdout


_INTERRUPTED = '''
import os
import signal

import anyio
import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "ringtrio"


async def test_interrupted():
    os.kill(os.getpid(), signal.SIGINT)
    await anyio.sleep(10)
'''


def test_ctrl_c_during_a_test_stops_pytest(tmp_path: Path) -> None:
    # The SIGINT arrives while the runner waits for the test (its own,
    # protected code): it goes to the run's main task, the test raises
    # KeyboardInterrupt, and pytest stops with its "interrupted" status.
    (tmp_path / "test_app.py").write_text(_INTERRUPTED)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:trio",
         "-p", "no:asyncio", "test_app.py"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "KeyboardInterrupt" in proc.stdout, proc.stdout
