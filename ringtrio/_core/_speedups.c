/* ringtrio._core._speedups: two per-operation loops of the scheduler in C.
 *
 * Runner._submit_op and Runner._dispatch_cqes (ringtrio/_core/_run.py) run
 * once per ring operation; in Python they cost about as much as the rest of
 * an operation's life put together.  This module does the same work on the
 * same Python objects (the runner's slot/generation/free lists, RingOp and
 * Task instances) -- _run.py stays the definition, and it falls back to its
 * own Python code when this module is missing or RINGTRIO_NO_SPEEDUPS is set.
 *
 * RingOp and Task use __slots__: their fields are read and written at the
 * offsets of their member descriptors, looked up once in setup().  SQEs are
 * queued by calling the cffi module's rt_prep (its address comes from
 * setup() too), so there is one copy of the ring code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>

typedef int (*prep_fn)(void *r, uint8_t opcode, uint8_t sqe_flags,
                       uint16_t ioprio, int32_t fd, uint64_t addr,
                       uint32_t len, uint64_t off, uint32_t op_flags,
                       uint64_t user_data, uint16_t buf_index,
                       int64_t link_deadline_ns, uint64_t link_user_data);

#define SLOT_MASK 0xFFFFFFFFull
#define RESERVED_SLOTS 8
#define TOKEN_WAKEUP 1
#define CQE_F_MORE (1u << 1)

static prep_fn rt_prep;
static PyTypeObject *ringop_type;   /* RingOp itself (not subclasses) */
static PyObject *link_expired;      /* _run._LINK_EXPIRED */
static PyObject *on_cqe_name;       /* "_on_cqe" */

/* Member offsets. */
static Py_ssize_t o_opcode, o_fd, o_addr, o_length, o_off, o_op_flags,
    o_ioprio, o_sqe_flags, o_buf_index, o_keepalive, o_token, o_task,
    o_cancel_raise, o_linked, o_done, o_result;
static Py_ssize_t t_next_send, t_abort_func;

#define FIELD(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* Replace a slot's value (new reference stolen). */
static inline void set_field(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    PyObject *old = FIELD(obj, off);
    FIELD(obj, off) = value;
    Py_XDECREF(old);
}

static int member_offset(PyObject *type, const char *name, Py_ssize_t *out)
{
    PyObject *d = PyObject_GetAttrString(type, name);
    if (!d)
        return -1;
    if (!PyObject_TypeCheck(d, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s is not a __slots__ member", name);
        Py_DECREF(d);
        return -1;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != T_OBJECT_EX && m->type != T_OBJECT) {
        PyErr_Format(PyExc_TypeError, "%s is not an object slot", name);
        Py_DECREF(d);
        return -1;
    }
    *out = m->offset;
    Py_DECREF(d);
    return 0;
}

/* setup(RingOp, Task, LINK_EXPIRED, rt_prep_address) */
static PyObject *sp_setup(PyObject *mod, PyObject *args)
{
    PyObject *op_t, *task_t, *expired;
    unsigned long long prep_addr;
    if (!PyArg_ParseTuple(args, "O!O!OK", &PyType_Type, &op_t, &PyType_Type,
                          &task_t, &expired, &prep_addr))
        return NULL;
    struct { const char *name; Py_ssize_t *off; } ops[] = {
        {"opcode", &o_opcode}, {"fd", &o_fd}, {"addr", &o_addr},
        {"length", &o_length}, {"off", &o_off}, {"op_flags", &o_op_flags},
        {"ioprio", &o_ioprio}, {"sqe_flags", &o_sqe_flags},
        {"buf_index", &o_buf_index}, {"keepalive", &o_keepalive},
        {"token", &o_token}, {"task", &o_task},
        {"cancel_raise", &o_cancel_raise}, {"linked", &o_linked},
        {"done", &o_done}, {"result", &o_result},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (member_offset(op_t, ops[i].name, ops[i].off) < 0)
            return NULL;
    if (member_offset(task_t, "_next_send", &t_next_send) < 0 ||
        member_offset(task_t, "_abort_func", &t_abort_func) < 0)
        return NULL;
    Py_XSETREF(ringop_type, (PyTypeObject *)Py_NewRef(op_t));
    Py_XSETREF(link_expired, Py_NewRef(expired));
    rt_prep = (prep_fn)(uintptr_t)prep_addr;
    Py_RETURN_NONE;
}

/* Unsigned field of an op, range-checked. */
static int get_uint(PyObject *op, Py_ssize_t off, unsigned long long max,
                    unsigned long long *out)
{
    PyObject *v = FIELD(op, off);
    if (!v || !PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "an SQE field is not an int");
        return -1;
    }
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (x > max) {
        PyErr_SetString(PyExc_OverflowError, "an SQE field is out of range");
        return -1;
    }
    *out = x;
    return 0;
}

static int get_fd(PyObject *op, int32_t *out)
{
    PyObject *v = FIELD(op, o_fd);
    if (!v || !PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "fd is not an int");
        return -1;
    }
    long x = PyLong_AsLong(v);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (x < INT32_MIN || x > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "fd is out of range");
        return -1;
    }
    *out = (int32_t)x;
    return 0;
}

