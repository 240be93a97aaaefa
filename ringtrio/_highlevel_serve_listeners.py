"""Serving connections: :func:`serve_listeners` (and :func:`serve_tcp` on top).

For a :class:`SocketListener`, one **multishot** ``IORING_OP_ACCEPT``
(``IORING_ACCEPT_MULTISHOT``) per listener does all the accepting: the kernel
posts one CQE per connection while the request stays armed.  The request is
owned by the serving task (a child of the serving nursery):

* each CQE's fd is queued and the serving task woken; it wraps every queued
  fd in a :class:`SocketStream` and starts ``handler(stream)`` in the handler
  nursery;
* a CQE without ``IORING_CQE_F_MORE`` ends the request.  Unless the owner is
  shutting down it is armed again (after a 0.1 s back-off, with a log line,
  when the kernel ran out of file descriptors: EMFILE/ENFILE);
* when the serving scope is cancelled the request is cancelled
  (``IORING_OP_ASYNC_CANCEL`` by token) and the task keeps waiting for its
  **final** CQE before it leaves, so no CQE ever arrives for an owner that
  is gone.  Connections accepted in the race are handed to a handler (which
  is cancelled at once if its nursery is) or closed — never leaked.

Other listeners (TLS, memory ...) are served with a plain ``accept()`` loop.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from ._abc import AsyncResource, Listener
from ._core import ClosedResourceError, TASK_STATUS_IGNORED, open_nursery, sleep
from ._core import Abort, Nursery, OwnedRingOp, current_task, reschedule, wait_task_rescheduled
from ._core import _ring
from ._core._internal_api import _current_runner
from ._highlevel_generic import aclose_forcefully
from ._highlevel_socket import _CLOSED_ERRNOS, _IGNORABLE_ACCEPT_ERRNOS, SocketListener, SocketStream
from ._socket import _ACCEPT_FLAGS, _wrap_accepted

__all__ = ["serve_listeners"]

LOGGER = logging.getLogger("ringtrio.serve_listeners")

# accept() errors that mean "out of resources": wait a little and try again
# rather than kill the server (trio's list).
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
SLEEP_TIME = 0.1

IORING_ACCEPT_MULTISHOT = 1 << 0


async def _run_handler(stream: AsyncResource, handler: Callable[[Any], Awaitable[Any]]) -> None:
    try:
        await handler(stream)
    finally:
        await aclose_forcefully(stream)


def _log_capacity_error(exc: OSError) -> None:
    # With the error attached (exc_info), as trio logs it.
    code = exc.errno or 0
    LOGGER.error(
        "accept returned %s (%s); retrying in %s seconds",
        errno.errorcode.get(code, str(code)),
        os.strerror(code),
        SLEEP_TIME,
        exc_info=exc,
    )


async def _accept_loop(
    listener: Listener[Any], handler_nursery: Any, handler: Callable[[Any], Awaitable[Any]]
) -> NoReturn:
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:
            if exc.errno in ACCEPT_CAPACITY_ERRNOS:
                _log_capacity_error(exc)
                await sleep(SLEEP_TIME)
            else:
                raise
        else:
            handler_nursery.start_soon(_run_handler, stream, handler)


async def _serve_one_listener(
    listener: Listener[Any], handler_nursery: Any, handler: Callable[[Any], Awaitable[Any]]
) -> NoReturn:
    async with listener:
        if isinstance(listener, SocketListener):
            await _serve_multishot(listener, handler_nursery, handler)
        await _accept_loop(listener, handler_nursery, handler)
    raise AssertionError("unreachable: the accept loop never returns")  # pragma: no cover


class _MultishotAccept(OwnedRingOp):
    """The multishot accept request of one listener.  Its CQEs are handled
    here, in the run loop's dispatch: queue the fd, wake the owner."""

    __slots__ = (
        "accepted",
        "ended",
        "end_res",
        "waiter",
        "owner_cancel",
        "arms",
    )

    def __init__(self, runner: Any) -> None:
        super().__init__(
            runner,
            _ring.IORING_OP_ACCEPT,
            op_flags=_ACCEPT_FLAGS,
            ioprio=IORING_ACCEPT_MULTISHOT,
        )
        self.accepted: deque[int] = deque()
        self.ended = False
        self.end_res = 0
        self.waiter: Any = None
        self.owner_cancel: Callable[[], NoReturn] | None = None
        self.arms = 0  # statistics: how many times the request was armed

    def arm(self, fd: int) -> None:
        self.fd = fd
        self.ended = False
        self.end_res = 0
        self._arm()
        self.arms += 1

    def _on_cqe(self, res: int, flags: int) -> None:
        if res >= 0:
            self.accepted.append(res)
        if not flags & _ring.IORING_CQE_F_MORE:
            self.ended = True
            self.armed = False
            self.end_res = res
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            reschedule(waiter)

    def abort(self, raise_cancel: Callable[[], NoReturn]) -> Abort:
        # The owner is cancelled: cancel the request and keep waiting for
        # its final CQE (no CQE may arrive for an owner that is gone).
        if self.owner_cancel is None:
            self.owner_cancel = raise_cancel
        self.request_cancel()
        return Abort.FAILED


