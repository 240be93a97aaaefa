/* ringtrio._core._speedups: two per-operation loops of the scheduler in C.
 *
 * Runner._submit_op and Runner._dispatch_cqes (ringtrio/_core/_runner.py) run
 * once per ring operation; in Python they cost about as much as the rest of
 * an operation's life put together.  This module does the same work on the
 * same Python objects (the runner's slot/generation/free lists, RingOp and
 * Task instances) -- the Python code stays the definition, and the core falls
 * back to it when this module is missing or RINGTRIO_NO_SPEEDUPS is set
 * (ringtrio/_core/_accel.py loads this module and hands it the classes).
 *
 * RingOp and Task use __slots__: their fields are read and written at the
 * offsets of their member descriptors, looked up once in setup().  SQEs are
 * queued by calling the cffi module's rt_prep (its address comes from
 * setup() too), so there is one copy of the ring code.
 *
 * Linked chains (Path.read_bytes' OPENAT -> READ -> READ) get the same
 * treatment: take_tokens() for their members, prep_open_chain() /
 * prep_close_direct() calling ring.c without cffi's argument conversion,
 * and dispatch() completing a member's CQE (LinkedOp._on_cqe) in C unless
 * the chain is being cancelled.
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
#define CQE_F_BUFFER (1u << 0)
#define CQE_BUFFER_SHIFT 16

typedef int (*open_chain_fn)(void *r, int32_t dirfd, const char *path,
                             uint32_t open_flags, uint32_t mode, uint32_t slot,
                             uint8_t rw_opcode, uint64_t buf1, uint32_t len1,
                             uint64_t buf2, uint32_t len2, uint64_t ud_open,
                             uint64_t ud_rw1, uint64_t ud_rw2);
typedef int (*close_direct_fn)(void *r, uint32_t slot, uint64_t user_data,
                               uint8_t sqe_flags);

static prep_fn rt_prep;
static open_chain_fn rt_prep_open_chain;
static close_direct_fn rt_prep_close_direct;
static PyTypeObject *ringop_type;   /* RingOp itself (not subclasses) */
static PyObject *link_expired;      /* _ring_ops._LINK_EXPIRED */
static PyObject *ringop_abort_fn;   /* RingOp._abort, the function */
static PyObject *on_cqe_name;       /* "_on_cqe" */

/* Member offsets. */
static Py_ssize_t o_opcode, o_fd, o_addr, o_length, o_off, o_op_flags,
    o_ioprio, o_sqe_flags, o_buf_index, o_keepalive, o_token, o_task,
    o_cancel_raise, o_linked, o_done, o_result;
static Py_ssize_t t_next_send, t_abort_func, t_custom_sleep_data;
/* LinkedOp / LinkedChain (set by setup_chains; linkedop_type stays NULL
 * until then, and chain members then take the Python path). */
static PyTypeObject *linkedop_type;
static Py_ssize_t l_chain, l_index, c_results, c_pending, c_task, c_cancel_raise;

/* The step loop (set by setup_steps; run_batch refuses to run before). */
static Py_ssize_t t_send, t_context, t_cancel_scope, s_eff, k_abort_func;
static PyTypeObject *park_type;
/* Task: what run_batch and submit_park read fields of at its offsets (the
 * t_* above); any other object would be read out of bounds. */
static PyTypeObject *task_type, *scope_type;
static PyObject *m_checkpoint, *m_yield, *m_resume_plain, *m_resume_check;
static PyObject *dict_name, *attempt_name, *task_attr, *ki_attr, *main_task_attr, *append_name;
static PyObject *inflight_attr, *stale_attr, *wakeup_attr; /* runner attributes */
static PyObject *closed_attr, *op_stamps_attr, *scope_deadlines_attr, *kernel_deadlines_attr, *sp_table_attr,
    *sq_dirty_attr, *abort_name;

#define FIELD(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static int set_runner_int(PyObject *runner, PyObject *name, long value);
static long get_runner_int(PyObject *runner, PyObject *name);

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
        member_offset(task_t, "_abort_func", &t_abort_func) < 0 ||
        member_offset(task_t, "custom_sleep_data", &t_custom_sleep_data) < 0)
        return NULL;
    Py_XSETREF(ringop_type, (PyTypeObject *)Py_NewRef(op_t));
    Py_XSETREF(link_expired, Py_NewRef(expired));
    /* (NULL if RingOp has none: op_abort then uses getattr.) */
    Py_XSETREF(ringop_abort_fn, Py_XNewRef(_PyType_Lookup((PyTypeObject *)op_t, abort_name)));
    rt_prep = (prep_fn)(uintptr_t)prep_addr;
    Py_RETURN_NONE;
}

/* setup_chains(LinkedOp, LinkedChain, rt_prep_open_chain_address,
 *              rt_prep_close_direct_address) */
static PyObject *sp_setup_chains(PyObject *mod, PyObject *args)
{
    PyObject *lop_t, *chain_t;
    unsigned long long open_addr, close_addr;
    if (!PyArg_ParseTuple(args, "O!O!KK", &PyType_Type, &lop_t, &PyType_Type, &chain_t,
                          &open_addr, &close_addr))
        return NULL;
    if (!ringop_type || !PyType_IsSubtype((PyTypeObject *)lop_t, ringop_type)) {
        PyErr_SetString(PyExc_TypeError, "setup_chains(): call setup() first, with LinkedOp's base");
        return NULL;
    }
    if (member_offset(lop_t, "chain", &l_chain) < 0 ||
        member_offset(lop_t, "index", &l_index) < 0 ||
        member_offset(chain_t, "results", &c_results) < 0 ||
        member_offset(chain_t, "pending", &c_pending) < 0 ||
        member_offset(chain_t, "task", &c_task) < 0 ||
        member_offset(chain_t, "cancel_raise", &c_cancel_raise) < 0)
        return NULL;
    Py_XSETREF(linkedop_type, (PyTypeObject *)Py_NewRef(lop_t));
    rt_prep_open_chain = (open_chain_fn)(uintptr_t)open_addr;
    rt_prep_close_direct = (close_direct_fn)(uintptr_t)close_addr;
    Py_RETURN_NONE;
}

/* setup_steps(Task, CancelScope, _Park, CHECKPOINT, YIELD, RESUME_PLAIN,
 *             RESUME_CHECKING_CANCEL) */
static PyObject *sp_setup_steps(PyObject *mod, PyObject *args)
{
    PyObject *task_t, *scope_t, *park_t, *ckpt, *yld, *plain, *check;
    if (!PyArg_ParseTuple(args, "O!O!O!OOOO", &PyType_Type, &task_t, &PyType_Type, &scope_t,
                          &PyType_Type, &park_t, &ckpt, &yld, &plain, &check))
        return NULL;
    if (member_offset(task_t, "_send", &t_send) < 0 ||
        member_offset(task_t, "context", &t_context) < 0 ||
        member_offset(task_t, "_cancel_scope", &t_cancel_scope) < 0 ||
        member_offset(task_t, "_next_send", &t_next_send) < 0 ||
        member_offset(task_t, "_abort_func", &t_abort_func) < 0 ||
        member_offset(task_t, "custom_sleep_data", &t_custom_sleep_data) < 0 ||
        member_offset(scope_t, "_eff", &s_eff) < 0 ||
        member_offset(park_t, "abort_func", &k_abort_func) < 0)
        return NULL;
    Py_XSETREF(park_type, (PyTypeObject *)Py_NewRef(park_t));
    Py_XSETREF(task_type, (PyTypeObject *)Py_NewRef(task_t));
    Py_XSETREF(scope_type, (PyTypeObject *)Py_NewRef(scope_t));
    Py_XSETREF(m_checkpoint, Py_NewRef(ckpt));
    Py_XSETREF(m_yield, Py_NewRef(yld));
    Py_XSETREF(m_resume_plain, Py_NewRef(plain));
    Py_XSETREF(m_resume_check, Py_NewRef(check));
    Py_RETURN_NONE;
}

/* The runner's instance dict, where its per-op flags and counters live
 * (borrowed; NULL with an exception set).  Read and written there rather
 * than through getattr/setattr: the Runner defines none of these names on
 * its class (no property, no slot), and a type lookup per name was a fifth
 * of submit_park's cost. */
static PyObject *runner_dict(PyObject *runner)
{
    PyObject **dictptr = _PyObject_GetDictPtr(runner);
    if (!dictptr || !*dictptr || !PyDict_CheckExact(*dictptr)) {
        PyErr_SetString(PyExc_TypeError, "the runner has no instance dict");
        return NULL;
    }
    return *dictptr;
}

/* runner.<name> from its instance dict (borrowed; NULL with an exception
 * set, also when it is missing). */
