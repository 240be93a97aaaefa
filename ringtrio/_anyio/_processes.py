"""AnyIO subprocesses and signals (placeholder until ringtrio has them)."""

from __future__ import annotations

from typing import Any


async def open_process(command: Any, **kwargs: Any) -> Any:
    raise NotImplementedError("subprocesses are not available on ringtrio yet")


async def shut_down_process_pool(workers: Any) -> None:
    raise NotImplementedError


def open_signal_receiver(*signals: Any) -> Any:
    raise NotImplementedError("signal receivers are not available on ringtrio yet")
