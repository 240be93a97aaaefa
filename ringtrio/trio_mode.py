"""Trio mode: ``import ringtrio.trio_mode`` makes ``trio`` mean ringtrio in this process.

Put it first in the program, before anything imports trio (or run the
program with ``python -m ringtrio --trio-mode app.py``).  From then on
``import trio`` and ``import trio.lowlevel`` / ``trio.testing`` /
``trio.socket`` / ``trio.abc`` / ``trio.to_thread`` / ``trio.from_thread``
give ringtrio's modules, every other ``trio.X`` import gives ``ringtrio.X``
or a ModuleNotFoundError, and ``sniffio.current_async_library()`` is
``"trio"`` inside ``ringtrio.run``.  Libraries written for trio only
(trio-websocket, httpx through httpcore's trio backend, AnyIO's trio
backend, tenacity) then run on ringtrio.

It is process-wide and cannot be undone.  If the real trio was imported
first, importing this module raises RuntimeError naming the module that
imported it.  What the mode is and what it cannot do: docs/ecosystem.md,
"Trio mode".

Importing this module is the switch; it has no names of its own.
"""

from ._trio_mode import enable as _enable

_enable()

__all__: list[str] = []
