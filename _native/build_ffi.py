"""cffi builder for ringtrio._native (API mode): the io_uring ring
(ring.c) and its user-space emulation, the soft ring (softring.c).

The C declarations are taken from ring.h itself (minus preprocessor lines),
so the binding cannot drift from the header.  The constants below are the
io_uring ABI values the Python side may want; their values come from the C
compiler (``...``), i.e. from <linux/io_uring.h> plus uring_compat.h.
"""

from __future__ import annotations

import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

CONSTANTS = """
IORING_SETUP_IOPOLL IORING_SETUP_SQPOLL IORING_SETUP_CQSIZE IORING_SETUP_CLAMP
IORING_SETUP_SUBMIT_ALL IORING_SETUP_COOP_TASKRUN IORING_SETUP_TASKRUN_FLAG
IORING_SETUP_SINGLE_ISSUER IORING_SETUP_DEFER_TASKRUN IORING_SETUP_NO_SQARRAY
IORING_FEAT_SINGLE_MMAP IORING_FEAT_NODROP IORING_FEAT_SUBMIT_STABLE
IORING_FEAT_FAST_POLL IORING_FEAT_EXT_ARG IORING_FEAT_NATIVE_WORKERS
IORING_FEAT_CQE_SKIP IORING_FEAT_LINKED_FILE IORING_FEAT_RECVSEND_BUNDLE
IOSQE_FIXED_FILE IOSQE_IO_DRAIN IOSQE_IO_LINK IOSQE_IO_HARDLINK IOSQE_ASYNC
IOSQE_BUFFER_SELECT IOSQE_CQE_SKIP_SUCCESS
IORING_CQE_F_BUFFER IORING_CQE_F_MORE IORING_CQE_F_SOCK_NONEMPTY
IORING_CQE_F_NOTIF IORING_CQE_F_BUF_MORE
IORING_SQ_CQ_OVERFLOW IORING_SQ_TASKRUN
IORING_TIMEOUT_ABS IORING_TIMEOUT_UPDATE IORING_TIMEOUT_ETIME_SUCCESS
IORING_LINK_TIMEOUT_UPDATE
IORING_ASYNC_CANCEL_ALL IORING_ASYNC_CANCEL_FD IORING_ASYNC_CANCEL_ANY
IORING_ASYNC_CANCEL_USERDATA
IORING_RECVSEND_POLL_FIRST IORING_RECV_MULTISHOT IORING_RECVSEND_BUNDLE
IORING_ACCEPT_MULTISHOT
IORING_POLL_ADD_MULTI
IOU_PBUF_RING_INC
IORING_OP_NOP IORING_OP_READV IORING_OP_WRITEV IORING_OP_FSYNC
IORING_OP_POLL_ADD IORING_OP_POLL_REMOVE IORING_OP_SENDMSG IORING_OP_RECVMSG
IORING_OP_TIMEOUT IORING_OP_TIMEOUT_REMOVE IORING_OP_ACCEPT
IORING_OP_ASYNC_CANCEL IORING_OP_LINK_TIMEOUT IORING_OP_CONNECT
IORING_OP_OPENAT IORING_OP_CLOSE IORING_OP_STATX IORING_OP_READ
IORING_OP_WRITE IORING_OP_SEND IORING_OP_RECV IORING_OP_SPLICE
IORING_OP_SHUTDOWN IORING_OP_SOCKET IORING_OP_SEND_ZC
IORING_OP_LAST
""".split()


def _header_decls() -> str:
    with open(os.path.join(HERE, "ring.h")) as f:
        return "".join(line for line in f if not line.lstrip().startswith("#"))


ffibuilder = FFI()
ffibuilder.cdef(
    _header_decls() + "".join(f"#define {name} ...\n" for name in CONSTANTS)
)
ffibuilder.set_source(
    "ringtrio._native",
    '#include "ring.h"\n#include "uring_compat.h"\n',
    sources=["_native/ring.c", "_native/softring.c"],
    include_dirs=["_native"],
    depends=["_native/ring.h", "_native/ring_impl.h", "_native/uring_compat.h"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
