"""``@final``: a class that refuses subclasses, for type checkers and at run time.

trio makes its concrete public classes final (its ``Final`` metaclass), so
no code comes to depend on their insides and they stay free to change.
``typing.final`` alone only tells type checkers; this decorator also makes
``class Mine(ringtrio.Lock)`` raise ``TypeError`` when it runs, with trio's
words.  It installs ``__init_subclass__`` rather than a metaclass, so it
works on classes whose metaclass is already taken (``ABCMeta`` for the
streams), and costs nothing per instance: Python calls the hook only when a
subclass is being made.

The core's classes use it (``CancelScope``, ``Nursery``, ``Cancelled``,
``ParkingLot`` ...), and so do the layers above, through ``ringtrio._final``.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, TypeVar

__all__ = ["final"]

_C = TypeVar("_C", bound=type)


def _refuse_subclass(cls: type, **kwargs: object) -> None:
    # cls is the would-be subclass; name the final class it derives from.
    # __module__ is read now, after _public_names gave it its public home.
    base = next(b for b in cls.__mro__[1:] if b.__dict__.get("__init_subclass__") is _REFUSE)
    raise TypeError(f"{base.__module__}.{base.__qualname__} does not support subclassing")


_REFUSE: classmethod[type, ..., None] = classmethod(_refuse_subclass)

if TYPE_CHECKING:
    from typing import final
else:

    def final(cls: _C) -> _C:
        """Mark ``cls`` final: ``typing.final``, and subclassing it raises TypeError."""
        cls.__init_subclass__ = _REFUSE
        return typing.final(cls)