/* Give back a token taken by submit() (as Runner._release_token). */
static int release_slot(PyObject *slots, PyObject *gens, PyObject *free_,
                        Py_ssize_t slot)
{
    unsigned long long gen = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(gens, slot));
    if (gen == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    PyObject *next = PyLong_FromUnsignedLongLong((gen + 1) & SLOT_MASK);
    PyObject *idx = PyLong_FromSsize_t(slot);
    if (!next || !idx) {
        Py_XDECREF(next);
        Py_XDECREF(idx);
        return -1;
    }
    PyList_SetItem(gens, slot, next);
    PyList_SetItem(slots, slot, Py_NewRef(Py_None));
    int rc = PyList_Append(free_, idx);
    Py_DECREF(idx);
    return rc;
}

/* submit(ring_addr, slots, gens, free, op, task, link_ns, link_ud)
 *
 * Everything Runner._submit_op does after the deadline is computed: take a
 * token (free list, LIFO; generation in the high 32 bits), fill the op's
 * runtime fields, queue the SQE.  Returns the token; or None, touching
 * nothing, if op.addr is not an int, bytes or a contiguous memoryview (the
 * caller then takes the Python path).  On a bad field or a full SQ the token is given back
 * and the error raised (ValueError / OSError, as the Python path). */
