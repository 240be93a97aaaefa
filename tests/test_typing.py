"""The package type-checks: `mypy ringtrio` is clean (house rule)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_is_clean_on_the_package() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "ringtrio"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_task_status_annotations_type_check(tmp_path: Path) -> None:
    """``ringtrio.TaskStatus[T]`` works as trio's does in annotations: the
    value passed to ``started()`` is checked against T."""
    good = tmp_path / "good.py"
    good.write_text(
        "import ringtrio\n"
        "async def serve(task_status: ringtrio.TaskStatus[int] = ringtrio.TASK_STATUS_IGNORED) -> None:\n"
        "    task_status.started(8080)\n"
        "async def plain(task_status: ringtrio.TaskStatus[None] = ringtrio.TASK_STATUS_IGNORED) -> None:\n"
        "    task_status.started()\n"
    )
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import ringtrio\n"
        "async def serve(task_status: ringtrio.TaskStatus[int]) -> None:\n"
        "    task_status.started('not an int')\n"
    )
    for path, ok in ((good, True), (bad, False)):
        result = subprocess.run(
            [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert (result.returncode == 0) is ok, result.stdout + result.stderr
        if not ok:
            assert "started" in result.stdout and "int" in result.stdout, result.stdout
