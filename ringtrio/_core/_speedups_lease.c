/* The Buffer lease's C base (ringtrio._core._speedups.LeaseBase).
 *
 * Included by _speedups.c (after the lease completions and releases it
 * uses: sp_release_lease), so that one extension module holds it; kept in
 * its own file because it is one idea: a lease without Python frames.
 *
 * ringtrio.Buffer (_buffer_group.py) is the definition.  When the
 * accelerator is used it is built on this type: the six fields Buffer
 * declares in __slots__ are this type's members instead (the same names,
 * so the offsets setup_lease_receive looks up are these), and __enter__ /
 * __exit__ are these C methods instead of Buffer's Python ones -- a `with
 * buf:` then runs no Python frame.  __exit__ does what Buffer.__exit__
 * does: release_lease's C path, else Buffer.release() (a lease with a
 * view, a closing group, a waiter to wake: the Python method, the
 * definition, handles them).
 *
 * A lease refers to its group and the group's _leases set refers back to
 * the lease: the type takes part in the cyclic GC, as the Python class
 * (which has __slots__ and so the GC) did.
 */

typedef struct {
    PyObject_HEAD
    PyObject *group, *bid, *start, *len, *view, *released;
} LeaseBase;

static PyObject *release_name; /* "release" */
static PyObject *base_name;    /* "base" (BufferRing.base) */
static PyObject *queue_popleft_name; /* "popleft" (the receive's deque) */

static int leasebase_traverse(PyObject *self, visitproc visit, void *arg)
{
    LeaseBase *l = (LeaseBase *)self;
    Py_VISIT(l->group);
    Py_VISIT(l->bid);
    Py_VISIT(l->start);
    Py_VISIT(l->len);
    Py_VISIT(l->view);
    Py_VISIT(l->released);
    return 0;
}

static int leasebase_clear(PyObject *self)
{
    LeaseBase *l = (LeaseBase *)self;
    Py_CLEAR(l->group);
    Py_CLEAR(l->bid);
    Py_CLEAR(l->start);
    Py_CLEAR(l->len);
    Py_CLEAR(l->view);
    Py_CLEAR(l->released);
    return 0;
}

