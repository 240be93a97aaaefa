"""What every trio-mode program under tests/trio_mode/ shares.

Importing this module enables trio mode (it must be the program's first
import, as in any trio-mode program).  The program prints one line
``RESULT <json>`` for tests/test_trio_mode.py to check.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import ringtrio.trio_mode  # noqa: F401 - the switch, before anything imports trio

import ringtrio


def ring_counts() -> dict[str, int]:
    """The run's ring counters: work done through ringtrio's ring grows them
    (a sleep is no ring op, but waiting for it is an io_uring_enter)."""
    stats = ringtrio.lowlevel.current_statistics()
    return {"sqes_submitted": stats.sqes_submitted, "cqes_reaped": stats.cqes_reaped, "enters": stats.enters}


def grew(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in before}


def real_trio_modules() -> list[str]:
    """Modules of the real trio package in this process (there must be none:
    every trio name is ringtrio's, so no second event loop can exist)."""
    return sorted(
        name
        for name, module in sys.modules.items()
        if module is not None and str(getattr(module, "__name__", "")).split(".")[0] == "trio"
    )


def report(**result: Any) -> None:
    result["trio_is_ringtrio"] = sys.modules["trio"] is ringtrio
    result["real_trio_modules"] = real_trio_modules()
    print("RESULT " + json.dumps(result), flush=True)