static PyObject *runner_get(PyObject *dict, PyObject *name)
{
    PyObject *v = PyDict_GetItemWithError(dict, name);
    if (!v && !PyErr_Occurred())
        PyErr_SetObject(PyExc_AttributeError, name);
    return v;
}

/* task._cancel_scope._eff or (runner.ki_pending and task is main_task):
 * 1, 0, or -1 with an exception set. */
static int cancel_pending(PyObject *runner, PyObject *task, PyObject *main_task)
{
    PyObject *scope = FIELD(task, t_cancel_scope);
    if (scope && scope != Py_None && !PyObject_TypeCheck(scope, scope_type)) {
        PyErr_Format(PyExc_TypeError, "a task's cancel scope is a %.200s, not a CancelScope",
                     Py_TYPE(scope)->tp_name);
        return -1;
    }
    PyObject *eff = scope && scope != Py_None ? FIELD(scope, s_eff) : NULL;
    int r = eff ? PyObject_IsTrue(eff) : 0;
    if (r == 0 && task == main_task) {
        PyObject *dict = runner_dict(runner), *ki;
        r = dict && (ki = runner_get(dict, ki_attr)) ? PyObject_IsTrue(ki) : -1;
    }
    return r;
}

static PyObject *batch_result(Py_ssize_t n, PyObject *task, int kind, PyObject *payload)
{
    /* Steals payload. */
    PyObject *r = PyTuple_New(4), *n_obj = r ? PyLong_FromSsize_t(n) : NULL;
    PyObject *kind_obj = n_obj ? PyLong_FromLong(kind) : NULL;
    if (!kind_obj) {
        Py_XDECREF(r);
        Py_XDECREF(n_obj);
        Py_XDECREF(payload);
        return NULL;
    }
    PyTuple_SET_ITEM(r, 0, n_obj);
    PyTuple_SET_ITEM(r, 1, Py_NewRef(task ? task : Py_None));
    PyTuple_SET_ITEM(r, 2, kind_obj);
    PyTuple_SET_ITEM(r, 3, payload ? payload : Py_NewRef(Py_None));
    return r;
}

/* run_batch(runner, popleft, append, batch, local, main_task)
 *     -> (n, task, kind, payload)
 *
 * The plain case of Runner._run_loop's step loop: pop up to `batch` tasks
 * from the run queue (popleft and append: its bound methods, which the
 * loop makes once rather than this call every pass) and resume each with None in its context, then act on what it
 * yielded (checkpoint / yield: back on the run queue; a park: store its
 * abort function, and deliver a pending cancel or KeyboardInterrupt).  It
 * stops after n tasks when the n-th needs the Python step:
 *   kind 0: its resume value is not plain (a cancel check, an outcome):
 *           the caller steps it (Runner._step);
 *   kind 1: it returned `payload`;  kind 2: it raised `payload`;
 *   kind 3: it yielded something unknown (`payload`).
 * task is None when all `batch` were run, and local.task is then None;
 * otherwise it is left as the last task run (the caller clears it). */
static PyObject *sp_run_batch(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "run_batch() takes 6 arguments");
        return NULL;
    }
    if (!park_type) {
        PyErr_SetString(PyExc_RuntimeError, "run_batch(): setup_steps() was not called");
        return NULL;
    }
    PyObject *runner = args[0], *popleft = args[1], *append = args[2], *local = args[4],
        *main_task = args[5];
    Py_ssize_t batch = PyLong_AsSsize_t(args[3]);
    if (batch == -1 && PyErr_Occurred())
        return NULL;
    /* The calling thread's dict of `local` (a threading.local: its
     * __dict__ is this thread's), where each step's local.task is stored:
     * one dict store per task instead of threading.local's setattr, which
     * finds that dict again every time. */
    PyObject *ldict = PyObject_GetAttr(local, dict_name);
    if (!ldict)
        return NULL;
    if (!PyDict_CheckExact(ldict)) {
        Py_DECREF(ldict);
        PyErr_SetString(PyExc_TypeError, "run_batch(): local has no __dict__ of its own");
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t i;
    for (i = 0; i < batch; i++) {
        PyObject *task = PyObject_CallNoArgs(popleft);
        if (!task)
            goto done;
        if (!PyObject_TypeCheck(task, task_type)) {
            PyErr_Format(PyExc_TypeError, "run_batch(): the run queue holds a %.200s, not a Task",
                         Py_TYPE(task)->tp_name);
            Py_DECREF(task);
            goto done;
        }
        PyObject *next_send = FIELD(task, t_next_send);
        int python_step = next_send && next_send != Py_None && next_send != m_resume_plain;
        if (next_send == m_resume_check) {
            /* After a checkpoint: resumed with None unless a cancel (or a
             * KeyboardInterrupt for the main task) is to be raised in it. */
            int cancel = cancel_pending(runner, task, main_task);
            if (cancel < 0) {
                Py_DECREF(task);
                goto done;
            }
            python_step = cancel;
        }
        if (python_step) {
            result = batch_result(i + 1, task, 0, NULL);
            Py_DECREF(task);
            goto done;
        }
        if (PyDict_SetItem(ldict, task_attr, task) < 0) {
            Py_DECREF(task);
            goto done;
        }
        set_field(task, t_next_send, Py_NewRef(Py_None));
        PyObject *ctx = FIELD(task, t_context), *send = FIELD(task, t_send);
        PyObject *msg = NULL;
        if (!ctx || !send) {
            PyErr_SetString(PyExc_RuntimeError, "a task without a context or coroutine was scheduled");
        } else {
            /* Held across the call: the step may rebind the task's fields. */
            Py_INCREF(ctx);
            Py_INCREF(send);
            if (PyContext_Enter(ctx) == 0) {
                msg = PyObject_CallOneArg(send, Py_None);
                PyObject *type, *value, *tb;
                PyErr_Fetch(&type, &value, &tb);
                if (PyContext_Exit(ctx) < 0) {
                    /* (cannot happen: we entered it) keep the first error */
                    Py_XDECREF(type);
                    Py_XDECREF(value);
                    Py_XDECREF(tb);
                    Py_CLEAR(msg);
                } else {
                    PyErr_Restore(type, value, tb);
                }
            }
            Py_DECREF(send);
            Py_DECREF(ctx);
        }
        if (!msg) {
            /* The coroutine returned (StopIteration) or raised. */
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            if (!value) {
                Py_XDECREF(type);
                Py_XDECREF(tb);
                PyErr_SetString(PyExc_SystemError, "run_batch(): a task step failed without an exception");
                Py_DECREF(task);
                goto done;
            }
            if (tb)
                PyException_SetTraceback(value, tb);
            int returned = PyErr_GivenExceptionMatches(value, PyExc_StopIteration);
            PyObject *payload;
            if (returned) {
                payload = PyObject_GetAttrString(value, "value");
                Py_DECREF(value);
            } else {
                payload = value;
            }
            Py_XDECREF(type);
            Py_XDECREF(tb);
            if (!payload) {
                Py_DECREF(task);
                goto done;
            }
            result = batch_result(i + 1, task, returned ? 1 : 2, payload);
            Py_DECREF(task);
            goto done;
        }
        if (msg == m_checkpoint || msg == m_yield) {
            /* Rescheduled at once (clearing custom_sleep_data, as every
             * reschedule does). */
            set_field(task, t_next_send, Py_NewRef(msg == m_checkpoint ? m_resume_check : m_resume_plain));
            if (FIELD(task, t_custom_sleep_data) != Py_None)
                set_field(task, t_custom_sleep_data, Py_NewRef(Py_None));
            PyObject *r = PyObject_CallOneArg(append, task);
            Py_DECREF(msg);
            Py_DECREF(task);
            if (!r)
                goto done;
            Py_DECREF(r);
            continue;
        }
        if (Py_TYPE(msg) != park_type) {
            result = batch_result(i + 1, task, 3, msg);
            Py_DECREF(task);
            goto done;
        }
        PyObject *abort_func = FIELD(msg, k_abort_func);
        set_field(task, t_abort_func, Py_NewRef(abort_func ? abort_func : Py_None));
        Py_DECREF(msg);
        int deliver = cancel_pending(runner, task, main_task);
        if (deliver > 0) {
            PyObject *r = PyObject_CallMethodNoArgs(task, attempt_name);
            if (!r)
                deliver = -1;
            Py_XDECREF(r);
        }
        Py_DECREF(task);
        if (deliver < 0)
            goto done;
    }
    /* All run: no task is current (the loop's clearing, done here). */
    if (PyDict_SetItem(ldict, task_attr, Py_None) == 0)
        result = batch_result(batch, NULL, 0, NULL);
done:
    Py_DECREF(ldict);
    return result;
}

