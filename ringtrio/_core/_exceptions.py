"""The exceptions that the runtime itself raises."""

from __future__ import annotations

import errno
from typing import Any, NoReturn


class Cancelled(BaseException):
    """Raised by a blocking call when the cancel scope around it was cancelled.

    Let it propagate: the cancel scope that caused it catches it. It is a
    :class:`BaseException` so that ``except Exception:`` does not swallow it.
    You cannot raise it yourself; call ``cancel()`` on a :class:`CancelScope`.
    """

    # As trio's: why the scope was cancelled ("explicit", "deadline",
    # "nursery", "shutdown", "KeyboardInterrupt" or "unknown"), the reason
    # given to cancel(), and repr() of the task that cancelled it.
    __slots__ = ("source", "reason", "source_task")

    def __init__(
        self,
        *args: object,
        _runtime: object = None,
        source: str = "unknown",
        reason: str | None = None,
        source_task: str | None = None,
    ) -> None:
        if _runtime is not _PRIVATE:
            raise TypeError(
                "ringtrio.Cancelled cannot be raised directly; call "
                "cancel_scope.cancel() and let the runtime raise it"
            )
        super().__init__(*args)
        self.source = source
        self.reason = reason
        self.source_task = source_task

    @classmethod
    def _create(
        cls, source: str = "unknown", reason: str | None = None, source_task: str | None = None
    ) -> Cancelled:
        return cls(_runtime=_PRIVATE, source=source, reason=reason, source_task=source_task)

    def __str__(self) -> str:
        return (
            f"cancelled due to {self.source}"
            + ("" if self.reason is None else f" with reason {self.reason!r}")
            + ("" if self.source_task is None else f" from task {self.source_task}")
        )

    def __reduce__(self) -> Any:
        return (Cancelled._create, (self.source, self.reason, self.source_task))


_PRIVATE = object()


class TooSlowError(Exception):
    """Raised by :func:`fail_after` / :func:`fail_at` when the deadline passes."""


class WouldBlock(Exception):
    """Raised by ``*_nowait`` methods when the operation would have to wait."""


class EndOfChannel(Exception):
    """The other side of a channel was closed: nothing more will arrive."""


class ClosedResourceError(Exception):
    """The resource was closed (possibly by another task) and cannot be used."""


class BrokenResourceError(Exception):
    """The resource is broken (e.g. the peer went away) and cannot be used."""


class BusyResourceError(Exception):
    """Another task is already using this resource in a conflicting way."""


class RunFinishedError(RuntimeError):
    """The :func:`ringtrio.run` this call was aimed at has already finished."""


class RingtrioInternalError(Exception):
    """Something went wrong inside the runtime itself; this is a bug in ringtrio
    (or a system task raised). The original error is attached as ``__cause__``."""


# The remedies are the useful part: the person reading this traceback usually
# did not choose to run inside a sandbox that blocks io_uring.
_SETUP_REMEDIES: dict[int, str] = {
    errno.ENOSYS: (
        "the kernel has no io_uring support (ENOSYS). ringtrio needs Linux 5.19 "
        "or newer built with CONFIG_IO_URING=y."
    ),
    errno.EPERM: (
        "io_uring_setup was refused (EPERM). Either a seccomp filter blocks it - "
        "Docker's default profile does: run the container with "
        "--security-opt seccomp=unconfined or a profile that allows io_uring_setup, "
        "io_uring_enter and io_uring_register - or the sysctl "
        "kernel.io_uring_disabled is set: `sysctl -w kernel.io_uring_disabled=0` "
        "(or 1 and add this user to the kernel.io_uring_group group)."
    ),
    errno.EACCES: (
        "io_uring_setup was refused (EACCES): kernel.io_uring_disabled=1 allows "
        "io_uring only for members of the kernel.io_uring_group group. Set "
        "`sysctl -w kernel.io_uring_disabled=0` or add this user to that group."
    ),
    errno.ENOMEM: (
        "io_uring_setup could not allocate the ring (ENOMEM). The locked-memory "
        "limit may be too low (`ulimit -l`); raise it or free memory."
    ),
    errno.EMFILE: (
        "io_uring_setup needs a file descriptor but the process is out of them "
        "(EMFILE). Close some files or raise `ulimit -n`."
    ),
    errno.ENFILE: (
        "io_uring_setup needs a file descriptor but the system is out of them (ENFILE)."
    ),
}


class RingUnavailableError(OSError):
    """io_uring could not be set up, so ringtrio cannot run here.

    ``errno`` is the error ``io_uring_setup`` failed with; the message names
    the likely cause and what to do about it.
    """

    @classmethod
    def from_errno(cls, err: int) -> RingUnavailableError:
        remedy = _SETUP_REMEDIES.get(
            err,
            f"io_uring_setup failed with {errno.errorcode.get(err, err)}; "
            "ringtrio cannot run without io_uring.",
        )
        return cls(err, "ringtrio cannot use io_uring: " + remedy)


def _raise_from_errno(err: int, what: str) -> NoReturn:
    import os

    raise OSError(err, f"{what}: {os.strerror(err)}")
