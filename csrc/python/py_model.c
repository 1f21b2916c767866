/* The model binding: _core.Decoder (packed weights of one model, built from a generic decoder spec
 * dict — pyllm.architectures.DecoderSpec: sizes, norm / position / MLP kinds, which biases exist —
 * and a dict of arrays under the canonical tensor names, which pyllm.architectures maps every
 * source's names onto), _core.KVCache (its keys and values for a batch of rows), and
 * _core.check_spec (the spec's structural rules, the ones pyllm_decoder_init applies). Nothing
 * here knows a model family by name. pyllm/model.py validates user input and wraps these in
 * pyllm.Model.
 *
 * Sharing across threads (docs/threads.md): every computing call releases the GIL and holds the
 * model's lock, so two Python threads using one model take turns instead of corrupting the
 * workspace. The lock is only ever waited for with the GIL released, and its holder takes the GIL
 * only through PyGILState_Ensure between steps (hooks, signals), so neither waits on the other.
 * close() never frees weights under a call: it refuses new calls at once and the last call in
 * progress frees them. A KV cache serves one call at a time that appends to it: a second call
 * on it meanwhile raises RuntimeError instead of appending in an order no one chose. */
#include "python/common.h"

#include <string.h>

#include "core/alloc.h"
#include "python/py_args.h"
#include "python/py_generate.h"
#include "python/py_interventions.h"
#include "python/py_memory.h"
#include "python/py_model.h"
#include "models/decoder.h"
#include "ops/quant_gguf.h"
#include "generate/speculative.h"

typedef struct {
    PyObject_HEAD
    pyllm_decoder model;
    int ready;               /* model holds packed weights */
    int closed;              /* close() was called: new calls raise */
    Py_ssize_t calls;        /* calls in progress (changed with the GIL held) */
    int n_threads;           /* the setting; copied into model.n_threads under the lock */
    PyThread_type_lock lock;
} DecoderObject;

typedef struct {
    PyObject_HEAD
    DecoderObject *owner; /* strong reference: the cache is only valid with its model */
    pyllm_kv_cache cache;
    int ready;
    /* Who uses the cache right now (changed with the GIL held): one call appending to it, or
     * any number reading it (copy, repeat), never both. */
    int writing;
    Py_ssize_t readers;
} KVCacheObject;

static PyTypeObject DecoderType;
static PyTypeObject KVCacheType;

/* ---- config and weights from Python ---------------------------------------------------- */

static int get_int(PyObject *dict, const char *key, int64_t *out)
{
    PyObject *v = PyDict_GetItemString(dict, key); /* borrowed */
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "model config lacks '%s'", key);
        return -1;
    }
    long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "model config '%s' is out of range: %R", key, v);
        }
        return -1;
    }
    *out = x;
    return 0;
}

static int get_double(PyObject *dict, const char *key, double *out)
{
    PyObject *v = PyDict_GetItemString(dict, key);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "model config lacks '%s'", key);
        return -1;
    }
    double x = PyFloat_AsDouble(v);
    if (x == -1.0 && PyErr_Occurred())
        return -1;
    *out = x;
    return 0;
}

/* An optional weight type code (csrc/ops/quant.h), float32 when absent. */
static int get_weight_type(PyObject *dict, const char *key, pyllm_weight_type *out)
{
    int64_t code = PYLLM_WEIGHT_F32;
    if (PyDict_GetItemString(dict, key) != NULL && get_int(dict, key, &code) < 0)
        return -1;
    if (code < 0 || code >= PYLLM_WEIGHT_TYPE_COUNT) {
        PyErr_Format(PyExc_ValueError, "%s must be in [0, %d), got %lld", key, PYLLM_WEIGHT_TYPE_COUNT, (long long)code);
        return -1;
    }
    *out = (pyllm_weight_type)code;
    return 0;
}

/* The KV cache's element type code (csrc/ops/attention.h): pyllm.dtypes resolves the default,
 * float32 when absent. */
static int get_kv_type(PyObject *dict, pyllm_kv_type *out)
{
    int64_t code = PYLLM_KV_F32;
    if (PyDict_GetItemString(dict, "kv_type") != NULL && get_int(dict, "kv_type", &code) < 0)
        return -1;
    if (code < 0 || code >= PYLLM_KV_TYPE_COUNT) {
        PyErr_Format(PyExc_ValueError, "kv_type must be in [0, %d), got %lld", PYLLM_KV_TYPE_COUNT, (long long)code);
        return -1;
    }
    *out = (pyllm_kv_type)code;
    return 0;
}

/* The index of config[key] (a str) among names[0..n); KeyError / ValueError naming the choices. */
static int get_choice(PyObject *dict, const char *key, const char *const *names, int n, int *out)
{
    PyObject *v = PyDict_GetItemString(dict, key);
    const char *name = v != NULL ? PyUnicode_AsUTF8(v) : NULL;
    if (name == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_KeyError, "model config lacks '%s'", key);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = i;
            return 0;
        }
    char choices[128] = "";
    for (int i = 0; i < n; i++)
        snprintf(choices + strlen(choices), sizeof choices - strlen(choices), "%s'%s'", i ? ", " : "", names[i]);
    PyErr_Format(PyExc_ValueError, "model config '%s' must be one of %s, got '%s'", key, choices, name);
    return -1;
}

static int get_flag(PyObject *dict, const char *key, int *out)
{
    PyObject *v = PyDict_GetItemString(dict, key);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "model config lacks '%s'", key);
        return -1;
    }
    *out = PyObject_IsTrue(v);
    return *out < 0 ? -1 : 0;
}

/* The names of the enums of models/decoder.h and ops/rope.h, in their order. */
static const char *const norm_names[] = {"rms", "layer"};
static const char *const position_names[] = {"rope", "alibi"};
static const char *const mlp_names[] = {"swiglu", "gelu_tanh"};
static const char *const rope_names[] = {"default", "linear", "dynamic", "llama3"};
#define COUNT(a) ((int)(sizeof a / sizeof *a))

/* The rotary settings of a spec whose positions are rope. */
static int parse_rope(PyObject *d, pyllm_decoder_config *c)
{
    int type;
    if (get_choice(d, "rope_type", rope_names, COUNT(rope_names), &type) < 0 ||
        get_int(d, "max_position_embeddings", &c->rope.max_position_embeddings) < 0 ||
        get_int(d, "original_max_position_embeddings", &c->rope.original_max_position_embeddings) < 0 ||
        get_double(d, "rope_theta", &c->rope.theta) < 0 || get_double(d, "rope_factor", &c->rope.factor) < 0 ||
        get_double(d, "low_freq_factor", &c->rope.low_freq_factor) < 0 ||
        get_double(d, "high_freq_factor", &c->rope.high_freq_factor) < 0)
        return -1;
    c->rope.type = (pyllm_rope_type)type;
    c->rope.dim = (int32_t)c->head_dim;
    c->rope.attention_scaling = 1.0f;
    return 0;
}