static void leasebase_dealloc(PyObject *self)
{
    /* (A subclass's dealloc, CPython's subtype_dealloc, untracks first and
     * drops the reference to its heap type after this returns.) */
    PyObject_GC_UnTrack(self);
    leasebase_clear(self);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *leasebase_enter(PyObject *self, PyObject *unused)
{
    return Py_NewRef(self);
}

/* __exit__(*exc_info): Buffer.__exit__ -- release the lease; exceptions
 * are never suppressed. */
static PyObject *leasebase_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *done = sp_release_lease(NULL, self);
    if (!done)
        return NULL;
    int in_c = done == Py_True;
    Py_DECREF(done);
    if (!in_c) {
        PyObject *r = PyObject_CallMethodNoArgs(self, release_name);
        if (!r)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static PyMethodDef leasebase_methods[] = {
    {"__enter__", leasebase_enter, METH_NOARGS, "with buf: the lease itself"},
    {"__exit__", (PyCFunction)(void (*)(void))leasebase_exit, METH_FASTCALL,
     "leaving with buf: the lease is released (Buffer.release())"},
    {NULL, NULL, 0, NULL},
};

/* Buffer's __slots__, by name (setup_lease_receive finds them here). */
static PyMemberDef leasebase_members[] = {
    {"_group", T_OBJECT_EX, offsetof(LeaseBase, group), 0, NULL},
    {"_bid", T_OBJECT_EX, offsetof(LeaseBase, bid), 0, NULL},
    {"_start", T_OBJECT_EX, offsetof(LeaseBase, start), 0, NULL},
    {"_len", T_OBJECT_EX, offsetof(LeaseBase, len), 0, NULL},
    {"_view", T_OBJECT_EX, offsetof(LeaseBase, view), 0, NULL},
    {"_released", T_OBJECT_EX, offsetof(LeaseBase, released), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject LeaseBase_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ringtrio._core._speedups.LeaseBase",
    .tp_basicsize = sizeof(LeaseBase),
    .tp_dealloc = leasebase_dealloc,
    .tp_traverse = leasebase_traverse,
    .tp_clear = leasebase_clear,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_methods = leasebase_methods,
    .tp_members = leasebase_members,
    .tp_new = PyType_GenericNew,
    .tp_doc = "The C base of ringtrio.Buffer (see _speedups_lease.c).",
};


/* ---------------------------------------------------------------------
 * BufferReceiver.__anext__'s common case (ringtrio._core._speedups.
 * ReceiverBase, the C base of _buffer_group.BufferReceiver).
 *
 * The Python __anext__ (BufferReceiver._anext, a generator-based
 * coroutine) is the definition.  In an echo loop it nearly always does the
 * same few steps: the stream's receive attached to this iterator, nothing
 * queued yet, the request armed -- so it parks (op.waiter = the task,
 * yield op.park), and when the dispatch's complete_lease_rx wakes it a
 * lease is queued: it pops it and returns it.  ReceiverBase's am_anext
 * returns a LeaseNext awaitable that does exactly that without a Python
 * frame, and hands everything else to the Python code, at the point where
 * the common case ended:
 *
 *   - at the first send, anything but the common case: the whole of
 *     _anext() (a fresh generator: nothing has been done yet);
 *   - woken with nothing queued (the request's final CQE, an error, a
 *     pause, the group closing): _receive(op, task, True, None), the rest
 *     of _anext() after a park;
 *   - an exception thrown in while parked (a cancellation) or close():
 *     _receive(op, task, True, exc), which raises exc inside _anext()'s
 *     try, so that its except/finally clauses run as they would have.
 *
 * From then on the LeaseNext forwards send/throw/close to that generator
 * (as `yield from` would).
 * --------------------------------------------------------------------- */

static int anext_ready;              /* setup_lease_anext done */
static PyObject *anext_local;        /* _core._local (its .task) */
/* BufferReceiver: the only class whose instances have the layout the
 * r_* offsets describe (it and its subclasses take the C path; any other
 * ReceiverBase subclass goes to its own _anext). */
static PyTypeObject *receiver_type;
static Py_ssize_t r_stream, r_group, r_op, r_closed;  /* BufferReceiver */
static Py_ssize_t m_owner, m_eof, m_error, m_armed, m_closed_by_user, m_park;  /* _MultishotRecv */
static PyObject *receiving_name, *buffer_receiver_name, *anext_py_name, *receive_py_name,
    *throw_name, *close_name;

enum { LN_INIT, LN_PARKED, LN_DELEGATE, LN_DONE };

typedef struct {
    PyObject_HEAD
    int state;
    /* In send/throw/close: a call back into this awaitable from the Python
     * code it runs (a generator's "already executing") is refused, never
     * allowed to drop the generator that is running under it. */
    int running;
    PyObject *receiver, *stream, *op, *task; /* the common case's (PARKED) */
    PyObject *gen;                           /* the Python code (DELEGATE) */
} LeaseNext;

static PyTypeObject LeaseNext_Type;

static int leasenext_traverse(PyObject *self, visitproc visit, void *arg)
{
    LeaseNext *n = (LeaseNext *)self;
    Py_VISIT(n->receiver);
    Py_VISIT(n->stream);
    Py_VISIT(n->op);
    Py_VISIT(n->task);
    Py_VISIT(n->gen);
    return 0;
}

static int leasenext_clear(PyObject *self)
{
    LeaseNext *n = (LeaseNext *)self;
    /* (Cleared as garbage: anything that still resumes it finds it over,
     * not a park whose fields are gone.) */
    n->state = LN_DONE;
    Py_CLEAR(n->stream);
    Py_CLEAR(n->op);
    Py_CLEAR(n->task);
    Py_CLEAR(n->gen);
    Py_CLEAR(n->receiver);
    return 0;
}

static int set_attr_bool(PyObject *obj, PyObject *name, int value)
{
    return PyObject_SetAttr(obj, name, value ? Py_True : Py_False);
}

/* Is it the common case at the start of __anext__?  1 yes (n->stream,
 * n->op, n->task set), 0 no, -1 error. */
static int anext_common_start(LeaseNext *n)
{
    PyObject *rx = n->receiver;
    PyObject *closed = FIELD(rx, r_closed), *stream = FIELD(rx, r_stream), *op = FIELD(rx, r_op);
    PyObject *mygroup = FIELD(rx, r_group);
    if (closed != Py_False || !stream || !op || Py_TYPE(op) != leaserx_type || !mygroup ||
        Py_TYPE(mygroup) != group_type)
        return 0;
    PyObject *queue = FIELD(op, m_queue), *group = FIELD(op, m_group), *owner = FIELD(op, m_owner);
    PyObject *error = FIELD(op, m_error), *park = FIELD(op, m_park);
    if (!queue || group != mygroup || !owner || !PyLong_CheckExact(owner) || !error ||
        !PyLong_CheckExact(error) || !park || FIELD(op, m_eof) != Py_False ||
        FIELD(op, m_armed) != Py_True || FIELD(op, m_closed_by_user) != Py_False ||
        FIELD(group, g_closing) != Py_False)
        return 0;
    if (PyLong_AsVoidPtr(owner) != (void *)rx || PyLong_AsLong(error) != 0) {
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t pending = PyObject_Size(queue);
    if (pending != 0) {
        if (pending < 0)
            PyErr_Clear();
        return 0; /* ready at once: the Python code's checkpoints */
    }
    /* Held from here: the attribute reads below may run Python code (a
     * property), which could rebind the receiver's fields. */
    n->stream = Py_NewRef(stream);
    n->op = Py_NewRef(op);
    int r = -1;
    PyObject *receiving = PyObject_GetAttr(n->stream, receiving_name);
    if (!receiving)
        goto out;
    Py_DECREF(receiving);
    r = 0;
    if (receiving != Py_False)
        goto out;
    r = -1;
    PyObject *attached = PyObject_GetAttr(n->stream, buffer_receiver_name);
    if (!attached)
        goto out;
    Py_DECREF(attached);
    r = 0;
    if (attached != n->op)
        goto out;
    r = -1;
    PyObject *task = PyObject_GetAttr(anext_local, task_attr);
    if (!task)
        goto out;
    r = 0;
    if (task == Py_None) {
        Py_DECREF(task);
        goto out;
    }
    n->task = task;
    return 1;
out:
    Py_CLEAR(n->stream);
    Py_CLEAR(n->op);
    return r;
}

/* Hand over to the Python generator `gen` (stolen) and send it `value`. */
static PySendResult leasenext_delegate(LeaseNext *n, PyObject *gen, PyObject *value, PyObject **result)
{
    if (!gen)
        return PYGEN_ERROR;
    n->state = LN_DELEGATE;
    Py_CLEAR(n->stream);
    Py_CLEAR(n->op);
    Py_CLEAR(n->task);
    n->gen = Py_NewRef(gen);
    PySendResult r = PyIter_Send(gen, value, result);
    if (r != PYGEN_NEXT && n->gen == gen) {
        n->state = LN_DONE;
        Py_CLEAR(n->gen);
    }
    Py_DECREF(gen);
    return r;
}

/* _receive(op, task, True, thrown): the rest of _anext() after its park. */
static PyObject *receive_rest(LeaseNext *n, PyObject *thrown)
{
    return PyObject_CallMethodObjArgs(n->receiver, receive_py_name, n->op, n->task, Py_True,
                                      thrown ? thrown : Py_None, NULL);
}

static PySendResult leasenext_send_impl(PyObject *self, PyObject *value, PyObject **result)
{
    LeaseNext *n = (LeaseNext *)self;
    switch (n->state) {
    case LN_INIT: {
        int common = anext_common_start(n);
        if (common < 0) {
            n->state = LN_DONE;
            return PYGEN_ERROR;
        }
        if (!common)
            return leasenext_delegate(n, PyObject_CallMethodNoArgs(n->receiver, anext_py_name),
                                      value, result);
        /* _anext(): stream._receiving = True; op.waiter = task; yield op.park */
        if (set_attr_bool(n->stream, receiving_name, 1) < 0) {
            n->state = LN_DONE;
            return PYGEN_ERROR;
        }
        set_field(n->op, m_waiter, Py_NewRef(n->task));
        n->state = LN_PARKED;
        PyObject *park = FIELD(n->op, m_park);
        if (!park) {
            PyErr_SetString(PyExc_AttributeError, "receive_buffers: the multishot receive has no park");
            return PYGEN_ERROR;
        }
        *result = Py_NewRef(park);
        return PYGEN_NEXT;
    }
    case LN_PARKED: {
        /* Woken: a lease is queued (the common case), else the Python code. */
        PyObject *queue = FIELD(n->op, m_queue);
        Py_ssize_t pending = queue ? PyObject_Size(queue) : 0;
        if (pending < 0)
            return PYGEN_ERROR;
        if (pending == 0 || FIELD(n->op, m_group) != FIELD(n->receiver, r_group))
            return leasenext_delegate(n, receive_rest(n, NULL), Py_None, result);
        PyObject *lease = PyObject_CallMethodNoArgs(queue, queue_popleft_name);
        n->state = LN_DONE;
        int rc = set_attr_bool(n->stream, receiving_name, 0);
        Py_CLEAR(n->stream);
        Py_CLEAR(n->op);
        Py_CLEAR(n->task);
        if (!lease || rc < 0) {
            Py_XDECREF(lease);
            return PYGEN_ERROR;
        }
        *result = lease;
        return PYGEN_RETURN;
    }
    case LN_DELEGATE: {
        PyObject *gen = Py_NewRef(n->gen);
        PySendResult r = PyIter_Send(gen, value, result);
        if (r != PYGEN_NEXT && n->gen == gen) {
            n->state = LN_DONE;
            Py_CLEAR(n->gen);
        }
        Py_DECREF(gen);
        return r;
    }
    default:
        *result = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
}

static PySendResult leasenext_send(PyObject *self, PyObject *value, PyObject **result);
static PyObject *leasenext_close(PyObject *self, PyObject *unused);

/* A send result as a Python-level send()/__next__() returns it. */
static PyObject *send_result(PySendResult r, PyObject *result)
{
    if (r == PYGEN_NEXT)
        return result;
    if (r == PYGEN_RETURN) {
        if (result == Py_None)
            PyErr_SetNone(PyExc_StopIteration);
        else {
            PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, result);
            if (stop) {
                PyErr_SetObject(PyExc_StopIteration, stop);
                Py_DECREF(stop);
            }
        }
        Py_DECREF(result);
    }
    return NULL;
}

static PyObject *leasenext_iternext(PyObject *self)
{
    PyObject *result = NULL;
    PySendResult r = leasenext_send(self, Py_None, &result);
    if (r == PYGEN_RETURN && result == Py_None) {
        Py_DECREF(result);
        return NULL; /* plain exhaustion */
    }
    return send_result(r, result);
}

static PyObject *leasenext_send_meth(PyObject *self, PyObject *value)
{
    PyObject *result = NULL;
    /* (Two statements: C leaves the order of a call's arguments open, and
     * `result` must be read after leasenext_send has set it.) */
    PySendResult r = leasenext_send(self, value, &result);
    return send_result(r, result);
}

/* The exception a throw(typ[, val[, tb]]) raises (a new reference). */
static PyObject *thrown_exception(PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw() takes 1 to 3 arguments");
        return NULL;
    }
    PyObject *typ = args[0], *val = nargs > 1 ? args[1] : Py_None;
    PyObject *exc;
    if (PyExceptionInstance_Check(typ)) {
        if (val != Py_None) {
            PyErr_SetString(PyExc_TypeError, "instance exception may not have a separate value");
            return NULL;
        }
        exc = Py_NewRef(typ);
    } else if (PyExceptionClass_Check(typ)) {
        exc = val == Py_None ? PyObject_CallNoArgs(typ)
              : PyExceptionInstance_Check(val) ? Py_NewRef(val)
              : PyObject_CallOneArg(typ, val);
        if (!exc)
            return NULL;
    } else {
        PyErr_SetString(PyExc_TypeError, "exceptions must be classes or instances deriving from BaseException");
        return NULL;
    }
    if (nargs > 2 && args[2] != Py_None && PyException_SetTraceback(exc, args[2]) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    return exc;
}

static PyObject *leasenext_throw_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    LeaseNext *n = (LeaseNext *)self;
    if (n->state == LN_DELEGATE) {
        PyObject *meth = PyObject_GetAttr(n->gen, throw_name);
        if (!meth)
            return NULL;
        PyObject *r = PyObject_Vectorcall(meth, args, (size_t)nargs, NULL);
        Py_DECREF(meth);
        if (!r) {
            n->state = LN_DONE;
            Py_CLEAR(n->gen);
        }
        return r;
    }
    PyObject *exc = thrown_exception(args, nargs);
    if (!exc)
        return NULL;
    if (n->state != LN_PARKED) {
        /* Not started (or over): raised as it is, as a generator does. */
        n->state = LN_DONE;
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
        return NULL;
    }
    PyObject *result = NULL;
    PySendResult r = leasenext_delegate(n, receive_rest(n, exc), Py_None, &result);
    Py_DECREF(exc);
    return send_result(r, result);
}

/* close(): as a generator's -- GeneratorExit at the park, and a
 * RuntimeError if the code then yields. */
static PyObject *leasenext_close_impl(PyObject *self)
{
    LeaseNext *n = (LeaseNext *)self;
    if (n->state == LN_DELEGATE) {
        PyObject *gen = n->gen;
        n->gen = NULL; /* (ours now) */
        n->state = LN_DONE;
        PyObject *r = PyObject_CallMethodNoArgs(gen, close_name);
        Py_DECREF(gen);
        return r;
    }
    if (n->state != LN_PARKED) {
        n->state = LN_DONE;
        Py_RETURN_NONE;
    }
    PyObject *exit = PyObject_CallNoArgs(PyExc_GeneratorExit);
    if (!exit)
        return NULL;
    PyObject *gen = receive_rest(n, exit);
    Py_DECREF(exit);
    PyObject *result = NULL;
    PySendResult r = leasenext_delegate(n, gen, Py_None, &result);
    if (r == PYGEN_NEXT) {
        Py_DECREF(result);
        gen = n->gen;
        n->gen = NULL; /* (ours now) */
        n->state = LN_DONE;
        PyObject *c = gen ? PyObject_CallMethodNoArgs(gen, close_name) : Py_NewRef(Py_None);
        Py_XDECREF(gen);
        Py_XDECREF(c);
        if (c)
            PyErr_SetString(PyExc_RuntimeError, "generator ignored GeneratorExit");
        return NULL;
    }
    if (r == PYGEN_RETURN) {
        Py_DECREF(result);
        Py_RETURN_NONE;
    }
    if (PyErr_ExceptionMatches(PyExc_GeneratorExit) || PyErr_ExceptionMatches(PyExc_StopIteration)) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return NULL;
}

/* send/throw/close called again from the Python code one of them runs:
 * refused as a generator refuses it (the state is left alone). */
static int leasenext_enter(LeaseNext *n)
{
    if (n->running) {
        PyErr_SetString(PyExc_ValueError, "receive_buffers' __anext__ awaitable is already executing");
        return -1;
    }
    n->running = 1;
    return 0;
}

static PySendResult leasenext_send(PyObject *self, PyObject *value, PyObject **result)
{
    LeaseNext *n = (LeaseNext *)self;
    if (leasenext_enter(n) < 0)
        return PYGEN_ERROR;
    PySendResult r = leasenext_send_impl(self, value, result);
    n->running = 0;
    return r;
}

static PyObject *leasenext_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    LeaseNext *n = (LeaseNext *)self;
    if (leasenext_enter(n) < 0)
        return NULL;
    PyObject *r = leasenext_throw_impl(self, args, nargs);
    n->running = 0;
    return r;
}

static PyObject *leasenext_close(PyObject *self, PyObject *unused)
{
    LeaseNext *n = (LeaseNext *)self;
    if (leasenext_enter(n) < 0)
        return NULL;
    PyObject *r = leasenext_close_impl(self);
    n->running = 0;
    return r;
}

/* A LeaseNext dropped while parked is closed, as a suspended generator. */
static void leasenext_finalize(PyObject *self)
{
    LeaseNext *n = (LeaseNext *)self;
    if (n->state != LN_PARKED)
        return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *r = leasenext_close(self, NULL);
    if (!r)
        PyErr_WriteUnraisable(self);
    Py_XDECREF(r);
    PyErr_Restore(type, value, tb);
}

static void leasenext_dealloc(PyObject *self)
{
    if (PyObject_CallFinalizerFromDealloc(self) < 0)
        return; /* resurrected */
    PyObject_GC_UnTrack(self);
    leasenext_clear(self);
    PyObject_GC_Del(self);
}

static PyObject *leasenext_await(PyObject *self)
{
    return Py_NewRef(self);
}

static PyMethodDef leasenext_methods[] = {
    {"send", leasenext_send_meth, METH_O, "send(value): as a coroutine's"},
    {"throw", (PyCFunction)(void (*)(void))leasenext_throw, METH_FASTCALL, "throw(exc): as a coroutine's"},
    {"close", leasenext_close, METH_NOARGS, "close(): as a coroutine's"},
    {NULL, NULL, 0, NULL},
};

static PyAsyncMethods leasenext_async = {
    .am_await = leasenext_await,
    .am_send = leasenext_send,
};

static PyTypeObject LeaseNext_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ringtrio._core._speedups.LeaseNext",
    .tp_basicsize = sizeof(LeaseNext),
    .tp_dealloc = leasenext_dealloc,
    .tp_as_async = &leasenext_async,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = leasenext_traverse,
    .tp_clear = leasenext_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = leasenext_iternext,
    .tp_methods = leasenext_methods,
    .tp_finalize = leasenext_finalize,
    .tp_doc = "What BufferReceiver.__anext__ returns with the accelerator (see _speedups_lease.c).",
};

/* ReceiverBase.__anext__ (am_anext): a LeaseNext, or the Python __anext__
 * (_anext) until setup_lease_anext has run. */
static PyObject *receiverbase_anext(PyObject *self)
{
    /* (Only a BufferReceiver has the fields the awaitable reads; any other
     * subclass of ReceiverBase, or ReceiverBase itself, gets its _anext.) */
    if (!anext_ready || !PyObject_TypeCheck(self, receiver_type))
        return PyObject_CallMethodNoArgs(self, anext_py_name);
    LeaseNext *n = PyObject_GC_New(LeaseNext, &LeaseNext_Type);
    if (!n)
        return NULL;
    n->state = LN_INIT;
    n->running = 0;
    n->receiver = Py_NewRef(self);
    n->stream = n->op = n->task = n->gen = NULL;
    PyObject_GC_Track((PyObject *)n);
    return (PyObject *)n;
}

static PyAsyncMethods receiverbase_async = {
    .am_anext = receiverbase_anext,
};

static PyTypeObject ReceiverBase_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ringtrio._core._speedups.ReceiverBase",
    .tp_basicsize = sizeof(PyObject),
    .tp_as_async = &receiverbase_async,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_doc = "The C base of ringtrio.BufferReceiver: __anext__'s common case (see _speedups_lease.c).",
};

