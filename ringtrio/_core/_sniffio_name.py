"""The name sniffio reports inside a run: ``"ringtrio"``, or ``"trio"`` in trio mode.

A run sets sniffio's ``current_async_library_cvar`` in its system context
(every task's context is copied from it) and in the context of every
callback a thread sends into the run (``from_thread.run*``), to this name.

It is ``"ringtrio"`` unless trio mode (``import ringtrio.trio_mode``) is on:
in that process the module ``trio`` *is* ringtrio, so a library that asks
sniffio and then calls ``trio.*`` reaches ringtrio, and ``"trio"`` is the
true answer.  This is the one switch; nothing else in the core knows about
trio mode.
"""

from __future__ import annotations

from typing import Literal

from ._local import _local

SniffioName = Literal["ringtrio", "trio"]

_name: SniffioName = "ringtrio"


def sniffio_name() -> SniffioName:
    """The name runs started from now on report to sniffio."""
    return _name


def set_sniffio_name(name: SniffioName) -> None:
    """Make runs report ``name`` to sniffio (``ringtrio.trio_mode`` sets
    ``"trio"``).  Process-wide, and only between runs: a run that is going
    on has already given its tasks the old name, and half of a run saying
    "trio" while the other half says "ringtrio" would send libraries down
    two paths at once."""
    global _name
    if name not in ("ringtrio", "trio"):
        raise ValueError(f"sniffio's name for ringtrio is 'ringtrio' or 'trio' (trio mode), not {name!r}")
    if getattr(_local, "runner", None) is not None:
        raise RuntimeError(
            "the name ringtrio reports to sniffio cannot change inside ringtrio.run(); "
            "enable trio mode (import ringtrio.trio_mode) before the run starts"
        )
    _name = name