static PyObject *sp_submit(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "submit() takes 8 arguments");
        return NULL;
    }
    void *ring = PyLong_AsVoidPtr(args[0]);
    PyObject *slots = args[1], *gens = args[2], *free_ = args[3];
    PyObject *op = args[4], *task = args[5];
    long long link_ns = PyLong_AsLongLong(args[6]);
    unsigned long long link_ud = PyLong_AsUnsignedLongLong(args[7]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyList_CheckExact(slots) || !PyList_CheckExact(gens) ||
        !PyList_CheckExact(free_) || !PyObject_TypeCheck(op, ringop_type)) {
        PyErr_SetString(PyExc_TypeError, "submit(): bad arguments");
        return NULL;
    }
    PyObject *addr_obj = FIELD(op, o_addr);
    uint64_t addr;
    if (addr_obj && PyBytes_CheckExact(addr_obj)) {
        addr = (uint64_t)(uintptr_t)PyBytes_AS_STRING(addr_obj);
    } else if (addr_obj && PyLong_CheckExact(addr_obj)) {
        addr = 0; /* read below, with the range checks */
    } else if (addr_obj && PyMemoryView_Check(addr_obj)) {
        /* A memoryview (contiguous): its memory stays put while the view
         * object lives -- the view holds an export on its base, so the base
         * cannot be resized -- and the op holds the view until its final
         * CQE.  (Callers pass a view of their own, not one the user could
         * release.) */
        Py_buffer view;
        if (PyObject_GetBuffer(addr_obj, &view, PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        addr = (uint64_t)(uintptr_t)view.buf;
        PyBuffer_Release(&view);
    } else {
        Py_RETURN_NONE;
    }

    /* Token. */
    Py_ssize_t slot, nfree = PyList_GET_SIZE(free_);
    if (nfree) {
        PyObject *last = PyList_GET_ITEM(free_, nfree - 1);
        slot = PyLong_AsSsize_t(last);
        if (slot == -1 && PyErr_Occurred())
            return NULL;
        if (PyList_SetSlice(free_, nfree - 1, nfree, NULL) < 0)
            return NULL;
        if (PyList_SetItem(slots, slot, Py_NewRef(op)) < 0)
            return NULL;
    } else {
        slot = PyList_GET_SIZE(slots);
        PyObject *zero = PyLong_FromLong(0);
        if (!zero)
            return NULL;
        if (PyList_Append(slots, op) < 0 || PyList_Append(gens, zero) < 0) {
            Py_DECREF(zero);
            return NULL;
        }
        Py_DECREF(zero);
    }
    unsigned long long gen = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(gens, slot));
    if (gen == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    uint64_t token = ((uint64_t)gen << 32) | (uint64_t)slot;
    PyObject *token_obj = PyLong_FromUnsignedLongLong(token);
    if (!token_obj)
        return NULL;

    set_field(op, o_task, Py_NewRef(task));
    set_field(op, o_cancel_raise, Py_NewRef(Py_None));
    set_field(op, o_done, Py_NewRef(Py_False));
    set_field(op, o_token, Py_NewRef(token_obj));
    set_field(op, o_linked, Py_NewRef(link_ns >= 0 ? Py_True : Py_False));

    unsigned long long opcode, sqe_flags, ioprio, length, off, op_flags, buf_index, a;
    int32_t fd;
    if (get_uint(op, o_opcode, 0xFF, &opcode) < 0 ||
        get_uint(op, o_sqe_flags, 0xFF, &sqe_flags) < 0 ||
        get_uint(op, o_ioprio, 0xFFFF, &ioprio) < 0 || get_fd(op, &fd) < 0 ||
        get_uint(op, o_length, 0xFFFFFFFFull, &length) < 0 ||
        get_uint(op, o_off, ~0ull, &off) < 0 ||
        get_uint(op, o_op_flags, 0xFFFFFFFFull, &op_flags) < 0 ||
        get_uint(op, o_buf_index, 0xFFFF, &buf_index) < 0 ||
        (PyLong_CheckExact(addr_obj) && get_uint(op, o_addr, ~0ull, &a) < 0))
        goto bad_field;
    if (PyLong_CheckExact(addr_obj))
        addr = a;
    int rc = rt_prep(ring, (uint8_t)opcode, (uint8_t)sqe_flags, (uint16_t)ioprio,
                     fd, addr, (uint32_t)length, off, (uint32_t)op_flags,
                     token, (uint16_t)buf_index, link_ns, link_ud);
    if (rc < 0) {
        set_field(op, o_task, Py_NewRef(Py_None));
        Py_DECREF(token_obj);
        if (release_slot(slots, gens, free_, slot) < 0)
            return NULL;
        PyObject *repr = PyObject_Repr(op);
        if (!repr)
            return NULL;
        PyObject *msg = PyUnicode_FromFormat("could not queue %U: %s", repr, strerror(-rc));
        Py_DECREF(repr);
        if (msg) {
            PyObject *exc_args = Py_BuildValue("(iO)", -rc, msg);
            if (exc_args) {
                PyErr_SetObject(PyExc_OSError, exc_args);
                Py_DECREF(exc_args);
            }
            Py_DECREF(msg);
        }
        return NULL;
    }
    return token_obj;

bad_field: {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        set_field(op, o_task, Py_NewRef(Py_None));
        Py_DECREF(token_obj);
        if (release_slot(slots, gens, free_, slot) < 0) {
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            return NULL;
        }
        PyObject *repr = PyObject_Repr(op);
        PyErr_Format(PyExc_ValueError,
                     "%S has a field out of range for an SQE (fd/len/op_flags are "
                     "32-bit, addr/off 64-bit unsigned, buf_index 16-bit): %S",
                     repr ? repr : Py_None, value ? value : Py_None);
        Py_XDECREF(repr);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return NULL;
    }
}

/* One completion as rt_pass copies it out (ring.h's rt_cqe). */
typedef struct {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} cqe_t;

static int set_runner_int(PyObject *runner, const char *name, long value)
{
    PyObject *v = PyLong_FromLong(value);
    if (!v)
        return -1;
    int rc = PyObject_SetAttrString(runner, name, v);
    Py_DECREF(v);
    return rc;
}

static long get_runner_int(PyObject *runner, const char *name)
{
    PyObject *v = PyObject_GetAttrString(runner, name);
    if (!v)
        return -1;
    long x = PyLong_AsLong(v);
    Py_DECREF(v);
    return x;
}

/* Re-read the runner's _ops_in_flight after Python code ran. */
static int resync(PyObject *runner, long *inflight, long *synced)
{
    long x = get_runner_int(runner, "_ops_in_flight");
    if (x == -1 && PyErr_Occurred())
        return -1;
    *inflight = *synced = x;
    return 0;
}

/* The default RingOp._on_cqe, for a plain RingOp whose task was not
 * cancelled: leave (res, flags) -- or the link-expired marker -- on the op
 * and make the task runnable.  Returns 0, or -1 with an exception set. */
static int complete_plain(PyObject *op, int32_t res, uint32_t flags, PyObject *append)
{
    PyObject *task = FIELD(op, o_task);
    if (!task || task == Py_None)
        return 0;
    Py_INCREF(task);
    set_field(op, o_task, Py_NewRef(Py_None));
    PyObject *result;
    if (FIELD(op, o_linked) == Py_True && res == -ECANCELED) {
        result = Py_NewRef(link_expired);
    } else {
        result = Py_BuildValue("(iI)", res, flags);
        if (!result) {
            Py_DECREF(task);
            return -1;
        }
    }
    set_field(op, o_result, result);
    set_field(task, t_abort_func, Py_NewRef(Py_None));
    set_field(task, t_next_send, Py_NewRef(Py_None));
    PyObject *r = PyObject_CallOneArg(append, task);
    Py_DECREF(task);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int call_on_cqe(PyObject *op, int32_t res, uint32_t flags)
{
    PyObject *a = PyLong_FromLong(res), *b = PyLong_FromUnsignedLong(flags);
    PyObject *r = NULL;
    if (a && b)
        r = PyObject_CallMethodObjArgs(op, on_cqe_name, a, b, NULL);
    Py_XDECREF(a);
    Py_XDECREF(b);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* op._on_cqe(res, flags) with the runner's _ops_in_flight current before
 * the call, and re-read after it (the callback may submit or end ops). */
static int call_python(PyObject *runner, PyObject *op, int32_t res, uint32_t flags,
                       long *inflight, long *synced)
{
    if (*synced != *inflight) {
        if (set_runner_int(runner, "_ops_in_flight", *inflight) < 0)
            return -1;
        *synced = *inflight;
    }
    if (call_on_cqe(op, res, flags) < 0)
        return -1;
    return resync(runner, inflight, synced);
}

/* dispatch(runner, cqe_buffer, n, slots, gens, free, runq, plain_ok)
 *
 * Runner._dispatch_cqes: route each of the first n CQEs in cqe_buffer to
 * its op by token (stale tokens are counted and dropped), release the token
 * at an op's final CQE, and complete it: inline for a plain RingOp when
 * plain_ok (no instruments), else through op._on_cqe(res, flags), with the
 * runner's _ops_in_flight brought up to date first.  Then drop the memory
 * the kernel no longer uses (keepalive; a non-int addr), unless a linked
 * deadline fired and the op may be submitted again. */
static PyObject *sp_dispatch(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "dispatch() takes 8 arguments");
        return NULL;
    }
    PyObject *runner = args[0], *slots = args[3], *gens = args[4], *free_ = args[5];
    Py_ssize_t n = PyLong_AsSsize_t(args[2]);
    int plain_ok = PyObject_IsTrue(args[7]);
    if ((n == -1 || plain_ok < 0) && PyErr_Occurred())
        return NULL;
    if (!PyList_CheckExact(slots) || !PyList_CheckExact(gens) || !PyList_CheckExact(free_)) {
        PyErr_SetString(PyExc_TypeError, "dispatch(): bad arguments");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (n < 0 || (size_t)n * sizeof(cqe_t) > (size_t)view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "dispatch(): n is beyond the CQE buffer");
        return NULL;
    }
    PyObject *append = PyObject_GetAttrString(args[6], "append");
    long inflight = get_runner_int(runner, "_ops_in_flight");
    if (!append || (inflight == -1 && PyErr_Occurred())) {
        Py_XDECREF(append);
        PyBuffer_Release(&view);
        return NULL;
    }
    long stale = 0, synced = inflight;
    int wakeup = 0, failed = 0;
    const cqe_t *cqes = (const cqe_t *)view.buf;

    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        uint64_t ud = cqes[i].user_data;
        int32_t res = cqes[i].res;
        uint32_t flags = cqes[i].flags;
        Py_ssize_t slot = (Py_ssize_t)(ud & SLOT_MASK);
        if (slot < RESERVED_SLOTS) {
            if (slot == TOKEN_WAKEUP)
                wakeup = 1;
            continue;
        }
        if (slot >= PyList_GET_SIZE(slots) || slot >= PyList_GET_SIZE(gens)) {
            stale++;
            continue;
        }
        PyObject *op = PyList_GET_ITEM(slots, slot);
        if (op == Py_None) {
            stale++;
            continue;
        }
        unsigned long long gen = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(gens, slot));
        if (gen == (unsigned long long)-1 && PyErr_Occurred()) {
            failed = 1;
            break;
        }
        if (gen != (ud >> 32)) {
            stale++;
            continue;
        }
        Py_INCREF(op);
        if (!(flags & CQE_F_MORE)) {
            /* The final CQE: release the token. */
            set_field(op, o_done, Py_NewRef(Py_True));
            if (release_slot(slots, gens, free_, slot) < 0) {
                Py_DECREF(op);
                failed = 1;
                break;
            }
            inflight--;
            int rc;
            if (plain_ok && Py_TYPE(op) == ringop_type && FIELD(op, o_cancel_raise) == Py_None) {
                rc = complete_plain(op, res, flags, append);
            } else {
                rc = call_python(runner, op, res, flags, &inflight, &synced);
            }
            if (rc == 0 && FIELD(op, o_result) != link_expired) {
                set_field(op, o_keepalive, Py_NewRef(Py_None));
                PyObject *addr = FIELD(op, o_addr);
                if (!addr || !PyLong_CheckExact(addr))
                    set_field(op, o_addr, PyLong_FromLong(0));
            }
            if (rc < 0)
                failed = 1;
        } else if (call_python(runner, op, res, flags, &inflight, &synced) < 0) {
            failed = 1;
        }
        Py_DECREF(op);
    }
    Py_DECREF(append);
    PyBuffer_Release(&view);

    /* Bring the runner's counters up to date, even after an error (keeping
     * the error that stopped us). */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    int ok = 1;
    if (synced != inflight && set_runner_int(runner, "_ops_in_flight", inflight) < 0)
        ok = 0;
    if (ok && stale) {
        long before = get_runner_int(runner, "_stale_cqes");
        if ((before == -1 && PyErr_Occurred()) ||
            set_runner_int(runner, "_stale_cqes", before + stale) < 0)
            ok = 0;
    }
    if (ok && wakeup && PyObject_SetAttrString(runner, "_wakeup_armed", Py_False) < 0)
        ok = 0;
    if (type || value || tb) {
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

/* new_bytes(n): a new, uninitialized bytes object of n >= 2 bytes, for the
 * kernel to read into before anyone else sees it -- what os.read() does with
 * read(2), done with a ring READ: the object stays private (held by the op
 * and its one reader) until the READ's CQE is in, and is never handed out
 * if the READ did not complete.  (Sizes 0 and 1 could be shared objects.) */
static PyObject *sp_new_bytes(PyObject *mod, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 2) {
        PyErr_SetString(PyExc_ValueError, "new_bytes() needs n >= 2");
        return NULL;
    }
    return PyBytes_FromStringAndSize(NULL, n);
}