/* setup_lease_anext(BufferReceiver, local): after setup_lease_receive. */
static PyObject *sp_setup_lease_anext(PyObject *mod, PyObject *args)
{
    PyObject *recv_t, *local;
    if (!PyArg_ParseTuple(args, "O!O", &PyType_Type, &recv_t, &local))
        return NULL;
    if (!leaserx_type || !group_type) {
        PyErr_SetString(PyExc_TypeError, "setup_lease_anext(): call setup_lease_receive() first");
        return NULL;
    }
    if (!PyType_IsSubtype((PyTypeObject *)recv_t, &ReceiverBase_Type)) {
        PyErr_SetString(PyExc_TypeError, "setup_lease_anext(): the receiver class must derive from ReceiverBase");
        return NULL;
    }
    if (member_offset(recv_t, "_stream", &r_stream) < 0 ||
        member_offset(recv_t, "_group", &r_group) < 0 ||
        member_offset(recv_t, "_op", &r_op) < 0 ||
        member_offset(recv_t, "_closed", &r_closed) < 0 ||
        member_offset((PyObject *)leaserx_type, "owner", &m_owner) < 0 ||
        member_offset((PyObject *)leaserx_type, "eof", &m_eof) < 0 ||
        member_offset((PyObject *)leaserx_type, "error", &m_error) < 0 ||
        member_offset((PyObject *)leaserx_type, "armed", &m_armed) < 0 ||
        member_offset((PyObject *)leaserx_type, "closed_by_user", &m_closed_by_user) < 0 ||
        member_offset((PyObject *)leaserx_type, "park", &m_park) < 0)
        return NULL;
    Py_XSETREF(anext_local, Py_NewRef(local));
    Py_XSETREF(receiver_type, (PyTypeObject *)Py_NewRef(recv_t));
    anext_ready = 1;
    Py_RETURN_NONE;
}

