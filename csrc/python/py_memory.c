/* The binding's side of memory accounting: the rounding of large buffers (so pyllm.memory's
 * estimates count what is really allocated), and the check every KV cache passes before it is
 * allocated. The limit itself (cgroup, available RAM, PYLLM_MEMORY_LIMIT) is known
 * in one place only, pyllm/memory.py, which these checks call. */
#include "python/py_memory.h"

#include "core/alloc.h"
#include "ops/matmul.h"

static PyObject *alloc_big_size(PyObject *self, PyObject *arg)
{
    (void)self;
    size_t bytes = PyLong_AsSize_t(arg);
    if (bytes == (size_t)-1 && PyErr_Occurred())
        return NULL;
    return PyLong_FromSize_t(pyllm_alloc_big_size(bytes));
}

int pyllm_check_kv_cache_fits(const pyllm_decoder_config *c, int64_t batch, int64_t capacity)
{
    size_t bytes;
    pyllm_status st = pyllm_kv_cache_bytes(c, batch, capacity, &bytes);
    if (st != PYLLM_OK) {
        pyllm_raise(st);
        return -1;
    }
    PyObject *memory = PyImport_ImportModule("pyllm.memory");
    if (memory == NULL)
        return -1;
    PyObject *r = PyObject_CallMethod(memory, "check_kv_cache", "KLL", (unsigned long long)bytes, (long long)batch,
                                      (long long)capacity);
    Py_DECREF(memory);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyMethodDef memory_methods[] = {
    {"alloc_big_size", alloc_big_size, METH_O,
     "alloc_big_size(bytes): bytes the C core reserves for a large buffer of that size (alignment)."},
    {NULL, NULL, 0, NULL},
};

int pyllm_register_memory(PyObject *module)
{
    return PyModule_AddFunctions(module, memory_methods);
}
