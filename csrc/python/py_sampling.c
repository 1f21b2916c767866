/* _core.sample_logits: the C sampler on one row of logits, from Python.
 *
 * It draws num_samples tokens from one RNG stream seeded once, so a test can compare the
 * sampler's distribution with transformers' warpers without paying a Python call per draw. */
#include "python/common.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "generate/processors.h"
#include "generate/rng.h"
#include "generate/sampler.h"
#include "python/py_args.h"

/* A contiguous float32 copy (or view) of a 1-D, non-empty floating-point row; NULL with
 * TypeError / ValueError otherwise. */
static PyArrayObject *logits_row(PyObject *obj)
{
    PyArrayObject *any = (PyArrayObject *)PyArray_FROM_O(obj);
    if (any == NULL)
        return NULL;
    if (!PyArray_ISFLOAT(any)) {
        PyObject *name = PyObject_Str((PyObject *)PyArray_DESCR(any));
        if (name != NULL) {
            PyErr_Format(PyExc_TypeError, "logits must be a floating-point array (float32 preferred), got dtype %U",
                         name);
            Py_DECREF(name);
        }
        Py_DECREF(any);
        return NULL;
    }
    if (PyArray_NDIM(any) != 1) {
        PyObject *shape = PyObject_GetAttrString((PyObject *)any, "shape");
        if (shape != NULL) {
            PyErr_Format(PyExc_ValueError, "logits must be a 1-D row of vocabulary scores, got shape %R", shape);
            Py_DECREF(shape);
        }
        Py_DECREF(any);
        return NULL;
    }
    if (PyArray_DIM(any, 0) == 0) {
        PyErr_SetString(PyExc_ValueError, "logits must not be empty: expected at least one vocabulary score");
        Py_DECREF(any);
        return NULL;
    }
    if (PyArray_DIM(any, 0) > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "logits has %zd entries, more than the %d a vocabulary may have",
                     (Py_ssize_t)PyArray_DIM(any, 0), INT32_MAX);
        Py_DECREF(any);
        return NULL;
    }
    PyArrayObject *row = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)any, NPY_FLOAT32, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(any);
    return row;
}

/* ValueError naming the first entry no sampler can use: NaN, +inf, or a row without any
 * finite score (-inf alone marks a banned token and is fine). */
static int check_logit_values(const float *logits, int32_t n)
{
    int any_finite = 0;
    for (int32_t i = 0; i < n; i++) {
        if (isnan(logits[i])) {
            PyErr_Format(PyExc_ValueError, "logits must not contain NaN: logits[%d] is NaN", (int)i);
            return -1;
        }
        if (logits[i] == INFINITY) {
            PyErr_Format(PyExc_ValueError,
                         "logits must be finite or -inf: logits[%d] is +inf (as float32)", (int)i);
            return -1;
        }
        any_finite |= isfinite(logits[i]);
    }
    if (!any_finite) {
        PyErr_SetString(PyExc_ValueError, "logits must hold at least one finite score: every entry is -inf");
        return -1;
    }
    return 0;
}

/* ValueError "<what>, got <value>" with value as Python's repr shows it (PyErr_Format has
 * no floating-point conversion). */
static void value_error_got(const char *what, double value)
{
    char *text = PyOS_double_to_string(value, 'r', 0, 0, NULL);
    if (text == NULL)
        return;
    PyErr_Format(PyExc_ValueError, "%s, got %s", what, text);
    PyMem_Free(text);
}

/* Options checked in double precision, before rounding to the sampler's float32 could hide
 * an out-of-range value (top_p = 1 + 1e-9 would round to 1). */
static int check_options(double temperature, long long top_k, double top_p, Py_ssize_t num_samples)
{
    if (!(temperature >= 0.0) || isinf(temperature)) {
        value_error_got("temperature must be a finite number >= 0 (0 means greedy)", temperature);
        return -1;
    }
    if ((temperature > 0.0 && temperature < FLT_MIN) || temperature > FLT_MAX) {
        value_error_got("temperature must be 0 (greedy) or within float32's normal range "
                        "[1.1754944e-38, 3.4028235e+38]", temperature);
        return -1;
    }
    if (top_k < 0) {
        PyErr_Format(PyExc_ValueError, "top_k must be >= 0 (0 turns it off), got %lld", top_k);
        return -1;
    }
    if (!(top_p > 0.0 && top_p <= 1.0)) {
        value_error_got("top_p must be in (0, 1] (1 turns it off)", top_p);
        return -1;
    }
    if (num_samples < 1) {
        PyErr_Format(PyExc_ValueError, "num_samples must be >= 1, got %zd", num_samples);
        return -1;
    }
    return 0;
}

