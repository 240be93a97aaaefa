"""``ringtrio.Path``: trio's async path object, with the file-system calls on
the ring where the kernel has an opcode for them.

Pure-path operations (joining, ``parent``, ``name``, ``with_suffix``, ...)
are inherited from :class:`pathlib.PurePosixPath` and stay synchronous.
Everything that touches the file system is ``async``:

* on the ring: ``open``, ``read_bytes``, ``read_text``, ``write_bytes``,
  ``write_text`` (OPENAT/READ/WRITE/CLOSE), ``stat``/``lstat``/``exists``/
  ``is_*`` (STATX), ``mkdir`` (MKDIRAT), ``unlink`` (UNLINKAT), ``rmdir``
  (UNLINKAT + AT_REMOVEDIR), ``rename``/``replace`` (RENAMEAT),
  ``symlink_to`` (SYMLINKAT), ``hardlink_to`` (LINKAT), ``touch``
  (OPENAT + CLOSE, then a thread only to set the times of an existing file);
* in a worker thread (no io_uring opcode): ``iterdir``, ``glob``, ``rglob``,
  ``resolve``, ``absolute``, ``readlink``, ``chmod``, ``samefile``,
  ``expanduser``, ``owner``, ``group``, ``is_mount``, ``cwd``, ``home``.
"""

from __future__ import annotations

import errno
import os
import pathlib
import stat as _stat
import sys
from collections.abc import Callable
from operator import index as _index
from typing import Any, TypeVar

from ._core import RingOp, checkpoint
from ._core._ring import (
    IORING_OP_LINKAT,
    IORING_OP_MKDIRAT,
    IORING_OP_RENAMEAT,
    IORING_OP_SYMLINKAT,
    IORING_OP_UNLINKAT,
)
from ._file_io import (
    AT_FDCWD,
    AT_REMOVEDIR,
    _addr,
    _close_fd,
    _cpath,
    _openat,
    _oserror,
    _read_whole,
    _read_whole_text,
    _run_op,
    _statx,
    open_file,
)

__all__ = ["Path"]

T = TypeVar("T")


async def _in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    from . import to_thread

    return await to_thread.run_sync(lambda: fn(*args, **kwargs))


def _mode_arg(mode: Any) -> int:
    """A permission mode as os.mkdir and os.open take it: a C int (a
    negative one reaches the kernel as its unsigned bit pattern, as there)."""
    mode = _index(mode)
    if not -(1 << 31) <= mode < 1 << 31:
        raise OverflowError(f"mode {mode} does not fit in a C int (-2**31 to 2**31 - 1)")
    return mode & 0xFFFFFFFF


def _ignore_stat_error(exc: OSError) -> bool:
    # what pathlib's exists()/is_*() treat as "no" rather than an error
    return exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP)


# CPython 3.11's PurePath parses every constructor argument (splitting,
# interning each part) and builds the string again on first str(): about
# 3 us per Path(str) + os.fspath(), a quarter of what read_bytes of a small
# file costs.  For the common argument -- one str that is already in normal
# form -- the parts are a plain split and the string is the argument itself.
# The attributes set are 3.11's (newer versions parse lazily on their own).
_FAST_NEW = sys.version_info[:2] == (3, 11) and hasattr(pathlib.PurePath, "_from_parts")