/* A decoder spec dict (pyllm.architectures.DecoderSpec plus the run settings) into c, checked. */
static int parse_config(PyObject *d, pyllm_decoder_config *c)
{
    memset(c, 0, sizeof *c);
    int norm, position, mlp;
    double eps;
    if (get_int(d, "vocab_size", &c->vocab_size) < 0 || get_int(d, "hidden_size", &c->hidden_size) < 0 ||
        get_int(d, "intermediate_size", &c->intermediate_size) < 0 ||
        get_int(d, "num_hidden_layers", &c->n_layers) < 0 || get_int(d, "num_attention_heads", &c->n_heads) < 0 ||
        get_int(d, "num_key_value_heads", &c->n_kv_heads) < 0 || get_int(d, "head_dim", &c->head_dim) < 0 ||
        get_int(d, "n_ctx", &c->n_ctx) < 0)
        return -1;
    if (get_choice(d, "norm", norm_names, COUNT(norm_names), &norm) < 0 || get_double(d, "norm_eps", &eps) < 0 ||
        get_choice(d, "position", position_names, COUNT(position_names), &position) < 0 ||
        get_choice(d, "mlp", mlp_names, COUNT(mlp_names), &mlp) < 0 ||
        get_flag(d, "embedding_norm", &c->arch.embedding_norm) < 0 ||
        get_flag(d, "residual_from_norm", &c->residual_from_norm) < 0 ||
        get_flag(d, "qkv_bias", &c->arch.qkv_bias) < 0 || get_flag(d, "o_bias", &c->arch.o_bias) < 0 ||
        get_flag(d, "mlp_bias", &c->arch.mlp_bias) < 0)
        return -1;
    c->arch.norm = (pyllm_norm_kind)norm;
    c->arch.position = (pyllm_position_kind)position;
    c->arch.mlp = (pyllm_mlp_kind)mlp;
    c->norm_eps = (float)eps;
    if (c->arch.position == PYLLM_POSITION_ROPE && parse_rope(d, c) < 0)
        return -1;
    if (get_weight_type(d, "weight_type", &c->weight_type) < 0 || get_weight_type(d, "lm_head_type", &c->lm_head_type) < 0 ||
        get_kv_type(d, &c->kv_type) < 0)
        return -1;
    PyObject *invariant = PyDict_GetItemString(d, "batch_invariant"); /* optional, off when absent */
    if (invariant != NULL && (c->batch_invariant = PyObject_IsTrue(invariant)) < 0)
        return -1;
    pyllm_status st = pyllm_decoder_config_check(c);
    if (st != PYLLM_OK) {
        pyllm_raise(st);
        return -1;
    }
    return 0;
}

/* _core.check_spec(spec): None, or the ValueError / KeyError a Decoder of that spec would raise
 * before reading any weight. */
static PyObject *check_spec(PyObject *module, PyObject *spec)
{
    (void)module;
    if (!PyDict_Check(spec)) {
        PyErr_Format(PyExc_TypeError, "a decoder spec must be a dict, got %s", Py_TYPE(spec)->tp_name);
        return NULL;
    }
    pyllm_decoder_config c;
    if (parse_config(spec, &c) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Arrays kept alive while the weights are packed. */
typedef struct {
    PyObject *arrays[64];
    int n;
} held_arrays;

static void held_release(held_arrays *h)
{
    for (int i = 0; i < h->n; i++)
        Py_DECREF(h->arrays[i]);
    h->n = 0;
}

static int hold(held_arrays *held, PyObject *obj)
{
    if (held->n == (int)(sizeof held->arrays / sizeof *held->arrays)) {
        PyErr_SetString(PyExc_RuntimeError, "too many weight arrays held at once");
        return -1;
    }
    Py_INCREF(obj);
    held->arrays[held->n++] = obj;
    return 0;
}

/* A matrix of ggml blocks, as the GGUF loader hands it on: a tuple (ggml type id, C-contiguous
 * uint8 array [rows, bytes of a row of cols elements]). */
static const void *ggml_matrix(PyObject *obj, const char *name, int64_t rows, int64_t cols, held_arrays *held,
                               pyllm_source_type *type)
{
    PyObject *blocks = PyTuple_GET_SIZE(obj) == 2 ? PyTuple_GET_ITEM(obj, 1) : NULL;
    long ggml = PyTuple_GET_SIZE(obj) == 2 ? PyLong_AsLong(PyTuple_GET_ITEM(obj, 0)) : -1;
    if (ggml == -1 && PyErr_Occurred())
        PyErr_Clear();
    int64_t elems;
    size_t block_bytes;
    if (blocks == NULL || ggml < 0 || ggml > 255 || !pyllm_source_of_ggml_type((int)ggml, type) ||
        PYLLM_SOURCE_IS_PLAIN(*type) || !pyllm_ggml_block_info((int)ggml, &elems, &block_bytes) ||
        !PyArray_Check(blocks) || PyArray_TYPE((PyArrayObject *)blocks) != NPY_UINT8 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)blocks)) {
        PyErr_Format(PyExc_TypeError, "weight '%s': a tuple must be (ggml block type id, C-contiguous uint8 array)",
                     name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)blocks;
    if (cols % elems || PyArray_NDIM(a) != 2 || PyArray_DIM(a, 0) != rows ||
        PyArray_DIM(a, 1) != (npy_intp)((size_t)(cols / elems) * block_bytes)) {
        PyErr_Format(PyExc_ValueError, "weight '%s' has the wrong shape: expected (%lld, %lld) in blocks of %lld",
                     name, (long long)rows, (long long)cols, (long long)elems);
        return NULL;
    }
    return hold(held, obj) < 0 ? NULL : PyArray_DATA(a);
}

/* weights[name] as a C-contiguous array of shape (rows, cols), or (rows,) when cols is 0, of
 * float32 — or, when `type` is given (matrices), also float16 or uint16 (bfloat16 bits; the
 * Python side hands bf16 on so) or ggml blocks (ggml_matrix), its element type stored in *type;
 * held keeps it alive. NULL with an exception, or, for an optional tensor that is absent, NULL
 * without one. */
static const void *typed_weight(PyObject *weights, const char *name, int64_t rows, int64_t cols, int optional,
                                held_arrays *held, pyllm_source_type *type)
{
    PyObject *obj = PyDict_GetItemString(weights, name);
    if (obj == NULL) {
        if (!optional)
            PyErr_Format(PyExc_KeyError, "weights lack '%s'", name);
        return NULL;
    }
    if (type != NULL && PyTuple_Check(obj))
        return ggml_matrix(obj, name, rows, cols, held, type);
    const int element = PyArray_Check(obj) ? PyArray_TYPE((PyArrayObject *)obj) : -1;
    const int typed_ok = type != NULL && (element == NPY_FLOAT16 || element == NPY_UINT16);
    if (!PyArray_Check(obj) || (element != NPY_FLOAT32 && !typed_ok) || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)obj)) {
        PyErr_Format(PyExc_TypeError, "weight '%s' must be a C-contiguous %s NumPy array", name,
                     type != NULL ? "float32, float16 or bfloat16 (uint16 bits)" : "float32");
        return NULL;
    }
    if (type != NULL)
        *type = element == NPY_FLOAT32 ? PYLLM_SOURCE_F32 : element == NPY_FLOAT16 ? PYLLM_SOURCE_F16 : PYLLM_SOURCE_BF16;
    PyArrayObject *a = (PyArrayObject *)obj;
    int64_t expected = rows * (cols > 0 ? cols : 1);
    int ndim_ok = cols > 0 ? PyArray_NDIM(a) == 2 && PyArray_DIM(a, 0) == rows && PyArray_DIM(a, 1) == cols
                           : PyArray_NDIM(a) == 1 && PyArray_DIM(a, 0) == rows;
    if (!ndim_ok || PyArray_SIZE(a) != expected) {
        if (cols > 0)
            PyErr_Format(PyExc_ValueError, "weight '%s' has the wrong shape: expected (%lld, %lld)", name,
                         (long long)rows, (long long)cols);
        else
            PyErr_Format(PyExc_ValueError, "weight '%s' has the wrong shape: expected (%lld,)", name,
                         (long long)rows);
        return NULL;
    }
    return hold(held, obj) < 0 ? NULL : PyArray_DATA(a);
}