/* Unsigned int argument no larger than max. */
static int uint_arg(PyObject *v, unsigned long long max, unsigned long long *out)
{
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

/* Unsigned field of an op, range-checked. */
static int get_uint(PyObject *op, Py_ssize_t off, unsigned long long max,
                    unsigned long long *out)
{
    PyObject *v = FIELD(op, off);
    if (!v || !PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "an SQE field is not an int");
        return -1;
    }
    return uint_arg(v, max, out);
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

/* Take a token for op (free list, LIFO) and mark it in flight for task, as
 * Runner._take_token.  Returns the token, or NULL with an exception set. */
static PyObject *take_token(PyObject *slots, PyObject *gens, PyObject *free_,
                            PyObject *op, PyObject *task, Py_ssize_t *slot_out)
{
    Py_ssize_t slot, nfree = PyList_GET_SIZE(free_);
    if (nfree) {
        slot = PyLong_AsSsize_t(PyList_GET_ITEM(free_, nfree - 1));
        if (slot == -1 && PyErr_Occurred())
            return NULL;
        if (slot < 0 || slot >= PyList_GET_SIZE(slots) || slot >= PyList_GET_SIZE(gens)) {
            PyErr_SetString(PyExc_RuntimeError, "the free token list holds a bad slot");
            return NULL;
        }
        /* free.pop(), without list_ass_slice's generality: the list only
         * shrinks by one (its allocation stays, as a later append reuses). */
        PyObject *popped = PyList_GET_ITEM(free_, nfree - 1);
        Py_SET_SIZE(free_, nfree - 1);
        Py_DECREF(popped);
        PyList_SetItem(slots, slot, Py_NewRef(op));
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
    PyObject *token = PyLong_FromUnsignedLongLong(((uint64_t)gen << 32) | (uint64_t)slot);
    if (!token)
        return NULL;
    set_field(op, o_task, Py_NewRef(task));
    set_field(op, o_cancel_raise, Py_NewRef(Py_None));
    set_field(op, o_done, Py_NewRef(Py_False));
    set_field(op, o_token, Py_NewRef(token));
    *slot_out = slot;
    return token;
}

/* submit(ring_addr, slots, gens, free, op, task, link_ns, link_ud)
 *
 * Everything Runner._submit_op does after the deadline is computed: take a
 * token (free list, LIFO; generation in the high 32 bits), fill the op's
 * runtime fields, queue the SQE.  Returns the token; or None, touching
 * nothing, if op.addr is not an int, bytes or a contiguous memoryview, or if
 * the op is still in flight (the caller then takes the Python path, which
 * raises the error for the second case).  On a bad field or a full SQ the token is given back
 * and the error raised (ValueError / OSError, as the Python path). */
static PyObject *do_submit(void *ring, PyObject *slots, PyObject *gens, PyObject *free_,
                           PyObject *op, PyObject *task, long long link_ns,
                           unsigned long long link_ud);

static PyObject *sp_submit(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "submit() takes 8 arguments");
        return NULL;
    }
    void *ring = PyLong_AsVoidPtr(args[0]);
    long long link_ns = PyLong_AsLongLong(args[6]);
    unsigned long long link_ud = PyLong_AsUnsignedLongLong(args[7]);
    if (PyErr_Occurred())
        return NULL;
    return do_submit(ring, args[1], args[2], args[3], args[4], args[5], link_ns, link_ud);
}

/* submit()'s work; the arguments are checked here. */
static PyObject *do_submit(void *ring, PyObject *slots, PyObject *gens, PyObject *free_,
                           PyObject *op, PyObject *task, long long link_ns,
                           unsigned long long link_ud)
{
    if (!PyList_CheckExact(slots) || !PyList_CheckExact(gens) ||
        !PyList_CheckExact(free_) || !PyObject_TypeCheck(op, ringop_type)) {
        PyErr_SetString(PyExc_TypeError, "submit(): bad arguments");
        return NULL;
    }
    /* An op still holding its slot is in flight: the Python path raises
     * the error that says so. */
    PyObject *held = FIELD(op, o_token);
    if (held && PyLong_CheckExact(held)) {
        Py_ssize_t held_slot = (Py_ssize_t)(PyLong_AsUnsignedLongLongMask(held) & 0xFFFFFFFFull);
        if (held_slot < PyList_GET_SIZE(slots) && PyList_GET_ITEM(slots, held_slot) == op)
            Py_RETURN_NONE;
    }
    PyObject *addr_obj = FIELD(op, o_addr);
    uint64_t addr;
    if (addr_obj && PyBytes_CheckExact(addr_obj)) {
        addr = (uint64_t)(uintptr_t)PyBytes_AS_STRING(addr_obj);
    } else if (addr_obj && PyLong_CheckExact(addr_obj)) {
        addr = 0; /* read below, with the range checks */
    } else if (addr_obj && PyMemoryView_Check(addr_obj)) {
        /* A memoryview (contiguous): the op's own view of the same memory
         * replaces it in op.addr (memoryview(view): it shares the managed
         * buffer, which keeps its export of the base, and takes no export
         * of the caller's view, which the caller may then release).  Its
         * address is read through an export released at once: no export
         * is held while the op waits (see _op_memory.py for the collector
         * crash that would follow).  A view that cannot be used (released,
         * not contiguous) goes to the Python path, which says why. */
        PyObject *own = PyMemoryView_FromObject(addr_obj);
        if (!own) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        Py_buffer view;
        if (PyObject_GetBuffer(own, &view, PyBUF_SIMPLE) < 0) {
            PyErr_Clear();
            Py_DECREF(own);
            Py_RETURN_NONE;
        }
        addr = (uint64_t)(uintptr_t)view.buf;
        PyBuffer_Release(&view);
        set_field(op, o_addr, own);
        addr_obj = own;
    } else {
        Py_RETURN_NONE;
    }

    Py_ssize_t slot;
    PyObject *token_obj = take_token(slots, gens, free_, op, task, &slot);
    if (!token_obj)
        return NULL;
    uint64_t token = PyLong_AsUnsignedLongLong(token_obj);
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

/* _Park(abort) without running its __init__ (its one slot set here). */
static PyObject *new_park(PyObject *abort)
{
    PyObject *park = park_type->tp_alloc(park_type, 0);
    if (!park)
        return NULL;
    FIELD(park, k_abort_func) = Py_NewRef(abort);
    return park;
}

/* op._abort, bound: made directly for an op whose class has RingOp's
 * (the same bound method getattr makes), else through getattr. */
static PyObject *op_abort(PyObject *op)
{
    if (ringop_abort_fn && _PyType_Lookup(Py_TYPE(op), abort_name) == ringop_abort_fn)
        return PyMethod_New(ringop_abort_fn, op);
    return PyObject_GetAttr(op, abort_name);
}

/* submit_park(runner, op, task, park) -> the _Park to yield, or None
 *
 * Runner._submit_park for the common case, without a Python frame: no
 * cancel pending in the task (submit_and_wait's checkpoint, which the
 * Python path delivers), no linked deadline to compute (runner._scope_deadlines is 0, or deadlines
 * are not the kernel's), the run still taking ops, and an op submit()
 * takes, and op timestamps off (runner._op_stamps None: while they are on,
 * the runner's own _submit_op stamps every op, which only the Python path
 * calls).  Takes the token, queues the SQE, counts the op in flight, marks
 * the SQ dirty, and returns `park` (the caller's, for an op it reuses) or
 * a new _Park(op._abort).  None (nothing touched) sends the caller to
 * Runner._submit_park, the definition, which also raises the errors. */
static PyObject *sp_submit_park(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "submit_park() takes 4 arguments");
        return NULL;
    }
    PyObject *runner = args[0], *op = args[1], *task = args[2], *given = args[3];
    if (!park_type || !PyObject_TypeCheck(op, ringop_type))
        Py_RETURN_NONE;
    if (!PyObject_TypeCheck(task, task_type)) {
        PyErr_Format(PyExc_TypeError, "submit_park(): task must be a Task, not %.200s", Py_TYPE(task)->tp_name);
        return NULL;
    }
    PyObject *dict = runner_dict(runner), *v;
    if (!dict || !(v = runner_get(dict, closed_attr)))
        return NULL;
    int closed = PyObject_IsTrue(v);
    if (closed)
        return closed < 0 ? NULL : Py_NewRef(Py_None);
    if (!(v = runner_get(dict, op_stamps_attr)))
        return NULL;
    if (v != Py_None)
        Py_RETURN_NONE;
    if (!(v = runner_get(dict, scope_deadlines_attr)))
        return NULL;
    int deadlines = PyObject_IsTrue(v);
    if (deadlines) {
        if (deadlines < 0 || !(v = runner_get(dict, kernel_deadlines_attr)))
            return NULL;
        deadlines = PyObject_IsTrue(v);
        if (deadlines)
            return deadlines < 0 ? NULL : Py_NewRef(Py_None);
    }
    /* submit_and_wait's checkpoint: a task with a cancel (or, the main
     * task, a KeyboardInterrupt) pending takes the Python path, which
     * yields to deliver it first. */
    if (!(v = runner_get(dict, main_task_attr)))
        return NULL;
    int pending = cancel_pending(runner, task, v);
    if (pending)
        return pending < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *table = runner_get(dict, sp_table_attr);
    if (!table)
        return NULL;
    if (!PyTuple_CheckExact(table) || PyTuple_GET_SIZE(table) != 4) {
        PyErr_SetString(PyExc_TypeError, "submit_park(): runner._sp_table is not (ring_addr, slots, gens, free)");
        return NULL;
    }
    /* (Held: the submit may run Python code, an op's repr for an error.) */
    Py_INCREF(table);
    void *ring = PyLong_AsVoidPtr(PyTuple_GET_ITEM(table, 0));
    PyObject *token = ring || !PyErr_Occurred()
        ? do_submit(ring, PyTuple_GET_ITEM(table, 1), PyTuple_GET_ITEM(table, 2),
                    PyTuple_GET_ITEM(table, 3), op, task, -1, 0)
        : NULL;
    Py_DECREF(table);
    if (!token || token == Py_None)
        return token;
    Py_DECREF(token);
    if (!(v = runner_get(dict, inflight_attr)))
        return NULL;
    long inflight = PyLong_AsLong(v);
    if (inflight == -1 && PyErr_Occurred())
        return NULL;
    PyObject *n = PyLong_FromLong(inflight + 1);
    if (!n)
        return NULL;
    int rc = PyDict_SetItem(dict, inflight_attr, n);
    Py_DECREF(n);
    if (rc < 0)
        return NULL;
    /* (Most submits of a pass find it set already.) */
    if (PyDict_GetItemWithError(dict, sq_dirty_attr) != Py_True &&
        (PyErr_Occurred() || PyDict_SetItem(dict, sq_dirty_attr, Py_True) < 0))
        return NULL;
    if (given != Py_None)
        return Py_NewRef(given);
    PyObject *abort = op_abort(op);
    if (!abort)
        return NULL;
    PyObject *park = new_park(abort);
    Py_DECREF(abort);
    return park;
}

