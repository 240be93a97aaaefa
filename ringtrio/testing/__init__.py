"""Tools for testing code that runs under ringtrio (mirrors ``trio.testing``)."""

from .._core import wait_all_tasks_blocked
from ._checkpoints import assert_checkpoints, assert_no_checkpoints
from ._mock_clock import MockClock
from ._sequencer import Sequencer

__all__ = [
    "MockClock",
    "Sequencer",
    "assert_checkpoints",
    "assert_no_checkpoints",
    "wait_all_tasks_blocked",
]
