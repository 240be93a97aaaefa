"""Async file I/O on the ring: ``open_file``, ``wrap_file`` and the file objects.

Binary reads and writes are ``IORING_OP_READ`` / ``IORING_OP_WRITE`` at an
offset the file object tracks in Python (``seek``/``tell`` never touch the
ring); files are opened with ``IORING_OP_OPENAT`` (+ ``IORING_OP_STATX`` on the
new fd, for the "is it a directory" check and the size) and closed with
``IORING_OP_CLOSE``.  Text mode is a decoding/encoding layer in Python over
the same binary object, structured like the stdlib's ``TextIOWrapper`` so that
positions, ``tell()`` cookies and newline translation agree with it.

Every kernel operation goes through :func:`ringtrio.lowlevel.submit_and_wait`
(see docs/design.md, "The cancel protocol"): a cancelled op either happened
(its result is used: bytes read are returned, bytes written advance the
position, an opened fd is closed) or it did not (``Cancelled``, nothing
changed).  See docs/files.md for the user-facing description.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import codecs
import errno
import fcntl
import io
import os
import stat as _stat
from operator import index as _index
import struct
import sys
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable
from typing import Any, TypeVar

from ._final import final

from ._core import (
    BusyResourceError,
    CancelScope,
    ClosedResourceError,
    LinkedChain,
    ParkingLot,
    RingOp,
    cancel_ring_op,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    direct_files,
    submit_and_wait,
    submit_chain_and_wait,
)
from ._core._internal_api import _NOT_HAPPENED, _accel, _cancel_pending, _local, _outside_run
from ._core._ring import (
    IORING_FSYNC_DATASYNC,
    IORING_OP_CLOSE,
    IORING_OP_FSYNC,
    IORING_OP_FTRUNCATE,
    IORING_OP_OPENAT,
    IORING_OP_READ,
    IORING_OP_READV,
    IORING_OP_STATX,
    IORING_OP_WRITE,
    IOSQE_FIXED_FILE,
)

try:
    from . import _native  # type: ignore[attr-defined]

    _ffi = _native.ffi
    # For buffers the kernel fills before anyone reads them: no zeroing.
    _alloc_uninitialized = _ffi.new_allocator(should_clear_after_alloc=False)
except ImportError:  # pragma: no cover - reported properly by ringtrio.run()
    _ffi = None
    _alloc_uninitialized = None

__all__ = ["AsyncFile", "AsyncBinaryFile", "AsyncTextFile", "open_file", "wrap_file"]

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_REMOVEDIR = 0x200
AT_EMPTY_PATH = 0x1000
STATX_BASIC_STATS = 0x7FF
# "Use (and advance) the file position": the offset for non-seekable files and
# for O_APPEND writes.
_OFF_CUR = (1 << 64) - 1
_DEFAULT_BUFFER_SIZE = io.DEFAULT_BUFFER_SIZE
# Text layer chunk size: the same as CPython's TextIOWrapper (_CHUNK_SIZE).
_TEXT_CHUNK = 8192
# Reads smaller than this fill a read-ahead buffer of this size instead of
# reading exactly what was asked for: one ring round trip costs far more than
# copying a few KiB.
_MIN_READAHEAD = 16384
# Sequential large reads read ahead this much at a time (see _stream_read):
# the window starts at the first size and doubles on every refill up to the
# second.
_STREAM_READAHEAD = 256 * 1024
_STREAM_READAHEAD_MAX = 1024 * 1024
_EMPTY = b""
# The most one read(2) or write(2) transfers on Linux (MAX_RW_COUNT: INT_MAX
# rounded down to a page); io_uring's length field is 32 bits.  Longer
# transfers are done in pieces of this size.
_MAX_RW = 0x7FFFF000
# File offsets (off_t) and the whence values lseek(2) knows.
_OFF_MIN, _OFF_MAX = -(1 << 63), (1 << 63) - 1
_SSIZE_MIN, _SSIZE_MAX = -sys.maxsize - 1, sys.maxsize
_WHENCES = frozenset((os.SEEK_SET, os.SEEK_CUR, os.SEEK_END, os.SEEK_DATA, os.SEEK_HOLE))

T = TypeVar("T")


# ---------------------------------------------------------------------------
# Small ring helpers shared with _path.py
# ---------------------------------------------------------------------------


def _addr(cdata: Any) -> int:
    return int(_ffi.cast("uintptr_t", cdata))


_FS_ENCODING = (sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())
_FS_UTF8 = codecs.lookup(_FS_ENCODING[0]).name == "utf-8"


def _path_bytes(path: str | bytes) -> bytes:
    """``os.fsencode(path)``, refusing NUL bytes as open() does.  (On the
    hot path of every file operation: a str is encoded without the
    Python-level call -- strict UTF-8 first, which gives the same bytes
    whenever it succeeds -- and ``0 in b`` is a memchr.)"""
    if type(path) is str:
        if _FS_UTF8:
            try:
                b = path.encode()
            except UnicodeEncodeError:  # lone surrogates (undecodable names)
                b = path.encode(*_FS_ENCODING)
        else:
            b = path.encode(*_FS_ENCODING)
    else:
        b = os.fsencode(path)
    if 0 in b:
        raise ValueError("embedded null byte")
    return b


def _cpath(path: str | bytes) -> Any:
    """A NUL-terminated C copy of ``path`` (keep it alive while the op runs)."""
    return _ffi.new("char[]", _path_bytes(path))


def _oserror(res: int, *filenames: Any) -> OSError:
    """``-errno`` -> the stdlib exception (FileNotFoundError, ...), with names."""
    err = -res
    if filenames:
        return OSError(err, os.strerror(err), *filenames[:1], None, *filenames[1:2])
    return OSError(err, os.strerror(err))


async def _run_op(op: RingOp) -> int:
    res, _flags = await submit_and_wait(op)
    return res


async def _openat(path: str | bytes, flags: int, mode: int = 0o666, dirfd: int = AT_FDCWD) -> int:
    """openat(2) on the ring; returns the fd.  If the task is cancelled after
    the kernel opened the file, the fd is still returned: the caller owns it
    (and the pending cancellation lands at its next checkpoint)."""
    cpath = _cpath(path)
    res = await _run_op(
        RingOp(IORING_OP_OPENAT, dirfd, _addr(cpath), mode, 0, flags | os.O_CLOEXEC, keepalive=cpath)
    )
    if res < 0:
        raise _oserror(res, path)
    return res


async def _close_fd(fd: int) -> None:
    """close(2) on the ring.  Shielded: a close must happen even when the
    caller is being cancelled."""
    with CancelScope(shield=True):
        res = await _run_op(RingOp(IORING_OP_CLOSE, fd))
    if res < 0 and res != -errno.EINTR:
        raise _oserror(res)


# struct statx (linux/stat.h), the part we use: 144 bytes of the 256.
_STATX = struct.Struct("=IIQIIIHxxQQQQqIxxxxqIxxxxqIxxxxqIxxxxIIII")
_STATX_BUFSIZE = 256


def _statx_to_stat_result(buf: Any) -> os.stat_result:
    (
        _mask,
        blksize,
        _attrs,
        nlink,
        uid,
        gid,
        mode,
        ino,
        size,
        blocks,
        _attrs_mask,
        a_sec,
        a_nsec,
        _b_sec,
        _b_nsec,
        c_sec,
        c_nsec,
        m_sec,
        m_nsec,
        rdev_major,
        rdev_minor,
        dev_major,
        dev_minor,
    ) = _STATX.unpack_from(buf)
    a_ns = a_sec * 1_000_000_000 + a_nsec
    m_ns = m_sec * 1_000_000_000 + m_nsec
    c_ns = c_sec * 1_000_000_000 + c_nsec
    return os.stat_result(
        (mode, ino, os.makedev(dev_major, dev_minor), nlink, uid, gid, size, a_sec, m_sec, c_sec),
        {
            "st_atime": a_ns / 1e9,
            "st_mtime": m_ns / 1e9,
            "st_ctime": c_ns / 1e9,
            "st_atime_ns": a_ns,
            "st_mtime_ns": m_ns,
            "st_ctime_ns": c_ns,
            "st_blksize": blksize,
            "st_blocks": blocks,
            "st_rdev": os.makedev(rdev_major, rdev_minor),
        },
    )


async def _statx(
    path: str | bytes | None, *, dirfd: int = AT_FDCWD, follow_symlinks: bool = True
) -> os.stat_result:
    """statx(2) on the ring.  ``path=None`` stats ``dirfd`` itself."""
    buf = _ffi.new("char[]", _STATX_BUFSIZE)
    if path is None:
        cpath = _ffi.new("char[]", b"")
        flags = AT_EMPTY_PATH
    else:
        cpath = _cpath(path)
        flags = 0 if follow_symlinks else AT_SYMLINK_NOFOLLOW
    res = await _run_op(
        RingOp(
            IORING_OP_STATX,
            dirfd,
            _addr(cpath),
            STATX_BASIC_STATS,
            _addr(buf),
            flags,
            keepalive=(cpath, buf),
        )
    )
    if res < 0:
        raise _oserror(res, path) if path is not None else _oserror(res)
    return _statx_to_stat_result(_ffi.buffer(buf))


# ---------------------------------------------------------------------------
# Whole files (Path.read_bytes / read_text): one linked chain
# ---------------------------------------------------------------------------

# Tests set this to False to force the plain path (which is also what runs
# when the kernel cannot register a sparse file table, or all slots are in
# use).
_USE_CHAINS = True
# The chain's two reads: the first takes up to 64 KiB, the second proves end
# of file (a read that returns 0 means EOF for every kind of file; a short
# read only means it for files served from the page cache, and /proc files
# are S_ISREG too) or, if the file is larger, returns its next bytes.
_CHAIN_READ1 = 65536
_CHAIN_READ2 = 4096
# Chains (with their buffers) kept for reuse per run.
_CHAIN_POOL_MAX = 64
_O_RDONLY = os.O_RDONLY


class _OpenReadChain(LinkedChain):
    """OPENAT into a direct slot -> READ -> READ, in one submission.

    The reads use the file position (offset -1), so the second continues
    where the first stopped on any kind of file.  The slot is closed by the
    caller once the CQEs are in (and the reads have told whether there is
    more to read through it).
    """

    __slots__ = ("path", "slot", "buf", "addr")

    def __init__(self) -> None:
        super().__init__((IORING_OP_OPENAT, IORING_OP_READ, IORING_OP_READ))
        self.buf = _alloc_uninitialized("char[]", _CHAIN_READ1 + _CHAIN_READ2)
        self.addr = _addr(self.buf)
        # The path as bytes (no NUL): the kernel reads it while the chain
        # is submitted; a bytes object's buffer is NUL-terminated and never
        # moves.
        self.path: bytes | None = None
        self.slot = 0

    def _prep(self, runner: Any, tokens: list[int]) -> int:
        addr = self.addr
        prep = _accel._sp_prep_open_chain
        if prep is not None:
            return prep(
                runner._ring_addr, AT_FDCWD, self.path, _O_RDONLY, 0, self.slot, IORING_OP_READ,
                addr, _CHAIN_READ1, addr + _CHAIN_READ1, _CHAIN_READ2, tokens,
            )
        return runner._lib.rt_prep_open_chain(  # type: ignore[no-any-return]
            runner._ring_ptr, AT_FDCWD, _ffi.from_buffer(self.path), os.O_RDONLY, 0, self.slot,
            IORING_OP_READ, addr, _CHAIN_READ1, addr + _CHAIN_READ1, _CHAIN_READ2, *tokens,
        )

    def _happened(self) -> bool:
        # A cancelled task gets the bytes only if both reads happened (or
        # the open failed for a real reason): a cancelled first read lets the
        # hard-linked second one read the start of the file.
        opened, n1, n2 = self.results
        if opened in _NOT_HAPPENED:
            return False
        return opened < 0 or (n1 not in _NOT_HAPPENED and n2 not in _NOT_HAPPENED)


async def _read_whole(path: str | bytes) -> bytes:
    """The whole file at ``path``: one OPENAT -> READ -> READ chain, one
    wake-up, for files up to 64 KiB; larger (or still growing, or
    non-regular) files continue with plain reads through the same slot."""
    files = direct_files() if _USE_CHAINS else None
    slot = files.take() if files is not None else None
    if slot is None:
        return await _read_whole_plain(path)
    assert files is not None
    pool = files.pool
    chain: _OpenReadChain = pool.pop() if pool else _OpenReadChain()
    chain.pending = -1  # not submitted
    try:
        chain.path = _path_bytes(path)
        chain.slot = slot
        opened, n1, n2 = await submit_chain_and_wait(chain)
        if opened < 0 or n1 < 0 or n2 < 0:
            raise _oserror(opened if opened < 0 else (n1 if n1 < 0 else n2), path)
        buf = chain.buf
        if n1 == _CHAIN_READ1 or not n2:
            data = _ffi.unpack(buf, n1 + n2)  # one run of bytes in buf
        else:
            data = _ffi.unpack(buf, n1) + _ffi.unpack(buf + _CHAIN_READ1, n2)
        if not n2:
            return data  # type: ignore[no-any-return]
        # More to come: read on through the slot until a read returns 0.
        return await _read_to_eof(slot, IOSQE_FIXED_FILE, 4 * _CHAIN_READ1, [data], path, False)
    finally:
        chain.path = None
        if chain.pending == 0:
            # All CQEs are in: the kernel is done with the chain's memory.
            if chain.results[0] >= 0:
                files.close(slot)
            else:
                files.give_back(slot)
            if len(pool) < _CHAIN_POOL_MAX:
                pool.append(chain)
        elif chain.pending < 0:
            files.give_back(slot)
            pool.append(chain)
        # else: still in flight (the coroutine was closed by a run being torn
        # down): the ring, and its file table, go with the run.


def _short_read_is_eof(st: os.stat_result) -> bool:
    """Whether a read shorter than asked means end of file.  True for files
    served from the page cache (the kernel only stops short at EOF); /proc
    and other synthetic files are S_ISREG too but hand out a page or so per
    read -- they report size 0, which is how they are told apart.  (An empty
    regular file loses nothing: its first read returns 0.)"""
    return _stat.S_ISREG(st.st_mode) and st.st_size > 0


def _pread_nowait(fd: int, size: int, offset: int) -> bytes | tuple[bytes] | int:
    """A read served from the page cache, or nothing: one
    ``preadv2(RWF_NOWAIT)`` of up to ``size`` (>= 1) bytes at ``offset``,
    which copies what the cache holds and never waits for the device.
    Returns

    * bytes: the read, done -- all ``size`` bytes, or fewer where the file
      ends (fstat says so; b"" at or past the end);
    * ``(bytes,)``: the cache held only the first part of the range (the
      caller reads the rest with a ring READ);
    * an int: nothing was read, the errno -- EAGAIN (the first page is not
      cached: a read would wait for the device) or EOPNOTSUPP (the file
      system has no non-blocking reads: tmpfs, FUSE).

    The file position is never used or moved.  The definition of the
    accelerator's ``pread_nowait``, which reads straight into the result
    (this copies twice)."""
    buf = bytearray(size)
    try:
        n = os.preadv(fd, [buf], offset, os.RWF_NOWAIT)
    except OSError as exc:
        return exc.errno if exc.errno is not None else errno.EIO
    if n == size:
        return bytes(buf)
    del buf[n:]
    data = bytes(buf)
    try:
        at_end = n == 0 or offset + n >= os.fstat(fd).st_size
    except OSError:
        at_end = False  # (the ring READ for the rest meets the error too)
    return data if at_end else (data,)


def _fstat_not_dir(fd: int, name: Any) -> os.stat_result:
    """fstat(2) of a newly opened fd, refusing directories as open() does.
    (fstat on an open fd never blocks, and costs a fraction of a ring round
    trip; STATX on the ring is what Path.stat / f.stat use.)"""
    st = os.fstat(fd)
    if _stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
    return st


async def _read_whole_plain(path: str | bytes) -> bytes:
    """OPENAT, READs from a size+1 one (size from fstat), close(2)."""
    fd = await _openat(path, os.O_RDONLY)
    try:
        st = _fstat_not_dir(fd, path)
        short_is_eof = _short_read_is_eof(st)
        size = st.st_size + 1 if short_is_eof else 65536
        return await _read_to_eof(fd, 0, size, [], path, short_is_eof)
    finally:
        # (also when cancelled after the kernel opened the file: no leak)
        os.close(fd)


async def _read_to_eof(
    fd: int, sqe_flags: int, size: int, parts: list[bytes], path: str | bytes, short_is_eof: bool
) -> bytes:
    """Read from the file position of ``fd`` (a direct slot with
    IOSQE_FIXED_FILE) to end of file; returns ``parts`` + what was read,
    joined.  The buffer doubles while reads fill it."""
    while True:
        rbuf = _alloc_uninitialized("char[]", size)
        n = await _run_op(
            RingOp(IORING_OP_READ, fd, _addr(rbuf), size, _OFF_CUR, sqe_flags=sqe_flags, keepalive=rbuf)
        )
        if n < 0:
            raise _oserror(n, path)
        if n:
            parts.append(_ffi.buffer(rbuf, n)[:])
        if n == 0 or (short_is_eof and n < size):
            return parts[0] if len(parts) == 1 else _EMPTY.join(parts)
        if n == size:
            size = min(size * 2, 1 << 26)


async def _read_whole_text(path: str | bytes, encoding: str | None, errors: str | None) -> str:
    """``open(path, encoding=..., errors=...).read()``: the bytes in one go,
    decoded as TextIOWrapper.read() decodes them (universal newlines)."""
    enc, errs = _resolve_text_params(encoding, errors, None)
    data = await _read_whole(path)
    decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder(enc)(errs), True)
    return decoder.decode(data, final=True)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------
# Mode parsing (the stdlib's rules and error messages)
# ---------------------------------------------------------------------------


class _Mode:
    __slots__ = ("flags", "readable", "writable", "append", "creating", "binary", "raw_mode", "text")

    def __init__(self, mode: str) -> None:
        if not isinstance(mode, str):
            raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
        seen = set()
        for ch in mode:
            if ch not in "rwxab+t" or ch in seen:
                raise ValueError(f"invalid mode: {mode!r}")
            seen.add(ch)
        if "t" in seen and "b" in seen:
            raise ValueError("can't have text and binary mode at once")
        kinds = sum(ch in seen for ch in "rwxa")
        plus = "+" in seen
        if kinds > 1:
            raise ValueError("must have exactly one of create/read/write/append mode")
        if kinds == 0:
            raise ValueError(
                "Must have exactly one of create/read/write/append mode and at most one plus"
            )
        self.binary = "b" in seen
        self.text = not self.binary
        self.append = "a" in seen
        self.creating = "x" in seen
        if "r" in seen:
            kind, flags = "r", 0
        elif "w" in seen:
            kind, flags = "w", os.O_CREAT | os.O_TRUNC
        elif "x" in seen:
            kind, flags = "x", os.O_CREAT | os.O_EXCL
        else:
            kind, flags = "a", os.O_CREAT | os.O_APPEND
        self.readable = kind == "r" or plus
        self.writable = kind != "r" or plus
        if plus:
            flags |= os.O_RDWR
        elif self.readable:
            flags |= os.O_RDONLY
        else:
            flags |= os.O_WRONLY
        self.flags = flags | os.O_CLOEXEC
        # FileIO's normalised mode string (what binary files report as .mode)
        if kind == "x":
            self.raw_mode = "xb+" if plus else "xb"
        elif kind == "a":
            self.raw_mode = "ab+" if plus else "ab"
        elif self.readable:
            self.raw_mode = "rb+" if self.writable else "rb"
        else:
            self.raw_mode = "wb"


# ---------------------------------------------------------------------------
# File objects
# ---------------------------------------------------------------------------


def _closed_error() -> ValueError:
    return ValueError("I/O operation on closed file.")


def _size_arg(size: Any) -> int:
    if type(size) is not int:
        if size is None:
            return -1
        try:
            size = _index(size)
        except TypeError:
            raise TypeError(f"argument should be integer or None, not '{type(size).__name__}'") from None
    if _SSIZE_MIN <= size <= _SSIZE_MAX:
        return size  # type: ignore[no-any-return]
    # (the stdlib's type and words for a size that is not a Py_ssize_t)
    raise OverflowError(f"cannot fit 'int' into an index-sized integer (size {size})")


def _offset_arg(offset: Any, method: str) -> int:
    """A file offset: 0 to 2**63 - 1 (off_t).  Out of range is the error
    os.pread/os.pwrite give (OverflowError past the top), with the value."""
    offset = _index(offset)
    if offset < 0:
        raise ValueError(f"{method}: negative offset {offset}")
    if offset > _OFF_MAX:
        raise OverflowError(f"{method}: offset {offset} is past the largest file offset (2**63 - 1)")
    return offset


class _Turn:
    """One task at a time in the calls that use a file's position and wait
    for the kernel (what the lock inside io.BufferedReader is for): the
    holder's reads and writes go to the kernel at the position it sees, and
    what it takes it can give back (see "reading" in AsyncBinaryFile).
    Others queue, FIFO, and get the turn handed over.  Taking a free turn
    costs no schedule point; waiting for one is cancellable (nothing has
    been taken then)."""

    __slots__ = ("busy", "_queue")

    def __init__(self) -> None:
        self.busy = False
        self._queue: ParkingLot | None = None

    @types.coroutine
    def take(self) -> Generator[Any, Any, None]:
        """Wait for the turn and hold it.  (Generator-based: no schedule
        point and no coroutine object when it is free -- the common case,
        on the path of every kernel read and write.)"""
        if not self.busy:
            self.busy = True
            return
        if self._queue is None:
            self._queue = ParkingLot()
        yield from self._queue.park()  # (give_back hands it over)

    def give_back(self) -> None:
        queue = self._queue
        if queue:
            queue.unpark()  # (the first in the queue holds it now)
        else:
            self.busy = False

    async def idle(self) -> None:
        """Return when nobody holds the turn (without keeping it)."""
        if self.busy:
            await self.take()
            self.give_back()


class AsyncFile(ABC):
    """Common base of ringtrio's async file objects (for ``isinstance``).

    ``async with`` closes the file; ``async for line in f`` iterates lines.
    Abstract (``aclose``), so not final as the file classes are: trio makes
    every public concrete class final, abstract ones are for subclassing.
    """

    __slots__ = ()

    @abstractmethod
    async def aclose(self) -> None:
        """Close the file."""

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self  # type: ignore[return-value]

    async def __anext__(self) -> Any:
        line = await self.readline()  # type: ignore[attr-defined]
        if not line:
            raise StopAsyncIteration
        return line


@final
class AsyncBinaryFile(AsyncFile):
    """A binary file whose I/O runs on the ring.

    Reads are buffered like ``io.BufferedReader`` (a read-ahead buffer serves
    small reads and ``readline``); writes go to the kernel at once (there is
    no write buffer: ``write`` returns when every byte is written, and
    ``flush`` has nothing to do).  The position lives in Python.
    """

    __slots__ = (
        "_fd",
        "_name",
        "_mode",
        "_closefd",
        "_readable",
        "_writable",
        "_append",
        "_seekable",
        "_regular",
        "_nowait",
        "_pos",
        "_rbuf",
        "_chunks",
        "_ci",
        "_window",
        "_stream_end",
        "_stream_buf",
        "_stream_busy",
        "_ri",
        "_bufsize",
        "_readahead",
        "_inflight",
        "_writes",
        "_closed",
        "_closing",
        "_detached",
        "_rturn",
        "_wturn",
        "_wrapped",
    )

    def __init__(
        self,
        fd: int,
        name: Any,
        mode: str,
        *,
        readable: bool,
        writable: bool,
        append: bool = False,
        closefd: bool = True,
        pos: int | None = None,
        bufsize: int = _DEFAULT_BUFFER_SIZE,
        buffered: bool = True,
        regular: bool | None = None,
        wrapped: Any = None,
    ) -> None:
        self._fd = fd
        self._name = name
        self._mode = mode
        self._closefd = closefd
        self._readable = readable
        self._writable = writable
        self._append = append
        if pos is None:
            try:
                pos = os.lseek(fd, 0, os.SEEK_CUR)
                seekable = True
            except OSError:
                pos, seekable = 0, False
        else:
            seekable = True
        self._seekable = seekable
        if regular is None:
            try:
                regular = _short_read_is_eof(os.fstat(fd))
            except OSError:
                regular = False
        # On a regular file a short read means end of file (the kernel only
        # returns fewer bytes than asked at EOF), which saves a round trip.
        # (`regular` is _short_read_is_eof: /proc files do not count.)
        self._regular = regular and seekable
        # Reads try the page cache first (see _cache_missed) on regular files,
        # until the file system says it has no non-blocking reads.  Not
        # with O_DIRECT: RWF_NOWAIT there still waits for the device.
        self._nowait = self._regular and readable and not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT
        self._pos = pos
        # Read-ahead: the file's bytes from _pos - _ri.  Bytes, or a
        # memoryview of _stream_buf after a streaming read (see _stream_read).
        self._rbuf: bytes | memoryview = _EMPTY
        # Or, after a vectored streaming read (see _stream_read), read-ahead
        # as whole chunks: _chunks[_ci:] follow _pos, and _rbuf is empty.
        self._chunks: list[bytes] | None = None
        self._ci = 0
        self._window = 0  # the streaming read's next window size
        self._stream_end = -1
        self._stream_buf: Any = None
        self._stream_busy = False
        self._ri = 0
        bufsize = min(bufsize, _MAX_RW)
        self._bufsize = bufsize
        self._readahead = max(bufsize, _MIN_READAHEAD) if buffered else 0
        self._inflight: set[RingOp] = set()
        # Kernel writes done (the text layer tells from it whether a write
        # that raised changed the file).
        self._writes = 0
        self._closed = False
        self._closing = False
        self._detached = False  # (then _closed is True too)
        # Reads and writes that wait for the kernel take turns (one turn
        # for both on a seekable file: they share the position; a pipe's or
        # a terminal's two directions are independent).
        self._rturn = _Turn()
        self._wturn = self._rturn if seekable else _Turn()
        self._wrapped = wrapped

    def __repr__(self) -> str:
        return f"<ringtrio.AsyncBinaryFile name={self._name!r} mode={self._mode!r}>"

    # -- attributes ---------------------------------------------------------

    @property
    def name(self) -> Any:
        if self._detached:
            raise self._closed_error()
        return self._name

    @property
    def mode(self) -> str:
        if self._detached:
            raise self._closed_error()
        return self._mode

    @property
    def closed(self) -> bool:
        if self._detached:
            raise self._closed_error()
        return self._closed

    def _closed_error(self) -> ValueError:
        # (the stdlib's words for each)
        return ValueError("raw stream has been detached" if self._detached else "I/O operation on closed file.")

    @property
    def closefd(self) -> bool:
        return self._closefd

    @property
    def wrapped(self) -> Any:
        """The stdlib file given to :func:`wrap_file`, or None."""
        return self._wrapped

    def fileno(self) -> int:
        if self._closed:
            raise self._closed_error()
        return self._fd

    def readable(self) -> bool:
        if self._closed:
            raise self._closed_error()
        return self._readable

    def writable(self) -> bool:
        if self._closed:
            raise self._closed_error()
        return self._writable

    def seekable(self) -> bool:
        if self._closed:
            raise self._closed_error()
        return self._seekable

    def isatty(self) -> bool:
        if self._closed:
            raise self._closed_error()
        return os.isatty(self._fd)

    # -- the ring primitives ----------------------------------------------------

    def _check(self, readable: bool = False, writable: bool = False, what: str = "") -> None:
        if self._closed:
            raise self._closed_error()
        if readable and not self._readable:
            raise io.UnsupportedOperation(what or "read")
        if writable and not self._writable:
            raise io.UnsupportedOperation(what or "write")

    async def _op(self, op: RingOp) -> int:
        inflight = self._inflight
        inflight.add(op)
        try:
            res, _flags = await submit_and_wait(op)
        finally:
            inflight.discard(op)
        if res < 0:
            raise _oserror(res, self._name) if isinstance(self._name, (str, bytes)) else _oserror(res)
        return res

    def _offset(self) -> int:
        return self._pos if self._seekable else _OFF_CUR

    async def _buffer_op(self, opcode: int, mv: memoryview, offset: int) -> int:
        """One READ/WRITE between ``mv`` (a view of the caller's buffer,
        as bytes) and the file.  The op pins the memory with a view of its
        own until its CQE (the core's ``pin_view``), not a buffer export,
        which the garbage collector cannot always clear safely."""
        if self._closed:
            raise self._closed_error()
        if len(mv) > _MAX_RW:
            mv = mv[:_MAX_RW]  # (the caller continues a short transfer)
        return await self._op(RingOp(opcode, self._fd, mv, len(mv), offset))

    async def _pread_into(self, mv: memoryview, offset: int) -> int:
        """One kernel read into ``mv``.  Returns the byte count (0 at EOF)."""
        return await self._buffer_op(IORING_OP_READ, mv, offset)

    async def _pread(self, size: int, offset: int) -> bytes:
        # The kernel reads into memory we own and that nobody else sees; it
        # is not zeroed first (only the n bytes the kernel wrote are ever
        # handed out), which saves a memset per read.
        if self._closed:
            raise self._closed_error()
        if size > _MAX_RW:
            size = _MAX_RW  # all one kernel read can return
        new_bytes = _accel._sp_new_bytes
        if new_bytes is not None and size >= 2:
            # Straight into the bytes object that is returned: one copy
            # (page cache -> result), as os.read.  It is nobody else's until
            # the READ's CQE is in; a cancelled or failed READ drops it.
            data = new_bytes(size)
            n = await self._op(RingOp(IORING_OP_READ, self._fd, data, size, offset, keepalive=data))
            return data if n == size else data[:n]
        buf = _alloc_uninitialized("char[]", size)
        n = await self._op(RingOp(IORING_OP_READ, self._fd, _addr(buf), size, offset, keepalive=buf))
        return _ffi.buffer(buf, n)[:]  # type: ignore[no-any-return]

    # Reads served from the page cache.  Kernel reads of a regular file into
    # a new bytes object -- an unbuffered read() (inline there), read_at(),
    # read1(), a read-ahead refill, readall() (_pread_cached) -- first try
    # _pread_nowait (one preadv2(RWF_NOWAIT) into the result; the
    # accelerator's pread_nowait when loaded), and take the ring READ only
    # when the cache does not have the bytes.  Why: a READ
    # of a cached file completes inline in the enter anyway, so what the
    # ring op adds is its own cost -- the SQE, the enter, the CQE, the op
    # object, a scheduler pass and a task switch: about as much again as a
    # 64 KiB copy (docs/design.md, "One op").  The read keeps trio's shape
    # for an operation that completes at once: the cancel test before it,
    # cancel_shielded_checkpoint() after (a read that happened is returned;
    # the cancellation lands at the next checkpoint).  A miss costs one
    # syscall that copied nothing.  A partial hit keeps what the cache had
    # and reads the rest with a ring READ; the call moves the position (or
    # returns) only once both are in, so a Cancelled rest means the whole
    # call did nothing -- the first part was a copy at an explicit offset.

    def _cache_missed(self, err: int) -> None:
        """A read the page cache did not serve (``err``: _pread_nowait's
        errno): the ring READ does it."""
        if err == errno.EOPNOTSUPP or err == errno.EINVAL:
            self._nowait = False  # (no non-blocking reads on this file: the ring only, from now on)
        # EAGAIN: not in the cache.  Any other error: the ring READ meets
        # it too, and raises it as every read does.

    async def _read_rest(self, taken: list[Any], arg: tuple[bytes, int]) -> bytes:
        """An unbuffered read whose start the page cache held (``head``):
        the rest with a ring READ right after it, under the read turn.  The
        position moves only once both are in: if the READ raises (Cancelled:
        it did not happen), neither did the read -- ``head`` was a copy at
        an explicit offset, nothing was taken."""
        head, size = arg
        pos = self._pos
        rest = await self._pread(size - len(head), pos + len(head))
        self._pos = pos + len(head) + len(rest)
        return head + rest

    async def _pread_cached(self, size: int, offset: int) -> bytes:
        """_pread, served from the page cache at once when it has the bytes
        (see _cache_missed), with _pread's contract: Cancelled only if
        nothing was read, and a checkpoint either way -- the cancel test
        before the read, a cancel-shielded schedule point after it.  A
        partial hit reads the rest with a ring READ; if that raises, the
        first part is dropped (a copy at an explicit offset: nothing was
        taken)."""
        if self._nowait and not self._closed:
            # (checkpoint_if_cancelled() without its coroutine)
            task = _local.task
            if task is None:
                _outside_run()
            if _cancel_pending(task):
                await checkpoint()
            if size > _MAX_RW:
                size = _MAX_RW  # (all one kernel read returns)
            data = (_accel._sp_pread_nowait or _pread_nowait)(self._fd, size, offset)
            if isinstance(data, bytes):
                await cancel_shielded_checkpoint()
                return data
            if isinstance(data, tuple):
                head = data[0]
                return head + await self._pread(size - len(head), offset + len(head))
            self._cache_missed(data)
        return await self._pread(size, offset)

    async def _read_raw(self, size: int) -> bytes:
        """One kernel read at the position, advancing it by what was read."""
        data = await self._pread_cached(size, self._offset())
        self._pos += len(data)
        return data

    def _take_buffered(self, n: int) -> bytes:
        """Up to ``n`` bytes from the read-ahead buffer (n < 0: all)."""
        if self._chunks is not None:
            self._flatten()
        rbuf, ri = self._rbuf, self._ri
        avail = len(rbuf) - ri
        if avail <= 0:
            return _EMPTY
        if n < 0 or n >= avail:
            out = rbuf[ri:] if ri else rbuf
            self._rbuf, self._ri = _EMPTY, 0
            self._pos += avail
            return out if type(out) is bytes else bytes(out)
        self._ri = ri + n
        self._pos += n
        out = rbuf[ri : ri + n]
        return out if type(out) is bytes else bytes(out)

    def _readahead_as_bytes(self) -> bytes:
        """The read-ahead as bytes (readline and peek search and slice it)."""
        if self._chunks is not None:
            self._flatten()
        rbuf = self._rbuf
        if type(rbuf) is not bytes:
            self._rbuf = rbuf = bytes(rbuf[self._ri :])
            self._ri = 0
        return rbuf  # type: ignore[return-value]

    async def _stream_read(self, need: int) -> bytes:
        new_bytes, iovecs = _accel._sp_new_bytes, _accel._sp_iovecs
        if new_bytes is not None and iovecs is not None and need >= 2:
            return await self._stream_readv(need, new_bytes, iovecs)
        return await self._stream_read_copy(need)

    async def _stream_readv(self, need: int, new_bytes: Any, iovecs: Any) -> bytes:
        """_stream_read with the accelerator: one READV of a window into
        fresh ``need``-byte bytes objects; the first is the result, the rest
        wait in _chunks, each the result of a later read(need) as it is.
        One copy per byte (page cache -> result), one ring op per window."""
        window = self._window or _STREAM_READAHEAD
        self._window = min(2 * window, _STREAM_READAHEAD_MAX)
        count = max(1, window // need)
        objs = [new_bytes(need) for _ in range(count)]
        iov = iovecs(objs)
        pos = self._pos
        n = await self._op(RingOp(IORING_OP_READV, self._fd, iov, count, pos, keepalive=(objs, iov)))
        self._stream_end = pos + n
        full, rest = divmod(n, need)
        got = objs[:full]
        if rest:
            got.append(objs[full][:rest])
        if not got:
            return _EMPTY
        self._pos = pos + len(got[0])
        if len(got) > 1:
            self._chunks, self._ci = got, 1
        return got[0]

    async def _stream_read_copy(self, need: int) -> bytes:
        """A large read that continues the previous one (sequential reading):
        one kernel read of a window of 256 KiB (doubling while the reading
        stays sequential, up to 1 MiB) into the file's stream buffer; ``need`` bytes are returned, the rest is kept as
        read-ahead for the next reads.

        Why: a ring round trip costs far more than the copy out of a buffer
        that is still in the cache -- and on file systems without
        non-blocking reads (tmpfs, NFS, FUSE) every READ is a trip through
        an io-wq worker and back.  A 1 MiB window pays that once per sixteen
        64 KiB reads.  The buffer is the kernel's to fill and ours
        to copy from; only copies (bytes) leave this object.
        """
        buf = self._stream_buf
        window = _STREAM_READAHEAD if buf is None else min(2 * len(buf), _STREAM_READAHEAD_MAX)
        size = max(need, window)
        shared = size == window and not self._stream_busy
        if shared:
            if buf is None or len(buf) != window:
                buf = self._stream_buf = _alloc_uninitialized("char[]", window)
            self._stream_busy = True
        else:  # another task is filling the stream buffer, or a huge read
            buf = _alloc_uninitialized("char[]", size)
        pos = self._pos
        try:
            n = await self._op(RingOp(IORING_OP_READ, self._fd, _addr(buf), size, pos, keepalive=buf))
        except GeneratorExit:
            raise  # the READ may still be in flight: never reuse its buffer
        except BaseException:
            if shared:  # the op's CQE is in (or it never went out)
                self._stream_busy = False
            raise
        if shared:
            self._stream_busy = False
        self._stream_end = pos + n
        if n <= need:
            self._pos = pos + n
            return _ffi.buffer(buf, n)[:]  # type: ignore[no-any-return]
        self._rbuf, self._ri = memoryview(_ffi.buffer(buf, n)), need
        self._pos = pos + need
        return _ffi.buffer(buf, need)[:]  # type: ignore[no-any-return]

    async def _fill(self) -> bool:
        """Refill the (empty) read-ahead buffer; False at EOF."""
        size = self._readahead or self._bufsize
        data = await self._pread_cached(size, self._offset())
        if not self._seekable:
            # the kernel advanced its own position; ours follows
            pass
        self._rbuf, self._ri = data, 0
        return bool(data)

    def _flatten(self) -> None:
        """Chunked read-ahead (_chunks) into _rbuf, for everything but the
        whole-chunk read() that _chunks is for.  (One join; rare.)"""
        chunks, self._chunks = self._chunks, None
        if chunks is not None:
            self._rbuf, self._ri = _EMPTY.join(chunks[self._ci :]), 0

    def _drop_readahead(self) -> None:
        self._rbuf, self._ri = _EMPTY, 0
        self._chunks = None
        self._window = 0
        self._stream_end = -1
        self._stream_buf = None  # (the window starts small again)

    # -- reading ----------------------------------------------------------------
    #
    # How a read stays whole when it is cancelled.  trio's rule: a cancelled
    # call either returns what it took, or leaves it for the next call.
    # Every reading method has one of two shapes.
    #
    # * Served from the read-ahead, without waiting: checkpoint_if_cancelled()
    #   first, then the bytes are taken synchronously, then
    #   cancel_shielded_checkpoint().  A deadline that expires during that
    #   last yield cannot undo the take -- the bytes are the result, and the
    #   cancellation lands at the next checkpoint.  (A full checkpoint after
    #   the take would drop the bytes; one before it, cancellable after its
    #   yield, would starve a reader whose deadline is shorter than a
    #   scheduler pass.)
    # * Waiting for the kernel: the method runs under _gather(), which hands
    #   it a list, `taken`, for everything it takes, in order.  If it raises
    #   -- Cancelled from a later kernel read, an I/O error, anything --
    #   _gather puts `taken` back in front of the read-ahead, position
    #   included.  A waiting read keeps no byte anywhere else, so there is
    #   nothing for a cancellation to lose.
    #
    # Kernel reads themselves follow the cancel protocol (submit_and_wait): a
    # read the kernel did returns its bytes even when the task was cancelled
    # meanwhile; one it did not do raises Cancelled.
    #
    # Several tasks may read one file.  A waiting read holds the file's read
    # turn (_Turn) and empties the read-ahead before each await, so while it
    # waits a served-from-the-read-ahead read finds nothing to take and
    # queues for the turn instead: nobody takes bytes from under a read that
    # may have to give its own back, and no two reads ask the kernel for the
    # same position.

    async def _gather(self, fill: Callable[[list[Any], Any], Awaitable[T]], arg: Any, head: bytes = _EMPTY) -> T:
        turn = self._rturn
        if turn.busy and head:
            self._unread([head])  # (ours again only once it is our turn)
            head = _EMPTY
        await turn.take()
        taken: list[Any] = [head] if head else []
        try:
            return await fill(taken, arg)
        except BaseException:
            self._unread(taken)
            raise
        finally:
            turn.give_back()

    async def _read_once(self, taken: list[Any], size: int) -> bytes:
        """One kernel read (unbuffered read, read1): the read-ahead first,
        if the turn came after another read filled it."""
        head = self._take_buffered(size)
        return head if head else await self._read_raw(size)

    def _unread(self, taken: list[Any]) -> None:
        """Put bytes (or memoryviews) a read took, but will not return, back
        in front of the read-ahead."""
        data = _EMPTY.join(taken)
        if data:
            self._rbuf = data + self._readahead_as_bytes()[self._ri :]
            self._ri = 0
            self._pos -= len(data)

    def _available(self) -> int:
        """How many bytes the read-ahead holds."""
        if self._chunks is not None:
            self._flatten()
        return len(self._rbuf) - self._ri

    async def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all, to EOF, when negative or None).
        Like ``io.BufferedReader.read``: only returns fewer at end of file."""
        if type(size) is not int or not 0 <= size <= _SSIZE_MAX:
            size = _size_arg(size)
        if self._closed or not self._readable:
            self._check(readable=True)
        if size < -1 and self._readahead:
            raise ValueError("read length must be non-negative or -1")
        if size < 0:
            return await self.readall()
        # checkpoint_if_cancelled() without its coroutine (a third of a
        # microsecond; this is the path of every read)
        task = _local.task
        if task is None:
            _outside_run()
        if _cancel_pending(task):
            await checkpoint()
        if not self._readahead:
            # Unbuffered (buffering=0): exactly one kernel read, like
            # FileIO -- served from the page cache at once if it has the
            # bytes (see _cache_missed).  Not while another read holds the
            # turn: it reads at the position.
            if self._nowait and size and not self._rbuf and not self._rturn.busy:
                if size > _MAX_RW:
                    size = _MAX_RW  # (all one kernel read returns)
                data = (_accel._sp_pread_nowait or _pread_nowait)(self._fd, size, self._pos)
                if isinstance(data, bytes):
                    self._pos += len(data)
                    await cancel_shielded_checkpoint()
                    return data
                if isinstance(data, tuple):
                    return await self._gather(self._read_rest, (data[0], size))
                self._cache_missed(data)
            head = self._take_buffered(size)
            if head or not size:
                # (what is buffered is one read's worth)
                await cancel_shielded_checkpoint()
                return head
            return await self._gather(self._read_once, size)
        chunks = self._chunks
        if chunks is not None and len(chunks[self._ci]) == size:
            # Sequential reading of the size the read-ahead was cut for: the
            # next chunk as it is (the kernel wrote it; no copy).
            head = chunks[self._ci]
            self._ci += 1
            if self._ci == len(chunks):
                self._chunks = None
            self._pos += size
            await cancel_shielded_checkpoint()
            return head
        head = self._take_buffered(size)
        if len(head) == size:
            await cancel_shielded_checkpoint()
            return head
        # (`head` was taken just now, with no await since: it is the first
        # thing _gather gives back if the rest fails.)
        return await self._gather(self._read_more, size, head)

    async def _read_more(self, taken: list[Any], size: int) -> bytes:
        """read(size)'s waiting part: kernel reads after what the read-ahead
        held (``taken``)."""
        need = size - (len(taken[0]) if taken else 0)
        if not taken:  # (our turn came after another read: take what it left)
            more = self._take_buffered(need)
            if more:
                taken.append(more)
                need -= len(more)
        while need > 0:
            if need >= self._readahead:
                want = min(need, _MAX_RW)
                if self._regular and self._pos == self._stream_end:
                    chunk = await self._stream_read(want)
                else:
                    chunk = await self._read_raw(want)
                    self._stream_end = self._pos
                if not chunk:
                    break
                taken.append(chunk)
                need -= len(chunk)
                if self._regular and len(chunk) < want:
                    break  # short read on a regular file: EOF
            else:
                if not await self._fill():
                    break
                short = len(self._rbuf) < self._readahead
                chunk = self._take_buffered(need)
                taken.append(chunk)
                need -= len(chunk)
                if short and self._regular and need:
                    break
        return taken[0] if len(taken) == 1 else _EMPTY.join(taken)

    async def readall(self) -> bytes:
        self._check(readable=True)
        await checkpoint_if_cancelled()
        return await self._gather(self._readall_more, None)

    async def _readall_more(self, taken: list[Any], _: None) -> bytes:
        head = self._take_buffered(-1)
        if head:
            taken.append(head)
        chunk_size = max(self._readahead, _DEFAULT_BUFFER_SIZE)
        if self._regular:
            # Size the first read from the file size: usually one op.
            try:
                end = os.fstat(self._fd).st_size
            except OSError:
                end = 0
            if end >= self._pos:
                chunk_size = max(chunk_size, end - self._pos + 1)
        while True:
            want = min(chunk_size, _MAX_RW)
            chunk = await self._read_raw(want)
            if not chunk:
                break
            taken.append(chunk)
            if self._regular and len(chunk) < want:
                break
            chunk_size = min(chunk_size * 2, 1 << 26)
        return taken[0] if len(taken) == 1 else _EMPTY.join(taken)

    async def read1(self, size: int | None = -1) -> bytes:
        """At most one kernel read (none if the read-ahead buffer has data)."""
        size = _size_arg(size)
        self._check(readable=True)
        if size < 0:
            size = self._bufsize
        await checkpoint_if_cancelled()
        if size == 0 or self._available():
            head = self._take_buffered(size)
            await cancel_shielded_checkpoint()
            return head
        return await self._gather(self._read_once, size)

    async def peek(self, size: int = 0) -> bytes:
        _size_arg(size)  # (checked as the stdlib does; the read-ahead is returned whatever it is)
        self._check(readable=True)
        await checkpoint_if_cancelled()
        if self._available() <= 0:
            await self._gather(self._peek_fill, None)
        else:
            await cancel_shielded_checkpoint()
        return self._readahead_as_bytes()[self._ri :]

    async def _peek_fill(self, taken: list[Any], _: None) -> None:
        if self._available() <= 0:
            await self._fill()

    async def readinto(self, buffer: Any) -> int:
        """Read into a writable buffer until it is full or EOF."""
        return await self._readinto(buffer, one=False)

    async def readinto1(self, buffer: Any) -> int:
        return await self._readinto(buffer, one=True)

    async def _readinto(self, buffer: Any, one: bool) -> int:
        try:
            mv = memoryview(buffer)
        except TypeError:
            raise TypeError(
                f"readinto() argument must be read-write bytes-like object, not {type(buffer).__name__}"
            ) from None
        if mv.readonly:
            raise TypeError(
                f"readinto() argument must be read-write bytes-like object, not {type(buffer).__name__}"
            )
        mv = mv.cast("B")
        self._check(readable=True)
        total = len(mv)
        await checkpoint_if_cancelled()
        avail = self._available()
        if avail >= total or (avail and (one or not self._readahead)):
            got = min(avail, total)
            mv[:got] = self._take_buffered(got)
            await cancel_shielded_checkpoint()
            return got
        return await self._gather(self._readinto_more, (mv, one))

    async def _readinto_more(self, taken: list[Any], arg: tuple[memoryview, bool]) -> int:
        # `taken` holds views of the caller's buffer: copied only if they
        # have to go back.
        mv, one = arg
        total = len(mv)
        head = self._take_buffered(total)
        got = len(head)
        if got:
            mv[:got] = head
            taken.append(mv[:got])
        while got < total:
            want = min(total - got, _MAX_RW)
            n = await self._pread_into(mv[got : got + want], self._offset())
            self._pos += n
            if n:
                taken.append(mv[got : got + n])
            got += n
            if n == 0 or one or (self._regular and n < want) or not self._readahead:
                break
        return got

    async def readline(self, size: int | None = -1) -> bytes:
        size = _size_arg(size)
        self._check(readable=size != 0)  # (the stdlib's readline(0) never reads)
        await checkpoint_if_cancelled()
        line = self._line_from_readahead(size) if size else _EMPTY
        if line is not None:
            await cancel_shielded_checkpoint()
            return line
        return await self._gather(self._readline_more, size)

    def _line_from_readahead(self, size: int) -> bytes | None:
        """The next line (at most ``size`` bytes if size >= 0), taken, if
        the read-ahead holds all of it; else None and nothing taken."""
        rbuf = self._readahead_as_bytes()
        ri = self._ri
        avail = len(rbuf) - ri
        if avail <= 0:
            return None
        limit = len(rbuf) if size < 0 or size >= avail else ri + size
        nl = rbuf.find(b"\n", ri, limit)
        if nl >= 0:
            return self._take_buffered(nl + 1 - ri)
        if 0 <= size <= avail:
            return self._take_buffered(size)
        return None

    async def _readline_more(self, taken: list[Any], size: int) -> bytes:
        """readline's waiting part: the line's pieces go on ``taken``."""
        first = len(taken)  # (readlines' lines come before)
        got = 0
        while True:
            rbuf = self._readahead_as_bytes()
            ri = self._ri
            if len(rbuf) > ri:
                limit = len(rbuf) if size < 0 else min(len(rbuf), ri + size - got)
                nl = rbuf.find(b"\n", ri, limit)
                if nl >= 0:
                    taken.append(self._take_buffered(nl + 1 - ri))
                    break
                piece = self._take_buffered(limit - ri)
                taken.append(piece)
                got += len(piece)
                if size >= 0 and got >= size:
                    break
            if not await self._fill():
                break
        return taken[first] if len(taken) == first + 1 else _EMPTY.join(taken[first:])

    async def readlines(self, hint: int | None = -1) -> list[bytes]:
        hint = _size_arg(hint)
        self._check(readable=True)
        await checkpoint_if_cancelled()
        return await self._gather(self._readlines_more, hint)

    async def _readlines_more(self, taken: list[Any], hint: int) -> list[bytes]:
        # `taken` is the lines so far, then the pieces of the line being read.
        total = 0
        waited = False
        while True:
            line = self._line_from_readahead(-1)
            if line is None:
                waited = True
                start = len(taken)
                line = await self._readline_more(taken, -1)
                del taken[start:]
            if not line:
                break
            taken.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        if not waited:
            await cancel_shielded_checkpoint()
        return taken

    # -- positioned I/O -----------------------------------------------------------

    async def read_at(self, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset`` without using or moving
        the file position (one kernel read; safe to call concurrently)."""
        if self._closed or not self._readable:
            self._check(readable=True)
        if type(offset) is not int or not 0 <= offset <= _OFF_MAX:
            offset = _offset_arg(offset, "read_at")
        if type(size) is not int:
            size = _index(size)
        if size < 0:
            raise ValueError(f"read_at: negative size {size}")
        if size > sys.maxsize:
            raise OverflowError(f"read_at: size {size} does not fit in a Py_ssize_t")
        if size == 0:
            await checkpoint()
            return _EMPTY
        return await self._pread_cached(size, offset)

    async def write_at(self, offset: int, data: Any) -> int:
        """Write all of ``data`` at ``offset`` without using or moving the file
        position (safe to call concurrently on disjoint ranges).  On O_APPEND
        files the kernel appends instead, as for pwrite(2)."""
        self._check(writable=True)
        offset = _offset_arg(offset, "write_at")
        mv = self._as_bytes_view(data)
        written = 0
        total = len(mv)
        if total == 0:
            await checkpoint()
            return 0
        if (self._rbuf or self._chunks is not None) and self._seekable:
            # The read-ahead may hold the old bytes of that range.  (On a
            # pipe or a terminal it is the other direction's data: kept.)
            self._drop_readahead()
        while written < total:
            written += await self._pwrite(mv[written:], offset + written)
        return total

    # -- writing --------------------------------------------------------------------

    @staticmethod
    def _as_bytes_view(data: Any) -> memoryview:
        if isinstance(data, str):
            raise TypeError("a bytes-like object is required, not 'str'")
        try:
            mv = memoryview(data)
        except TypeError:
            raise TypeError(f"a bytes-like object is required, not '{type(data).__name__}'") from None
        return mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv

    async def _pwrite(self, mv: memoryview, offset: int) -> int:
        n = await self._buffer_op(IORING_OP_WRITE, mv, offset)
        if n == 0:
            raise OSError(errno.EIO, "write returned 0 bytes")
        self._writes += 1
        return n

    async def write(self, data: Any) -> int:
        """Write all of ``data``; returns its length.  If cancelled part way
        (between kernel writes), raises ``Cancelled`` with the position
        advanced by exactly what was written."""
        mv = self._as_bytes_view(data)
        self._check(writable=True)
        total = len(mv)
        if total == 0:
            await checkpoint()
            return 0
        turn = self._wturn
        await turn.take()
        try:
            if (self._rbuf or self._chunks is not None) and self._seekable:
                # The write goes at the logical position, and the read-ahead
                # may hold the old bytes there.  (On a pipe or a terminal
                # the read-ahead is the other direction's data: kept.)
                self._drop_readahead()
            written = 0
            if self._append or not self._seekable:
                # O_APPEND: the kernel writes at the end and moves its own
                # file position there (offset -1 = "the current position").
                while written < total:
                    written += await self._pwrite(mv[written:], _OFF_CUR)
                    if self._seekable:
                        self._pos = os.lseek(self._fd, 0, os.SEEK_CUR)
                return total
            while written < total:
                n = await self._pwrite(mv[written:], self._pos)
                self._pos += n
                written += n
            return total
        finally:
            turn.give_back()

    async def writelines(self, lines: Iterable[Any]) -> None:
        self._check()
        views = [self._as_bytes_view(line) for line in lines]
        if views:
            self._check(writable=True)
        data = _EMPTY.join(views)
        if data:
            await self.write(data)
        else:
            await checkpoint()

    async def flush(self) -> None:
        """Nothing is buffered for writing; a checkpoint (and a closed check)."""
        if self._closed:
            raise ValueError("flush of closed file")
        await checkpoint()

    async def truncate(self, size: int | None = None) -> int:
        """Resize the file (``IORING_OP_FTRUNCATE``); the position is unchanged."""
        self._check(writable=True, what="truncate")
        if size is not None:
            size = _index(size)
            if not _OFF_MIN <= size <= _OFF_MAX:
                raise OverflowError(f"truncate: size {size} does not fit in a file offset (off_t: -2**63 to 2**63 - 1)")
            if size < 0:
                await checkpoint()
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        turn = self._wturn
        await turn.take()
        try:
            if size is None:
                size = self._pos
            if self._seekable:
                self._drop_readahead()
            await self._op(RingOp(IORING_OP_FTRUNCATE, self._fd, 0, 0, size))
            return size
        finally:
            turn.give_back()

    async def fsync(self) -> None:
        """Flush the file's data and metadata to the device (IORING_OP_FSYNC)."""
        self._check()
        await self._op(RingOp(IORING_OP_FSYNC, self._fd))

    async def fdatasync(self) -> None:
        """Like :meth:`fsync` but skips metadata not needed to read the data."""
        self._check()
        await self._op(RingOp(IORING_OP_FSYNC, self._fd, 0, 0, 0, IORING_FSYNC_DATASYNC))

    async def stat(self) -> os.stat_result:
        """fstat via ``IORING_OP_STATX`` on the fd."""
        self._check()
        return await _statx(None, dirfd=self._fd)

    # -- position ---------------------------------------------------------------

    def _seek_sync(self, offset: int, whence: int) -> int:
        if self._closed:
            raise self._closed_error()
        offset = _index(offset)
        whence = _index(whence)
        buffered = self._readahead != 0
        if not _OFF_MIN <= offset <= _OFF_MAX:
            # (the stdlib's types: ValueError from a buffered file, OverflowError from FileIO)
            raise (ValueError if buffered else OverflowError)(
                f"seek offset {offset} does not fit in a file offset (off_t: -2**63 to 2**63 - 1)"
            )
        if buffered and whence not in _WHENCES:
            raise ValueError(f"whence value {whence} unsupported (os.SEEK_SET, SEEK_CUR, SEEK_END, SEEK_DATA or SEEK_HOLE)")
        if whence == os.SEEK_CUR:
            if not self._seekable:
                raise OSError(errno.ESPIPE, os.strerror(errno.ESPIPE))
            offset, whence = self._pos + offset, os.SEEK_SET
            if not 0 <= offset <= _OFF_MAX:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        # lseek(2) is a cheap syscall that never blocks; it gives exactly the
        # stdlib's answers (and errors) for SEEK_END, SEEK_DATA, SEEK_HOLE.
        pos = os.lseek(self._fd, offset, whence)
        if self._chunks is not None:
            self._flatten()
        rbuf = self._rbuf
        if rbuf:
            start = self._pos - self._ri
            if start <= pos <= start + len(rbuf):
                self._ri = pos - start
            else:
                self._drop_readahead()
        self._pos = pos
        return pos

    async def _idle(self) -> None:
        """Return when no read or write that uses the position is under way
        (seek and tell see the position between two calls, never inside
        one).  No schedule point when none is."""
        while self._rturn.busy or self._wturn.busy:
            await (self._rturn if self._rturn.busy else self._wturn).idle()

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        # trio's shape (see "reading"): a seek that raises Cancelled has
        # not moved the position.
        await self._idle()
        await checkpoint_if_cancelled()
        pos = self._seek_sync(offset, whence)
        await cancel_shielded_checkpoint()
        return pos

    async def tell(self) -> int:
        if self._closed:
            raise self._closed_error()
        if not self._seekable:
            raise OSError(errno.ESPIPE, os.strerror(errno.ESPIPE))
        await self._idle()
        await checkpoint_if_cancelled()
        await cancel_shielded_checkpoint()
        return self._pos

    # -- detaching ---------------------------------------------------------------

    async def detach(self) -> AsyncBinaryFile:
        """Like ``io.BufferedIOBase.detach()``, but async: returns the raw
        (unbuffered, ``buffering=0``) file under this one, and leaves this
        one unusable (every use raises ``ValueError``).  A file opened with
        ``buffering=0`` is raw already and has no ``detach`` (as FileIO).

        Unlike the stdlib (and trio), nothing read ahead is lost: the raw
        file continues at this file's position, with the bytes read ahead
        handed over to it.  After :func:`wrap_file`, the raw file is the
        stdlib object's ``detach()``, wrapped again, as in trio.
        """
        if not self._readahead:
            raise AttributeError(
                "an unbuffered file (buffering=0) has no detach(): like io.FileIO, it is the raw file itself"
            )
        self._check()
        if self._inflight or self._rturn.busy or self._wturn.busy:
            raise BusyResourceError("detach() while another task waits on this file: let it finish first")
        await checkpoint_if_cancelled()
        if self._chunks is not None:
            self._flatten()
        readahead = self._readahead_as_bytes()[self._ri :]
        raw: AsyncBinaryFile
        if self._wrapped is not None:
            if self._seekable:
                os.lseek(self._fd, self._pos, os.SEEK_SET)  # (our reads never move the kernel's position)
            raw = wrap_file(self._wrapped.detach())
        else:
            raw = AsyncBinaryFile(
                self._fd,
                self._name,
                self._mode,
                readable=self._readable,
                writable=self._writable,
                append=self._append,
                closefd=self._closefd,
                pos=self._pos if self._seekable else None,
                bufsize=self._bufsize,
                buffered=False,
                regular=self._regular,
            )
        raw._rbuf, raw._ri = readahead, 0
        self._drop_readahead()
        self._closed = self._detached = True
        await cancel_shielded_checkpoint()
        return raw

    # -- closing -----------------------------------------------------------------

    def _cancel_inflight(self) -> None:
        for op in list(self._inflight):
            cancel_ring_op(op, ClosedResourceError("the file was closed while this operation was in flight"))

    async def aclose(self) -> None:
        """Close the file: cancel ops in flight (their tasks get
        ``ClosedResourceError`` unless the op completed), then
        ``IORING_OP_CLOSE``.  Closes even when cancelled."""
        if self._detached:
            raise self._closed_error()  # (the raw file owns the fd now)
        if self._closed:
            await checkpoint_if_cancelled()
            return
        self._closed = True
        self._drop_readahead()
        self._cancel_inflight()
        try:
            if self._wrapped is not None:
                # the stdlib object owns the fd: let it close it (it may have
                # nothing buffered: wrap_file flushed it)
                self._wrapped.close()
            elif self._closefd:
                await _close_fd(self._fd)
        finally:
            await checkpoint_if_cancelled()


class _DetachedBuffer:
    """Where a detached AsyncTextFile's binary file was: any use of it
    raises the stdlib's error for a detached text file."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        raise _detached_error()


def _detached_error() -> ValueError:
    return ValueError("underlying buffer has been detached")


_DETACHED: Any = _DetachedBuffer()


@final
class AsyncTextFile(AsyncFile):
    """A text file: decoding/encoding in Python over an :class:`AsyncBinaryFile`.

    Mirrors ``io.TextIOWrapper``: same newline handling, same ``tell()``
    cookies, same chunked read-ahead (so positions agree with the stdlib).
    """

    __slots__ = (
        "_buffer",
        "_mode",
        "_encoding",
        "_errors",
        "_readuniversal",
        "_readtranslate",
        "_readnl",
        "_writetranslate",
        "_writenl",
        "_line_buffering",
        "_decoder",
        "_encoder",
        "_decoded",
        "_used",
        "_snapshot",
        "_b2cratio",
        "_turn",
        "_wrapped",
    )

    def __init__(
        self,
        buffer: AsyncBinaryFile,
        mode: str,
        encoding: str,
        errors: str,
        newline: str | None,
        line_buffering: bool = False,
    ) -> None:
        self._buffer = buffer
        self._mode = mode
        self._encoding = encoding
        self._errors = errors
        self._readuniversal = not newline
        self._readtranslate = newline is None
        self._readnl = newline
        self._writetranslate = newline != ""
        self._writenl = newline or os.linesep
        self._line_buffering = line_buffering
        self._decoder: Any = None
        self._encoder: Any = None
        self._decoded = ""
        self._used = 0
        self._snapshot: tuple[int, bytes] | None = None
        # Bytes per character of the last chunk read: where tell() starts
        # looking for a safe point (as TextIOWrapper, whose cookies we match).
        self._b2cratio = 0.0
        # Text reads that wait, writes and seeks that re-read take turns
        # (see _gather); the binary file has its own.
        self._turn = _Turn()
        self._wrapped: Any = None
        if buffer._readable:
            dec: Any = codecs.getincrementaldecoder(encoding)(errors)
            if self._readuniversal:
                dec = io.IncrementalNewlineDecoder(dec, self._readtranslate)
            self._decoder = dec
        if buffer._writable:
            self._encoder = codecs.getincrementalencoder(encoding)(errors)
            # Appending (or opening at a non-zero position): no BOM.
            if buffer._seekable and buffer._pos != 0:
                try:
                    self._encoder.setstate(0)
                except (AttributeError, TypeError):  # pragma: no cover
                    pass

    def __repr__(self) -> str:
        return f"<ringtrio.AsyncTextFile name={self.name!r} mode={self._mode!r} encoding={self._encoding!r}>"

    # -- attributes -----------------------------------------------------------

    @property
    def buffer(self) -> AsyncBinaryFile | None:
        """The binary file under this one (None after :meth:`detach`)."""
        buf = self._buffer
        return None if buf is _DETACHED else buf

    @property
    def wrapped(self) -> Any:
        """The stdlib file given to :func:`wrap_file`, or None (text files
        given to wrap_file run in worker threads instead)."""
        return self._wrapped

    @property
    def name(self) -> Any:
        return self._buffer.name

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def closed(self) -> bool:
        return self._buffer.closed

    @property
    def encoding(self) -> str:
        return self._encoding

    @property
    def errors(self) -> str:
        return self._errors

    @property
    def newlines(self) -> Any:
        if self._buffer is _DETACHED:
            raise _detached_error()
        return getattr(self._decoder, "newlines", None)

    @property
    def line_buffering(self) -> bool:
        return self._line_buffering

    @property
    def closefd(self) -> bool:
        return self._buffer.closefd

    def fileno(self) -> int:
        return self._buffer.fileno()

    def readable(self) -> bool:
        return self._buffer.readable()

    def writable(self) -> bool:
        return self._buffer.writable()

    def seekable(self) -> bool:
        return self._buffer.seekable()

    def isatty(self) -> bool:
        return self._buffer.isatty()

    # -- decoding state -----------------------------------------------------------

    def _check(self, readable: bool = False, writable: bool = False) -> None:
        if self._buffer._closed:
            raise _closed_error()
        if readable and self._decoder is None:
            raise io.UnsupportedOperation("not readable")
        if writable and self._encoder is None:
            raise io.UnsupportedOperation("not writable")

    def _take(self, n: int = -1) -> str:
        decoded, used = self._decoded, self._used
        if n < 0:
            out = decoded[used:] if used else decoded
            self._used = len(decoded)
        else:
            out = decoded[used : used + n]
            self._used = used + len(out)
        return out

    def _reset_decoding(self) -> None:
        self._decoded = ""
        self._used = 0
        self._snapshot = None

    # -- reading ----------------------------------------------------------------
    #
    # The two shapes of AsyncBinaryFile's reads (see there), one level up.
    # A read that the decoded text already satisfies takes it between
    # checkpoint_if_cancelled() and cancel_shielded_checkpoint().  Any other
    # read runs under _gather(), which remembers the text state at the start
    # and records, in `fed`, the decoder state before the call's first chunk
    # and every chunk the call takes from the binary file.  If the read
    # raises (Cancelled while the binary file waits for the kernel, a
    # decoding error, anything), _gather restores the text state and the
    # decoder, and gives the chunks back to the binary file: the file is as
    # it was before the call, and the next call reads the same characters.
    # As in the binary file, a waiting read holds the turn and has taken all
    # the decoded text before each await, so no other read takes characters
    # from under it (they queue), and restoring the state it started from
    # undoes nobody else's work.

    async def _gather(self, fill: Callable[[list[Any], int], Awaitable[T]], arg: int) -> T:
        turn = self._turn
        await turn.take()
        undo = (self._decoded, self._used, self._snapshot, self._b2cratio)
        fed: list[Any] = []
        try:
            return await fill(fed, arg)
        except BaseException:
            self._decoded, self._used, self._snapshot, self._b2cratio = undo
            if fed:
                self._decoder.setstate(fed[0])
                self._buffer._unread(fed[1:])
            raise
        finally:
            turn.give_back()

    async def _read_chunk(self, fed: list[Any]) -> bool:
        """Decode one more chunk; False at EOF.  Records the snapshot
        (decoder flags, bytes fed since) that tell() starts from, and, in
        ``fed``, what undoes it (see _gather)."""
        state = self._decoder.getstate()
        chunk = await self._buffer.read1(_TEXT_CHUNK)
        if not fed:
            fed.append(state)
        fed.append(chunk)
        dec_buffer, dec_flags = state
        eof = not chunk
        self._decoded = self._decoder.decode(chunk, eof)
        self._used = 0
        self._snapshot = (dec_flags, dec_buffer + chunk)
        self._b2cratio = len(chunk) / len(self._decoded) if self._decoded else 0.0
        return not eof

    async def read(self, size: int | None = -1) -> str:
        size = _size_arg(size)
        self._check(readable=True)
        await checkpoint_if_cancelled()
        if 0 <= size <= len(self._decoded) - self._used:
            out = self._take(size)
            await cancel_shielded_checkpoint()
            return out
        if size < 0:
            return await self._gather(self._read_all, size)
        return await self._gather(self._read_more, size)

    async def _read_all(self, fed: list[Any], _: int) -> str:
        head = self._take()  # (before the await: see _gather)
        state = self._decoder.getstate()
        data = await self._buffer.read()
        fed += (state, data)
        out = head + self._decoder.decode(data, True)
        self._reset_decoding()
        return out

    async def _read_more(self, fed: list[Any], size: int) -> str:
        # (at most `size`: if our turn came after another read, the decoded
        # text may hold more than it did when we found it short)
        parts = [self._take(size)]
        got = len(parts[0])
        while got < size:
            if not await self._read_chunk(fed):
                parts.append(self._take())
                break
            piece = self._take(size - got)
            parts.append(piece)
            got += len(piece)
        return "".join(parts)

    def _find_line_end(self, line: str, start: int) -> int:
        """Index just past the first line ending at or after ``start``, or -1."""
        if self._readtranslate:
            i = line.find("\n", start)
            return -1 if i < 0 else i + 1
        if self._readuniversal:
            # "\n", "\r" or "\r\n"; the decoder holds back a trailing "\r"
            # until it knows what follows, except at EOF.
            i = line.find("\n", start)
            j = line.find("\r", start)
            if j < 0:
                return -1 if i < 0 else i + 1
            if i < 0 or j < i:
                if j + 1 < len(line) and line[j + 1] == "\n":
                    return j + 2
                return j + 1
            return i + 1
        i = line.find(self._readnl, start)  # type: ignore[arg-type]
        return -1 if i < 0 else i + len(self._readnl)  # type: ignore[arg-type]

    async def readline(self, size: int | None = -1) -> str:
        size = _size_arg(size)
        self._check(readable=True)
        await checkpoint_if_cancelled()
        line = self._line_from_decoded(size)
        if line is not None:
            await cancel_shielded_checkpoint()
            return line
        return await self._gather(self._readline_more, size)

    def _line_from_decoded(self, size: int) -> str | None:
        """The next line (at most ``size`` characters if size >= 0), taken,
        if the decoded text holds all of it; else None and nothing taken."""
        decoded, used = self._decoded, self._used
        avail = len(decoded) - used
        if avail <= 0:
            return None  # (as TextIOWrapper: a chunk is read first, even for readline(0))
        end = self._find_line_end(decoded, used)
        if end < 0:
            if not 0 <= size <= avail:
                return None
            end = used + size
        elif 0 <= size < end - used:
            end = used + size
        self._used = end
        return decoded[used:end]

    async def _readline_more(self, fed: list[Any], size: int) -> str:
        line = self._take()
        start = 0
        eof = False
        if not line:
            # As TextIOWrapper: with nothing decoded, a chunk is read first,
            # even for readline(0) (which moves the underlying position).
            eof = not await self._read_chunk(fed)
            line = self._take()
        while True:
            end = self._find_line_end(line, start)
            if end >= 0:
                break
            if 0 <= size <= len(line):
                end = size
                break
            if eof:
                end = len(line)
                break
            # a separator may straddle the chunk boundary
            start = max(0, len(line) - len(self._readnl or "\n") + 1) if not self._readuniversal else len(line)
            eof = not await self._read_chunk(fed)
            line += self._take()
        if 0 <= size < end:
            end = size
        # give back what follows the line: always a suffix of the last chunk
        self._used -= len(line) - end
        return line[:end]

    async def readlines(self, hint: int | None = -1) -> list[str]:
        hint = _size_arg(hint)
        self._check(readable=True)
        await checkpoint_if_cancelled()
        return await self._gather(self._readlines_more, hint)

    async def _readlines_more(self, fed: list[Any], hint: int) -> list[str]:
        lines: list[str] = []
        total = 0
        while True:
            line = self._line_from_decoded(-1)
            if line is None:
                line = await self._readline_more(fed, -1)
            if not line:
                break
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        if not fed:  # served from the decoded text without waiting
            await cancel_shielded_checkpoint()
        return lines

    # -- writing ------------------------------------------------------------------

    async def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        self._check(writable=True)
        length = len(s)
        if self._writetranslate and self._writenl != "\n" and "\n" in s:
            s = s.replace("\n", self._writenl)
        turn = self._turn
        await turn.take()
        try:
            encoder = self._encoder
            enc_state = encoder.getstate()
            data = encoder.encode(s)
            buf = self._buffer
            writes = buf._writes
            try:
                await buf.write(data)
            except BaseException:
                if buf._writes == writes:
                    # Nothing reached the file (cancelled before or during
                    # the first kernel write): as if the call had not
                    # happened.
                    encoder.setstate(enc_state)
                    raise
                self._drop_decoded()
                raise
            self._drop_decoded()
            return length
        finally:
            turn.give_back()

    def _drop_decoded(self) -> None:
        # Like TextIOWrapper after a write: drop the decoded read-ahead (the
        # bytes it came from stay consumed).
        self._reset_decoding()
        if self._decoder is not None:
            self._decoder.reset()

    async def writelines(self, lines: Iterable[str]) -> None:
        self._check()
        lines = list(lines)
        if lines:
            self._check(writable=True)
        for line in lines:
            if not isinstance(line, str):
                raise TypeError(f"write() argument must be str, not {type(line).__name__}")
        await self.write("".join(lines))

    async def flush(self) -> None:
        await self._buffer.flush()

    async def truncate(self, pos: int | None = None) -> int:
        self._check()
        if pos is None:
            pos = await self.tell()
        return await self._buffer.truncate(pos)

    async def fsync(self) -> None:
        await self._buffer.fsync()

    async def fdatasync(self) -> None:
        await self._buffer.fdatasync()

    async def stat(self) -> os.stat_result:
        return await self._buffer.stat()

    async def read_at(self, offset: int, size: int) -> bytes:
        """Positioned *binary* read on the underlying file (see
        :meth:`AsyncBinaryFile.read_at`)."""
        return await self._buffer.read_at(offset, size)

    async def write_at(self, offset: int, data: Any) -> int:
        """Positioned *binary* write on the underlying file."""
        return await self._buffer.write_at(offset, data)

    # -- position: TextIOWrapper's cookies ---------------------------------------------

    @staticmethod
    def _pack_cookie(position: int, dec_flags: int = 0, feed: int = 0, need_eof: bool = False, skip: int = 0) -> int:
        return position | (dec_flags << 64) | (feed << 128) | (skip << 192) | (int(need_eof) << 256)

    @staticmethod
    def _unpack_cookie(cookie: int) -> tuple[int, int, int, bool, int]:
        mask = (1 << 64) - 1
        return (
            cookie & mask,
            (cookie >> 64) & mask,
            (cookie >> 128) & mask,
            bool(cookie >> 256),
            (cookie >> 192) & mask,
        )

    def _tell_sync(self) -> int:
        if self._buffer._closed:
            raise _closed_error()
        if not self._buffer._seekable:
            raise io.UnsupportedOperation("underlying stream is not seekable")
        position = self._buffer._pos
        decoder, snapshot = self._decoder, self._snapshot
        if decoder is None or snapshot is None:
            return position
        dec_flags, fed = snapshot
        position -= len(fed)
        skip = self._used
        if skip == 0:
            return self._pack_cookie(position, dec_flags)
        # A safe start point is one where the decoder holds no pending
        # bytes (a pending "\r" lives in its flags, not its buffer).  First a
        # guess from the chunk's bytes-per-character ratio, stepped back
        # until it is one; then the bytes after it are re-decoded one at a
        # time, moving the start point up to the last safe one at or before
        # the current character.  (The same search as TextIOWrapper, so the
        # cookies, and where a following write lands, agree with it.)
        saved = decoder.getstate()
        try:
            guess = min(int(self._b2cratio * skip), len(fed))
            back = 1
            while guess > 0:
                decoder.setstate((b"", dec_flags))
                got = len(decoder.decode(fed[:guess]))
                if got <= skip:
                    pending, flags = decoder.getstate()
                    if not pending:
                        dec_flags = flags
                        skip -= got
                        break
                    guess -= len(pending)
                    back = 1
                else:
                    guess -= back
                    back *= 2
            else:
                guess = 0
                decoder.setstate((b"", dec_flags))
            start, start_flags = position + guess, dec_flags
            if skip == 0:
                return self._pack_cookie(start, start_flags)
            fed_n, chars = 0, 0
            need_eof = False
            done = False
            for i in range(guess, len(fed)):
                fed_n += 1
                chars += len(decoder.decode(fed[i : i + 1]))
                pending, flags = decoder.getstate()
                if not pending and chars <= skip:
                    start += fed_n
                    skip -= chars
                    start_flags = flags
                    fed_n = chars = 0
                if chars >= skip:
                    done = True
                    break
            if not done:
                chars += len(decoder.decode(b"", True))
                need_eof = True
                if chars < skip:
                    raise OSError("can't reconstruct logical file position")
            return self._pack_cookie(start, start_flags, fed_n, need_eof, skip)
        finally:
            decoder.setstate(saved)

    async def tell(self) -> int:
        if self._turn.busy:
            await self._turn.idle()
        await checkpoint_if_cancelled()
        cookie = self._tell_sync()
        await cancel_shielded_checkpoint()
        return cookie

    async def seek(self, cookie: int, whence: int = os.SEEK_SET) -> int:
        self._check()
        cookie = _index(cookie)
        whence = _index(whence)
        buf = self._buffer
        if not buf._seekable:
            raise io.UnsupportedOperation("underlying stream is not seekable")
        if whence == os.SEEK_CUR:
            if cookie != 0:
                raise io.UnsupportedOperation("can't do nonzero cur-relative seeks")
            if self._turn.busy:
                await self._turn.idle()
            cookie = self._tell_sync()
            whence = os.SEEK_SET
        elif whence == os.SEEK_END:
            if cookie != 0:
                raise io.UnsupportedOperation("can't do nonzero end-relative seeks")
            if self._turn.busy:
                await self._turn.idle()
            await buf._idle()
            await checkpoint_if_cancelled()
            pos = buf._seek_sync(0, os.SEEK_END)
            self._reset_decoding()
            if self._decoder is not None:
                self._decoder.reset()
            self._reset_encoder(pos)
            await cancel_shielded_checkpoint()
            return pos
        if whence != os.SEEK_SET:
            raise ValueError(f"invalid whence ({whence}, should be {os.SEEK_SET}, {os.SEEK_CUR} or {os.SEEK_END})")
        if cookie < 0:
            raise ValueError(f"negative seek position {cookie}")
        start, dec_flags, feed, need_eof, skip = self._unpack_cookie(cookie)
        turn = self._turn
        await turn.take()
        try:
            return await self._seek_to(cookie, start, dec_flags, feed, need_eof, skip)
        finally:
            turn.give_back()

    async def _seek_to(self, cookie: int, start: int, dec_flags: int, feed: int, need_eof: bool, skip: int) -> int:
        buf = self._buffer
        await buf._idle()
        await checkpoint_if_cancelled()
        decoder = self._decoder
        if decoder is None or not (feed or need_eof or skip):
            buf._seek_sync(start, os.SEEK_SET)
            self._reset_decoding()
            if decoder is not None:
                if cookie == 0:
                    decoder.reset()
                else:
                    decoder.setstate((b"", dec_flags))
                    self._snapshot = (dec_flags, b"")
            self._reset_encoder(cookie)
            await cancel_shielded_checkpoint()
            return cookie
        # The cookie points inside a decoded chunk: re-read its first `feed`
        # bytes and re-decode them.  That read waits, so (as for reads) a
        # seek that raises leaves the file as it was: position, decoder and
        # decoded text.
        undo = (self._decoded, self._used, self._snapshot, self._b2cratio, decoder.getstate(), buf._pos)
        try:
            buf._seek_sync(start, os.SEEK_SET)
            self._reset_decoding()
            decoder.setstate((b"", dec_flags))
            fed = await buf.read(feed)
            self._decoded = decoder.decode(fed, need_eof)
            self._snapshot = (dec_flags, fed)
            if len(self._decoded) < skip:
                raise OSError("can't restore logical file position")
            self._used = skip
        except BaseException:
            self._decoded, self._used, self._snapshot, self._b2cratio, dec_state, pos = undo
            decoder.setstate(dec_state)
            buf._seek_sync(pos, os.SEEK_SET)
            raise
        self._reset_encoder(cookie)
        return cookie

    async def detach(self) -> AsyncBinaryFile:
        """Like ``TextIOWrapper.detach()``, but async: returns the binary
        file (:attr:`buffer`) and leaves this one unusable (every use
        raises ``ValueError``).

        Characters decoded ahead but not read yet are given back -- the
        binary file is moved back to where they start -- when that point is
        a plain byte position (a seekable file, and not inside a multi-byte
        sequence or after a pending "\\r"); otherwise they are dropped, as
        the stdlib (and trio) always does.
        """
        buf = self._buffer
        if buf is _DETACHED:
            raise _detached_error()
        if self._turn.busy:
            raise BusyResourceError("detach() while another task waits on this file: let it finish first")
        await checkpoint_if_cancelled()
        if self._decoder is not None and self._used < len(self._decoded) and buf._seekable and not buf._closed:
            start, dec_flags, feed, need_eof, skip = self._unpack_cookie(self._tell_sync())
            if not (dec_flags or feed or need_eof or skip):
                buf._seek_sync(start, os.SEEK_SET)
        self._reset_decoding()
        self._buffer = _DETACHED
        await cancel_shielded_checkpoint()
        return buf

    def _reset_encoder(self, position: int) -> None:
        if self._encoder is not None:
            if position == 0:
                self._encoder.reset()
            else:
                try:
                    self._encoder.setstate(0)
                except (AttributeError, TypeError):  # pragma: no cover
                    pass

    async def aclose(self) -> None:
        if self._wrapped is not None and not self._buffer._closed:
            self._buffer._closed = True
            self._buffer._cancel_inflight()
            try:
                self._wrapped.close()
            finally:
                await checkpoint_if_cancelled()
            return
        await self._buffer.aclose()


# ---------------------------------------------------------------------------
# open_file / wrap_file
# ---------------------------------------------------------------------------


def _resolve_text_params(encoding: Any, errors: Any, newline: Any) -> tuple[str, str]:
    # Let the stdlib validate (and resolve encoding=None to the locale's):
    # same errors, same defaults.  Nothing is opened.
    probe = io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors=errors, newline=newline)
    try:
        return probe.encoding, probe.errors or "strict"
    finally:
        probe.detach()


async def open_file(
    file: Any,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Any = None,
) -> AsyncBinaryFile | AsyncTextFile:
    """Open a file, like the builtin ``open()``, with its I/O on the ring.

    Returns an :class:`AsyncBinaryFile` for binary modes and an
    :class:`AsyncTextFile` for text modes.  ``opener`` (rare) falls back to
    the stdlib ``open()`` in a worker thread.
    """
    m = _Mode(mode)
    if not isinstance(buffering, int):
        raise TypeError(f"'{type(buffering).__name__}' object cannot be interpreted as an integer")
    if not -(1 << 31) <= buffering < 1 << 31:
        # (open()'s type for it: the argument is a C int)
        raise OverflowError(f"buffering={buffering} does not fit in a C int (-2**31 to 2**31 - 1)")
    if m.binary:
        if encoding is not None:
            raise ValueError("binary mode doesn't take an encoding argument")
        if errors is not None:
            raise ValueError("binary mode doesn't take an errors argument")
        if newline is not None:
            raise ValueError("binary mode doesn't take a newline argument")
        if buffering == 1:
            import warnings

            warnings.warn(
                "line buffering (buffering=1) isn't supported in binary mode, the default buffer size will be used",
                RuntimeWarning,
                stacklevel=2,
            )
    else:
        if buffering == 0:
            raise ValueError("can't have unbuffered text I/O")
        enc, errs = _resolve_text_params(encoding, errors, newline)
    if opener is not None:
        from . import to_thread

        f = await to_thread.run_sync(lambda: open(file, mode, buffering, encoding, errors, newline, closefd, opener))
        return wrap_file(f)  # type: ignore[return-value]
    if isinstance(file, bool):
        import warnings

        warnings.warn("bool is used as a file descriptor", RuntimeWarning, stacklevel=2)
    if isinstance(file, int):
        if file < 0:
            raise ValueError("negative file descriptor")
        fd = file
        name: Any = file
        await checkpoint()
    else:
        # .name is what open() gives: the str (or bytes) path, also when a
        # Path was passed.
        path = name = os.fspath(file)
        if not closefd:
            raise ValueError("Cannot use closefd=False with file name")
        fd = await _openat(path, m.flags)
    try:
        st = _fstat_not_dir(fd, name)
        regular = _stat.S_ISREG(st.st_mode)
        blksize = st.st_blksize if st.st_blksize > 1 else _DEFAULT_BUFFER_SIZE
        bufsize = buffering if buffering > 1 else blksize
        if isinstance(file, int) or not regular:
            pos = None  # ask the kernel (or find out it's not seekable)
        else:
            pos = st.st_size if m.append else 0
        if m.append and regular:
            pos = os.lseek(fd, 0, os.SEEK_END)
        raw = AsyncBinaryFile(
            fd,
            name,
            m.raw_mode,
            readable=m.readable,
            writable=m.writable,
            append=m.append,
            closefd=closefd,
            pos=pos,
            bufsize=bufsize,
            buffered=buffering != 0,
            regular=_short_read_is_eof(st),
        )
        if m.binary:
            return raw
        return AsyncTextFile(raw, mode, enc, errs, newline, line_buffering=buffering == 1)
    except BaseException:
        # Cancelled (or failed) after the kernel opened the file: close it,
        # nothing leaks.
        if closefd:
            try:
                os.close(fd)
            except OSError:
                pass
        raise


# What trio's file wrapper exposes of the file it wraps, when that file has
# it: attributes and cheap queries as they are, and the methods that can
# block as async methods run in a worker thread.  Nothing else is forwarded.
_SYNC_ATTRS = frozenset(
    "closed encoding errors fileno isatty newlines readable seekable writable "
    "buffer raw line_buffering closefd name mode getvalue getbuffer".split()
)
_ASYNC_METHODS = frozenset(
    "flush read read1 readall readinto readinto1 readline readlines seek tell truncate write writelines peek".split()
)


@final
class AsyncIOWrapper(AsyncFile):
    """``wrap_file`` for file objects without a usable fd (BytesIO, text
    files whose decoder state we cannot take over, ...): every method runs in
    a worker thread, and the wrapper forwards what trio's does.  (Named as
    trio's wrapper class, which is what ``type(f)`` and the generated
    methods' qualified names show there.)"""

    __slots__ = ("_wrapped", "__dict__")  # (__dict__: the generated methods, made once)

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    @property
    def wrapped(self) -> Any:
        return self._wrapped

    def __getattr__(self, name: str) -> Any:
        if name in _SYNC_ATTRS:
            return getattr(self._wrapped, name)
        if name not in _ASYNC_METHODS:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r} "
                f"(a wrapped file forwards only the io attributes and methods trio's does)"
            )
        method = getattr(self._wrapped, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            from . import to_thread

            return await to_thread.run_sync(lambda: method(*args, **kwargs))

        # __class__, not type(): what the object says it is (a mock made
        # with spec=io.StringIO says StringIO), as trio's docs do.
        cls = self._wrapped.__class__
        call.__name__ = name
        call.__qualname__ = f"{type(self).__qualname__}.{name}"
        call.__doc__ = f"Like {cls.__module__}.{cls.__qualname__}.{name}(), but async: runs in a worker thread."
        setattr(self, name, call)  # later lookups find it without __getattr__
        return call

    def __dir__(self) -> list[str]:
        wrapped = self._wrapped
        forwarded = {a for a in _SYNC_ATTRS | _ASYNC_METHODS if hasattr(wrapped, a)}
        return sorted(set(super().__dir__()) | forwarded)

    async def detach(self) -> Any:
        """Like the wrapped file's ``detach()``, but async: the file under it,
        wrapped (with :func:`wrap_file`) in its turn."""
        from . import to_thread

        return wrap_file(await to_thread.run_sync(self._wrapped.detach))

    async def aclose(self) -> None:
        from . import to_thread

        with CancelScope(shield=True):
            await to_thread.run_sync(self._wrapped.close)
        await checkpoint_if_cancelled()


def wrap_file(file: Any) -> Any:
    """Wrap an already-open stdlib file object.

    Binary files with an fd (``FileIO``, ``BufferedReader``/``Writer``/
    ``Random``) are taken over: the stdlib object is flushed and its position
    synced, then all I/O runs on the ring on its fd.  ``aclose()`` closes the
    stdlib object.  Anything else (``BytesIO``, text files, objects without a
    real fd) is wrapped with its methods running in a worker thread.
    """
    if not (callable(getattr(file, "close", None)) and (hasattr(file, "read") or hasattr(file, "write"))):
        raise TypeError(f"{file} does not implement required duck-file methods: close and (read or write)")
    if isinstance(file, (io.FileIO, io.BufferedReader, io.BufferedWriter, io.BufferedRandom)) and not file.closed:
        try:
            fd = file.fileno()
        except (OSError, ValueError):
            return AsyncIOWrapper(file)
        if file.writable():
            file.flush()
        try:
            # drop the stdlib read-ahead so the kernel position is the
            # logical one
            pos: int | None = file.seek(file.tell()) if file.seekable() else None
        except OSError:
            pos = None
        mode = getattr(file, "mode", "rb")
        m = _Mode(mode.replace("b", "") + "b") if isinstance(mode, str) else None
        append = bool(m and m.append)
        if append and pos is not None:
            pos = os.lseek(fd, 0, os.SEEK_END)
        bufsize = getattr(file, "_CHUNK_SIZE", None) or _DEFAULT_BUFFER_SIZE
        return AsyncBinaryFile(
            fd,
            getattr(file, "name", fd),
            mode,
            readable=file.readable(),
            writable=file.writable(),
            append=append,
            pos=pos,
            bufsize=_DEFAULT_BUFFER_SIZE if not isinstance(bufsize, int) else _DEFAULT_BUFFER_SIZE,
            buffered=not isinstance(file, io.FileIO),
            wrapped=file,
        )
    return AsyncIOWrapper(file)