static const float *weight(PyObject *weights, const char *name, int64_t rows, int64_t cols, int optional,
                           held_arrays *held)
{
    return typed_weight(weights, name, rows, cols, optional, held, NULL);
}

/* A matrix in its stored type; 0, or -1 with an exception. */
static int matrix(PyObject *weights, const char *name, int64_t rows, int64_t cols, held_arrays *held,
                  pyllm_tensor *out)
{
    out->data = typed_weight(weights, name, rows, cols, 0, held, &out->type);
    return out->data == NULL ? -1 : 0;
}

#define MATRIX(tensor, name, r, c)                             \
    do {                                                       \
        if (matrix(weights, (name), (r), (c), held, &(tensor)) < 0) \
            return -1;                                         \
    } while (0)
#define REQUIRED(ptr, name, r, c)                          \
    do {                                                    \
        (ptr) = weight(weights, (name), (r), (c), 0, held); \
        if ((ptr) == NULL)                                  \
            return -1;                                      \
    } while (0)
static int layer_weights(PyObject *weights, const pyllm_decoder_config *c, int64_t l, pyllm_layer_source *s,
                         held_arrays *held)
{
    const int64_t d = c->hidden_size, qw = c->n_heads * c->head_dim, kvw = c->n_kv_heads * c->head_dim;
    const int64_t ff = c->intermediate_size;
    char name[128];
#define NAME(suffix) (snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, suffix), name)
    MATRIX(s->q, NAME("self_attn.q_proj.weight"), qw, d);
    MATRIX(s->k, NAME("self_attn.k_proj.weight"), kvw, d);
    MATRIX(s->v, NAME("self_attn.v_proj.weight"), kvw, d);
    MATRIX(s->o, NAME("self_attn.o_proj.weight"), d, qw);
    if (c->arch.qkv_bias) {
        REQUIRED(s->q_bias, NAME("self_attn.q_proj.bias"), qw, 0);
        REQUIRED(s->k_bias, NAME("self_attn.k_proj.bias"), kvw, 0);
        REQUIRED(s->v_bias, NAME("self_attn.v_proj.bias"), kvw, 0);
    }
    if (c->arch.o_bias)
        REQUIRED(s->o_bias, NAME("self_attn.o_proj.bias"), d, 0);
    const int gated = c->arch.mlp == PYLLM_MLP_SILU_GATED;
    if (gated)
        MATRIX(s->gate, NAME("mlp.gate_proj.weight"), ff, d);
    MATRIX(s->up, NAME("mlp.up_proj.weight"), ff, d);
    MATRIX(s->down, NAME("mlp.down_proj.weight"), d, ff);
    if (c->arch.mlp_bias) {
        if (gated)
            REQUIRED(s->gate_bias, NAME("mlp.gate_proj.bias"), ff, 0);
        REQUIRED(s->up_bias, NAME("mlp.up_proj.bias"), ff, 0);
        REQUIRED(s->down_bias, NAME("mlp.down_proj.bias"), d, 0);
    }
    REQUIRED(s->input_norm, NAME("input_layernorm.weight"), d, 0);
    REQUIRED(s->post_attention_norm, NAME("post_attention_layernorm.weight"), d, 0);
    if (c->arch.norm == PYLLM_NORM_LAYER) {
        REQUIRED(s->input_norm_bias, NAME("input_layernorm.bias"), d, 0);
        REQUIRED(s->post_attention_norm_bias, NAME("post_attention_layernorm.bias"), d, 0);
    }
#undef NAME
    return 0;
}

/* ---- Decoder ------------------------------------------------------------------------------ */

/* After each packed layer (called by the C core without the GIL): let go of that layer's arrays
 * and tell the Python callback, whose exception stops the load. */
typedef struct {
    PyObject *callback; /* or NULL */
    held_arrays *held;
    PyObject *error_type, *error_value, *error_traceback;
} layer_packed_ctx;

static pyllm_status on_layer_packed(void *opaque, int64_t layer)
{
    layer_packed_ctx *ctx = opaque;
    PyGILState_STATE gil = PyGILState_Ensure();
    held_release(&ctx->held[layer]);
    pyllm_status st = PYLLM_OK;
    if (ctx->callback != NULL) {
        PyObject *r = PyObject_CallFunction(ctx->callback, "L", (long long)layer);
        if (r == NULL) {
            PyErr_Fetch(&ctx->error_type, &ctx->error_value, &ctx->error_traceback);
            st = pyllm_error(PYLLM_ERR_RUNTIME, "the load was stopped after layer %lld", (long long)layer);
        }
        Py_XDECREF(r);
    }
    PyGILState_Release(gil);
    return st;
}