class Path(pathlib.PurePosixPath):
    """An async version of :class:`pathlib.Path` (trio's ``trio.Path``)."""

    __slots__ = ()

    if _FAST_NEW:

        def __new__(cls, *args: Any) -> Path:
            if len(args) == 1:
                s = args[0]
                # Already in normal form (no empty or "." parts, no trailing
                # slash; names starting with "." take the general path).
                if type(s) is str and s and "//" not in s and "/." not in s and s[-1] != "/" and s[0] != ".":
                    self = object.__new__(cls)
                    if s[0] == "/":
                        self._drv, self._root = "", "/"  # type: ignore[attr-defined]
                        self._parts = ["/", *s[1:].split("/")] if len(s) > 1 else ["/"]  # type: ignore[attr-defined]
                    else:
                        self._drv, self._root = "", ""  # type: ignore[attr-defined]
                        self._parts = s.split("/")  # type: ignore[attr-defined]
                    self._str = s  # type: ignore[attr-defined]
                    return self
            return cls._from_parts(args)  # type: ignore[attr-defined,no-any-return]

    def __repr__(self) -> str:
        return f"ringtrio.Path({str(self)!r})"

    if _FAST_NEW:

        def __fspath__(self) -> str:
            # (3.11's is two Python calls: __fspath__ -> str() -> __str__.)
            try:
                return self._str  # type: ignore[attr-defined,no-any-return]
            except AttributeError:
                return str(self)

    # -- constructors that touch the file system -----------------------------

    @classmethod
    async def cwd(cls) -> Path:
        """Like :meth:`pathlib.Path.cwd`, but async (``os.getcwd`` in a worker thread)."""
        return cls(await _in_thread(os.getcwd))

    @classmethod
    async def home(cls) -> Path:
        """Like :meth:`pathlib.Path.home`, but async (in a worker thread)."""
        return cls(await _in_thread(lambda: str(pathlib.Path.home())))

    # -- opening, reading, writing ---------------------------------------------

    async def open(
        self,
        mode: str = "r",
        buffering: int = -1,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> Any:
        """Like :meth:`pathlib.Path.open`, but async: :func:`ringtrio.open_file` on this path."""
        return await open_file(self, mode, buffering, encoding, errors, newline)

    async def read_bytes(self) -> bytes:
        """Like :meth:`pathlib.Path.read_bytes`, but async: the whole file.
        One linked ring submission (OPENAT into a direct slot, then two
        READs) and one wake-up for files up to 64 KiB; see docs/files.md,
        "Whole files"."""
        return await _read_whole(os.fspath(self))

    async def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        """Like :meth:`pathlib.Path.read_text`, but async: the bytes as
        :meth:`read_bytes` reads them, decoded as ``open().read()`` does."""
        return await _read_whole_text(os.fspath(self), encoding, errors)

    async def write_bytes(self, data: Any) -> int:
        """Like :meth:`pathlib.Path.write_bytes`, but async (OPENAT, WRITE, CLOSE on the ring)."""
        view = memoryview(data)
        async with await open_file(self, "wb") as f:
            return await f.write(view)

    async def write_text(
        self, data: str, encoding: str | None = None, errors: str | None = None, newline: str | None = None
    ) -> int:
        """Like :meth:`pathlib.Path.write_text`, but async (OPENAT, WRITE, CLOSE on the ring)."""
        if not isinstance(data, str):
            raise TypeError(f"data must be str, not {type(data).__name__}")
        async with await open_file(self, "w", encoding=encoding, errors=errors, newline=newline) as f:
            return await f.write(data)  # type: ignore[no-any-return]

    async def touch(self, mode: int = 0o666, exist_ok: bool = True) -> None:
        """Like :meth:`pathlib.Path.touch`, but async (OPENAT + CLOSE on the
        ring; the times of an existing file are set in a worker thread:
        utimensat has no opcode)."""
        flags = os.O_CREAT | os.O_WRONLY
        if not exist_ok:
            flags |= os.O_EXCL
        fd = await _openat(str(self), flags, _mode_arg(mode))
        await _close_fd(fd)
        if exist_ok:
            # bump the times, like pathlib (utimensat has no opcode)
            await _in_thread(os.utime, str(self))

    # -- stat family ----------------------------------------------------------

    async def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        """Like :meth:`pathlib.Path.stat`, but async (STATX on the ring)."""
        return await _statx(str(self), follow_symlinks=follow_symlinks)

    async def lstat(self) -> os.stat_result:
        """Like :meth:`pathlib.Path.lstat`, but async (STATX on the ring)."""
        return await _statx(str(self), follow_symlinks=False)

    async def _mode_or_none(self, follow_symlinks: bool = True) -> int | None:
        try:
            return (await _statx(str(self), follow_symlinks=follow_symlinks)).st_mode
        except OSError as exc:
            if not _ignore_stat_error(exc):
                raise
            return None
        except ValueError:
            return None

    async def exists(self, *, follow_symlinks: bool = True) -> bool:
        """Like :meth:`pathlib.Path.exists`, but async (STATX on the ring)."""
        return await self._mode_or_none(follow_symlinks) is not None

    async def _is(self, test: Callable[[int], bool], follow_symlinks: bool = True) -> bool:
        mode = await self._mode_or_none(follow_symlinks)
        return mode is not None and test(mode)

    async def is_file(self) -> bool:
        """Like :meth:`pathlib.Path.is_file`, but async (STATX on the ring)."""
        return await self._is(_stat.S_ISREG)

    async def is_dir(self) -> bool:
        """Like :meth:`pathlib.Path.is_dir`, but async (STATX on the ring)."""
        return await self._is(_stat.S_ISDIR)

    async def is_symlink(self) -> bool:
        """Like :meth:`pathlib.Path.is_symlink`, but async (STATX on the ring)."""
        return await self._is(_stat.S_ISLNK, follow_symlinks=False)

    async def is_socket(self) -> bool:
        """Like :meth:`pathlib.Path.is_socket`, but async (STATX on the ring)."""
        return await self._is(_stat.S_ISSOCK)

    async def is_fifo(self) -> bool:
        """Like :meth:`pathlib.Path.is_fifo`, but async (STATX on the ring)."""
        return await self._is(_stat.S_ISFIFO)

    async def is_block_device(self) -> bool:
        """Like :meth:`pathlib.Path.is_block_device`, but async (STATX on the ring)."""
        return await self._is(_stat.S_ISBLK)

    async def is_char_device(self) -> bool:
        """Like :meth:`pathlib.Path.is_char_device`, but async (STATX on the ring)."""
        return await self._is(_stat.S_ISCHR)

    async def samefile(self, other_path: Any) -> bool:
        """Like :meth:`pathlib.Path.samefile`, but async (STATX on the ring)."""
        st = await self.stat()
        other = other_path if isinstance(other_path, Path) else Path(other_path)
        ot = await other.stat()
        return st.st_ino == ot.st_ino and st.st_dev == ot.st_dev

    # -- directory and link operations on the ring ---------------------------------

    async def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        """Like :meth:`pathlib.Path.mkdir`, but async (MKDIRAT on the ring)."""
        mode = _mode_arg(mode)
        try:
            cpath = _cpath(str(self))
            res = await _run_op(RingOp(IORING_OP_MKDIRAT, AT_FDCWD, _addr(cpath), mode, keepalive=cpath))
            if res < 0:
                raise _oserror(res, str(self))
        except FileNotFoundError:
            if not parents or self.parent == self:
                raise
            await self.parent.mkdir(parents=True, exist_ok=True)
            await self.mkdir(mode, parents=False, exist_ok=exist_ok)
        except OSError:
            if not exist_ok or not await self.is_dir():
                raise

    async def _unlinkat(self, flags: int) -> None:
        cpath = _cpath(str(self))
        res = await _run_op(RingOp(IORING_OP_UNLINKAT, AT_FDCWD, _addr(cpath), 0, 0, flags, keepalive=cpath))
        if res < 0:
            raise _oserror(res, str(self))

    async def unlink(self, missing_ok: bool = False) -> None:
        """Like :meth:`pathlib.Path.unlink`, but async (UNLINKAT on the ring)."""
        try:
            await self._unlinkat(0)
        except FileNotFoundError:
            if not missing_ok:
                raise

    async def rmdir(self) -> None:
        """Like :meth:`pathlib.Path.rmdir`, but async (UNLINKAT with AT_REMOVEDIR on the ring)."""
        await self._unlinkat(AT_REMOVEDIR)

    async def _two_path_op(self, opcode: int, src: str, dst: str, flags: int = 0) -> None:
        csrc, cdst = _cpath(src), _cpath(dst)
        res = await _run_op(
            RingOp(opcode, AT_FDCWD, _addr(csrc), AT_FDCWD & 0xFFFFFFFF, _addr(cdst), flags, keepalive=(csrc, cdst))
        )
        if res < 0:
            raise _oserror(res, src, dst)

    async def rename(self, target: Any) -> Path:
        """Like :meth:`pathlib.Path.rename`, but async (RENAMEAT on the ring)."""
        await self._two_path_op(IORING_OP_RENAMEAT, str(self), os.fspath(target))
        return type(self)(target)

    async def replace(self, target: Any) -> Path:
        """Like :meth:`pathlib.Path.replace`, but async (RENAMEAT on the ring)."""
        await self._two_path_op(IORING_OP_RENAMEAT, str(self), os.fspath(target))
        return type(self)(target)

    async def symlink_to(self, target: Any, target_is_directory: bool = False) -> None:
        """Like :meth:`pathlib.Path.symlink_to`, but async (SYMLINKAT on the ring)."""
        ctarget, clink = _cpath(os.fspath(target)), _cpath(str(self))
        res = await _run_op(
            RingOp(IORING_OP_SYMLINKAT, AT_FDCWD, _addr(ctarget), 0, _addr(clink), keepalive=(ctarget, clink))
        )
        if res < 0:
            raise _oserror(res, os.fspath(target), str(self))

    async def hardlink_to(self, target: Any) -> None:
        """Like :meth:`pathlib.Path.hardlink_to`, but async (LINKAT on the ring)."""
        await self._two_path_op(IORING_OP_LINKAT, os.fspath(target), str(self))

    # -- worker-thread operations (no opcode) -------------------------------------------

    async def iterdir(self) -> list[Path]:
        """Like :meth:`pathlib.Path.iterdir`, but async: the directory's
        entries as a list (read in a worker thread: io_uring has no getdents
        opcode).  ``for p in await path.iterdir(): ...``"""
        cls = type(self)
        return await _in_thread(lambda: [cls(p) for p in pathlib.Path(self).iterdir()])

    async def glob(self, pattern: str) -> list[Path]:
        """Like :meth:`pathlib.Path.glob`, but async (in a worker thread); returns a list."""
        cls = type(self)
        return await _in_thread(lambda: [cls(p) for p in pathlib.Path(self).glob(pattern)])

    async def rglob(self, pattern: str) -> list[Path]:
        """Like :meth:`pathlib.Path.rglob`, but async (in a worker thread); returns a list."""
        cls = type(self)
        return await _in_thread(lambda: [cls(p) for p in pathlib.Path(self).rglob(pattern)])

    async def resolve(self, strict: bool = False) -> Path:
        """Like :meth:`pathlib.Path.resolve`, but async (in a worker thread: no opcode)."""
        return type(self)(await _in_thread(lambda: pathlib.Path(self).resolve(strict=strict)))

    async def absolute(self) -> Path:
        """Like :meth:`pathlib.Path.absolute`, but async (in a worker thread unless already absolute)."""
        if self.is_absolute():
            await checkpoint()
            return self
        return type(self)(await _in_thread(lambda: pathlib.Path(self).absolute()))

    async def expanduser(self) -> Path:
        """Like :meth:`pathlib.Path.expanduser`, but async (in a worker thread)."""
        return type(self)(await _in_thread(lambda: pathlib.Path(self).expanduser()))

    async def readlink(self) -> Path:
        """Like :meth:`pathlib.Path.readlink`, but async (in a worker thread: no opcode)."""
        return type(self)(await _in_thread(os.readlink, str(self)))

    async def chmod(self, mode: int, *, follow_symlinks: bool = True) -> None:
        """Like :meth:`pathlib.Path.chmod`, but async (in a worker thread: no opcode)."""
        await _in_thread(os.chmod, str(self), mode, follow_symlinks=follow_symlinks)

    async def lchmod(self, mode: int) -> None:
        """Like :meth:`pathlib.Path.lchmod`, but async (in a worker thread: no opcode)."""
        await self.chmod(mode, follow_symlinks=False)

    async def owner(self) -> str:
        """Like :meth:`pathlib.Path.owner`, but async (in a worker thread)."""
        return await _in_thread(lambda: pathlib.Path(self).owner())

    async def group(self) -> str:
        """Like :meth:`pathlib.Path.group`, but async (in a worker thread)."""
        return await _in_thread(lambda: pathlib.Path(self).group())

    async def is_mount(self) -> bool:
        """Like :meth:`pathlib.Path.is_mount`, but async (in a worker thread)."""
        return await _in_thread(lambda: pathlib.Path(self).is_mount())
