"""Tools for testing code that runs under ringtrio (mirrors ``trio.testing``)."""

from .._core import wait_all_tasks_blocked
from ._check_streams import (
    check_half_closeable_stream,
    check_one_way_stream,
    check_two_way_stream,
    open_stream_to_socket_listener,
)
from ._checkpoints import assert_checkpoints, assert_no_checkpoints
from ._hang_detector import HangDetector
from ._memory_streams import (
    MemoryReceiveStream,
    MemorySendStream,
    lockstep_stream_one_way_pair,
    lockstep_stream_pair,
    memory_stream_one_way_pair,
    memory_stream_pair,
    memory_stream_pump,
)
from ._mock_clock import MockClock
from ._sequencer import Sequencer
from ._trio_test import trio_test
from .._threads import active_thread_count, wait_all_threads_completed

__all__ = [
    "HangDetector",
    "MemoryReceiveStream",
    "MemorySendStream",
    "check_half_closeable_stream",
    "check_one_way_stream",
    "check_two_way_stream",
    "lockstep_stream_one_way_pair",
    "lockstep_stream_pair",
    "memory_stream_one_way_pair",
    "memory_stream_pair",
    "memory_stream_pump",
    "open_stream_to_socket_listener",
    "MockClock",
    "Sequencer",
    "assert_checkpoints",
    "assert_no_checkpoints",
    "wait_all_tasks_blocked",
    "active_thread_count",
    "trio_test",
    "wait_all_threads_completed",
]