static PyObject *decoder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"config", "weights", "n_threads", "on_layer", NULL};
    PyObject *config_dict, *weights, *on_layer = Py_None, *n_threads_obj = NULL;
    int64_t n_threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!|OO:Decoder", kwlist, &PyDict_Type, &config_dict,
                                     &PyDict_Type, &weights, &n_threads_obj, &on_layer))
        return NULL;
    if (pyllm_arg_int64(n_threads_obj, "n_threads", 0, PYLLM_MAX_THREADS, &n_threads) < 0) /* 0: the default */
        return NULL;
    if (on_layer != Py_None && !PyCallable_Check(on_layer)) {
        PyErr_SetString(PyExc_TypeError, "on_layer must be callable or None");
        return NULL;
    }
    pyllm_decoder_config config;
    if (parse_config(config_dict, &config) < 0)
        return NULL;
    /* parse_config applied pyllm_decoder_config_check: n_layers, which sizes the tables below,
     * is within PYLLM_MAX_LAYERS */

    DecoderObject *self = (DecoderObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->lock = PyThread_allocate_lock();
    pyllm_layer_source *layers = pyllm_calloc((size_t)config.n_layers, sizeof *layers);
    held_arrays *all = pyllm_calloc((size_t)config.n_layers + 1, sizeof *all);
    if (self->lock == NULL || layers == NULL || all == NULL) {
        pyllm_raise(PYLLM_ERR_MEMORY);
        goto fail;
    }
    pyllm_decoder_source src = {.layers = layers};
    {
        held_arrays *held = &all[config.n_layers];
        const int64_t v = config.vocab_size, d = config.hidden_size;
        if (matrix(weights, "model.embed_tokens.weight", v, d, held, &src.embed) < 0 ||
            (src.final_norm = weight(weights, "model.norm.weight", d, 0, 0, held)) == NULL ||
            matrix(weights, "lm_head.weight", v, d, held, &src.lm_head) < 0)
            goto fail;
        if (config.arch.norm == PYLLM_NORM_LAYER &&
            (src.final_norm_bias = weight(weights, "model.norm.bias", d, 0, 0, held)) == NULL)
            goto fail;
        if (config.arch.embedding_norm &&
            ((src.embed_norm = weight(weights, "model.embed_norm.weight", d, 0, 0, held)) == NULL ||
             (config.arch.norm == PYLLM_NORM_LAYER &&
              (src.embed_norm_bias = weight(weights, "model.embed_norm.bias", d, 0, 0, held)) == NULL)))
            goto fail;
        if (config.arch.position == PYLLM_POSITION_ROPE) {
            src.rope_freq_factors = weight(weights, "model.rope_freq_factors", config.head_dim / 2, 0, 1, held);
            if (src.rope_freq_factors == NULL && PyErr_Occurred())
                goto fail;
        }
        for (int64_t l = 0; l < config.n_layers; l++)
            if (layer_weights(weights, &config, l, &layers[l], &all[l]) < 0)
                goto fail;
    }
    layer_packed_ctx packed = {.callback = on_layer != Py_None ? on_layer : NULL, .held = all};
    src.layer_packed = on_layer_packed;
    src.layer_packed_ctx = &packed;
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pyllm_decoder_init(&self->model, &config, &src, (int)n_threads);
    Py_END_ALLOW_THREADS
    if (packed.error_type != NULL) {
        PyErr_Restore(packed.error_type, packed.error_value, packed.error_traceback);
        goto fail;
    }
    if (st != PYLLM_OK) {
        pyllm_raise(st);
        goto fail;
    }
    self->ready = 1;
    self->n_threads = self->model.n_threads;
    for (int64_t l = 0; l <= config.n_layers; l++)
        held_release(&all[l]);
    pyllm_free(all);
    pyllm_free(layers);
    return (PyObject *)self;

fail:
    if (all != NULL)
        for (int64_t l = 0; l <= config.n_layers; l++)
            held_release(&all[l]);
    pyllm_free(all);
    pyllm_free(layers);
    Py_DECREF(self);
    return NULL;
}

