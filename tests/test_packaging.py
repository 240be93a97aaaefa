"""What a user gets from the sdist and the wheel.

One test, built the way a user's pip builds it: the sdist is made from this
tree, a wheel is built from the sdist, and the wheel (with the test extra) is
installed into a fresh venv.  The installed ringtrio runs the demo, and the
test suite unpacked from the sdist collects exactly the tests this tree has.
It takes about a minute (two isolated builds, a compile, an install that
comes from pip's cache when it can).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

# The sdist and wheel build (a minute): what it checks does not depend on the
# backend (make test's epoll pass leaves it out).
pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 600  # per step; a cold pip cache on a busy 2-core machine is slow

# Directories the sdist must carry whole (every file in them, as on disk).
SHIPPED_DIRS = ("tests", "docs", "examples", "bench")
SHIPPED_FILES = ("LICENSE", "LICENSE.MIT", "LICENSE.APACHE2", "README.md", "Makefile")
# Left out on purpose: byte code, build products and tool caches.
JUNK_SUFFIXES = (".pyc", ".pyo", ".so", ".o")


def run(cmd: list[str], cwd: Path, **env: str) -> str:
    result = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


# Not part of a clean checkout.  An old ringtrio.egg-info in particular must
# not reach the build: setuptools adds every file its SOURCES.txt lists to the
# sdist, which would hide a file that MANIFEST.in forgets.
NOT_SOURCES = shutil.ignore_patterns(
    ".*", "*.egg-info", "build", "dist", "__pycache__", *(f"*{s}" for s in JUNK_SUFFIXES)
)


def files_on_disk(top: Path) -> set[str]:
    found = set()
    for path in top.rglob("*"):
        rel = path.relative_to(ROOT)
        if path.is_dir() or any(part.startswith(".") for part in rel.parts):
            continue
        if "__pycache__" in rel.parts or path.name.endswith(JUNK_SUFFIXES):
            continue
        found.add(rel.as_posix())
    return found


def collected_tests(pytest: list[str], cwd: Path) -> list[str]:
    out = run([*pytest, "--collect-only", "-q", "-p", "no:cacheprovider", "tests"], cwd)
    lines = out.splitlines()
    assert "error" not in lines[-1].lower(), out
    return sorted(line for line in lines if "::" in line)


def test_sdist_builds_installs_and_carries_its_test_suite(tmp_path: Path) -> None:
    clean = tmp_path / "checkout"
    shutil.copytree(ROOT, clean, ignore=NOT_SOURCES)
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(dist), str(clean)], clean)
    (sdist,) = dist.glob("ringtrio-*.tar.gz")

    # -- the sdist: everything needed to build, test, read and try ringtrio
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        names = {name.removeprefix(top + "/") for name in archive.getnames()}
        archive.extractall(tmp_path, filter="data")
    unpacked = tmp_path / top
    expected = set(SHIPPED_FILES)
    for directory in SHIPPED_DIRS:
        expected |= files_on_disk(ROOT / directory)
    assert "tests/conftest.py" in expected and "tests/_differential.py" in expected
    assert not expected - names, f"missing from the sdist: {sorted(expected - names)}"
    assert not [n for n in names if n.endswith(JUNK_SUFFIXES) or "__pycache__" in n]

    # -- the wheel pip builds from it: the compiled modules, no C sources
    wheels = tmp_path / "wheels"
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    run([python, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(sdist)], tmp_path)
    (wheel,) = wheels.glob("ringtrio-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        content = archive.namelist()
    assert not [n for n in content if n.endswith((".c", ".h"))], content
    assert "ringtrio/py.typed" in content
    assert any(n.startswith("ringtrio/_native") and n.endswith(".so") for n in content), content
    assert any(n.startswith("ringtrio/_core/_speedups") for n in content), content
    assert any(n.endswith("dist-info/licenses/LICENSE.APACHE2") for n in content), content

    # -- installed into a clean venv (with what the test suite imports)
    run([python, "-m", "pip", "install", "--quiet", f"{wheel}[test]"], tmp_path)
    where = run(
        [
            python,
            "-c",
            "import importlib.metadata as m, ringtrio, ringtrio._core._speedups; "
            "print(ringtrio.__file__); print(m.metadata('ringtrio')['License-Expression'])",
        ],
        tmp_path,
    ).splitlines()
    assert where[0].startswith(str(env_dir)), where  # not this tree's ringtrio
    assert where[1] == "MIT OR Apache-2.0"
    # The smoke test: the demo from the sdist, run by the installed ringtrio.
    demo = run([python, str(unpacked / "examples" / "demo.py")], tmp_path)
    assert "read b'hello from the ring'" in demo, demo

    # -- the unpacked test suite collects every test, without errors.  The
    # venv's pytest script (not `python -m pytest`, which would put the
    # unpacked, unbuilt ringtrio/ first on sys.path) imports the installed one.
    from_sdist = collected_tests([str(env_dir / "bin" / "pytest")], unpacked)
    here = collected_tests([sys.executable, "-m", "pytest"], ROOT)
    assert "tests/test_packaging.py::test_sdist_builds_installs_and_carries_its_test_suite" in here
    assert from_sdist == here
