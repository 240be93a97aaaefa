"""TrioDeprecationWarning and the one function that warns it.

In the core because the core warns too (``strict_exception_groups=False``
given to ``run`` or ``open_nursery``); the layers above use the same
function (``to_thread.run_sync(cancellable=...)``,
``lowlevel.UnboundedQueue``), so every deprecation reads alike.
"""

from __future__ import annotations

import warnings


class TrioDeprecationWarning(FutureWarning):
    """Warned when deprecated functionality is used.  trio's name and base
    class: a :class:`FutureWarning`, visible by default, so that code sees a
    deprecation before the name goes away.  Filter it with
    ``warnings.filterwarnings("ignore", category=ringtrio.TrioDeprecationWarning)``.
    """


def warn_deprecated(thing: str, *, since_trio: str, instead: str, stacklevel: int) -> None:
    """Warn that ``thing`` is deprecated, as trio deprecated it in version
    ``since_trio``, and say what to use ``instead``.  ``stacklevel`` counts
    as for :func:`warnings.warn` called where this is called (2: the caller
    of the deprecated function), so the warning points at the user's line."""
    warnings.warn(
        TrioDeprecationWarning(f"{thing} is deprecated (as in trio since {since_trio}); use {instead} instead"),
        stacklevel=stacklevel + 1,
    )


def warn_loose_exception_groups(call: str, *, stacklevel: int) -> None:
    """``call`` (``run``, ``start_guest_run``, ``open_nursery``) was given
    strict_exception_groups=False, which trio deprecated in 0.25.0."""
    warn_deprecated(
        f"{call}(..., strict_exception_groups=False)",
        since_trio="0.25.0",
        instead="the default (strict_exception_groups=True) and except* for the group",
        stacklevel=stacklevel + 1,
    )