static void decoder_dealloc(DecoderObject *self)
{
    if (self->ready)
        pyllm_decoder_release(&self->model);
    if (self->lock != NULL)
        PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Call with the GIL released: the holder may need the GIL before it lets go (see the top). */
static void lock_model(DecoderObject *m)
{
    PyThread_acquire_lock(m->lock, WAIT_LOCK);
}

/* Free the packed weights; the configuration stays for the getters. */
static void free_weights(DecoderObject *m)
{
    const pyllm_decoder_config config = m->model.config;
    pyllm_decoder_release(&m->model);
    m->model.config = config;
    m->ready = 0;
}

/* Start a call that reads the weights: 0, or -1 with RuntimeError once close() was called. */
static int call_begin(DecoderObject *m)
{
    if (m->closed || !m->ready) {
        PyErr_SetString(PyExc_RuntimeError, "this model is closed: its weights were freed by close()");
        return -1;
    }
    m->calls++;
    return 0;
}

/* End it; the last call to end after close() frees the weights. */
static void call_end(DecoderObject *m)
{
    if (--m->calls == 0 && m->closed && m->ready)
        free_weights(m);
}

int pyllm_decoder_claim(PyObject *obj, pyllm_decoder **model, PyThread_type_lock *lock, int *n_threads)
{
    if (!PyObject_TypeCheck(obj, &DecoderType)) {
        PyErr_Format(PyExc_TypeError, "expected a pyllm._core.Decoder, got %.200s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    DecoderObject *d = (DecoderObject *)obj;
    if (call_begin(d) < 0)
        return -1;
    *model = &d->model;
    *lock = d->lock;
    *n_threads = d->n_threads;
    return 0;
}

void pyllm_decoder_unclaim(PyObject *obj)
{
    call_end((DecoderObject *)obj);
}

/* Decoder.measure_call(n_tokens): seconds of an n_tokens call (speculation's costs). */
static PyObject *decoder_measure_call(DecoderObject *self, PyObject *arg)
{
    int64_t n;
    if (pyllm_arg_int64(arg, "n_tokens", 1, 256, &n) < 0 || call_begin(self) < 0)
        return NULL;
    double seconds = 0.0;
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    self->model.n_threads = self->n_threads;
    st = pyllm_speculative_measure(&self->model, n, &seconds);
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS
    call_end(self);
    if (st != PYLLM_OK)
        return pyllm_raise(st);
    return PyFloat_FromDouble(seconds);
}

static PyObject *decoder_close(DecoderObject *self, PyObject *unused)
{
    (void)unused;
    self->closed = 1;
    if (self->calls == 0 && self->ready)
        free_weights(self);
    Py_RETURN_NONE;
}

static PyObject *decoder_get_closed(DecoderObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->closed);
}

/* Claim a cache for a call that appends to it (write) or one that reads it: 0, or -1 with
 * RuntimeError when the claim would overlap a call that appends. */
static int cache_claim(KVCacheObject *c, int write)
{
    if (c->writing || (write && c->readers > 0)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this KV cache is in use by another call: a cache takes one call at a time that appends to "
                        "it (give each thread its own cache, e.g. from cache.copy())");
        return -1;
    }
    if (write)
        c->writing = 1;
    else
        c->readers++;
    return 0;
}

static void cache_unclaim(KVCacheObject *c, int write)
{
    if (write)
        c->writing = 0;
    else
        c->readers--;
}

int pyllm_kv_cache_claim(PyObject *cache, int write)
{
    if (!PyObject_TypeCheck(cache, &KVCacheType)) {
        PyErr_Format(PyExc_TypeError, "expected a KVCache, got %s", Py_TYPE(cache)->tp_name);
        return -1;
    }
    return cache_claim((KVCacheObject *)cache, write);
}

void pyllm_kv_cache_unclaim(PyObject *cache, int write) { cache_unclaim((KVCacheObject *)cache, write); }

const pyllm_kv_cache *pyllm_kv_cache_of(PyObject *cache, const pyllm_decoder *model)
{
    if (!PyObject_TypeCheck(cache, &KVCacheType)) {
        PyErr_Format(PyExc_TypeError, "cache must be a KVCache from model.new_cache(), got %s", Py_TYPE(cache)->tp_name);
        return NULL;
    }
    KVCacheObject *c = (KVCacheObject *)cache;
    if (!c->ready || &c->owner->model != model) {
        PyErr_SetString(PyExc_ValueError, "cache must belong to this model: this one was made by another");
        return NULL;
    }
    return &c->cache;
}

static KVCacheObject *cache_wrap(DecoderObject *owner)
{
    KVCacheObject *c = PyObject_New(KVCacheObject, &KVCacheType);
    if (c == NULL)
        return NULL;
    Py_INCREF(owner);
    c->owner = owner;
    c->ready = 0;
    c->writing = 0;
    c->readers = 0;
    memset(&c->cache, 0, sizeof c->cache);
    return c;
}

static PyObject *decoder_new_cache(DecoderObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"batch_size", "capacity", NULL};
    PyObject *batch_obj = NULL, *capacity_obj = NULL;
    int64_t batch = 1, capacity = self->model.config.n_ctx;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:new_cache", kwlist, &batch_obj, &capacity_obj) ||
        pyllm_arg_int64(batch_obj, "batch_size", INT64_MIN, INT64_MAX, &batch) < 0 ||
        pyllm_arg_int64(capacity_obj, "capacity", INT64_MIN, INT64_MAX, &capacity) < 0)
        return NULL;
    if (batch < 1 || capacity < 1 || capacity > self->model.config.n_ctx) {
        PyErr_Format(PyExc_ValueError, "a cache needs batch_size >= 1 and 1 <= capacity <= n_ctx (%lld), got %lld and %lld",
                     (long long)self->model.config.n_ctx, (long long)batch, (long long)capacity);
        return NULL;
    }
    if (pyllm_check_kv_cache_fits(&self->model.config, batch, capacity) < 0 || call_begin(self) < 0)
        return NULL;
    KVCacheObject *c = cache_wrap(self);
    if (c == NULL) {
        call_end(self);
        return NULL;
    }
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pyllm_kv_cache_init(&c->cache, &self->model, batch, capacity);
    Py_END_ALLOW_THREADS
    call_end(self);
    if (st != PYLLM_OK) {
        Py_DECREF(c);
        return pyllm_raise(st);
    }
    c->ready = 1;
    return (PyObject *)c;
}

/* ids: int32 [batch, n]; mask: uint8 [batch, n] or None. New references or NULL. */
static int tokens_and_mask(PyObject *ids_obj, PyObject *mask_obj, int64_t batch, PyArrayObject **ids,
                           PyArrayObject **mask)
{
    *mask = NULL;
    *ids = (PyArrayObject *)PyArray_FROMANY(ids_obj, NPY_INT32, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (*ids == NULL)
        return -1;
    if (batch > 0 && PyArray_DIM(*ids, 0) != batch) {
        PyErr_Format(PyExc_ValueError, "input_ids has %lld rows but the cache holds %lld",
                     (long long)PyArray_DIM(*ids, 0), (long long)batch);
        Py_CLEAR(*ids);
        return -1;
    }
    if (mask_obj != Py_None) {
        *mask = (PyArrayObject *)PyArray_FROMANY(mask_obj, NPY_UINT8, 2, 2, NPY_ARRAY_IN_ARRAY);
        if (*mask == NULL || PyArray_DIM(*mask, 0) != PyArray_DIM(*ids, 0) ||
            PyArray_DIM(*mask, 1) != PyArray_DIM(*ids, 1)) {
            if (*mask != NULL)
                PyErr_SetString(PyExc_ValueError, "attention_mask must have the shape of input_ids");
            Py_CLEAR(*mask);
            Py_CLEAR(*ids);
            return -1;
        }
    }
    return 0;
}

/* What a forward call asks for besides its logits. */
typedef struct {
    int all_positions, output_hidden_states, output_attentions;
    int64_t keep;
    const pyllm_intervention_list *interventions;
} forward_request;

static PyObject *forward_claimed(DecoderObject *self, KVCacheObject *cache, PyObject *ids_obj, PyObject *mask_obj,
                                 forward_request req);

static PyObject *decoder_forward(DecoderObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"cache", "input_ids", "attention_mask", "all_positions", "logits_to_keep",
                             "output_hidden_states", "output_attentions", "interventions", NULL};
    KVCacheObject *cache;
    PyObject *ids_obj, *mask_obj = Py_None, *interventions_obj = Py_None;
    forward_request req = {.all_positions = 1};
    PyObject *keep_obj = NULL;
    int64_t keep = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O|OpOppO:forward", kwlist, &KVCacheType, &cache, &ids_obj,
                                     &mask_obj, &req.all_positions, &keep_obj, &req.output_hidden_states,
                                     &req.output_attentions, &interventions_obj) ||
        pyllm_arg_int64(keep_obj, "logits_to_keep", INT64_MIN, INT64_MAX, &keep) < 0 ||
        pyllm_interventions_of(interventions_obj, &req.interventions) < 0)
        return NULL;
    if (cache->owner != self || !cache->ready) {
        PyErr_SetString(PyExc_ValueError, "this cache belongs to another model");
        return NULL;
    }
    if (keep < 0) {
        PyErr_Format(PyExc_ValueError, "logits_to_keep must be >= 0 (0 = every position), got %lld", (long long)keep);
        return NULL;
    }
    if (call_begin(self) < 0)
        return NULL;
    if (cache_claim(cache, 1) < 0) {
        call_end(self);
        return NULL;
    }
    req.keep = keep;
    PyObject *result = forward_claimed(self, cache, ids_obj, mask_obj, req);
    cache_unclaim(cache, 1);
    call_end(self);
    return result;
}

