"""The exceptions that the runtime itself raises."""

from __future__ import annotations

import errno
from typing import Any, NoReturn

from ._final import final


@final
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
                "ringtrio.Cancelled has no public constructor: it cannot be raised "
                "directly; call cancel_scope.cancel() and let the runtime raise it"
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


# The remedies are the useful part: the person reading this traceback (or
# the fallback warning, which quotes the same text) usually did not choose to
# run inside a sandbox that blocks io_uring.
_SECCOMP_REMEDY = (
    "Docker's default seccomp profile (since Docker 25) and containerd's "
    "RuntimeDefault (Kubernetes) block io_uring: run with a profile that allows "
    "io_uring_setup, io_uring_enter and io_uring_register (Docker: --security-opt "
    "seccomp=PROFILE.json; Kubernetes: securityContext.seccompProfile of type "
    "Localhost; see docs/where-it-runs.md), or --security-opt seccomp=unconfined"
)


def ring_remedy(err: int, call: str = "io_uring_setup") -> str:
    """What refused io_uring (``call`` failed with ``err``) and how to allow it."""
    name = errno.errorcode.get(err, str(err))
    if err == errno.ENOSYS:
        return (
            f"the kernel has no io_uring support ({call}: ENOSYS; gVisor and kernels "
            "built without CONFIG_IO_URING say so). ringtrio's io_uring backend needs "
            "Linux 6.0 or newer."
        )
    if err == errno.EPERM and call == "io_uring_setup":
        return (
            "io_uring_setup was refused (EPERM). Either a seccomp filter blocks it - "
            + _SECCOMP_REMEDY
            + " - or the sysctl kernel.io_uring_disabled is set: `sysctl -w "
            "kernel.io_uring_disabled=0` (or 1 and add this user to the "
            "kernel.io_uring_group group)."
        )
    if err in (errno.EPERM, errno.EACCES) and call != "io_uring_setup":
        return f"{call} was refused ({name}): a seccomp filter blocks it. {_SECCOMP_REMEDY}."
    if err == errno.EACCES:
        return (
            "io_uring_setup was refused (EACCES): kernel.io_uring_disabled=1 allows "
            "io_uring only for members of the kernel.io_uring_group group. Set "
            "`sysctl -w kernel.io_uring_disabled=0` or add this user to that group."
        )
    if err == errno.ENOMEM:
        return (
            "io_uring_setup could not allocate the ring (ENOMEM). The locked-memory "
            "limit may be too low (`ulimit -l`); raise it or free memory."
        )
    if err == errno.EMFILE:
        return (
            "io_uring_setup needs a file descriptor but the process is out of them "
            "(EMFILE). Close some files or raise `ulimit -n`."
        )
    if err == errno.ENFILE:
        return "io_uring_setup needs a file descriptor but the system is out of them (ENFILE)."
    return f"{call} failed with {name}."


class RingUnavailableError(OSError):
    """io_uring could not be used, so ringtrio cannot run on it here.

    Raised by :func:`ringtrio.run` with ``backend="ring"`` (or
    ``RINGTRIO_BACKEND=ring``); the default (``"auto"``) runs on the epoll
    backend instead and says so with a :exc:`RingFallbackWarning`.
    ``errno`` is the error the io_uring call failed with; the message names
    the call, the likely cause and what to do about it.
    """

    @classmethod
    def from_errno(cls, err: int, call: str = "io_uring_setup") -> RingUnavailableError:
        return cls(err, "ringtrio cannot use io_uring: " + ring_remedy(err, call))

    @classmethod
    def cannot_start(cls, what: str, exc: OSError) -> RingUnavailableError:
        """A run could not get what it needs besides io_uring (``what``
        failed with ``exc``: its wake-up pipe, the epoll backend's ring);
        raise it ``from exc``."""
        err = exc.errno or 0
        return cls(
            err,
            f"ringtrio cannot start a run: {what} ({exc.strerror}). "
            + (
                "The process is out of file descriptors: close some files or raise "
                "`ulimit -n`."
                if err in (errno.EMFILE, errno.ENFILE)
                else "See the cause below."
            ),
        )


class RingFallbackWarning(RuntimeWarning):
    """io_uring is refused here, so :func:`ringtrio.run` runs on its epoll
    backend (the same semantics, with I/O emulated in user space).  Emitted
    once per process, at the first run that falls back; the message says
    what refused io_uring and how to allow it.  Choose a backend explicitly
    (``RINGTRIO_BACKEND=epoll|ring`` or ``run(..., backend=...)``) to
    silence it."""


def _raise_from_errno(err: int, what: str) -> NoReturn:
    import os

    raise OSError(err, f"{what}: {os.strerror(err)}")
