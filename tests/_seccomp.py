"""A seccomp filter that makes chosen syscalls fail with an errno, as
Docker's default profile, containerd's RuntimeDefault or gVisor do for
io_uring -- for tests of ringtrio's fallback to its epoll backend.

Built with ctypes: ``prctl(PR_SET_NO_NEW_PRIVS)`` (which lets an
unprivileged process install a filter), then ``prctl(PR_SET_SECCOMP,
SECCOMP_MODE_FILTER, &prog)`` with a small classic-BPF program:

    load the architecture; not ours -> allow
    load the syscall number
    for each refused syscall: equal -> return ERRNO(its errno)
    allow

The filter binds the calling thread and the threads it starts later, for
the rest of the process: install it only in a subprocess.
"""

from __future__ import annotations

import ctypes
import errno
import platform

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000

# classic BPF opcodes
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K

# offsets in struct seccomp_data {int nr; __u32 arch; __u64 ip; __u64 args[6];}
NR_OFFSET = 0
ARCH_OFFSET = 4

AUDIT_ARCH = {
    "x86_64": 0xC000003E,
    "aarch64": 0xC00000B7,
    "riscv64": 0xC00000F3,
    "ppc64le": 0xC0000015,
    "s390x": 0x80000016,
}

# The io_uring syscalls have the same numbers on every architecture (they
# came after the tables were unified in 5.1).
IO_URING_SYSCALLS = {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427}


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def refuse(syscalls: dict[str, int]) -> None:
    """Make each named io_uring syscall fail with its errno from now on."""
    arch = AUDIT_ARCH[platform.machine()]
    prog = [
        (BPF_LD_W_ABS, 0, 0, ARCH_OFFSET),
        # jt: fall through to the checks; jf: jump over them to "allow".
        (BPF_JEQ_K, 0, 1 + 2 * len(syscalls), arch),
        (BPF_LD_W_ABS, 0, 0, NR_OFFSET),
    ]
    for name, err in syscalls.items():
        prog.append((BPF_JEQ_K, 0, 1, IO_URING_SYSCALLS[name]))
        prog.append((BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | (err & 0xFFFF)))
    prog.append((BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    filters = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


def parse(spec: str) -> dict[str, int]:
    """"io_uring_enter=EPERM,io_uring_setup=ENOSYS" -> {name: errno}."""
    out = {}
    for item in spec.split(","):
        name, _, err = item.partition("=")
        out[name] = getattr(errno, err)
    return out