/* Decoder.forward once the model and the cache are claimed. */
static PyObject *forward_claimed(DecoderObject *self, KVCacheObject *cache, PyObject *ids_obj, PyObject *mask_obj,
                                 forward_request req)
{
    const int all_positions = req.all_positions, output_hidden_states = req.output_hidden_states;
    int64_t keep = req.keep;
    PyArrayObject *ids, *mask;
    if (tokens_and_mask(ids_obj, mask_obj, cache->cache.batch, &ids, &mask) < 0)
        return NULL;
    const pyllm_decoder_config *c = &self->model.config;
    const int64_t batch = PyArray_DIM(ids, 0), n = PyArray_DIM(ids, 1), vocab = c->vocab_size;
    /* all_positions=False: [batch, vocab] of each row's last token; else [batch, keep, vocab]. */
    if (!all_positions)
        keep = 1;
    else if (keep == 0 || keep > n)
        keep = n;
    npy_intp dims[3] = {batch, all_positions ? keep : vocab, vocab};
    npy_intp state_dims[4] = {c->n_layers + 1, batch, n, c->hidden_size};
    PyArrayObject *logits = (PyArrayObject *)pyllm_new_array(all_positions ? 3 : 2, dims, NPY_FLOAT32, 0);
    /* k_len covers the cached slots before the new tokens, as transformers' attentions with a cache */
    npy_intp attn_dims[5] = {c->n_layers, batch, c->n_heads, n, cache->cache.used + n};
    PyArrayObject *states = NULL, *attentions = NULL;
    if (logits != NULL && output_hidden_states)
        states = (PyArrayObject *)pyllm_new_array(4, state_dims, NPY_FLOAT32, 0);
    if (logits != NULL && req.output_attentions)
        attentions = (PyArrayObject *)pyllm_new_array(5, attn_dims, NPY_FLOAT32, 0);
    if (logits == NULL || (output_hidden_states && states == NULL) || (req.output_attentions && attentions == NULL)) {
        Py_XDECREF(logits);
        Py_XDECREF(states);
        Py_DECREF(ids);
        Py_XDECREF(mask);
        return NULL;
    }
    pyllm_status st;
    const int32_t *tok = PyArray_DATA(ids);
    const uint8_t *m = mask ? PyArray_DATA(mask) : NULL;
    pyllm_forward_outputs out = {
        .logits = PyArray_DATA(logits),
        .logits_to_keep = keep,
        .hidden_states = states ? PyArray_DATA(states) : NULL,
        .attentions = attentions ? PyArray_DATA(attentions) : NULL,
    };
    const int n_threads = self->n_threads;
    Py_BEGIN_ALLOW_THREADS
    lock_model(self);
    self->model.n_threads = n_threads;
    cache->cache.interventions = req.interventions; /* for this call only: the cache is claimed */
    st = pyllm_decoder_forward_outputs(&self->model, &cache->cache, tok, m, n, &out);
    cache->cache.interventions = NULL;
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS
    Py_DECREF(ids);
    Py_XDECREF(mask);
    if (st != PYLLM_OK) {
        Py_DECREF(logits);
        Py_XDECREF(states);
        Py_XDECREF(attentions);
        return pyllm_raise(st);
    }
    if (states == NULL && attentions == NULL)
        return (PyObject *)logits;
    /* (logits, hidden_states, attentions), None for what was not asked */
    PyObject *result = PyTuple_Pack(3, (PyObject *)logits, states ? (PyObject *)states : Py_None,
                                    attentions ? (PyObject *)attentions : Py_None);
    Py_DECREF(logits);
    Py_XDECREF(states);
    Py_XDECREF(attentions);
    return result;
}

/* Decoder.unembed(hidden): float32 [rows, hidden_size] -> logits [rows, vocab]. */
static PyObject *decoder_unembed(DecoderObject *self, PyObject *arg)
{
    const pyllm_decoder_config *c = &self->model.config;
    PyArrayObject *h = (PyArrayObject *)PyArray_FROMANY(arg, NPY_FLOAT32, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (h == NULL)
        return NULL;
    const int64_t rows = PyArray_DIM(h, 0);
    if (PyArray_DIM(h, 1) != c->hidden_size || rows < 1) {
        PyErr_Format(PyExc_ValueError, "hidden must be [rows >= 1, hidden_size=%lld], got [%lld, %lld]",
                     (long long)c->hidden_size, (long long)rows, (long long)PyArray_DIM(h, 1));
        Py_DECREF(h);
        return NULL;
    }
    npy_intp dims[2] = {rows, c->vocab_size}, norm_dims[2] = {rows, c->hidden_size};
    PyArrayObject *logits = (PyArrayObject *)pyllm_new_array(2, dims, NPY_FLOAT32, 0);
    PyArrayObject *normalized = logits ? (PyArrayObject *)pyllm_new_array(2, norm_dims, NPY_FLOAT32, 0) : NULL;
    if (normalized == NULL || call_begin(self) < 0) {
        Py_XDECREF(logits);
        Py_XDECREF(normalized);
        Py_DECREF(h);
        return NULL;
    }
    pyllm_status st;
    const int n_threads = self->n_threads;
    Py_BEGIN_ALLOW_THREADS
    lock_model(self);
    self->model.n_threads = n_threads;
    st = pyllm_decoder_unembed(&self->model, PyArray_DATA(h), rows, PyArray_DATA(normalized), PyArray_DATA(logits));
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS
    call_end(self);
    Py_DECREF(h);
    Py_DECREF(normalized);
    if (st != PYLLM_OK) {
        Py_DECREF(logits);
        return pyllm_raise(st);
    }
    return (PyObject *)logits;
}

static PyObject *decoder_generate(DecoderObject *self, PyObject *args, PyObject *kwds)
{
    if (call_begin(self) < 0)
        return NULL;
    PyObject *result = pyllm_generate_call(&self->model, self->lock, self->n_threads, args, kwds);
    call_end(self);
    return result;
}

static PyObject *decoder_get_n_ctx(DecoderObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromLongLong(self->model.config.n_ctx);
}

static PyObject *decoder_get_weight_type(DecoderObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(pyllm_weight_type_name(self->model.config.weight_type));
}

static PyObject *decoder_get_batch_invariant(DecoderObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(self->model.config.batch_invariant);
}

static PyObject *decoder_get_lm_head_type(DecoderObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(pyllm_weight_type_name(self->model.config.lm_head_type));
}

static PyObject *decoder_get_kv_type(DecoderObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(pyllm_kv_type_name(self->model.config.kv_type));
}

static PyObject *decoder_get_weight_bytes(DecoderObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromSize_t(self->ready ? pyllm_decoder_weight_bytes(&self->model) : 0);
}

static PyObject *decoder_get_n_threads(DecoderObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromLong(self->n_threads);
}

static int decoder_set_n_threads(DecoderObject *self, PyObject *value, void *closure)
{
    (void)closure;
    int64_t n;
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "n_threads cannot be deleted");
        return -1;
    }
    if (pyllm_arg_int64(value, "n_threads", 1, PYLLM_MAX_THREADS, &n) < 0)
        return -1;
    self->n_threads = (int)n; /* a call in progress keeps its count; the next one takes this */
    return 0;
}

