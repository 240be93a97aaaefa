"""Call into a running ringtrio loop from another thread: ``ringtrio.from_thread``.

Mirrors ``trio.from_thread``.
"""

from ._threads import from_thread_check_cancelled as check_cancelled
from ._threads import from_thread_run as run
from ._threads import from_thread_run_sync as run_sync

__all__ = ["check_cancelled", "run", "run_sync"]