/* iovecs(list of bytes) -> bytes: a struct iovec array over the objects'
 * data, for a READV that fills them (objects from new_bytes, kept alive by
 * the op with this array). */
static PyObject *sp_iovecs(PyObject *mod, PyObject *arg)
{
    if (!PyList_CheckExact(arg)) {
        PyErr_SetString(PyExc_TypeError, "iovecs() takes a list of bytes");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)(2 * sizeof(uint64_t)));
    if (!out)
        return NULL;
    uint64_t *iov = (uint64_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = PyList_GET_ITEM(arg, i);
        if (!PyBytes_CheckExact(b)) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_TypeError, "iovecs() takes a list of bytes");
            return NULL;
        }
        iov[2 * i] = (uint64_t)(uintptr_t)PyBytes_AS_STRING(b);
        iov[2 * i + 1] = (uint64_t)PyBytes_GET_SIZE(b);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"iovecs", sp_iovecs, METH_O, "iovecs(list of bytes) -> struct iovec array as bytes"},
    {"new_bytes", sp_new_bytes, METH_O, "new_bytes(n) -> uninitialized bytes of length n (n >= 2)"},
    {"setup", sp_setup, METH_VARARGS, "setup(RingOp, Task, LINK_EXPIRED, rt_prep_address)"},
    {"submit", (PyCFunction)(void (*)(void))sp_submit, METH_FASTCALL,
     "submit(ring_addr, slots, gens, free, op, task, link_ns, link_user_data) -> token | None"},
    {"dispatch", (PyCFunction)(void (*)(void))sp_dispatch, METH_FASTCALL,
     "dispatch(runner, cqe_buffer, n, slots, gens, free, runq, plain_ok)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "ringtrio._core._speedups",
    "Two per-operation loops of the scheduler in C (see ringtrio/_core/_speedups.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    on_cqe_name = PyUnicode_InternFromString("_on_cqe");
    if (!on_cqe_name)
        return NULL;
    return PyModule_Create(&module);
}