static PyMethodDef decoder_methods[] = {
    {"new_cache", (PyCFunction)(void (*)(void))decoder_new_cache, METH_VARARGS | METH_KEYWORDS,
     "new_cache(batch_size=1, capacity=n_ctx): an empty KV cache for this model."},
    {"forward", (PyCFunction)(void (*)(void))decoder_forward, METH_VARARGS | METH_KEYWORDS,
     "forward(cache, input_ids, attention_mask=None, all_positions=True, logits_to_keep=0, "
     "output_hidden_states=False): logits of the new tokens (int32 [batch, n]; mask uint8), appended to "
     "the cache; [batch, keep, vocab] for the last logits_to_keep (0 = all); with output_hidden_states, "
     "(logits, float32 [n_layers + 1, batch, n, hidden])."},
    {"unembed", (PyCFunction)decoder_unembed, METH_O,
     "unembed(hidden): logits [rows, vocab] of float32 hidden states [rows, hidden_size] (final norm, lm_head)."},
    {"generate", (PyCFunction)(void (*)(void))decoder_generate, METH_VARARGS | METH_KEYWORDS,
     "generate(input_ids, *, attention_mask=None, **options): (sequences, new_counts, logprobs, top_ids, "
     "top_logprobs, scores, logits, sequences_scores, beam_indices); see csrc/python/py_generate.c."},
    {"measure_call", (PyCFunction)decoder_measure_call, METH_O,
     "measure_call(n_tokens): seconds of one call of n_tokens new tokens behind a short context, the fastest of a "
     "few (the costs automatic speculative decoding weighs)."},
    {"close", (PyCFunction)decoder_close, METH_NOARGS,
     "close(): free the weights. New calls raise RuntimeError at once; calls already running (on other threads, "
     "or the one whose hook called close) finish normally, and the last of them frees the weights."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef decoder_getset[] = {
    {"n_ctx", (getter)decoder_get_n_ctx, NULL, "KV-cache capacity in tokens.", NULL},
    {"n_threads", (getter)decoder_get_n_threads, (setter)decoder_set_n_threads, "Threads per call.", NULL},
    {"weight_type", (getter)decoder_get_weight_type, NULL, "Type of the linear layers' weights.", NULL},
    {"lm_head_type", (getter)decoder_get_lm_head_type, NULL, "Type of the lm_head's weights.", NULL},
    {"batch_invariant", (getter)decoder_get_batch_invariant, NULL,
     "Whether each row's results are the same bits whatever the batch, padding or cache split.", NULL},
    {"kv_type", (getter)decoder_get_kv_type, NULL, "Element type of the KV cache's keys and values.", NULL},
    {"weight_bytes", (getter)decoder_get_weight_bytes, NULL, "Bytes of the packed weights (0 once freed).", NULL},
    {"closed", (getter)decoder_get_closed, NULL, "Whether close() was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyllm._core.Decoder",
    .tp_basicsize = sizeof(DecoderObject),
    .tp_dealloc = (destructor)decoder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Decoder(spec, weights, n_threads=0, on_layer=None): a decoder of a generic spec (pyllm.architectures) "
              "with weights packed for oneDNN.",
    .tp_methods = decoder_methods,
    .tp_getset = decoder_getset,
    .tp_new = decoder_new,
};

/* ---- KVCache ------------------------------------------------------------------------------ */

static void cache_dealloc(KVCacheObject *self)
{
    if (self->ready)
        pyllm_kv_cache_release(&self->cache);
    Py_XDECREF(self->owner);
    PyObject_Free(self);
}

static PyObject *cache_copy(KVCacheObject *self, PyObject *unused)
{
    (void)unused;
    if (pyllm_check_kv_cache_fits(&self->owner->model.config, self->cache.batch, self->cache.capacity) < 0)
        return NULL;
    if (cache_claim(self, 0) < 0)
        return NULL;
    KVCacheObject *c = cache_wrap(self->owner);
    if (c == NULL) {
        cache_unclaim(self, 0);
        return NULL;
    }
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pyllm_kv_cache_copy(&c->cache, &self->cache);
    Py_END_ALLOW_THREADS
    cache_unclaim(self, 0);
    if (st != PYLLM_OK) {
        Py_DECREF(c);
        return pyllm_raise(st);
    }
    c->ready = 1;
    return (PyObject *)c;
}

static PyObject *cache_repeat(KVCacheObject *self, PyObject *arg)
{
    int64_t batch;
    if (pyllm_arg_int64(arg, "batch_size", INT64_MIN, INT64_MAX, &batch) < 0)
        return NULL;
    if (self->cache.batch != 1 || batch < 1) {
        PyErr_Format(PyExc_ValueError, "repeat(batch_size) needs a one-row cache and batch_size >= 1, "
                     "got a cache of %lld rows and batch_size %lld", (long long)self->cache.batch, (long long)batch);
        return NULL;
    }
    if (pyllm_check_kv_cache_fits(&self->owner->model.config, batch, self->cache.capacity) < 0)
        return NULL;
    if (cache_claim(self, 0) < 0)
        return NULL;
    KVCacheObject *c = cache_wrap(self->owner);
    if (c == NULL) {
        cache_unclaim(self, 0);
        return NULL;
    }
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pyllm_kv_cache_repeat(&c->cache, &self->cache, batch);
    Py_END_ALLOW_THREADS
    cache_unclaim(self, 0);
    if (st != PYLLM_OK) {
        Py_DECREF(c);
        return pyllm_raise(st);
    }
    c->ready = 1;
    return (PyObject *)c;
}

static int cache_settled(KVCacheObject *self);

static PyObject *cache_take(KVCacheObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"tokens", "row", "capacity", NULL};
    PyObject *tokens_obj = NULL, *row_obj = NULL, *capacity_obj = NULL;
    int64_t tokens = 0, row = 0, capacity = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OO:take", kwlist, &tokens_obj, &row_obj, &capacity_obj) ||
        pyllm_arg_int64(tokens_obj, "tokens", INT64_MIN, INT64_MAX, &tokens) < 0 ||
        pyllm_arg_int64(row_obj, "row", INT64_MIN, INT64_MAX, &row) < 0 ||
        (capacity_obj != Py_None && pyllm_arg_int64(capacity_obj, "capacity", INT64_MIN, INT64_MAX, &capacity) < 0))
        return NULL;
    if (capacity_obj == NULL || capacity_obj == Py_None)
        capacity = tokens;
    if (cache_settled(self) < 0)
        return NULL;
    if (row < 0 || row >= self->cache.batch) {
        PyErr_Format(PyExc_ValueError, "row must be a row index in [0, %lld), got %lld", (long long)self->cache.batch,
                     (long long)row);
        return NULL;
    }
    if (tokens < 1 || tokens > self->cache.length[row]) {
        PyErr_Format(PyExc_ValueError, "tokens must be between 1 and the row's %lld cached tokens, got %lld",
                     (long long)self->cache.length[row], (long long)tokens);
        return NULL;
    }
    if (capacity < tokens || capacity > self->owner->model.config.n_ctx) {
        PyErr_Format(PyExc_ValueError, "capacity must be between tokens (%lld) and n_ctx (%lld), got %lld",
                     (long long)tokens, (long long)self->owner->model.config.n_ctx, (long long)capacity);
        return NULL;
    }
    if (call_begin(self->owner) < 0)
        return NULL;
    if (pyllm_check_kv_cache_fits(&self->owner->model.config, 1, capacity) < 0 || cache_claim(self, 0) < 0) {
        call_end(self->owner);
        return NULL;
    }
    KVCacheObject *c = cache_wrap(self->owner);
    if (c == NULL) {
        cache_unclaim(self, 0);
        call_end(self->owner);
        return NULL;
    }
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pyllm_kv_cache_take(&c->cache, &self->cache, row, tokens, capacity);
    Py_END_ALLOW_THREADS
    cache_unclaim(self, 0);
    call_end(self->owner);
    if (st != PYLLM_OK) {
        Py_DECREF(c);
        return pyllm_raise(st);
    }
    c->ready = 1;
    return (PyObject *)c;
}

/* The fill of a cache changes during a call that appends to it: RuntimeError then. */
static int cache_settled(KVCacheObject *self)
{
    if (!self->writing)
        return 0;
    PyErr_SetString(PyExc_RuntimeError, "this KV cache is in use by a call that appends to it: its fill is not "
                    "known until that call returns");
    return -1;
}

static PyObject *cache_get_lengths(KVCacheObject *self, void *closure)
{
    (void)closure;
    if (cache_settled(self) < 0)
        return NULL;
    PyObject *list = PyList_New(self->cache.batch);
    if (list == NULL)
        return NULL;
    for (int64_t b = 0; b < self->cache.batch; b++) {
        PyObject *v = PyLong_FromLongLong(self->cache.length[b]);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, b, v);
    }
    return list;
}