/* take_tokens(slots, gens, free, ops, task) -> list of tokens
 *
 * Runner._take_token for each op of a tuple (a chain's members), in order.
 * If one fails, the tokens already taken are given back. */
static PyObject *sp_take_tokens(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "take_tokens() takes 5 arguments");
        return NULL;
    }
    PyObject *slots = args[0], *gens = args[1], *free_ = args[2], *ops = args[3], *task = args[4];
    if (!PyList_CheckExact(slots) || !PyList_CheckExact(gens) ||
        !PyList_CheckExact(free_) || !PyTuple_CheckExact(ops)) {
        PyErr_SetString(PyExc_TypeError, "take_tokens(): bad arguments");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(ops);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!PyObject_TypeCheck(PyTuple_GET_ITEM(ops, i), ringop_type)) {
            PyErr_SetString(PyExc_TypeError, "take_tokens(): ops must be RingOps");
            return NULL;
        }
    PyObject *tokens = PyList_New(n);
    if (!tokens)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t slot;
        PyObject *op = PyTuple_GET_ITEM(ops, i);
        PyObject *token = take_token(slots, gens, free_, op, task, &slot);
        if (!token) {
            for (Py_ssize_t j = 0; j < i; j++) {
                PyObject *t = PyList_GET_ITEM(tokens, j);
                set_field(PyTuple_GET_ITEM(ops, j), o_task, Py_NewRef(Py_None));
                release_slot(slots, gens, free_, (Py_ssize_t)(PyLong_AsUnsignedLongLong(t) & SLOT_MASK));
            }
            set_field(op, o_task, Py_NewRef(Py_None));
            Py_DECREF(tokens);
            return NULL;
        }
        PyList_SET_ITEM(tokens, i, token);
    }
    return tokens;
}

/* prep_open_chain(ring_addr, dirfd, path, open_flags, mode, slot, rw_opcode,
 *                 buf1, len1, buf2, len2, tokens) -> 0 | -errno
 *
 * ring.c's rt_prep_open_chain, called without cffi's argument conversion.
 * path is a bytes object without NUL bytes (its buffer is NUL-terminated
 * and never moves; the caller keeps it alive until the chain is
 * submitted); tokens holds 3 ints (or 2: no second read). */
static PyObject *sp_prep_open_chain(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "prep_open_chain() takes 12 arguments");
        return NULL;
    }
    if (!rt_prep_open_chain) {
        PyErr_SetString(PyExc_RuntimeError, "prep_open_chain(): setup_chains() was not called");
        return NULL;
    }
    PyObject *path = args[2], *tokens = args[11];
    if (!PyBytes_CheckExact(path) ||
        strlen(PyBytes_AS_STRING(path)) != (size_t)PyBytes_GET_SIZE(path)) {
        PyErr_SetString(PyExc_ValueError, "prep_open_chain(): path must be bytes without NUL");
        return NULL;
    }
    Py_ssize_t nt = PyList_CheckExact(tokens) ? PyList_GET_SIZE(tokens) : -1;
    if (nt != 2 && nt != 3) {
        PyErr_SetString(PyExc_TypeError, "prep_open_chain(): tokens must be a list of 2 or 3 ints");
        return NULL;
    }
    void *ring = PyLong_AsVoidPtr(args[0]);
    long dirfd = PyLong_AsLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (dirfd < INT32_MIN || dirfd > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "dirfd is out of range");
        return NULL;
    }
    unsigned long long v[8], ud[3] = {0, 0, 0};
    static const unsigned long long max[8] = {0xFFFFFFFFull, 0xFFFFFFFFull, 0xFFFFFFFFull, 0xFF,
                                              ~0ull, 0xFFFFFFFFull, ~0ull, 0xFFFFFFFFull};
    for (int i = 0; i < 8; i++)
        if (uint_arg(args[3 + i], max[i], &v[i]) < 0)
            return NULL;
    for (Py_ssize_t i = 0; i < nt; i++)
        if (uint_arg(PyList_GET_ITEM(tokens, i), ~0ull, &ud[i]) < 0)
            return NULL;
    int rc = rt_prep_open_chain(ring, (int32_t)dirfd, PyBytes_AS_STRING(path),
                                (uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2], (uint8_t)v[3],
                                v[4], (uint32_t)v[5], v[6], (uint32_t)v[7], ud[0], ud[1], ud[2]);
    return PyLong_FromLong(rc);
}

/* prep_close_direct(ring_addr, slot, user_data, sqe_flags) -> 0 | -errno */
static PyObject *sp_prep_close_direct(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "prep_close_direct() takes 4 arguments");
        return NULL;
    }
    if (!rt_prep_close_direct) {
        PyErr_SetString(PyExc_RuntimeError, "prep_close_direct(): setup_chains() was not called");
        return NULL;
    }
    void *ring = PyLong_AsVoidPtr(args[0]);
    unsigned long long slot, ud, flags;
    if (PyErr_Occurred() || uint_arg(args[1], 0xFFFFFFFFull, &slot) < 0 ||
        uint_arg(args[2], ~0ull, &ud) < 0 || uint_arg(args[3], 0xFF, &flags) < 0)
        return NULL;
    return PyLong_FromLong(rt_prep_close_direct(ring, (uint32_t)slot, ud, (uint8_t)flags));
}

/* One completion as rt_pass copies it out (ring.h's rt_cqe). */
typedef struct {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
} cqe_t;

static int set_runner_int(PyObject *runner, PyObject *name, long value)
{
    PyObject *v = PyLong_FromLong(value);
    if (!v)
        return -1;
    int rc = PyObject_SetAttr(runner, name, v);
    Py_DECREF(v);
    return rc;
}

static long get_runner_int(PyObject *runner, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(runner, name);
    if (!v)
        return -1;
    long x = PyLong_AsLong(v);
    Py_DECREF(v);
    return x;
}

/* Re-read the runner's _ops_in_flight after Python code ran. */
static int resync(PyObject *runner, long *inflight, long *synced)
{
    long x = get_runner_int(runner, inflight_attr);
    if (x == -1 && PyErr_Occurred())
        return -1;
    *inflight = *synced = x;
    return 0;
}

