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
    int64_t jobs, entries, wakeups[PYLLM_POOL_MAX_THREADS - 1];
    Py_BEGIN_ALLOW_THREADS /* the pool's owner may be another thread's call, in a job */
    pyllm_pool_stats(&workers, &jobs, &entries, &reduced, wakeups);
    Py_END_ALLOW_THREADS
    PyObject *woken = PyList_New(workers);
    if (woken == NULL)
        return NULL;
    for (int i = 0; i < workers; i++) {
        PyObject *v = PyLong_FromLongLong(wakeups[i]);
        if (v == NULL) {
            Py_DECREF(woken);
            return NULL;
        }
        PyList_SET_ITEM(woken, i, v);
    }
    return Py_BuildValue("{s:i,s:L,s:L,s:i,s:N}", "workers", workers, "jobs", (long long)jobs, "entries",
                         (long long)entries, "reduced", reduced, "wakeups", woken);
}

/* set_pool_sizing(on): the pool's busy-neighbour sizing on or off (core/pool.h). */
static PyObject *set_pool_sizing(PyObject *module, PyObject *arg)
{
    (void)module;
    const int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    pyllm_pool_set_sizing(on);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef threads_testing_methods[] = {
    {"set_pool_sizing", set_pool_sizing, METH_O,
     "set_pool_sizing(on): the worker pool's busy-neighbour sizing on (the default) or off, for tests that count "
     "the workers' part whatever the host's load."},
    {"pool_stats", pool_stats, METH_NOARGS,
     "pool_stats() -> {'workers', 'jobs', 'entries', 'reduced', 'wakeups'}: worker threads started, jobs "
     "published to them, workers' entries into those jobs, threads the busy-neighbour sizing takes off now, and "
     "each worker's wake-ups from sleep (core/pool.h)."},
    {"hold_kv_cache", hold_kv_cache, METH_VARARGS,
     "hold_kv_cache(cache, fn) -> fn(): call fn while the cache is claimed as by a call appending to it."},
    {NULL, NULL, 0, NULL},
};

int pyllm_register_threads_testing(PyObject *module)
{
    return PyModule_AddFunctions(module, threads_testing_methods);
}
