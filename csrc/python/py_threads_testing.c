/* Test-only entry points for the thread-safety rules (pyllm._core._testing): a KV cache held as
 * a call that appends to it holds it, so a test can show, without racing real threads, what
 * every other use of the cache meets meanwhile. */
#include "python/common.h"

#include "core/pool.h"
#include "python/py_model.h"

/* hold_kv_cache(cache, fn): fn() with the cache claimed as a forward call claims it; fn's result. */
static PyObject *hold_kv_cache(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *cache, *fn;
    if (!PyArg_ParseTuple(args, "OO:hold_kv_cache", &cache, &fn))
        return NULL;
    if (pyllm_kv_cache_claim(cache, 1) < 0)
        return NULL;
    PyObject *result = PyObject_CallNoArgs(fn);
    pyllm_kv_cache_unclaim(cache, 1);
    return result;
}

/* pool_stats() -> dict: the worker pool's counters (core/pool.h). */
static PyObject *pool_stats(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    int workers, reduced;
    int64_t jobs, entries;
    Py_BEGIN_ALLOW_THREADS /* the pool's owner may be another thread's call, in a job */
    pyllm_pool_stats(&workers, &jobs, &entries, &reduced);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("{s:i,s:L,s:L,s:i}", "workers", workers, "jobs", (long long)jobs, "entries",
                         (long long)entries, "reduced", reduced);
}

static PyMethodDef threads_testing_methods[] = {
    {"pool_stats", pool_stats, METH_NOARGS,
     "pool_stats() -> {'workers', 'jobs', 'entries', 'reduced'}: worker threads started, jobs published to them, "
     "workers' entries into those jobs, and threads the busy-neighbour sizing takes off now (core/pool.h)."},
    {"hold_kv_cache", hold_kv_cache, METH_VARARGS,
     "hold_kv_cache(cache, fn) -> fn(): call fn while the cache is claimed as by a call appending to it."},
    {NULL, NULL, 0, NULL},
};

int pyllm_register_threads_testing(PyObject *module)
{
    return PyModule_AddFunctions(module, threads_testing_methods);
}
