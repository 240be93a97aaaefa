"""Test-suite configuration.

In CI (CI=true) hypothesis runs derandomized: the same examples every time,
so a run is reproducible and never fails by drawing a new rare example.
Locally, hypothesis explores freely (and remembers failures in .hypothesis/).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