/* A real-number option (int or float) into *out; TypeError naming it otherwise. */
static int option_double(PyObject *obj, const char *name, double *out)
{
    if (obj == NULL)
        return 0;
    if (!PyFloat_Check(obj) && !PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a real number, got %s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    *out = PyFloat_AsDouble(obj);
    if (*out == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s is out of the range of a float: %R", name, obj);
        return -1;
    }
    return 0;
}

/* top_k as an int; values beyond long long saturate (any k >= the vocabulary turns it off). */
static int option_top_k(PyObject *obj, long long *out)
{
    if (obj == NULL)
        return 0;
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "top_k must be an int, got %s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (*out == -1 && PyErr_Occurred())
        return -1;
    if (overflow)
        *out = overflow > 0 ? LLONG_MAX : LLONG_MIN;
    return 0;
}

static PyObject *sample_logits(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *keywords[] = {"logits", "do_sample", "temperature", "top_k", "top_p", "seed", "num_samples", NULL};
    PyObject *logits_obj = NULL, *seed_obj = NULL, *temperature_obj = NULL, *top_k_obj = NULL, *top_p_obj = NULL;
    int do_sample = 1;
    double temperature = 1.0, top_p = 1.0;
    long long top_k = 0;
    PyObject *num_samples_obj = NULL;
    int64_t samples = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$pOOOOO:sample_logits", keywords, &logits_obj, &do_sample,
                                     &temperature_obj, &top_k_obj, &top_p_obj, &seed_obj, &num_samples_obj) ||
        pyllm_arg_int64(num_samples_obj, "num_samples", 1, PY_SSIZE_T_MAX, &samples) < 0)
        return NULL;
    const Py_ssize_t num_samples = (Py_ssize_t)samples;
    if (option_double(temperature_obj, "temperature", &temperature) < 0 || option_top_k(top_k_obj, &top_k) < 0 ||
        option_double(top_p_obj, "top_p", &top_p) < 0)
        return NULL;
    if (check_options(temperature, top_k, top_p, num_samples) < 0)
        return NULL;

    uint64_t seed = 0;
    if (seed_obj != NULL) {
        if (!PyLong_Check(seed_obj)) {
            PyErr_Format(PyExc_TypeError, "seed must be an int, got %s", Py_TYPE(seed_obj)->tp_name);
            return NULL;
        }
        seed = PyLong_AsUnsignedLongLong(seed_obj);
        if (seed == (uint64_t)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "seed must be an int in [0, 2**64), got %R", seed_obj);
            return NULL;
        }
    }

    PyArrayObject *row = logits_row(logits_obj);
    if (row == NULL)
        return NULL;
    const float *logits = (const float *)PyArray_DATA(row);
    const int32_t n = (int32_t)PyArray_DIM(row, 0);
    if (check_logit_values(logits, n) < 0) {
        Py_DECREF(row);
        return NULL;
    }

    pyllm_sampling_params params = {
        .typical_p = 1.0f,
        .do_sample = do_sample,
        .temperature = (float)temperature,
        .top_k = top_k > INT32_MAX ? INT32_MAX : (int32_t)top_k,
        .top_p = (float)top_p,
    };
    npy_intp out_len = num_samples;
    PyArrayObject *out = (PyArrayObject *)pyllm_new_array(1, &out_len, NPY_INT64, 0);
    if (out == NULL) {
        Py_DECREF(row);
        return NULL;
    }
    int64_t *tokens = (int64_t *)PyArray_DATA(out);

    pyllm_sampler sampler;
    float *scores = pyllm_alloc(sizeof(float) * (size_t)n);
    pyllm_status status = scores == NULL ? PYLLM_ERR_MEMORY : pyllm_sampling_params_check(&params);
    if (status == PYLLM_OK)
        status = pyllm_sampler_init(&sampler, n);
    if (status != PYLLM_OK) {
        pyllm_free(scores);
        Py_DECREF(row);
        Py_DECREF(out);
        return pyllm_raise(status);
    }

    Py_BEGIN_ALLOW_THREADS
    /* The warpers once (as the generation loop applies them), then every draw from that row. */
    memcpy(scores, logits, sizeof(float) * (size_t)n);
    pyllm_warp_row(&params, &sampler, NULL, scores);
    pyllm_rng rng;
    pyllm_rng_seed(&rng, seed);
    for (Py_ssize_t i = 0; i < num_samples && status == PYLLM_OK; i++) {
        int32_t token = -1;
        status = pyllm_sample(&sampler, scores, &params, &rng, &token);
        tokens[i] = token;
    }
    pyllm_sampler_release(&sampler);
    pyllm_free(scores);
    Py_END_ALLOW_THREADS

    Py_DECREF(row);
    if (status != PYLLM_OK) {
        Py_DECREF(out);
        return pyllm_raise(status);
    }
    return (PyObject *)out;
}

static PyMethodDef sampling_methods[] = {
    {"sample_logits", (PyCFunction)(void (*)(void))sample_logits, METH_VARARGS | METH_KEYWORDS,
     "sample_logits(logits, *, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, seed=0, num_samples=1)\n"
     "--\n\n"
     "Draw num_samples token ids (int64) from one row of logits with the generation sampler:\n"
     "greedy argmax when do_sample is False or temperature is 0, else temperature, top-k and\n"
     "top-p applied in transformers' order. One RNG stream, seeded once with seed."},
    {NULL, NULL, 0, NULL},
};

int pyllm_register_sampling(PyObject *module) { return PyModule_AddFunctions(module, sampling_methods); }