/* reschedule(task): runnable again, resuming with None. */
static int wake(PyObject *task, PyObject *append)
{
    set_field(task, t_abort_func, Py_NewRef(Py_None));
    set_field(task, t_next_send, Py_NewRef(Py_None));
    set_field(task, t_custom_sleep_data, Py_NewRef(Py_None));
    PyObject *r = PyObject_CallOneArg(append, task);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* (res, flags), as the default RingOp._on_cqe leaves it on the op. */
static PyObject *cqe_result(int32_t res, uint32_t flags)
{
    PyObject *t = PyTuple_New(2), *a = NULL, *b = NULL;
    if (!t || !(a = PyLong_FromLong(res)) || !(b = PyLong_FromUnsignedLong(flags))) {
        Py_XDECREF(t);
        Py_XDECREF(a);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, a);
    PyTuple_SET_ITEM(t, 1, b);
    return t;
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
        result = cqe_result(res, flags);
        if (!result) {
            Py_DECREF(task);
            return -1;
        }
    }
    set_field(op, o_result, result);
    int rc = wake(task, append);
    Py_DECREF(task);
    return rc;
}

/* LinkedOp._on_cqe for a chain nobody is cancelling: the result goes to
 * chain.results[index]; the last CQE of the chain makes its task runnable.
 * Returns 1 if done, 0 if the op needs the Python path, -1 on error. */
static int complete_linked(PyObject *op, int32_t res, PyObject *append)
{
    PyObject *chain = FIELD(op, l_chain);
    if (!chain || FIELD(chain, c_cancel_raise) != Py_None)
        return 0;
    PyObject *results = FIELD(chain, c_results), *index = FIELD(op, l_index);
    PyObject *pending = FIELD(chain, c_pending);
    if (!results || !PyList_CheckExact(results) || !index || !PyLong_CheckExact(index) ||
        !pending || !PyLong_CheckExact(pending))
        return 0;
    Py_ssize_t i = PyLong_AsSsize_t(index);
    long left = PyLong_AsLong(pending);
    if ((i == -1 || left == -1) && PyErr_Occurred())
        return -1;
    if (i < 0 || i >= PyList_GET_SIZE(results))
        return 0;
    PyObject *r = PyLong_FromLong(res), *p = PyLong_FromLong(left - 1);
    if (!r || !p) {
        Py_XDECREF(r);
        Py_XDECREF(p);
        return -1;
    }
    set_field(op, o_task, Py_NewRef(Py_None));
    PyList_SetItem(results, i, r);
    set_field(chain, c_pending, p);
    if (left - 1 == 0) {
        PyObject *task = FIELD(chain, c_task);
        if (task && task != Py_None) {
            Py_INCREF(task);
            set_field(chain, c_task, Py_NewRef(Py_None));
            int rc = wake(task, append);
            Py_DECREF(task);
            if (rc < 0)
                return -1;
        }
    }
    return 1;
}

/* receive_some's multishot receive (_highlevel_socket._StreamReceiver) and
 * the BufferRing it copies out of (set by setup_receive; streamrx_type stays
 * NULL until then, and its CQEs take the Python path). */
typedef void (*recycle_fn)(void *br, uint16_t bid);
static PyTypeObject *streamrx_type, *bufring_type;
static recycle_fn rt_buf_ring_recycle_p;
static Py_ssize_t x_bufring, x_chunks, x_queued, x_waiter;
static Py_ssize_t b_addr, b_base, b_size, b_count, b_selected, b_recycled;
static long long rx_pause_bytes;

/* setup_receive(_StreamReceiver, BufferRing, rt_buf_ring_recycle_address,
 *               pause_bytes) */
static PyObject *sp_setup_receive(PyObject *mod, PyObject *args)
{
    PyObject *rx_t, *ring_t;
    unsigned long long recycle_addr;
    long long pause;
    if (!PyArg_ParseTuple(args, "O!O!KL", &PyType_Type, &rx_t, &PyType_Type, &ring_t,
                          &recycle_addr, &pause))
        return NULL;
    if (!ringop_type || !PyType_IsSubtype((PyTypeObject *)rx_t, ringop_type)) {
        PyErr_SetString(PyExc_TypeError, "setup_receive(): call setup() first, with the receiver's base");
        return NULL;
    }
    if (member_offset(rx_t, "bufring", &x_bufring) < 0 ||
        member_offset(rx_t, "chunks", &x_chunks) < 0 ||
        member_offset(rx_t, "queued", &x_queued) < 0 ||
        member_offset(rx_t, "waiter", &x_waiter) < 0 ||
        member_offset(ring_t, "_addr", &b_addr) < 0 ||
        member_offset(ring_t, "base", &b_base) < 0 ||
        member_offset(ring_t, "size", &b_size) < 0 ||
        member_offset(ring_t, "count", &b_count) < 0 ||
        member_offset(ring_t, "_selected", &b_selected) < 0 ||
        member_offset(ring_t, "_recycled", &b_recycled) < 0)
        return NULL;
    Py_XSETREF(streamrx_type, (PyTypeObject *)Py_NewRef(rx_t));
    Py_XSETREF(bufring_type, (PyTypeObject *)Py_NewRef(ring_t));
    rt_buf_ring_recycle_p = (recycle_fn)(uintptr_t)recycle_addr;
    rx_pause_bytes = pause;
    Py_RETURN_NONE;
}

/* A Python int field read as a Py_ssize_t; -1 (no exception) when it is
 * not an exact int. */
static Py_ssize_t ssize_field(PyObject *obj, Py_ssize_t off)
{
    PyObject *v = FIELD(obj, off);
    if (!v || !PyLong_CheckExact(v))
        return -1;
    Py_ssize_t x = PyLong_AsSsize_t(v);
    if (x == -1)
        PyErr_Clear();
    return x;
}

static int add_to_field(PyObject *obj, Py_ssize_t off, Py_ssize_t delta)
{
    Py_ssize_t x = ssize_field(obj, off);
    if (x < 0)
        return 0; /* (a statistics counter someone replaced: leave it) */
    PyObject *v = PyLong_FromSsize_t(x + delta);
    if (!v)
        return -1;
    set_field(obj, off, v);
    return 0;
}

/* _StreamReceiver._on_cqe for the common CQE: more to come (F_MORE), bytes
 * in a buffer of the run's receive group, the queue below the pause mark.
 * The bytes are copied into a new bytes object, the buffer goes straight
 * back to the ring, the chunk is queued and a waiting reader woken -- what
 * the Python method does.  Returns 1 if done, 0 if the CQE needs the
 * Python method (anything else: an end, an error, a pause), -1 on error. */
static int complete_stream_rx(PyObject *op, int32_t res, uint32_t flags, PyObject *append)
{
    if (!(flags & CQE_F_MORE) || !(flags & CQE_F_BUFFER) || res <= 0)
        return 0;
    PyObject *ring = FIELD(op, x_bufring), *chunks = FIELD(op, x_chunks);
    if (!ring || Py_TYPE(ring) != bufring_type || !chunks || !PyList_CheckExact(chunks))
        return 0;
    PyObject *addr_obj = FIELD(ring, b_addr);
    if (!addr_obj || !PyLong_CheckExact(addr_obj))
        return 0;
    void *br = PyLong_AsVoidPtr(addr_obj);
    if (!br) {
        PyErr_Clear();
        return 0; /* closed: the Python method says so */
    }
    Py_ssize_t base = ssize_field(ring, b_base), size = ssize_field(ring, b_size);
    Py_ssize_t count = ssize_field(ring, b_count), queued = ssize_field(op, x_queued);
    Py_ssize_t bid = (Py_ssize_t)(flags >> CQE_BUFFER_SHIFT);
    if (base <= 0 || size <= 0 || queued < 0 || bid >= count || res > size ||
        (long long)queued + res >= rx_pause_bytes)
        return 0;
    PyObject *data = PyBytes_FromStringAndSize((const char *)(uintptr_t)base + bid * size, res);
    if (!data)
        return -1;
    rt_buf_ring_recycle_p(br, (uint16_t)bid);
    int rc = PyList_Append(chunks, data);
    Py_DECREF(data);
    if (rc < 0 || add_to_field(ring, b_selected, 1) < 0 || add_to_field(ring, b_recycled, 1) < 0 ||
        add_to_field(op, x_queued, res) < 0)
        return -1;
    PyObject *waiter = FIELD(op, x_waiter);
    if (waiter && waiter != Py_None) {
        Py_INCREF(waiter);
        set_field(op, x_waiter, Py_NewRef(Py_None));
        rc = wake(waiter, append);
        Py_DECREF(waiter);
        if (rc < 0)
            return -1;
    }
    return 1;
}

/* receive_buffers' multishot receive (_buffer_group._MultishotRecv), its
 * BufferGroup and the Buffer leases it queues (set by setup_lease_receive;
 * leaserx_type stays NULL until then). */
