"""``@final`` for the layers above the core: the core's decorator
(``ringtrio/_core/_final.py``), the one implementation."""

from __future__ import annotations

from ._core._internal_api import final

__all__ = ["final"]
