"""Trio mode (``import ringtrio.trio_mode``): libraries written for trio run on ringtrio.

Trio mode is process-wide and cannot be undone, so every test that enables
it runs a program in a subprocess (the programs under tests/trio_mode/, or a
small one the test writes) with a bounded time, and checks the ``RESULT``
line it prints.  Each library program also proves the work went through
ringtrio: the run's ring counters grew, no module of the real trio package
was ever loaded, and the library's streams are ringtrio's classes.

The libraries are the real ones from the package index (the ``test`` extra):
httpx (httpcore's trio backend), trio-websocket, AnyIO's trio backend and
tenacity.  What they do without trio mode is pinned here too, because
docs/ecosystem.md tells users which need the mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
import tenacity

import ringtrio

PROGRAMS = Path(__file__).with_name("trio_mode")
# Generous: a loaded 2-core machine, a TLS handshake, a 1 MiB echo.  A hang
# fails the test at this bound instead of blocking the suite.
TIMEOUT = 120


def run_program(*args: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env=env,
        input=stdin,
    )


def result_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout
    result: dict[str, Any] = json.loads(lines[0][len("RESULT ") :])
    # The whole program ran on ringtrio: `trio` was ringtrio and the real
    # trio package never loaded, so no second event loop could exist.
    assert result.pop("trio_is_ringtrio") is True
    assert result.pop("real_trio_modules") == []
    return result


def assert_ring_worked(ring: dict[str, int], at_least: int) -> None:
    assert ring["sqes_submitted"] >= at_least, ring
    assert ring["cqes_reaped"] >= at_least, ring


# -- the libraries -------------------------------------------------------------


def test_httpx_get_post_stream_over_tcp_and_tls() -> None:
    result = result_of(run_program(str(PROGRAMS / "httpx_app.py")))
    assert result["sniffio"] == "trio"
    for transport, expected_stream, tls in (
        ("tcp", "ringtrio.SocketStream", None),
        ("tls", "ringtrio.SSLStream", "TLSv1.3"),
    ):
        seen = result[transport]
        assert seen["get"] == [200, "hello from /path"]
        assert seen["transport"] == expected_stream
        assert seen["tls_version"] == tls
        assert seen["post_ok"] is True
        assert seen["streamed_upload_ok"] is True
        assert seen["stream_text"] == "".join(f"chunk {i};" for i in range(5))
        assert seen["stream_chunk_count"] >= 5  # each chunk was sent only after the last arrived
        # Connections, requests and 2 MiB each way: many ring ops.
        assert_ring_worked(seen["ring"], at_least=20)


def test_trio_websocket_echo_text_binary_ping_close() -> None:
    result = result_of(run_program(str(PROGRAMS / "websocket_app.py")))
    assert result["sniffio"] == "trio"
    assert result["text"] == "hello, ringtrio"
    assert result["binary_len"] == 1 << 20
    assert result["binary_ok"] is True
    assert result["pong"] is True
    assert result["client_close_code"] == 1000
    assert result["server_close_code"] == 1000
    assert_ring_worked(result["ring"], at_least=10)


def test_anyio_trio_backend() -> None:
    result = result_of(run_program(str(PROGRAMS / "anyio_app.py")))
    assert result["ringtrio_run_is_trio_run"] is True
    for how in ("anyio_run", "trio_run"):
        seen = result[how]
        assert seen["sniffio"] == "trio"
        assert seen["backend"] == "anyio._backends._trio"
        assert seen["thread"] == 6
        assert seen["move_on_caught"] is True
        assert seen["channel"] == [0, 1, 2, 3, 4]
        assert seen["stream_type"] == "ringtrio.socket"
        assert seen["raw_fileno_ok"] is True
        assert seen["echo_ok"] is True
        assert_ring_worked(seen["ring"], at_least=5)


def test_tenacity_retry_waits_with_ringtrio_sleep() -> None:
    result = result_of(run_program(str(PROGRAMS / "tenacity_app.py")))
    virtual = result["virtual"]
    assert virtual["sniffio"] == "trio"
    assert virtual["value"] == "done"
    # ringtrio's MockClock advanced by exactly tenacity's waits: the sleeps
    # were ringtrio's (asyncio.sleep would not even run here).
    assert virtual["gaps"] == [60.0, 60.0, 60.0]
    real = result["real"]
    assert real["value"] == 3
    assert real["ring"]["enters"] >= 2  # each wait was a wait in io_uring_enter


# -- without trio mode (what docs/ecosystem.md says) --------------------------


def test_tenacity_without_trio_mode_needs_sleep_argument() -> None:
    # tenacity picks trio.sleep only when sniffio says "trio"; for
    # "ringtrio" it falls back to asyncio.sleep, which has no loop here.
    # Passing sleep=ringtrio.sleep makes it work without the mode.
    attempts: list[int] = []

    async def main() -> None:
        @tenacity.retry(wait=tenacity.wait_fixed(0.01), stop=tenacity.stop_after_attempt(3), sleep=ringtrio.sleep)
        async def with_sleep() -> int:
            attempts.append(1)
            if len(attempts) < 3:
                raise ConnectionError
            return len(attempts)

        assert await with_sleep() == 3

        @tenacity.retry(wait=tenacity.wait_fixed(0.01), stop=tenacity.stop_after_attempt(2))
        async def default_sleep() -> None:
            raise ConnectionError

        with pytest.raises(RuntimeError, match="no running event loop"):
            await default_sleep()

    ringtrio.run(main)


def test_httpx_without_trio_mode_is_refused_by_httpcore() -> None:
    # httpcore accepts only sniffio's "asyncio" and "trio": upstream code.
    async def main() -> None:
        async with ringtrio.open_nursery() as nursery:
            listeners = await nursery.start(ringtrio.serve_tcp, lambda stream: stream.aclose(), 0)
            port = listeners[0].socket.getsockname()[1]
            client = httpx.AsyncClient()
            with pytest.raises(RuntimeError, match="unsupported async environment"):
                await client.get(f"http://127.0.0.1:{port}/")
            # (Closing the client is refused the same way: nothing was opened.)
            nursery.cancel_scope.cancel()

    ringtrio.run(main)


# -- the mode itself -------------------------------------------------------------


def write(directory: Path, name: str, source: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return path


def test_trio_and_its_modules_are_ringtrio(tmp_path: Path) -> None:
    program = write(
        tmp_path,
        "app.py",
        """
        import ringtrio.trio_mode
        import json, sys, threading
        import sniffio, trio, trio.abc, trio.from_thread, trio.lowlevel, trio.socket, trio.testing, trio.to_thread
        import trio.testing._memory_streams
        from trio.lowlevel import current_task
        import ringtrio

        same = {
            "trio": trio is ringtrio,
            "abc": trio.abc is ringtrio.abc,
            "from_thread": trio.from_thread is ringtrio.from_thread,
            "lowlevel": trio.lowlevel is ringtrio.lowlevel,
            "socket": trio.socket is ringtrio.socket,
            "testing": trio.testing is ringtrio.testing,
            "to_thread": trio.to_thread is ringtrio.to_thread,
            "private": sys.modules["trio.testing._memory_streams"] is sys.modules["ringtrio.testing._memory_streams"],
            "current_task": current_task is ringtrio.lowlevel.current_task,
        }
        # Modules imported under a trio name keep ringtrio's identity.
        specs = [ringtrio.lowlevel.__spec__.name, ringtrio.testing._memory_streams.__spec__.name]
        try:
            import trio._dtls
        except ModuleNotFoundError as exc:
            missing = [exc.name, str(exc)]
        import ringtrio.trio_mode  # a second import changes nothing

        async def main():
            in_thread = await trio.to_thread.run_sync(
                lambda: [sniffio.current_async_library_cvar.get(),
                         trio.from_thread.run_sync(sniffio.current_async_library)])
            return [sniffio.current_async_library(), *in_thread]

        names = trio.run(main)
        print("RESULT " + json.dumps({"same": same, "specs": specs, "missing": missing, "sniffio": names,
                                      "trio_is_ringtrio": True, "real_trio_modules": []}))
        """,
    )
    result = result_of(run_program(str(program)))
    assert all(result["same"].values()), result["same"]
    assert result["specs"] == ["ringtrio.lowlevel", "ringtrio.testing._memory_streams"]
    name, message = result["missing"]
    assert name == "trio._dtls"
    assert "ringtrio has no 'ringtrio._dtls'" in message
    # In the run, in a worker thread (none), and back in the run from it.
    assert result["sniffio"] == ["trio", None, "trio"]


def test_anyio_task_info_sees_pending_cancellation_in_trio_mode(tmp_path: Path) -> None:
    # AnyIO's trio backend reads trio's Task._cancel_status; trio mode
    # provides it (ringtrio._trio_mode.TRIO_INTERNALS).
    program = write(
        tmp_path,
        "app.py",
        """
        import ringtrio.trio_mode
        import json, anyio, trio

        async def main():
            seen = []
            with trio.CancelScope() as scope:
                seen.append(anyio.get_current_task().has_pending_cancellation())
                scope.cancel()
                seen.append(anyio.get_current_task().has_pending_cancellation())
            seen.append(anyio.get_current_task().has_pending_cancellation())
            return seen

        print("RESULT " + json.dumps({"seen": anyio.run(main, backend="trio"),
                                      "trio_is_ringtrio": True, "real_trio_modules": []}))
        """,
    )
    assert result_of(run_program(str(program)))["seen"] == [False, True, False]


def test_hypothesis_imports_in_trio_mode(tmp_path: Path) -> None:
    # trio's distribution (installed here, as with any library that depends
    # on trio) declares trio._core._run:_hypothesis_plugin_setup as a
    # hypothesis entry point, which `import hypothesis` loads: in trio mode,
    # from ringtrio's module of that name.
    program = write(
        tmp_path,
        "app.py",
        """
        import ringtrio.trio_mode
        import importlib.metadata, json
        import hypothesis

        points = [e.value for e in importlib.metadata.entry_points(group="hypothesis") if e.name == "trio"]
        print("RESULT " + json.dumps({"entry_points": points, "trio_is_ringtrio": True, "real_trio_modules": []}))
        """,
    )
    assert result_of(run_program(str(program)))["entry_points"] == ["trio._core._run:_hypothesis_plugin_setup"]


@pytest.mark.parametrize(
    ("modules", "first_lines", "named"),
    [
        # The program itself imported trio first.
        ({}, "import trio", "it was imported by '__main__'"),
        # A library did, with `import trio`, one import away from the program.
        ({"somelib.py": "import trio\n"}, "import somelib", "it was imported by 'somelib'"),
        # ... or with `from trio import ...`.
        ({"otherlib.py": "from trio import open_nursery\n"}, "import otherlib", "it was imported by 'otherlib'"),
        # Nothing kept a reference: the error says so instead of guessing.
        ({}, "import importlib\nimportlib.import_module('trio')", "no loaded module refers to it"),
    ],
)
def test_real_trio_imported_first_is_refused_naming_the_importer(
    tmp_path: Path, modules: dict[str, str], first_lines: str, named: str
) -> None:
    for name, source in modules.items():
        write(tmp_path, name, source)
    program = write(tmp_path, "app.py", f"{first_lines}\nimport ringtrio.trio_mode\n")
    proc = run_program(str(program), cwd=tmp_path)
    assert proc.returncode == 1
    assert "RuntimeError: trio mode must be enabled before anything imports trio" in proc.stderr
    assert named in proc.stderr
    assert "`import ringtrio.trio_mode` first in the program" in proc.stderr
    assert "python -m ringtrio --trio-mode app.py" in proc.stderr


def test_trio_mode_cannot_start_inside_a_run(tmp_path: Path) -> None:
    program = write(
        tmp_path,
        "app.py",
        """
        import json, sys, ringtrio, sniffio

        async def main():
            try:
                import ringtrio.trio_mode
            except RuntimeError as exc:
                return [str(exc), "trio" in sys.modules, sniffio.current_async_library()]

        print("RESULT " + json.dumps({"seen": ringtrio.run(main), "trio_is_ringtrio": True, "real_trio_modules": []}))
        """,
    )
    message, trio_loaded, name = result_of(run_program(str(program)))["seen"]
    assert "cannot change inside ringtrio.run()" in message
    assert not trio_loaded  # refused before anything changed
    assert name == "ringtrio"


# -- python -m ringtrio --trio-mode ------------------------------------------


def test_main_runs_a_script_in_trio_mode(tmp_path: Path) -> None:
    write(tmp_path, "helper.py", "VALUE = 42\n")
    program = write(
        tmp_path,
        "app.py",
        """
        import json, sys
        import sniffio, trio, ringtrio
        import helper  # the script's directory is on the path, as with `python app.py`

        async def main():
            return sniffio.current_async_library()

        print("RESULT " + json.dumps({"name": __name__, "argv": sys.argv, "sniffio": trio.run(main),
                                      "helper": helper.VALUE, "trio_is_ringtrio": trio is ringtrio,
                                      "real_trio_modules": []}))
        """,
    )
    result = result_of(run_program("-m", "ringtrio", "--trio-mode", str(program), "a", "--flag"))
    assert result == {"name": "__main__", "argv": [str(program), "a", "--flag"], "sniffio": "trio", "helper": 42}


def test_main_runs_a_module_in_trio_mode(tmp_path: Path) -> None:
    write(
        tmp_path,
        "tmapp.py",
        """
        import json, sys, trio, ringtrio
        print("RESULT " + json.dumps({"name": __name__, "args": sys.argv[1:],
                                      "trio_is_ringtrio": trio is ringtrio, "real_trio_modules": []}))
        """,
    )
    result = result_of(run_program("-m", "ringtrio", "--trio-mode", "-m", "tmapp", "x", cwd=tmp_path))
    assert result == {"name": "__main__", "args": ["x"]}


def test_main_help() -> None:
    proc = run_program("-m", "ringtrio", "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: python -m ringtrio [--trio-mode]")
    assert "--trio-mode" in proc.stdout and "-m MODULE" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown option '--bogus'"),
        (["app.py"], "running 'app.py' needs --trio-mode"),
        (["-m", "json.tool"], "running 'json.tool' needs --trio-mode"),
        (["--trio-mode", "-m"], "-m needs the name of a module to run"),
        (["--trio-mode", "no-such-file.py"], "can't open file 'no-such-file.py': no such file"),
    ],
)
def test_main_bad_arguments_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_program("-m", "ringtrio", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: python -m ringtrio")
    assert f"python -m ringtrio: error: {message}" in proc.stderr
    assert proc.stdout == ""