#define CQE_F_BUF_MORE (1u << 4)
static PyTypeObject *leaserx_type, *group_type, *lease_type;
static Py_ssize_t m_group, m_queue, m_streak, m_waiter, m_max_pending;
static Py_ssize_t g_size, g_count, g_refs, g_done, g_off, g_total_refs, g_free, g_leases,
    g_closing, g_closed, g_freed, g_waiters, g_ring;
static Py_ssize_t l_group, l_bid, l_start, l_len, l_view, l_released;

/* setup_lease_receive(_MultishotRecv, BufferGroup, Buffer, BufferRing) */
static PyObject *sp_setup_lease_receive(PyObject *mod, PyObject *args)
{
    PyObject *rx_t, *group_t, *lease_t, *ring_t;
    if (!PyArg_ParseTuple(args, "O!O!O!O!", &PyType_Type, &rx_t, &PyType_Type, &group_t,
                          &PyType_Type, &lease_t, &PyType_Type, &ring_t))
        return NULL;
    if (!ringop_type || !PyType_IsSubtype((PyTypeObject *)rx_t, ringop_type)) {
        PyErr_SetString(PyExc_TypeError, "setup_lease_receive(): call setup() first, with the receiver's base");
        return NULL;
    }
    if (member_offset(rx_t, "group", &m_group) < 0 ||
        member_offset(rx_t, "queue", &m_queue) < 0 ||
        member_offset(rx_t, "enobufs_streak", &m_streak) < 0 ||
        member_offset(rx_t, "waiter", &m_waiter) < 0 ||
        member_offset(rx_t, "max_pending", &m_max_pending) < 0 ||
        member_offset(group_t, "size", &g_size) < 0 ||
        member_offset(group_t, "count", &g_count) < 0 ||
        member_offset(group_t, "_refs", &g_refs) < 0 ||
        member_offset(group_t, "_done", &g_done) < 0 ||
        member_offset(group_t, "_off", &g_off) < 0 ||
        member_offset(group_t, "_total_refs", &g_total_refs) < 0 ||
        member_offset(group_t, "_free", &g_free) < 0 ||
        member_offset(group_t, "_leases", &g_leases) < 0 ||
        member_offset(group_t, "_closing", &g_closing) < 0 ||
        member_offset(group_t, "_closed", &g_closed) < 0 ||
        member_offset(group_t, "_freed", &g_freed) < 0 ||
        member_offset(group_t, "_waiters", &g_waiters) < 0 ||
        member_offset(group_t, "_ring", &g_ring) < 0 ||
        member_offset(ring_t, "_addr", &b_addr) < 0 ||
        member_offset(ring_t, "_recycled", &b_recycled) < 0 ||
        member_offset(lease_t, "_group", &l_group) < 0 ||
        member_offset(lease_t, "_bid", &l_bid) < 0 ||
        member_offset(lease_t, "_start", &l_start) < 0 ||
        member_offset(lease_t, "_len", &l_len) < 0 ||
        member_offset(lease_t, "_view", &l_view) < 0 ||
        member_offset(lease_t, "_released", &l_released) < 0)
        return NULL;
    Py_XSETREF(leaserx_type, (PyTypeObject *)Py_NewRef(rx_t));
    Py_XSETREF(group_type, (PyTypeObject *)Py_NewRef(group_t));
    Py_XSETREF(lease_type, (PyTypeObject *)Py_NewRef(lease_t));
    Py_XSETREF(bufring_type, (PyTypeObject *)Py_NewRef(ring_t));
    Py_RETURN_NONE;
}

/* list[i] as a Py_ssize_t (-1 when it is not a small non-negative int). */
static Py_ssize_t list_int(PyObject *list, Py_ssize_t i)
{
    PyObject *v = PyList_GET_ITEM(list, i);
    if (!PyLong_CheckExact(v))
        return -1;
    Py_ssize_t x = PyLong_AsSsize_t(v);
    if (x == -1)
        PyErr_Clear();
    return x;
}

static int set_list_int(PyObject *list, Py_ssize_t i, Py_ssize_t x)
{
    PyObject *v = PyLong_FromSsize_t(x);
    if (!v)
        return -1;
    return PyList_SetItem(list, i, v);
}

/* _MultishotRecv._on_cqe (with BufferGroup._take) for the common CQE: more
 * to come, bytes in a buffer of the group, the group open, and the queue
 * not reaching max_pending with this lease.  Accounts for the buffer
 * (_off or _done/_free, _refs, _total_refs), makes the Buffer lease
 * (its fields set as Buffer.__init__ sets them), records it in the
 * group's _leases, queues it and wakes a waiting consumer.  Returns 1 if
 * done, 0 if the CQE needs the Python method, -1 on error. */
static int complete_lease_rx(PyObject *op, int32_t res, uint32_t flags, PyObject *append)
{
    if (!(flags & CQE_F_MORE) || !(flags & CQE_F_BUFFER) || res <= 0)
        return 0;
    PyObject *group = FIELD(op, m_group), *queue = FIELD(op, m_queue);
    if (!group || Py_TYPE(group) != group_type || !queue)
        return 0;
    PyObject *refs = FIELD(group, g_refs), *done = FIELD(group, g_done), *offs = FIELD(group, g_off);
    PyObject *leases = FIELD(group, g_leases), *closing = FIELD(group, g_closing);
    if (closing != Py_False || !refs || !PyList_CheckExact(refs) || !done ||
        !PyList_CheckExact(done) || !offs || !PyList_CheckExact(offs) || !leases ||
        !PySet_CheckExact(leases))
        return 0;
    Py_ssize_t size = ssize_field(group, g_size), count = ssize_field(group, g_count);
    Py_ssize_t max_pending = ssize_field(op, m_max_pending);
    Py_ssize_t bid = (Py_ssize_t)(flags >> CQE_BUFFER_SHIFT);
    if (size <= 0 || bid >= count || bid >= PyList_GET_SIZE(refs) ||
        bid >= PyList_GET_SIZE(done) || bid >= PyList_GET_SIZE(offs) || max_pending < 1)
        return 0;
    Py_ssize_t pending = PyObject_Size(queue);
    if (pending < 0)
        return -1;
    if (pending + 1 >= max_pending)
        return 0; /* the Python method pauses the receive */
    Py_ssize_t off = list_int(offs, bid), nrefs = list_int(refs, bid);
    Py_ssize_t total = ssize_field(group, g_total_refs), nfree = ssize_field(group, g_free);
    if (off < 0 || nrefs < 0 || total < 0 || nfree < 0)
        return 0;
    PyObject *lease = lease_type->tp_alloc(lease_type, 0);
    if (!lease)
        return -1;
    PyObject *f_bid = PyLong_FromSsize_t(bid), *f_start = PyLong_FromSsize_t(bid * size + off);
    PyObject *f_len = PyLong_FromLong(res);
    if (!f_bid || !f_start || !f_len) {
        Py_XDECREF(f_bid);
        Py_XDECREF(f_start);
        Py_XDECREF(f_len);
        Py_DECREF(lease);
        return -1;
    }
    FIELD(lease, l_group) = Py_NewRef(group);
    FIELD(lease, l_bid) = f_bid;
    FIELD(lease, l_start) = f_start;
    FIELD(lease, l_len) = f_len;
    FIELD(lease, l_view) = Py_NewRef(Py_None);
    FIELD(lease, l_released) = Py_NewRef(Py_False);
    /* The accounting (BufferGroup._take). */
    int rc;
    if (flags & CQE_F_BUF_MORE) {
        rc = set_list_int(offs, bid, off + res);
    } else {
        rc = PyList_SetItem(done, bid, Py_NewRef(Py_True));
        if (rc == 0) {
            PyObject *v = PyLong_FromSsize_t(nfree - 1);
            if (v)
                set_field(group, g_free, v);
            else
                rc = -1;
        }
    }
    if (rc == 0)
        rc = set_list_int(refs, bid, nrefs + 1);
    if (rc == 0) {
        PyObject *v = PyLong_FromSsize_t(total + 1);
        if (v)
            set_field(group, g_total_refs, v);
        else
            rc = -1;
    }
    if (rc == 0)
        rc = PySet_Add(leases, lease);
    if (rc == 0) {
        PyObject *r = PyObject_CallMethodOneArg(queue, append_name, lease);
        if (r)
            Py_DECREF(r);
        else
            rc = -1;
    }
    Py_DECREF(lease);
    if (rc < 0)
        return -1;
    if (FIELD(op, m_streak) != NULL && ssize_field(op, m_streak) != 0) {
        PyObject *zero = PyLong_FromLong(0);
        if (!zero)
            return -1;
        set_field(op, m_streak, zero);
    }
    PyObject *waiter = FIELD(op, m_waiter);
    if (waiter && waiter != Py_None) {
        Py_INCREF(waiter);
        set_field(op, m_waiter, Py_NewRef(Py_None));
        rc = wake(waiter, append);
        Py_DECREF(waiter);
        if (rc < 0)
            return -1;
    }
    return 1;
}