/* Called from PyInit__speedups. */
static int lease_module_init(PyObject *mod)
{
    release_name = PyUnicode_InternFromString("release");
    base_name = PyUnicode_InternFromString("base");
    queue_popleft_name = PyUnicode_InternFromString("popleft");
    receiving_name = PyUnicode_InternFromString("_receiving");
    buffer_receiver_name = PyUnicode_InternFromString("_buffer_receiver");
    anext_py_name = PyUnicode_InternFromString("_anext");
    receive_py_name = PyUnicode_InternFromString("_receive");
    throw_name = PyUnicode_InternFromString("throw");
    close_name = PyUnicode_InternFromString("close");
    if (!release_name || !base_name || !queue_popleft_name || !receiving_name || !buffer_receiver_name || !anext_py_name ||
        !receive_py_name || !throw_name || !close_name)
        return -1;
    if (PyType_Ready(&LeaseBase_Type) < 0 || PyType_Ready(&LeaseNext_Type) < 0 ||
        PyType_Ready(&ReceiverBase_Type) < 0)
        return -1;
    if (PyModule_AddObjectRef(mod, "LeaseBase", (PyObject *)&LeaseBase_Type) < 0 ||
        PyModule_AddObjectRef(mod, "ReceiverBase", (PyObject *)&ReceiverBase_Type) < 0)
        return -1;
    return 0;
}