static PyObject *cache_get_used(KVCacheObject *self, void *closure)
{
    (void)closure;
    if (cache_settled(self) < 0)
        return NULL;
    return PyLong_FromLongLong(self->cache.used);
}

static PyObject *cache_get_capacity(KVCacheObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromLongLong(self->cache.capacity);
}

static PyObject *cache_get_batch(KVCacheObject *self, void *closure)
{
    (void)closure;
    return PyLong_FromLongLong(self->cache.batch);
}

static PyObject *cache_get_nbytes(KVCacheObject *self, void *closure)
{
    (void)closure;
    size_t bytes;
    pyllm_status st = pyllm_kv_cache_bytes(&self->owner->model.config, self->cache.batch, self->cache.capacity, &bytes);
    return st == PYLLM_OK ? PyLong_FromSize_t(bytes) : pyllm_raise(st);
}

static PyObject *cache_get_dtype(KVCacheObject *self, void *closure)
{
    (void)closure;
    return PyUnicode_FromString(pyllm_kv_type_name(self->cache.type));
}

static PyMethodDef cache_methods[] = {
    {"copy", (PyCFunction)cache_copy, METH_NOARGS, "An independent copy of this cache."},
    {"repeat", (PyCFunction)cache_repeat, METH_O,
     "repeat(batch_size): a new cache of batch_size rows, each a copy of this one-row cache."},
    {"take", (PyCFunction)(void (*)(void))cache_take, METH_VARARGS | METH_KEYWORDS,
     "take(tokens, row=0, capacity=None): a new one-row cache holding the first `tokens` real tokens of row `row` "
     "(padding dropped), with room for `capacity` (default: tokens) to continue it."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef cache_getset[] = {
    {"lengths", (getter)cache_get_lengths, NULL, "Real (unpadded) tokens per row.", NULL},
    {"used", (getter)cache_get_used, NULL, "Slots filled per row, padding included.", NULL},
    {"capacity", (getter)cache_get_capacity, NULL, "Slots per row.", NULL},
    {"batch_size", (getter)cache_get_batch, NULL, "Rows.", NULL},
    {"nbytes", (getter)cache_get_nbytes, NULL, "Bytes reserved for the keys, values and bookkeeping.", NULL},
    {"dtype", (getter)cache_get_dtype, NULL, "Element type of the keys and values: float32, bfloat16 or float16.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject KVCacheType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyllm._core.KVCache",
    .tp_basicsize = sizeof(KVCacheObject),
    .tp_dealloc = (destructor)cache_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Keys and values of a batch of rows for one model; made by Decoder.new_cache().",
    .tp_methods = cache_methods,
    .tp_getset = cache_getset,
};

static PyMethodDef model_functions[] = {
    {"check_spec", check_spec, METH_O,
     "check_spec(spec): raise the ValueError (or KeyError) a Decoder of this decoder spec dict would, else None."},
    {NULL, NULL, 0, NULL},
};

int pyllm_register_model(PyObject *module)
{
    if (PyType_Ready(&DecoderType) < 0 || PyType_Ready(&KVCacheType) < 0 ||
        PyModule_AddFunctions(module, model_functions) < 0 || pyllm_register_interventions(module) < 0 ||
        PyModule_AddIntConstant(module, "MAX_LAYERS", PYLLM_MAX_LAYERS) < 0 ||
        PyModule_AddIntConstant(module, "MAX_THREADS", PYLLM_MAX_THREADS) < 0)
        return -1;
    Py_INCREF(&DecoderType);
    if (PyModule_AddObject(module, "Decoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(&DecoderType);
        return -1;
    }
    Py_INCREF(&KVCacheType);
    if (PyModule_AddObject(module, "KVCache", (PyObject *)&KVCacheType) < 0) {
        Py_DECREF(&KVCacheType);
        return -1;
    }
    return 0;
}
