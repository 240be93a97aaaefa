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

/* Called from PyInit__speedups. */
static int lease_module_init(PyObject *mod)
{
    release_name = PyUnicode_InternFromString("release");
    if (!release_name || PyType_Ready(&LeaseBase_Type) < 0)
        return -1;
    return PyModule_AddObjectRef(mod, "LeaseBase", (PyObject *)&LeaseBase_Type);
}