/* lease_hold(lease) -> int | None: what SocketStream.send_all does with a
 * lease before it sends from the group's memory -- one more reference on
 * its buffer (BufferGroup._refs[bid], _total_refs: the send holds it as a
 * view would, until lease_unref) -- and the address of its bytes.  None:
 * nothing done (a released lease, a closed group, ...): the Python code. */
static PyObject *sp_lease_hold(PyObject *mod, PyObject *lease)
{
    if (!lease_type || Py_TYPE(lease) != lease_type || FIELD(lease, l_released) != Py_False)
        Py_RETURN_NONE;
    PyObject *group = FIELD(lease, l_group);
    if (!group || Py_TYPE(group) != group_type || FIELD(group, g_closed) != Py_False ||
        FIELD(group, g_freed) != Py_False)
        Py_RETURN_NONE;
    PyObject *refs = FIELD(group, g_refs), *ring = FIELD(group, g_ring);
    Py_ssize_t bid = ssize_field(lease, l_bid), start = ssize_field(lease, l_start);
    Py_ssize_t total = ssize_field(group, g_total_refs);
    if (!refs || !PyList_CheckExact(refs) || bid < 0 || bid >= PyList_GET_SIZE(refs) ||
        start < 0 || total < 0 || !ring || Py_TYPE(ring) != bufring_type)
        Py_RETURN_NONE;
    Py_ssize_t nrefs = list_int(refs, bid);
    PyObject *base = PyObject_GetAttr(ring, base_name);
    if (!base)
        return NULL;
    void *addr = PyLong_Check(base) ? PyLong_AsVoidPtr(base) : NULL;
    Py_DECREF(base);
    if (!addr || nrefs < 1) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *out = PyLong_FromVoidPtr((char *)addr + start);
    if (!out)
        return NULL;
    PyObject *v = PyLong_FromSsize_t(total + 1);
    if (!v || set_list_int(refs, bid, nrefs + 1) < 0) {
        Py_XDECREF(v);
        Py_DECREF(out);
        return NULL;
    }
    set_field(group, g_total_refs, v);
    return out;
}