/* BufferGroup._unref(bid) for the common case: the group open, and, if the
 * buffer comes back to the ring, nobody waiting for one (a consumer to
 * wake: the Python method does it).  Returns 1 if done, 0 if the Python
 * method is needed (nothing touched), -1 on error. */
static int group_unref(PyObject *group, Py_ssize_t bid)
{
    if (!group || Py_TYPE(group) != group_type || FIELD(group, g_closed) != Py_False ||
        FIELD(group, g_freed) != Py_False)
        return 0;
    PyObject *refs = FIELD(group, g_refs), *done = FIELD(group, g_done), *offs = FIELD(group, g_off);
    if (!refs || !PyList_CheckExact(refs) || !done || !PyList_CheckExact(done) || !offs ||
        !PyList_CheckExact(offs) || bid < 0 || bid >= PyList_GET_SIZE(refs) ||
        bid >= PyList_GET_SIZE(done) || bid >= PyList_GET_SIZE(offs))
        return 0;
    Py_ssize_t nrefs = list_int(refs, bid), total = ssize_field(group, g_total_refs);
    if (nrefs < 1 || total < 1)
        return 0;
    int recycle = nrefs == 1 && PyList_GET_ITEM(done, bid) == Py_True;
    void *br = NULL;
    Py_ssize_t nfree = 0;
    if (recycle) {
        PyObject *waiters = FIELD(group, g_waiters), *ring = FIELD(group, g_ring);
        Py_ssize_t nwait = waiters ? PyObject_Size(waiters) : -1;
        if (nwait != 0) {
            if (nwait < 0)
                PyErr_Clear();
            return 0;
        }
        if (!ring || Py_TYPE(ring) != bufring_type || !FIELD(ring, b_addr) ||
            !PyLong_CheckExact(FIELD(ring, b_addr)))
            return 0;
        br = PyLong_AsVoidPtr(FIELD(ring, b_addr));
        nfree = ssize_field(group, g_free);
        if (!br || nfree < 0) {
            PyErr_Clear();
            return 0;
        }
    }
    if (set_list_int(refs, bid, nrefs - 1) < 0)
        return -1;
    PyObject *v = PyLong_FromSsize_t(total - 1);
    if (!v)
        return -1;
    set_field(group, g_total_refs, v);
    if (recycle) {
        /* BufferGroup._recycle and BufferRing.recycle. */
        if (PyList_SetItem(done, bid, Py_NewRef(Py_False)) < 0 || set_list_int(offs, bid, 0) < 0)
            return -1;
        rt_buf_ring_recycle_p(br, (uint16_t)bid);
        v = PyLong_FromSsize_t(nfree + 1);
        if (!v)
            return -1;
        set_field(group, g_free, v);
        if (add_to_field(FIELD(group, g_ring), b_recycled, 1) < 0)
            return -1;
    }
    return 1;
}

/* lease_unref(lease) -> bool: BufferGroup._unref(lease._bid) for the common
 * case (see group_unref); False: call the Python method. */
static PyObject *sp_lease_unref(PyObject *mod, PyObject *lease)
{
    if (!lease_type || !rt_buf_ring_recycle_p || Py_TYPE(lease) != lease_type)
        Py_RETURN_FALSE;
    Py_ssize_t bid = ssize_field(lease, l_bid);
    int rc = group_unref(FIELD(lease, l_group), bid);
    if (rc < 0)
        return NULL;
    return PyBool_FromLong(rc);
}

/* release_lease(lease) -> bool: Buffer.release() for a lease without a view
 * whose group is open (group_unref's common case): marked released,
 * dropped from the group's _leases, its reference given back (and the
 * buffer to the ring if that was the last).  False: nothing touched; call
 * the Python method. */
static PyObject *sp_release_lease(PyObject *mod, PyObject *lease)
{
    if (!lease_type || !rt_buf_ring_recycle_p || Py_TYPE(lease) != lease_type ||
        FIELD(lease, l_released) != Py_False || FIELD(lease, l_view) != Py_None)
        Py_RETURN_FALSE;
    PyObject *group = FIELD(lease, l_group);
    if (!group || Py_TYPE(group) != group_type)
        Py_RETURN_FALSE;
    PyObject *leases = FIELD(group, g_leases);
    if (!leases || !PySet_CheckExact(leases))
        Py_RETURN_FALSE;
    Py_ssize_t bid = ssize_field(lease, l_bid);
    /* Check that group_unref will take it before changing anything. */
    PyObject *refs = FIELD(group, g_refs);
    if (bid < 0 || !refs || !PyList_CheckExact(refs) || bid >= PyList_GET_SIZE(refs) ||
        list_int(refs, bid) < 1)
        Py_RETURN_FALSE;
    Py_INCREF(group);
    int rc = group_unref(group, bid);
    if (rc == 1) {
        set_field(lease, l_released, Py_NewRef(Py_True));
        if (PySet_Discard(leases, lease) < 0)
            rc = -1;
    }
    Py_DECREF(group);
    if (rc < 0)
        return NULL;
    return PyBool_FromLong(rc);
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
        if (set_runner_int(runner, inflight_attr, *inflight) < 0)
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
    PyObject *append = PyObject_GetAttr(args[6], append_name);
    long inflight = get_runner_int(runner, inflight_attr);
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
            } else if (plain_ok && Py_TYPE(op) == linkedop_type &&
                       FIELD(op, o_cancel_raise) == Py_None &&
                       (rc = complete_linked(op, res, append)) != 0) {
                rc = rc < 0 ? -1 : 0;
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
        } else {
            int rc = 0;
            if (plain_ok && streamrx_type && Py_TYPE(op) == streamrx_type)
                rc = complete_stream_rx(op, res, flags, append);
            else if (plain_ok && leaserx_type && Py_TYPE(op) == leaserx_type)
                rc = complete_lease_rx(op, res, flags, append);
            if (rc == 0)
                rc = call_python(runner, op, res, flags, &inflight, &synced);
            if (rc < 0)
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
    if (synced != inflight && set_runner_int(runner, inflight_attr, inflight) < 0)
        ok = 0;
    if (ok && stale) {
        long before = get_runner_int(runner, stale_attr);
        if ((before == -1 && PyErr_Occurred()) ||
            set_runner_int(runner, stale_attr, before + stale) < 0)
            ok = 0;
    }
    if (ok && wakeup && PyObject_SetAttr(runner, wakeup_attr, Py_False) < 0)
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

/* lease_view(addr, n, callback, arg) -> memoryview
 *
 * A writable memoryview of n bytes at addr (a buffer group's memory) for a
 * Buffer lease, exported by a small object that calls callback(arg) when
 * the last view on it -- the memoryview or any slice of it -- has been
 * released or dropped.  (What ffi.gc + ffi.buffer + memoryview do, in one
 * object.)  The caller keeps the memory valid until then. */
typedef struct {
    PyObject_HEAD
    char *buf;
    Py_ssize_t len;
    PyObject *callback;
    PyObject *arg;
} LeaseMemory;

static int lease_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    LeaseMemory *m = (LeaseMemory *)self;
    return PyBuffer_FillInfo(view, self, m->buf, m->len, 0, flags);
}

static void lease_dealloc(PyObject *self)
{
    LeaseMemory *m = (LeaseMemory *)self;
    PyObject *cb = m->callback, *arg = m->arg;
    m->callback = m->arg = NULL;
    if (cb) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *r = PyObject_CallOneArg(cb, arg);
        if (!r)
            PyErr_WriteUnraisable(cb);
        Py_XDECREF(r);
        PyErr_Restore(type, value, tb);
    }
    Py_XDECREF(cb);
    Py_XDECREF(arg);
    Py_TYPE(self)->tp_free(self);
}

static PyBufferProcs lease_as_buffer = {lease_getbuffer, NULL};

static PyTypeObject LeaseMemory_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ringtrio._core._speedups.LeaseMemory",
    .tp_basicsize = sizeof(LeaseMemory),
    .tp_dealloc = lease_dealloc,
    .tp_as_buffer = &lease_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The memory of one Buffer lease (see lease_view).",
};

