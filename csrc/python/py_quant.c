/* Test-only entry points (pyllm._core._testing, read through pyllm/_testing.py) that expose the
 * low-precision weight formats and linear layers alone, so tests can hold them against references
 * (the gguf package's dequantization, a NumPy product) for every kernel instruction set. */
#include "python/common.h"

#include <string.h>
#include <time.h>

#include "core/threads.h"
#include "ops/matmul.h"
#include "ops/quant.h"
#include "ops/quant_gguf.h"

static int parse_type(const char *name, pyllm_weight_type *out)
{
    for (int t = 0; t < PYLLM_WEIGHT_TYPE_COUNT; t++)
        if (strcmp(name, pyllm_weight_type_name((pyllm_weight_type)t)) == 0) {
            *out = (pyllm_weight_type)t;
            return 0;
        }
    PyErr_Format(PyExc_ValueError, "unknown weight type '%s' (float32, bfloat16, q8_0, q4_0, q4_1)", name);
    return -1;
}

/* A C-contiguous float32 2-D array (new reference) or NULL with an exception. */
static PyArrayObject *matrix(PyObject *obj, const char *what)
{
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(obj, NPY_FLOAT32, 2, 2, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (a == NULL)
        return NULL;
    if (PyArray_DIM(a, 0) < 1 || PyArray_DIM(a, 1) < 1) {
        PyErr_Format(PyExc_ValueError, "%s must not be empty", what);
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

static PyObject *quantize_roundtrip(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *obj;
    const char *type_name;
    pyllm_weight_type type;
    int lanes16 = 0, to_bf16 = 0;
    if (!PyArg_ParseTuple(args, "Os|pp:quantize_roundtrip", &obj, &type_name, &lanes16, &to_bf16) ||
        parse_type(type_name, &type) < 0)
        return NULL;
    if (type == PYLLM_WEIGHT_F32) {
        PyErr_SetString(PyExc_ValueError, "float32 is not quantized");
        return NULL;
    }
    PyArrayObject *w = matrix(obj, "weights");
    if (w == NULL)
        return NULL;
    const int64_t n = PyArray_DIM(w, 0), k = PyArray_DIM(w, 1);
    npy_intp dims[2] = {n, k};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, to_bf16 ? NPY_UINT16 : NPY_FLOAT32);
    if (out == NULL) {
        Py_DECREF(w);
        return NULL;
    }
    pyllm_qweight q;
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pyllm_qweight_init(&q, type, PyArray_DATA(w), PYLLM_SOURCE_F32, n, k);
    if (st == PYLLM_OK && lanes16)
        st = pyllm_qweight_to_lanes16(&q);
    if (st == PYLLM_OK && to_bf16)
        pyllm_qweight_dequantize_bf16(&q, 0, n, PyArray_DATA(out));
    else if (st == PYLLM_OK)
        pyllm_qweight_dequantize_f32(&q, 0, n, PyArray_DATA(out));
    pyllm_qweight_release(&q);
    Py_END_ALLOW_THREADS
    Py_DECREF(w);
    if (st != PYLLM_OK) {
        Py_DECREF(out);
        return pyllm_raise(st);
    }
    return (PyObject *)out;
}

static PyObject *linear(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *w_obj, *x_obj, *bias_obj = Py_None;
    const char *type_name;
    pyllm_weight_type type;
    int repeats = 1, invariant = 0;
    if (!PyArg_ParseTuple(args, "OsO|Oip:linear", &w_obj, &type_name, &x_obj, &bias_obj, &repeats, &invariant) ||
        parse_type(type_name, &type) < 0)
        return NULL;
    if (repeats < 1) {
        PyErr_SetString(PyExc_ValueError, "repeats must be >= 1");
        return NULL;
    }
    PyArrayObject *w = matrix(w_obj, "weights"), *x = w != NULL ? matrix(x_obj, "x") : NULL, *bias = NULL;
    PyObject *result = NULL;
    if (x == NULL)
        goto done;
    const int64_t n = PyArray_DIM(w, 0), k = PyArray_DIM(w, 1), m = PyArray_DIM(x, 0);
    if (PyArray_DIM(x, 1) != k) {
        PyErr_Format(PyExc_ValueError, "x has %lld columns, the weights %lld", (long long)PyArray_DIM(x, 1), (long long)k);
        goto done;
    }
    if (bias_obj != Py_None) {
        bias = (PyArrayObject *)PyArray_FROMANY(bias_obj, NPY_FLOAT32, 1, 1, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
        if (bias == NULL)
            goto done;
        if (PyArray_DIM(bias, 0) != n) {
            PyErr_SetString(PyExc_ValueError, "bias must have one value per weight row");
            goto done;
        }
    }
    npy_intp dims[2] = {m, n};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (out == NULL)
        goto done;
    pyllm_matmul_ctx ctx;
    pyllm_linear lin;
    pyllm_status st;
    double seconds = 0.0;
    Py_BEGIN_ALLOW_THREADS
    st = pyllm_matmul_ctx_init(&ctx);
    if (st == PYLLM_OK) {
        ctx.batch_invariant = invariant;
        st = pyllm_linear_init(&lin, &ctx, type, PyArray_DATA(w), PYLLM_SOURCE_F32,
                               bias != NULL ? PyArray_DATA(bias) : NULL, n, k);
        if (st == PYLLM_OK) {
            st = pyllm_linear_forward(&ctx, &lin, PyArray_DATA(x), PyArray_DATA(out), m); /* warm */
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (int r = 1; r < repeats && st == PYLLM_OK; r++)
                st = pyllm_linear_forward(&ctx, &lin, PyArray_DATA(x), PyArray_DATA(out), m);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
            pyllm_linear_release(&lin);
        }
        pyllm_matmul_ctx_release(&ctx);
    }
    Py_END_ALLOW_THREADS
    if (st != PYLLM_OK) {
        Py_DECREF(out);
        pyllm_raise(st);
        goto done;
    }
    result = repeats > 1 ? Py_BuildValue("Nd", (PyObject *)out, seconds / (repeats - 1)) : (PyObject *)out;
done:
    Py_XDECREF(w);
    Py_XDECREF(x);
    Py_XDECREF(bias);
    return result;
}

static PyObject *prefill_compute(PyObject *self, PyObject *args)
{
    (void)self;
    const char *type_name;
    pyllm_weight_type type;
    if (!PyArg_ParseTuple(args, "s:prefill_compute", &type_name) || parse_type(type_name, &type) < 0)
        return NULL;
    pyllm_matmul_ctx ctx;
    pyllm_status st = pyllm_matmul_ctx_init(&ctx);
    if (st != PYLLM_OK)
        return pyllm_raise(st);
    PyObject *result = PyUnicode_FromString(pyllm_matmul_prefill_compute(&ctx, type));
    pyllm_matmul_ctx_release(&ctx);
    return result;
}

/* The bytes of a GGUF tensor (any buffer) of ggml type `type` holding n elements; checks the size. */
static int ggml_buffer(PyObject *obj, int type, int64_t n, Py_buffer *view)
{
    int64_t elems;
    size_t bytes;
    if (!pyllm_ggml_block_info(type, &elems, &bytes)) {
        PyErr_Format(PyExc_ValueError, "ggml type %d is not one pyllm dequantizes", type);
        return -1;
    }
    if (n < 0 || n % elems) {
        PyErr_Format(PyExc_ValueError, "%lld elements is not a whole number of %lld-element blocks", (long long)n,
                     (long long)elems);
        return -1;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        return -1;
    if ((size_t)view->len != (size_t)(n / elems) * bytes) {
        PyErr_Format(PyExc_ValueError, "%lld elements of ggml type %d take %zu bytes, the buffer has %zd",
                     (long long)n, type, (size_t)(n / elems) * bytes, view->len);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *gguf_dequantize(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *obj;
    int type;
    long long n;
    if (!PyArg_ParseTuple(args, "iOL:_gguf_dequantize", &type, &obj, &n))
        return NULL;
    Py_buffer view;
    if (ggml_buffer(obj, type, n, &view) < 0)
        return NULL;
    npy_intp dims[1] = {(npy_intp)n};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_FLOAT32);
    pyllm_status st = PYLLM_OK;
    if (out != NULL) {
        Py_BEGIN_ALLOW_THREADS
        st = pyllm_ggml_dequantize(type, view.buf, n, PyArray_DATA(out));
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    if (out != NULL && st != PYLLM_OK) {
        Py_DECREF(out);
        return pyllm_raise(st);
    }
    return (PyObject *)out;
}

static PyObject *gguf_qweight_roundtrip(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *obj;
    int type;
    long long n, k;
    int lanes16 = 0;
    if (!PyArg_ParseTuple(args, "iOLL|p:gguf_qweight_roundtrip", &type, &obj, &n, &k, &lanes16))
        return NULL;
    if (n < 1 || k < 1) {
        PyErr_SetString(PyExc_ValueError, "n and k must be positive");
        return NULL;
    }
    Py_buffer view;
    if (ggml_buffer(obj, type, n * k, &view) < 0)
        return NULL;
    npy_intp dims[2] = {(npy_intp)n, (npy_intp)k};
    PyArrayObject *out = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    pyllm_status st = PYLLM_OK;
    if (out != NULL) {
        Py_BEGIN_ALLOW_THREADS
        pyllm_qweight w;
        st = pyllm_qweight_from_ggml(&w, type, view.buf, n, k);
        if (st == PYLLM_OK && lanes16)
            st = pyllm_qweight_to_lanes16(&w);
        if (st == PYLLM_OK)
            pyllm_qweight_dequantize_f32(&w, 0, n, PyArray_DATA(out));
        pyllm_qweight_release(&w);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    if (out != NULL && st != PYLLM_OK) {
        Py_DECREF(out);
        return pyllm_raise(st);
    }
    return (PyObject *)out;
}

static PyObject *set_claim_rows(PyObject *self, PyObject *arg)
{
    (void)self;
    const long long rows = PyLong_AsLongLong(arg);
    if (rows == -1 && PyErr_Occurred())
        return NULL;
    pyllm_set_claim_rows(rows);
    Py_RETURN_NONE;
}

static PyMethodDef quant_methods[] = {
    {"prefill_compute", prefill_compute, METH_VARARGS,
     "prefill_compute(type): what prefill multiplies in here for weights of that type, 'float32', 'bfloat16' or "
     "'int8'."},
    {"quantize_roundtrip", quantize_roundtrip, METH_VARARGS,
     "quantize_roundtrip(weights f32 [n, k], type, lanes16=False, bf16=False): the weights quantized to type (in "
     "the AVX-512 kernels' lane order if asked) and dequantized to f32, or to bf16 bits (uint16) as prefill does."},
    {"linear", linear, METH_VARARGS,
     "linear(weights f32 [n, k], type, x f32 [m, k], bias=None, repeats=1, batch_invariant=False): x · Wᵀ "
     "(+ bias) with W packed as type, by the batch-invariant path when asked; with repeats > 1, (y, seconds per "
     "call) over repeats - 1 timed calls after a warm one."},
    {"set_claim_rows", set_claim_rows, METH_O,
     "set_claim_rows(rows): rows per claim of the decode products' thread sharing (0: their own), so that "
     "tests see the stealing of core/row_claims.h run often."},
    {"gguf_qweight_roundtrip", gguf_qweight_roundtrip, METH_VARARGS,
     "gguf_qweight_roundtrip(ggml_type, buffer, n, k, lanes16=False) -> float32 [n, k]: a Q8_0/Q4_0/Q4_1 GGUF "
     "matrix taken into pyllm's weight layout (the lane order if asked) without re-quantizing, then dequantized "
     "by pyllm's own code."},
    {NULL, NULL, 0, NULL},
};

/* Used by pyllm.gguf itself, so on the module proper. */
static PyMethodDef gguf_methods[] = {
    {"_gguf_dequantize", gguf_dequantize, METH_VARARGS,
     "_gguf_dequantize(ggml_type, buffer, n) -> float32 [n]: n elements of GGUF tensor data dequantized "
     "(F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)."},
    {NULL, NULL, 0, NULL},
};

int pyllm_register_quant(PyObject *module)
{
    return PyModule_AddFunctions(module, quant_methods);
}

int pyllm_register_gguf(PyObject *module)
{
    return PyModule_AddFunctions(module, gguf_methods);
}
