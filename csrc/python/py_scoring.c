/* The scoring binding: _core.score_tokens(logits, targets) -> (float64 logprobs, bool greedy),
 * the log-softmax that model.loglikelihood and lm-evaluation-harness scores rest on. */
#include "python/common.h"

#include "models/scoring.h"

static PyObject *score_tokens(PyObject *self, PyObject *args, PyObject *kwds)
{
    (void)self;
    static char *kwlist[] = {"logits", "targets", NULL};
    PyObject *logits_obj, *targets_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:score_tokens", kwlist, &logits_obj, &targets_obj))
        return NULL;
    PyArrayObject *logits = (PyArrayObject *)PyArray_FROMANY(logits_obj, NPY_FLOAT32, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (logits == NULL)
        return NULL;
    PyArrayObject *targets = (PyArrayObject *)PyArray_FROMANY(targets_obj, NPY_INT32, 1, 1, NPY_ARRAY_IN_ARRAY);
    if (targets == NULL) {
        Py_DECREF(logits);
        return NULL;
    }
    const npy_intp rows = PyArray_DIM(logits, 0), vocab = PyArray_DIM(logits, 1);
    PyArrayObject *logprob = NULL, *greedy = NULL;
    PyObject *result = NULL;
    if (PyArray_DIM(targets, 0) != rows) {
        PyErr_Format(PyExc_ValueError, "score_tokens needs one target per logits row: %lld rows, %lld targets",
                     (long long)rows, (long long)PyArray_DIM(targets, 0));
        goto done;
    }
    npy_intp dims[1] = {rows};
    logprob = (PyArrayObject *)pyllm_new_array(1, dims, NPY_FLOAT64, 0);
    greedy = (PyArrayObject *)pyllm_new_array(1, dims, NPY_BOOL, 0);
    if (logprob == NULL || greedy == NULL)
        goto done;
    pyllm_status st;
    const float *l = PyArray_DATA(logits);
    const int32_t *t = PyArray_DATA(targets);
    double *lp = PyArray_DATA(logprob);
    uint8_t *g = PyArray_DATA(greedy);
    Py_BEGIN_ALLOW_THREADS
    st = pyllm_score_tokens(l, rows, vocab, t, lp, g);
    Py_END_ALLOW_THREADS
    if (st != PYLLM_OK) {
        pyllm_raise(st);
        goto done;
    }
    result = PyTuple_Pack(2, (PyObject *)logprob, (PyObject *)greedy);

done:
    Py_DECREF(logits);
    Py_DECREF(targets);
    Py_XDECREF(logprob);
    Py_XDECREF(greedy);
    return result;
}

static PyMethodDef scoring_methods[] = {
    {"score_tokens", (PyCFunction)(void (*)(void))score_tokens, METH_VARARGS | METH_KEYWORDS,
     "score_tokens(logits float32 [rows, vocab], targets int32 [rows]) -> (float64 log_softmax of each "
     "target, bool target is the first arg-max)."},
    {NULL, NULL, 0, NULL},
};

int pyllm_register_scoring(PyObject *module)
{
    return PyModule_AddFunctions(module, scoring_methods);
}