static PyObject *sp_lease_view(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "lease_view() takes 4 arguments");
        return NULL;
    }
    void *addr = PyLong_AsVoidPtr(args[0]);
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (!addr || n < 0) {
        PyErr_SetString(PyExc_ValueError, "lease_view(): needs an address and n >= 0");
        return NULL;
    }
    if (!PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "lease_view(): callback must be callable");
        return NULL;
    }
    LeaseMemory *m = PyObject_New(LeaseMemory, &LeaseMemory_Type);
    if (!m)
        return NULL;
    m->buf = addr;
    m->len = n;
    m->callback = Py_NewRef(args[2]);
    m->arg = Py_NewRef(args[3]);
    PyObject *view = PyMemoryView_FromObject((PyObject *)m);
    Py_DECREF(m); /* the view holds it; if the view failed, the callback runs */
    return view;
}

/* ------------------------------------------------------------------------
 * Reads served from the page cache without a ring op (issue 16)
 * ringtrio/_file_io.py: AsyncBinaryFile._nowait_read and read_at
 * ------------------------------------------------------------------------
 *
 * pread_nowait(fd, size, offset) -> bytes | (bytes,) | int
 *
 * One preadv2(fd, ..., offset, RWF_NOWAIT) straight into a new bytes object
 * (one copy, page cache -> result, as os.pread).  RWF_NOWAIT makes the
 * kernel copy only what is in the page cache: it never waits for the disk,
 * so the call takes as long as the copy, like a ring READ that completes
 * inline -- but without the SQE, the enter, the CQE, the op object and the
 * scheduler pass.  Returns
 *   bytes:    the read, done: all size bytes, or fewer where the file ends
 *             (fstat says so; b"" at or past the end);
 *   (bytes,): the cache held only the first part of the range (the
 *             caller reads the rest some other way);
 *   int:      nothing was read, the errno (EAGAIN: the first page is not
 *             cached; EOPNOTSUPP: the file system has no non-blocking
 *             reads).
 * _file_io._pread_nowait is the Python definition.  The offset is explicit:
 * the kernel's file position never moves (the file object keeps its own,
 * as for its ring READs). */
#include <sys/stat.h>
#include <sys/uio.h>
#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

static PyObject *sp_pread_nowait(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "pread_nowait() takes 3 arguments (fd, size, offset)");
        return NULL;
    }
    /* (One at a time: a conversion may call __index__, which must not run
     * with the previous one's error set.) */
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    long long offset = PyLong_AsLongLong(args[2]);
    if (offset == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT32_MAX || size < 1 || offset < 0) {
        PyErr_SetString(PyExc_ValueError, "pread_nowait(): needs fd >= 0, size >= 1, offset >= 0");
        return NULL;
    }
    PyObject *data = PyBytes_FromStringAndSize(NULL, size);
    if (!data)
        return NULL;
    struct iovec iov = {PyBytes_AS_STRING(data), (size_t)size};
    ssize_t n;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    n = preadv2((int)fd, &iov, 1, (off_t)offset, RWF_NOWAIT);
    if (n < 0)
        err = errno;
    Py_END_ALLOW_THREADS
    if (n < 0) {
        Py_DECREF(data);
        return PyLong_FromLong(err);
    }
    if (n == size)
        return data;
    if (_PyBytes_Resize(&data, n) < 0) /* (n == 0: b"") */
        return NULL;
    struct stat st;
    if (n == 0 || (fstat((int)fd, &st) == 0 && offset + n >= st.st_size))
        return data; /* (the end of the file) */
    PyObject *part = PyTuple_Pack(1, data);
    Py_DECREF(data);
    return part;
}

/* The Buffer lease's C base: its own file, one idea. */
#include "_speedups_lease.c"

static PyMethodDef methods[] = {
    {"pread_nowait", (PyCFunction)(void (*)(void))sp_pread_nowait, METH_FASTCALL,
     "pread_nowait(fd, size, offset) -> bytes | (first part,) | errno: preadv2(RWF_NOWAIT) into new bytes"},
    {"lease_view", (PyCFunction)(void (*)(void))sp_lease_view, METH_FASTCALL,
     "lease_view(addr, n, callback, arg) -> memoryview; callback(arg) once no view uses it"},
    {"iovecs", sp_iovecs, METH_O, "iovecs(list of bytes) -> struct iovec array as bytes"},
    {"new_bytes", sp_new_bytes, METH_O, "new_bytes(n) -> uninitialized bytes of length n (n >= 2)"},
    {"setup", sp_setup, METH_VARARGS, "setup(RingOp, Task, LINK_EXPIRED, rt_prep_address)"},
    {"setup_steps", sp_setup_steps, METH_VARARGS,
     "setup_steps(Task, CancelScope, _Park, CHECKPOINT, YIELD, RESUME_PLAIN, RESUME_CHECKING_CANCEL)"},
    {"run_batch", (PyCFunction)(void (*)(void))sp_run_batch, METH_FASTCALL,
     "run_batch(runner, popleft, append, batch, local, main_task) -> (n, task, kind, payload)"},
    {"setup_lease_receive", sp_setup_lease_receive, METH_VARARGS,
     "setup_lease_receive(_MultishotRecv, BufferGroup, Buffer, BufferRing)"},
    {"lease_unref", sp_lease_unref, METH_O,
     "lease_unref(lease) -> bool: BufferGroup._unref(lease._bid) in C, or False"},
    {"setup_lease_anext", sp_setup_lease_anext, METH_VARARGS,
     "setup_lease_anext(BufferReceiver, local): BufferReceiver.__anext__'s common case in C"},
    {"lease_hold", sp_lease_hold, METH_O,
     "lease_hold(lease) -> address of its bytes, the buffer held for a send | None"},
    {"release_lease", sp_release_lease, METH_O,
     "release_lease(lease) -> bool: Buffer.release() in C, or False"},
    {"setup_receive", sp_setup_receive, METH_VARARGS,
     "setup_receive(_StreamReceiver, BufferRing, rt_buf_ring_recycle_address, pause_bytes)"},
    {"setup_chains", sp_setup_chains, METH_VARARGS,
     "setup_chains(LinkedOp, LinkedChain, rt_prep_open_chain_address, rt_prep_close_direct_address)"},
    {"prep_open_chain", (PyCFunction)(void (*)(void))sp_prep_open_chain, METH_FASTCALL,
     "prep_open_chain(ring_addr, dirfd, path, open_flags, mode, slot, rw_opcode, buf1, len1, "
     "buf2, len2, tokens) -> 0 | -errno"},
    {"prep_close_direct", (PyCFunction)(void (*)(void))sp_prep_close_direct, METH_FASTCALL,
     "prep_close_direct(ring_addr, slot, user_data, sqe_flags) -> 0 | -errno"},
    {"take_tokens", (PyCFunction)(void (*)(void))sp_take_tokens, METH_FASTCALL,
     "take_tokens(slots, gens, free, ops, task) -> list of tokens"},
    {"submit_park", (PyCFunction)(void (*)(void))sp_submit_park, METH_FASTCALL,
     "submit_park(runner, op, task, park) -> park, or a new _Park, to yield | None (take the Python path)"},
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
    attempt_name = PyUnicode_InternFromString("_attempt_delivery_of_any_pending_cancel");
    task_attr = PyUnicode_InternFromString("task");
    dict_name = PyUnicode_InternFromString("__dict__");
    ki_attr = PyUnicode_InternFromString("ki_pending");
    main_task_attr = PyUnicode_InternFromString("main_task");
    append_name = PyUnicode_InternFromString("append");
    inflight_attr = PyUnicode_InternFromString("_ops_in_flight");
    stale_attr = PyUnicode_InternFromString("_stale_cqes");
    wakeup_attr = PyUnicode_InternFromString("_wakeup_armed");
    closed_attr = PyUnicode_InternFromString("_ops_closed");
    op_stamps_attr = PyUnicode_InternFromString("_op_stamps");
    scope_deadlines_attr = PyUnicode_InternFromString("_scope_deadlines");
    kernel_deadlines_attr = PyUnicode_InternFromString("_kernel_deadlines");
    sp_table_attr = PyUnicode_InternFromString("_sp_table");
    sq_dirty_attr = PyUnicode_InternFromString("_sq_dirty");
    abort_name = PyUnicode_InternFromString("_abort");
    if (!on_cqe_name || !attempt_name || !task_attr || !dict_name || !ki_attr || !main_task_attr ||
        !append_name || !inflight_attr || !stale_attr || !wakeup_attr || !closed_attr ||
        !op_stamps_attr ||
        !scope_deadlines_attr || !kernel_deadlines_attr || !sp_table_attr || !sq_dirty_attr ||
        !abort_name)
        return NULL;
    if (PyType_Ready(&LeaseMemory_Type) < 0)
        return NULL;
    PyObject *mod = PyModule_Create(&module);
    if (mod && lease_module_init(mod) < 0)
        Py_CLEAR(mod);
    return mod;
}