def _hand_off(
    op: _MultishotAccept,
    listener: SocketListener,
    handler_nursery: Any,
    handler: Callable[[Any], Awaitable[Any]],
    error: BaseException | None,
) -> BaseException | None:
    """Give every queued fd to a handler task; close those that cannot be
    given.  Returns the first error (never raises: the request may still be
    armed and must be drained first)."""
    stdsock = listener.socket._sock
    accepted = op.accepted
    while accepted:
        fd = accepted.popleft()
        if error is not None:
            os.close(fd)
            continue
        stream = None
        try:
            stream = SocketStream(_wrap_accepted(fd, stdsock))
            if type(handler_nursery) is Nursery:
                # As _run_handler, with the close as the task's finalizer
                # instead of a coroutine frame around the handler (one frame
                # fewer on every resume of every connection's task).
                task = op.runner._spawn(handler, (stream,), handler_nursery, None)
                task._finalizer = functools.partial(aclose_forcefully, stream)
            else:
                handler_nursery.start_soon(_run_handler, stream, handler)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            if stream is not None:
                stream.socket.close()
            if op.owner_cancel is None:
                error = exc
                op.request_cancel()
    return error


async def _serve_multishot(
    listener: SocketListener, handler_nursery: Any, handler: Callable[[Any], Awaitable[Any]]
) -> None:
    """Serve with multishot accepts until cancelled or an error.  Returns
    (to fall back to plain accepts) only if the kernel refuses multishot."""
    runner = _current_runner()
    sock = listener.socket
    op = _MultishotAccept(runner)
    task = current_task()
    ever_accepted = False
    while True:
        try:
            fd = sock._fd()
        except OSError:
            raise ClosedResourceError("this listener was already closed") from None
        op.arm(fd)
        sock._track(op)
        error: BaseException | None = None
        try:
            while True:
                if op.accepted:
                    ever_accepted = True
                    error = _hand_off(op, listener, handler_nursery, handler, error)
                if op.ended:
                    break
                if op.owner_cancel is not None or op.closed_by_user or error is not None:
                    op.request_cancel()  # (again, if the last one was lost)
                op.waiter = task
                await wait_task_rescheduled(op.abort)
        finally:
            # Only reached with the request ended: the wait above can only be
            # left through _on_cqe's reschedule (abort returns FAILED).
            op.waiter = None
            sock._untrack(op)
        if op.owner_cancel is not None:
            op.owner_cancel()
        if error is not None:
            raise error
        if op.closed_by_user:
            raise ClosedResourceError("the listener was closed while serving")
        res = op.end_res
        if res >= 0 or res == -errno.ECANCELED:
            # Ended without an error (e.g. the kernel stopped it after a CQ
            # overflow): arm again.
            continue
        code = -res
        if code in ACCEPT_CAPACITY_ERRNOS:
            _log_capacity_error(OSError(code, f"accept failed: {os.strerror(code)}"))
            await sleep(SLEEP_TIME)
        elif code in _IGNORABLE_ACCEPT_ERRNOS:
            continue
        elif code in _CLOSED_ERRNOS:
            raise ClosedResourceError("this listener was already closed")
        elif code == errno.EINVAL and not ever_accepted and op.arms == 1:
            # Multishot accept unsupported (or not a listening socket): the
            # plain accept loop will either work or raise the real error.
            return
        else:
            raise OSError(code, f"accept failed: {os.strerror(code)}")


async def serve_listeners(
    handler: Callable[[Any], Awaitable[Any]],
    listeners: list[Any],
    *,
    handler_nursery: Any = None,
    task_status: Any = TASK_STATUS_IGNORED,
) -> NoReturn:
    """Accept connections on every listener and run ``handler(stream)`` for
    each in ``handler_nursery`` (default: a nursery of this call).  The
    stream is closed (forcefully) when the handler returns.  Runs until
    cancelled; ``task_status.started(listeners)`` is called once everything
    is accepting.  The listeners are closed when serving ends.

    Under fd exhaustion (EMFILE/ENFILE) the server keeps running: it logs an
    error on the ``ringtrio.serve_listeners`` logger, sleeps 0.1 s, and
    accepts again.
    """
    async with open_nursery() as nursery:
        if handler_nursery is None:
            handler_nursery = nursery
        for listener in listeners:
            nursery.start_soon(_serve_one_listener, listener, handler_nursery, handler)
        # The listeners already queue connections in the kernel; started()
        # comes last in case starting failed.
        task_status.started(listeners)
    raise AssertionError("unreachable: the serving tasks never return")  # pragma: no cover
