"""TrioDeprecationWarning: the category of ringtrio's deprecation warnings."""

from __future__ import annotations


class TrioDeprecationWarning(FutureWarning):
    """Warned when deprecated functionality is used (today: the
    ``cancellable=`` argument of ``to_thread.run_sync``).  trio's name and
    base class: a :class:`FutureWarning`, visible by default, so that code
    sees a deprecation before the name goes away.  Filter it with
    ``warnings.filterwarnings("ignore", category=ringtrio.TrioDeprecationWarning)``.
    """
