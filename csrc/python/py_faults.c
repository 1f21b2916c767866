/* The fault switch (core/faults.h) from Python, in pyllm._core._testing: tests make the n-th
 * allocation or oneDNN call from now fail and check that nothing is lost. */
#include "python/common.h"

#include <string.h>

#include "core/faults.h"

/* 'alloc', 'dnnl' or 'any' as a kind; -1 with a ValueError otherwise. */
static int kind_of(const char *name)
{
    if (strcmp(name, "alloc") == 0)
        return PYLLM_FAULT_ALLOC;
    if (strcmp(name, "dnnl") == 0)
        return PYLLM_FAULT_DNNL;
    if (strcmp(name, "any") == 0)
        return PYLLM_FAULT_ANY;
    PyErr_Format(PyExc_ValueError, "a fault kind is 'alloc', 'dnnl' or 'any', got '%s'", name);
    return -1;
}

static PyObject *fail_after(PyObject *self, PyObject *args)
{
    (void)self;
    const char *name;
    long long n;
    if (!PyArg_ParseTuple(args, "sL:fail_after", &name, &n))
        return NULL;
    const int kind = kind_of(name);
    if (kind < 0)
        return NULL;
    if (n < 0) {
        PyErr_Format(PyExc_ValueError, "fail_after needs n >= 0 (0: count only), got %lld", n);
        return NULL;
    }
    pyllm_faults_arm(kind, n);
    Py_RETURN_NONE;
}

static PyObject *fault_count(PyObject *self, PyObject *args)
{
    (void)self;
    const char *name = "any";
    if (!PyArg_ParseTuple(args, "|s:fault_count", &name))
        return NULL;
    const int kind = kind_of(name);
    return kind < 0 ? NULL : PyLong_FromLongLong(pyllm_faults_count(kind));
}

static PyObject *faults_injected(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyLong_FromLongLong(pyllm_faults_injected());
}

static PyObject *clear_faults(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    pyllm_faults_clear();
    Py_RETURN_NONE;
}

static PyMethodDef fault_methods[] = {
    {"fail_after", fail_after, METH_VARARGS,
     "fail_after(kind, n): reset the counts and count calls of kind ('alloc': the C core's allocations, "
     "'dnnl': its oneDNN calls, 'any': both); the n-th from now fails once, as if memory ran out "
     "(0: count only)."},
    {"fault_count", fault_count, METH_VARARGS, "fault_count(kind='any'): calls of kind since fail_after."},
    {"faults_injected", faults_injected, METH_NOARGS, "Failures injected since fail_after (0 or 1)."},
    {"clear_faults", clear_faults, METH_NOARGS, "Stop counting; no failure pending."},
    {NULL, NULL, 0, NULL},
};

int pyllm_register_faults(PyObject *module)
{
    return PyModule_AddFunctions(module, fault_methods);
}
