/* The extension module pyllm._core: version queries, threads, and the registration of
 * the tokenizer, model and sampling bindings. Entry points that exist for tests and benchmarks
 * only (one kernel, one weight format, one processor stage alone) live apart, in the
 * submodule pyllm._core._testing (read through pyllm/_testing.py), off the shipped surface. */
#define PYLLM_IMPORT_ARRAY_HERE
#include "python/common.h"

#include <oneapi/dnnl/dnnl.h>

#include "core/threads.h"
#include "python/py_args.h"
#include "ops/gemv.h"

static PyObject *onednn_version(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    const dnnl_version_t *v = dnnl_version();
    return PyUnicode_FromFormat("%d.%d.%d", v->major, v->minor, v->patch);
}

static PyObject *get_num_threads(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyLong_FromLong(pyllm_get_num_threads());
}

static PyObject *set_num_threads(PyObject *self, PyObject *arg)
{
    (void)self;
    int64_t n;
    if (pyllm_arg_int64(arg, "n_threads", 1, PYLLM_MAX_THREADS, &n) < 0)
        return NULL;
    pyllm_set_num_threads((int)n);
    Py_RETURN_NONE;
}

static PyObject *kernel_isa(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyUnicode_FromString(pyllm_isa_name(pyllm_gemv_isa()));
}

static PyMethodDef module_methods[] = {
    {"kernel_isa", kernel_isa, METH_NOARGS,
     "Instruction set of pyllm's own kernels on this CPU: 'avx512', 'avx2' or 'generic' (PYLLM_ISA lowers it)."},
    {"onednn_version", onednn_version, METH_NOARGS, "Version of the oneDNN library loaded, e.g. '3.2.0'."},
    {"get_num_threads", get_num_threads, METH_NOARGS, "Threads used by the calling thread's computations."},
    {"set_num_threads", set_num_threads, METH_O, "Set the threads used by the calling thread's computations."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "pyllm._core", "The C core of pyllm.", -1, module_methods,
    NULL, NULL, NULL, NULL,
};

static struct PyModuleDef testing_module = {
    PyModuleDef_HEAD_INIT, "pyllm._core._testing",
    "Test-only entry points of pyllm's C core: kernels, weight formats and processor stages alone.", -1, NULL,
    NULL, NULL, NULL, NULL,
};

/* The test-only submodule, attached to m as _testing; 0 or -1 with an exception. */
static int add_testing(PyObject *m)
{
    PyObject *t = PyModule_Create(&testing_module);
    if (t == NULL)
        return -1;
    if (pyllm_register_quant(t) < 0 || pyllm_register_processors(t) < 0 || pyllm_register_tokenizer_work(t) < 0 ||
        pyllm_register_faults(t) < 0 || pyllm_register_threads_testing(t) < 0 || pyllm_register_regex_testing(t) < 0 ||
        PyModule_AddObject(m, "_testing", t) < 0) {
        Py_DECREF(t);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__core(void)
{
    import_array();
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL)
        return NULL;
    if (pyllm_register_tokenizer(m) < 0 || pyllm_register_model(m) < 0 || pyllm_register_sampling(m) < 0 ||
        pyllm_register_scoring(m) < 0 || pyllm_register_memory(m) < 0 || pyllm_register_gguf(m) < 0 ||
        add_testing(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
