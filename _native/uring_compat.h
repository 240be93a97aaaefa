/*
 * The io_uring names ringtrio needs that are newer than the system's
 * <linux/io_uring.h> (Linux 6.1 on the build machines).  Values are the
 * kernel's ABI; having a name here says nothing about the running kernel,
 * which is probed at run time.
 */
#ifndef RINGTRIO_URING_COMPAT_H
#define RINGTRIO_URING_COMPAT_H

#include <linux/io_uring.h>

#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)          /* 6.6 */
#endif
#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)            /* 6.10 */
#endif
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)             /* 6.12 */
#endif
#ifndef IORING_FEAT_REG_REG_RING
#define IORING_FEAT_REG_REG_RING (1U << 13)         /* 6.3 */
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)      /* 6.10 */
#endif

/* Newer headers make these enum members, so #ifndef cannot see them: use
 * ringtrio's own names for the values instead. */
#define RT_IOU_PBUF_RING_INC 2                      /* 6.12 */
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC RT_IOU_PBUF_RING_INC
#endif
#define RT_IORING_REGISTER_PBUF_RING 22             /* 5.19 */
/* waitid(2) as a ring op (6.7).  Its SQE: fd = the id, len = the idtype,
 * addr2 = the siginfo_t pointer, file_index = the options, and the op-flags
 * word (waitid_flags in newer headers) must be 0. */
#define RT_IORING_OP_WAITID 50
#define RT_IORING_OP_FTRUNCATE 55                   /* 6.9 */
#define RT_IORING_UNREGISTER_PBUF_RING 23

/* Our own copy of struct io_uring_buf_reg: 6.1 calls `flags` `pad`. */
struct rt_buf_reg {
    __u64 ring_addr;
    __u32 ring_entries;
    __u16 bgid;
    __u16 flags;
    __u64 resv[3];
};

#endif
