/* Generation from Python: Decoder.generate (the C loop with every option, the Python hooks it
 * calls back, log-probabilities out) and the test-only apply_processors / apply_warpers
 * (registered in pyllm._core._testing), which run the C processors on given scores so tests can
 * hold them against transformers' own classes.
 *
 * With prompt_lookup_num_tokens > 0 or an assistant Decoder, the speculative loop
 * (generate/speculative.h) runs instead, holding both models' locks.
 *
 * pyllm/model.py and pyllm/generation.py validate options and shape the hooks; this file
 * converts them, releases the GIL for the loop and takes it back only when a hook is given. */
#include "python/common.h"

#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "generate/beam.h"
#include "generate/generate.h"
#include "generate/processors.h"
#include "generate/speculative.h"
#include "python/py_args.h"
#include "python/py_model.h"
#include "python/py_generate.h"
#include "python/py_interventions.h"
#include "python/py_memory.h"
#include "python/py_model.h"

/* ---- options from Python ------------------------------------------------------------------ */

/* Arrays the processor parameters point into, owned here. */
typedef struct {
    int32_t *eos, *bias_ids, *bad_words;
    float *bias_values;
    int64_t *bad_word_start;
} processor_buffers;

static void buffers_release(processor_buffers *b)
{
    pyllm_free(b->eos);
    pyllm_free(b->bias_ids);
    pyllm_free(b->bad_words);
    pyllm_free(b->bias_values);
    pyllm_free(b->bad_word_start);
    memset(b, 0, sizeof *b);
}

/* A sequence of ints as a new int32 array (at least one element allocated); *n its length. */
static int32_t *int_list(PyObject *obj, const char *what, int64_t *n)
{
    if (!PySequence_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a list of ints, got %.200s", what, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(obj, what);
    if (seq == NULL)
        return NULL;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    int32_t *out = pyllm_alloc(sizeof(int32_t) * (size_t)(len > 0 ? len : 1));
    if (out == NULL) {
        Py_DECREF(seq);
        pyllm_raise(PYLLM_ERR_MEMORY);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        int64_t v;
        if (pyllm_arg_int64(PySequence_Fast_GET_ITEM(seq, i), what, INT32_MIN, INT32_MAX, &v) < 0) {
            pyllm_free(out);
            Py_DECREF(seq);
            return NULL;
        }
        out[i] = (int32_t)v;
    }
    *n = len;
    Py_DECREF(seq);
    return out;
}

/* bad_words_ids (a list of lists of ints, already validated in Python) flattened. */
static int bad_words_from(PyObject *obj, pyllm_processor_params *p, processor_buffers *b)
{
    PyObject *seq = PySequence_Fast(obj, "bad_words_ids must be a list of lists of ints");
    if (seq == NULL)
        return -1;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    b->bad_word_start = pyllm_alloc(sizeof(int64_t) * (size_t)(n + 1));
    if (b->bad_word_start == NULL) {
        Py_DECREF(seq);
        pyllm_raise(PYLLM_ERR_MEMORY);
        return -1;
    }
    int64_t total = 0;
    b->bad_word_start[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len = PySequence_Size(PySequence_Fast_GET_ITEM(seq, i));
        if (len < 0) {
            Py_DECREF(seq);
            return -1;
        }
        total += len;
        b->bad_word_start[i + 1] = total;
    }
    b->bad_words = pyllm_alloc(sizeof(int32_t) * (size_t)(total > 0 ? total : 1));
    if (b->bad_words == NULL) {
        Py_DECREF(seq);
        pyllm_raise(PYLLM_ERR_MEMORY);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t len;
        int32_t *word = int_list(PySequence_Fast_GET_ITEM(seq, i), "a bad_words_ids entry", &len);
        if (word == NULL) {
            Py_DECREF(seq);
            return -1;
        }
        memcpy(b->bad_words + b->bad_word_start[i], word, sizeof(int32_t) * (size_t)len);
        pyllm_free(word);
    }
    Py_DECREF(seq);
    p->bad_words = b->bad_words;
    p->bad_word_start = b->bad_word_start;
    p->n_bad_words = n;
    return 0;
}

/* logit_bias: a dict token id -> bias. */
static int logit_bias_from(PyObject *obj, pyllm_processor_params *p, processor_buffers *b)
{
    if (!PyDict_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "logit_bias must be a dict of token id -> bias, got %s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyDict_Size(obj), pos = 0, i = 0;
    b->bias_ids = pyllm_alloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    b->bias_values = pyllm_alloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (b->bias_ids == NULL || b->bias_values == NULL) {
        pyllm_raise(PYLLM_ERR_MEMORY);
        return -1;
    }
    PyObject *key, *value;
    while (PyDict_Next(obj, &pos, &key, &value)) {
        int64_t id;
        if (pyllm_arg_int64(key, "a logit_bias token id", 0, INT32_MAX, &id) < 0)
            return -1;
        double bias = PyFloat_AsDouble(value);
        if (bias == -1.0 && PyErr_Occurred())
            return -1;
        b->bias_ids[i] = (int32_t)id;
        b->bias_values[i] = (float)bias;
        i++;
    }
    p->bias_ids = b->bias_ids;
    p->bias_values = b->bias_values;
    p->n_bias = n;
    return 0;
}

/* The processor options shared by generate() and apply_processors(). */
static int processor_params_from(PyObject *bias, double repetition, double frequency, double presence,
                                 long long ngram, PyObject *bad_words, long long min_new, PyObject *eos,
                                 pyllm_processor_params *p, processor_buffers *b)
{
    memset(p, 0, sizeof *p);
    memset(b, 0, sizeof *b);
    p->repetition_penalty = (float)repetition;
    p->frequency_penalty = (float)frequency;
    p->presence_penalty = (float)presence;
    p->no_repeat_ngram_size = ngram > INT32_MAX ? INT32_MAX : ngram < -1 ? -1 : (int32_t)ngram;
    p->min_new_tokens = min_new;
    if (eos != Py_None) {
        b->eos = int_list(eos, "eos_token_id", &p->n_eos);
        if (b->eos == NULL)
            return -1;
        p->eos_ids = b->eos;
    }
    if (bias != Py_None && logit_bias_from(bias, p, b) < 0)
        return -1;
    if (bad_words != Py_None && bad_words_from(bad_words, p, b) < 0)
        return -1;
    return 0;
}

/* ---- hooks: back into Python for a moment --------------------------------------------------- */

typedef struct {
    PyObject *process, *stop, *on_tokens; /* borrowed; may be NULL */
    int64_t batch, vocab;
    PyThread_type_lock lock; /* the model's, given up while a hook runs */
} python_hooks;

/* Into Python from the loop: the model's lock is released first, so a hook may use the model
 * (the loop's state lives in its own buffers and cache), and taken back with the GIL released,
 * so a thread waiting for the GIL while holding the lock cannot deadlock with us. */
static PyGILState_STATE enter_python(const python_hooks *h)
{
    PyThread_release_lock(h->lock);
    return PyGILState_Ensure();
}

static void leave_python(const python_hooks *h, PyGILState_STATE gil)
{
    PyGILState_Release(gil);
    PyThread_acquire_lock(h->lock, WAIT_LOCK);
}

/* A fresh int64 [batch, columns] copy of the filled columns of `sequences`. */
static PyObject *sequences_array(const python_hooks *h, const int64_t *sequences, int64_t width, int64_t columns)
{
    npy_intp dims[2] = {h->batch, columns};
    PyObject *a = pyllm_new_array(2, dims, NPY_INT64, 0);
    if (a == NULL)
        return NULL;
    int64_t *out = PyArray_DATA((PyArrayObject *)a);
    for (int64_t r = 0; r < h->batch; r++)
        memcpy(out + r * columns, sequences + r * width, sizeof(int64_t) * (size_t)columns);
    return a;
}

static PyObject *scores_array(const python_hooks *h, const float *scores)
{
    npy_intp dims[2] = {h->batch, h->vocab};
    PyObject *a = pyllm_new_array(2, dims, NPY_FLOAT32, 0);
    if (a != NULL)
        memcpy(PyArray_DATA((PyArrayObject *)a), scores, sizeof(float) * (size_t)(h->batch * h->vocab));
    return a;
}

/* The Python side's call fn(input_ids, scores) -> array, its result checked to be `type` [shape]. */
static PyArrayObject *call_hook(const python_hooks *h, PyObject *fn, const int64_t *sequences, int64_t width,
                                int64_t columns, const float *scores, int type, int ndim)
{
    PyObject *ids = sequences_array(h, sequences, width, columns);
    PyObject *sc = ids != NULL ? scores_array(h, scores) : NULL;
    PyObject *result = sc != NULL ? PyObject_CallFunctionObjArgs(fn, ids, sc, NULL) : NULL;
    Py_XDECREF(ids);
    Py_XDECREF(sc);
    if (result == NULL)
        return NULL;
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(result, type, ndim, ndim, NPY_ARRAY_IN_ARRAY);
    Py_DECREF(result);
    if (a == NULL)
        return NULL;
    if (PyArray_DIM(a, 0) != h->batch || (ndim == 2 && PyArray_DIM(a, 1) != h->vocab)) {
        PyErr_Format(PyExc_ValueError, "a generation hook returned an array of the wrong shape");
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

static pyllm_status hook_failed(void)
{
    return pyllm_error(PYLLM_ERR_RUNTIME, "a Python generation hook raised");
}

static pyllm_status process_hook(void *ctx, const int64_t *sequences, int64_t width, int64_t columns, float *scores)
{
    const python_hooks *h = ctx;
    PyGILState_STATE gil = enter_python(h);
    PyArrayObject *a = call_hook(h, h->process, sequences, width, columns, scores, NPY_FLOAT32, 2);
    if (a != NULL) {
        memcpy(scores, PyArray_DATA(a), sizeof(float) * (size_t)(h->batch * h->vocab));
        Py_DECREF(a);
    }
    leave_python(h, gil);
    return a != NULL ? PYLLM_OK : hook_failed();
}

static pyllm_status stop_hook(void *ctx, const int64_t *sequences, int64_t width, int64_t columns,
                              const float *scores, uint8_t *done)
{
    const python_hooks *h = ctx;
    PyGILState_STATE gil = enter_python(h);
    PyArrayObject *a = call_hook(h, h->stop, sequences, width, columns, scores, NPY_BOOL, 1);
    if (a != NULL) {
        const npy_bool *flags = PyArray_DATA(a);
        for (int64_t r = 0; r < h->batch; r++)
            done[r] = flags[r] != 0;
        Py_DECREF(a);
    }
    leave_python(h, gil);
    return a != NULL ? PYLLM_OK : hook_failed();
}

static pyllm_status stream_hook(void *ctx, const int64_t *tokens)
{
    const python_hooks *h = ctx;
    PyGILState_STATE gil = enter_python(h);
    npy_intp dims[1] = {h->batch};
    PyObject *a = pyllm_new_array(1, dims, NPY_INT64, 0);
    PyObject *result = NULL;
    if (a != NULL) {
        memcpy(PyArray_DATA((PyArrayObject *)a), tokens, sizeof(int64_t) * (size_t)h->batch);
        result = PyObject_CallFunctionObjArgs(h->on_tokens, a, NULL);
        Py_DECREF(a);
    }
    Py_XDECREF(result);
    leave_python(h, gil);
    return result != NULL ? PYLLM_OK : hook_failed();
}

/* Between steps: take the GIL for a moment to run pending signal handlers (Ctrl-C raises
 * KeyboardInterrupt, left set for the caller to see). */
static int signal_pending(void *ctx)
{
    (void)ctx;
    PyGILState_STATE gil = PyGILState_Ensure();
    int stop = PyErr_CheckSignals() < 0;
    PyGILState_Release(gil);
    return stop;
}

/* ---- Decoder.generate ---------------------------------------------------------------------- */

static PyObject *optional_callable(PyObject *obj, const char *what)
{
    if (obj == Py_None)
        return NULL;
    if (!PyCallable_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be callable, got %s", what, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return obj;
}

/* out[:, :columns] as a new array (a view of out). */
static PyObject *first_columns(PyObject *out, int64_t columns, int ndim)
{
    PyObject *stop = PyLong_FromLongLong(columns);
    PyObject *cols = stop ? PySlice_New(NULL, stop, NULL) : NULL;
    PyObject *rows = cols ? PySlice_New(NULL, NULL, NULL) : NULL;
    PyObject *key = rows ? (ndim == 3 ? PyTuple_Pack(3, rows, cols, rows) : PyTuple_Pack(2, rows, cols)) : NULL;
    PyObject *result = key ? PyObject_GetItem(out, key) : NULL;
    Py_XDECREF(stop);
    Py_XDECREF(cols);
    Py_XDECREF(rows);
    Py_XDECREF(key);
    return result;
}

PyObject *pyllm_generate_call(pyllm_decoder *model, PyThread_type_lock lock, int n_threads, PyObject *args,
                              PyObject *kwds)
{
    static char *kwlist[] = {"input_ids", "attention_mask", "max_new_tokens", "do_sample", "temperature", "top_k",
                             "top_p", "min_p", "typical_p", "repetition_penalty", "frequency_penalty",
                             "presence_penalty", "no_repeat_ngram_size", "min_new_tokens", "bad_words_ids",
                             "logit_bias", "eos_token_ids", "pad_token_id", "seed", "logits_processor",
                             "stopping_criteria", "on_tokens", "output_logprobs", "top_logprobs",
                             "logprobs_processed", "num_beams", "num_return_sequences", "length_penalty",
                             "early_stopping", "output_scores", "output_logits", "prompt_lookup_num_tokens",
                             "max_matching_ngram_size", "assistant", "num_assistant_tokens", "speculative_costs",
                             "interventions", "cache", NULL};
    PyObject *ids_obj, *mask_obj = Py_None, *bad_obj = Py_None, *bias_obj = Py_None, *eos_obj = Py_None;
    PyObject *process_obj = Py_None, *stop_obj = Py_None, *tokens_obj = Py_None, *cache_obj = Py_None;
    PyObject *assistant_obj = Py_None, *costs_obj = Py_None;
    long long lookup_tokens = 0, max_ngram = 2, assistant_tokens = 20;
    PyObject *max_new_obj = NULL, *top_k_obj = NULL, *ngram_obj = NULL, *min_new_obj = NULL, *pad_obj = NULL,
             *top_n_obj = NULL, *interventions_obj = Py_None;
    int64_t max_new = 20, top_k = 0, ngram = 0, min_new = 0, pad = 0, top_n = 0;
    unsigned long long seed = 0;
    int do_sample = 0, output_logprobs = 0, processed = 0, early_stopping = 0, output_scores = 0, output_logits = 0;
    long long num_beams = 1, num_return = 1;
    double temperature = 1.0, top_p = 1.0, min_p = 0.0, typical_p = 1.0, repetition = 1.0, frequency = 0.0,
           presence = 0.0, length_penalty = 1.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$OOpdOddddddOOOOOOKOOOpOpLLdippLLOLOOO:generate", kwlist, &ids_obj,
                                     &mask_obj, &max_new_obj, &do_sample, &temperature, &top_k_obj, &top_p, &min_p,
                                     &typical_p, &repetition, &frequency, &presence, &ngram_obj, &min_new_obj,
                                     &bad_obj, &bias_obj, &eos_obj, &pad_obj, &seed, &process_obj, &stop_obj,
                                     &tokens_obj, &output_logprobs, &top_n_obj, &processed, &num_beams, &num_return,
                                     &length_penalty, &early_stopping, &output_scores, &output_logits,
                                     &lookup_tokens, &max_ngram, &assistant_obj, &assistant_tokens, &costs_obj,
                                     &interventions_obj, &cache_obj))
        return NULL;
    const pyllm_intervention_list *interventions;
    if (pyllm_interventions_of(interventions_obj, &interventions) < 0)
        return NULL;
    if (interventions != NULL && (lookup_tokens > 0 || assistant_obj != Py_None)) {
        PyErr_SetString(PyExc_ValueError, "interventions are not supported with speculative decoding "
                                          "(prompt_lookup_num_tokens, assistant_model): pass one or the other");
        return NULL;
    }
    if (num_beams < 1 || num_beams > 4096 || num_return < 1 || num_return > num_beams) {
        PyErr_Format(PyExc_ValueError, "num_beams must be in [1, 4096] and num_return_sequences in [1, num_beams], "
                     "got %lld and %lld", num_beams, num_return);
        return NULL;
    }
    if (early_stopping < 0 || early_stopping > 2) {
        PyErr_Format(PyExc_ValueError, "early_stopping must be 0 (False), 1 (True) or 2 (\"never\"), got %d",
                     early_stopping);
        return NULL;
    }
    const int beams = num_beams > 1;
    /* Speculative decoding: prompt lookup, or a draft model (which wins when both are given). */
    pyllm_speculation spec = {.num_tokens = assistant_obj != Py_None ? assistant_tokens : lookup_tokens,
                              .max_ngram = max_ngram > INT32_MAX ? INT32_MAX : (int32_t)max_ngram};
    const int speculative = assistant_obj != Py_None || lookup_tokens > 0;
    if (speculative && (spec.num_tokens < 1 || spec.num_tokens > 256 || max_ngram < 1)) {
        PyErr_Format(PyExc_ValueError, "%s must be in [1, 256] and max_matching_ngram_size >= 1, got %lld and %lld",
                     assistant_obj != Py_None ? "num_assistant_tokens" : "prompt_lookup_num_tokens",
                     (long long)spec.num_tokens, max_ngram);
        return NULL;
    }
    if (speculative && beams) {
        PyErr_Format(PyExc_ValueError, "speculative decoding (prompt_lookup_num_tokens or assistant_model) does not "
                     "run with num_beams=%lld: pass num_beams=1", num_beams);
        return NULL;
    }
    if (speculative && costs_obj != Py_None) {
        if (!PyArg_ParseTuple(costs_obj, "ddd;speculative_costs must be (verify_fixed, verify_per_token, draft_step)",
                              &spec.verify_fixed, &spec.verify_per_token, &spec.draft_step))
            return NULL;
        spec.automatic = 1;
    }
    const int64_t vocab = model->config.vocab_size;
    /* Each int named in its error, never wrapped; the context check below bounds max_new_tokens. */
    if (pyllm_arg_int64(max_new_obj, "max_new_tokens", 0, INT64_MAX, &max_new) < 0 ||
        pyllm_arg_int64(top_k_obj, "top_k", 0, INT64_MAX, &top_k) < 0 ||
        pyllm_arg_int64(ngram_obj, "no_repeat_ngram_size", 0, INT64_MAX, &ngram) < 0 ||
        pyllm_arg_int64(min_new_obj, "min_new_tokens", 0, INT64_MAX, &min_new) < 0 ||
        pyllm_arg_int64(pad_obj, "pad_token_id", INT64_MIN, INT64_MAX, &pad) < 0 ||
        pyllm_arg_int64(top_n_obj, "top_logprobs", 0, vocab, &top_n) < 0)
        return NULL;
    python_hooks hooks = {.batch = 0, .vocab = vocab, .lock = lock};
    if (((hooks.process = optional_callable(process_obj, "logits_processor")) == NULL && PyErr_Occurred()) ||
        ((hooks.stop = optional_callable(stop_obj, "stopping_criteria")) == NULL && PyErr_Occurred()) ||
        ((hooks.on_tokens = optional_callable(tokens_obj, "on_tokens")) == NULL && PyErr_Occurred()))
        return NULL;
    pyllm_generate_options opt = {
        .max_new_tokens = max_new,
        .sampling = {.do_sample = do_sample, .temperature = (float)temperature,
                     .top_k = top_k > INT32_MAX ? INT32_MAX : top_k < INT32_MIN ? INT32_MIN : (int32_t)top_k,
                     .top_p = (float)top_p, .min_p = (float)min_p, .typical_p = (float)typical_p},
        .seed = (uint64_t)seed,
        .pad_token_id = pad < 0 || pad >= vocab ? -1 : (int32_t)pad,
        .hooks = {.ctx = &hooks, .process = hooks.process ? process_hook : NULL,
                  .stop = hooks.stop ? stop_hook : NULL, .stream = hooks.on_tokens ? stream_hook : NULL,
                  .interrupted = signal_pending},
        .top_n = (int32_t)top_n,
        .processed = processed,
    };
    processor_buffers buffers;
    PyArrayObject *ids = NULL, *mask = NULL;
    PyObject *out = NULL, *counts = NULL, *logprobs = NULL, *top_ids = NULL, *top_values = NULL, *result = NULL;
    PyObject *scores = NULL, *raw_logits = NULL, *seq_scores = NULL, *beam_indices = NULL, *claimed = NULL;
    PyObject *drafted = NULL, *accepted = NULL, *stopped_at = NULL, *assistant_claimed = NULL;
    PyThread_type_lock assistant_lock = NULL;
    int assistant_threads = 1;
    if (processor_params_from(bias_obj, repetition, frequency, presence, ngram, bad_obj, min_new, eos_obj,
                              &opt.processors, &buffers) < 0)
        goto done;
    pyllm_status st = pyllm_sampling_params_check(&opt.sampling);
    if (st == PYLLM_OK)
        st = pyllm_processor_params_check(&opt.processors, (int32_t)vocab);
    if (st != PYLLM_OK) {
        pyllm_raise(st);
        goto done;
    }

    ids = (PyArrayObject *)PyArray_FROMANY(ids_obj, NPY_INT32, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (ids == NULL)
        goto done;
    if (mask_obj != Py_None) {
        mask = (PyArrayObject *)PyArray_FROMANY(mask_obj, NPY_UINT8, 2, 2, NPY_ARRAY_IN_ARRAY);
        if (mask == NULL)
            goto done;
        if (PyArray_DIM(mask, 0) != PyArray_DIM(ids, 0) || PyArray_DIM(mask, 1) != PyArray_DIM(ids, 1)) {
            PyErr_SetString(PyExc_ValueError, "attention_mask must have the shape of input_ids");
            goto done;
        }
    }
    const int64_t batch = PyArray_DIM(ids, 0), prompt_len = PyArray_DIM(ids, 1);
    if (prompt_len < 1 || batch < 1) {
        PyErr_SetString(PyExc_ValueError, "input_ids is empty: need at least one token");
        goto done;
    }
    /* Compared without the sum, which max_new_tokens near 2**63 would wrap. */
    if (prompt_len > model->config.n_ctx || max_new > model->config.n_ctx - prompt_len) {
        PyErr_Format(PyExc_ValueError,
                     "prompt of %lld tokens plus max_new_tokens=%lld exceeds the context of %lld tokens (n_ctx)",
                     (long long)prompt_len, max_new, (long long)model->config.n_ctx);
        goto done;
    }
    /* The cache sized below, checked before anything of its size is allocated. */
    const int64_t capacity = prompt_len + (max_new > 0 ? max_new - 1 : 0);
    /* Beams: every prompt row holds num_beams cache rows; num_return_sequences rows come out. */
    const int64_t cache_rows = batch * num_beams, out_rows = beams ? batch * num_return : batch;
    if (batch > INT64_MAX / num_beams) {
        PyErr_SetString(PyExc_ValueError, "input rows x num_beams overflows");
        goto done;
    }
    if (pyllm_check_kv_cache_fits(&model->config, cache_rows, capacity) < 0)
        goto done;
    /* A one-row cache holding the prompt's first tokens (pyllm/prefix_cache.py): generation starts
     * from a copy of it. Read-claimed for the call. */
    const pyllm_kv_cache *start = NULL;
    if (cache_obj != Py_None) {
        if ((start = pyllm_kv_cache_of(cache_obj, model)) == NULL)
            goto done;
        if (start->batch != 1 || batch != 1 || beams || start->used >= prompt_len || start->length[0] != start->used) {
            PyErr_Format(PyExc_ValueError, "cache must be one row holding fewer tokens than the prompt, for one prompt "
                         "without beams; got %lld rows of %lld tokens, %lld prompts of %lld and num_beams=%lld",
                         (long long)start->batch, (long long)start->used, (long long)batch, (long long)prompt_len,
                         num_beams);
            goto done;
        }
        if (speculative) { /* speculation makes caches of its own */
            PyErr_SetString(PyExc_ValueError, "cache= does not run with speculative decoding "
                                              "(prompt_lookup_num_tokens, assistant_model): pass one or the other");
            goto done;
        }
        if (start->used == 0)
            start = NULL;
        else if (pyllm_kv_cache_claim(cache_obj, 0) < 0)
            goto done;
        else
            claimed = cache_obj;
    }
    hooks.batch = batch;
    {
        npy_intp seq_dims[2] = {out_rows, prompt_len + max_new}, count_dims[1] = {out_rows};
        npy_intp score_dims[3] = {max_new, cache_rows, vocab}, beam_dims[2] = {out_rows, max_new};
        npy_intp lp_dims[2] = {batch, max_new}, top_dims[3] = {batch, max_new, top_n};
        out = pyllm_new_array(2, seq_dims, NPY_INT64, 1);
        counts = pyllm_new_array(1, count_dims, NPY_INT64, 1);
        if (out == NULL || counts == NULL)
            goto done;
        if (output_logprobs) {
            logprobs = pyllm_new_array(2, lp_dims, NPY_FLOAT32, 1);
            top_ids = pyllm_new_array(3, top_dims, NPY_INT64, 1);
            top_values = pyllm_new_array(3, top_dims, NPY_FLOAT32, 1);
            if (logprobs == NULL || top_ids == NULL || top_values == NULL)
                goto done;
            opt.logprobs = PyArray_DATA((PyArrayObject *)logprobs);
            opt.top_ids = PyArray_DATA((PyArrayObject *)top_ids);
            opt.top_logprobs = PyArray_DATA((PyArrayObject *)top_values);
        }
        if (output_scores) {
            if ((scores = pyllm_new_array(3, score_dims, NPY_FLOAT32, 1)) == NULL)
                goto done;
            opt.scores = PyArray_DATA((PyArrayObject *)scores);
        }
        if (output_logits) {
            if ((raw_logits = pyllm_new_array(3, score_dims, NPY_FLOAT32, 1)) == NULL)
                goto done;
            opt.raw_logits = PyArray_DATA((PyArrayObject *)raw_logits);
        }
        if (speculative) {
            drafted = pyllm_new_array(1, count_dims, NPY_INT64, 1);
            accepted = pyllm_new_array(1, count_dims, NPY_INT64, 1);
            stopped_at = pyllm_new_array(1, count_dims, NPY_INT64, 1);
            if (drafted == NULL || accepted == NULL || stopped_at == NULL)
                goto done;
        }
        if (beams) {
            npy_intp score_dim[1] = {out_rows};
            seq_scores = pyllm_new_array(1, score_dim, NPY_FLOAT32, 1);
            beam_indices = pyllm_new_array(2, beam_dims, NPY_INT64, 1);
            if (seq_scores == NULL || beam_indices == NULL)
                goto done;
        }
    }
    const int32_t *tok = PyArray_DATA(ids);
    const uint8_t *m = mask ? PyArray_DATA(mask) : NULL;
    int64_t *sequences = PyArray_DATA((PyArrayObject *)out), *new_count = PyArray_DATA((PyArrayObject *)counts);
    int64_t steps = 0, steps_run = 0;
    pyllm_kv_cache cache;
    pyllm_beam_params beam = {.num_beams = num_beams, .num_return_sequences = num_return,
                              .length_penalty = (float)length_penalty,
                              .early_stopping = (pyllm_early_stopping)early_stopping};
    pyllm_beam_outputs beam_out = {
        .sequences = sequences,
        .sequence_scores = seq_scores ? PyArray_DATA((PyArrayObject *)seq_scores) : NULL,
        .beam_indices = beam_indices ? PyArray_DATA((PyArrayObject *)beam_indices) : NULL};
    pyllm_speculation_counts spec_counts = {0};
    if (assistant_obj != Py_None) {
        if (pyllm_decoder_claim(assistant_obj, &spec.assistant, &assistant_lock, &assistant_threads) < 0)
            goto done;
        assistant_claimed = assistant_obj;
        if (spec.assistant == model) /* a model drafting for itself: one lock */
            assistant_lock = NULL;
    }
    if (speculative)
        spec_counts = (pyllm_speculation_counts){PyArray_DATA((PyArrayObject *)drafted),
                                                 PyArray_DATA((PyArrayObject *)accepted),
                                                 PyArray_DATA((PyArrayObject *)stopped_at)};
    Py_BEGIN_ALLOW_THREADS
    /* Two models' locks in address order: threads drafting with each other's model cannot
     * deadlock. */
    const int assistant_first = assistant_lock != NULL && (uintptr_t)assistant_lock < (uintptr_t)lock;
    if (assistant_first)
        PyThread_acquire_lock(assistant_lock, WAIT_LOCK);
    PyThread_acquire_lock(lock, WAIT_LOCK);
    if (assistant_lock != NULL) {
        if (!assistant_first)
            PyThread_acquire_lock(assistant_lock, WAIT_LOCK);
        spec.assistant->n_threads = assistant_threads;
    }
    model->n_threads = n_threads;
    if (speculative) {
        st = pyllm_speculative_generate(model, &spec, tok, m, batch, prompt_len, &opt, sequences, &steps, new_count,
                                        &spec_counts);
        steps_run = steps;
        if (assistant_lock != NULL)
            PyThread_release_lock(assistant_lock);
    } else {
        st = start ? pyllm_kv_cache_take(&cache, start, 0, start->used, capacity)
                   : pyllm_kv_cache_init(&cache, model, cache_rows, capacity);
    }
    if (!speculative && st == PYLLM_OK) {
        cache.interventions = interventions; /* every token of the prompt and of the steps */
        if (beams) {
            st = pyllm_beam_search(model, &cache, tok, m, batch, prompt_len, &opt, &beam, &beam_out);
            steps = beam_out.n_steps;
            steps_run = beam_out.steps_run;
        } else {
            st = pyllm_generate(model, &cache, tok, m, prompt_len, &opt, sequences, &steps, new_count);
            steps_run = steps;
        }
        pyllm_kv_cache_release(&cache);
    }
    PyThread_release_lock(lock);
    Py_END_ALLOW_THREADS
    if (st != PYLLM_OK) {
        if (PyErr_Occurred())
            pyllm_error_clear(); /* a hook's or signal handler's own exception wins */
        else
            pyllm_raise(st);
        goto done;
    }
    if (beams) /* each returned hypothesis's generated length, its end token included */
        for (int64_t r = 0; r < out_rows; r++) {
            const int64_t *bi = beam_out.beam_indices + r * max_new;
            int64_t n = 0;
            while (n < max_new && bi[n] != -1)
                n++;
            new_count[r] = n;
        }
    {
        /* Scores and logits: [steps_run, rows, vocab] (the steps the decoder took). */
        PyObject *spec_parts = speculative ? PyTuple_Pack(3, drafted, accepted, stopped_at) : Py_NewRef(Py_None);
        PyObject *parts[10] = {first_columns(out, prompt_len + steps, 2), Py_NewRef(counts),
                              logprobs ? first_columns(logprobs, steps, 2) : Py_NewRef(Py_None),
                              top_ids ? first_columns(top_ids, steps, 3) : Py_NewRef(Py_None),
                              top_values ? first_columns(top_values, steps, 3) : Py_NewRef(Py_None),
                              scores ? PySequence_GetSlice(scores, 0, steps_run) : Py_NewRef(Py_None),
                              raw_logits ? PySequence_GetSlice(raw_logits, 0, steps_run) : Py_NewRef(Py_None),
                              seq_scores ? Py_NewRef(seq_scores) : Py_NewRef(Py_None),
                              beam_indices ? first_columns(beam_indices, steps, 2) : Py_NewRef(Py_None),
                              spec_parts};
        int ok = 1;
        for (int i = 0; i < 10; i++)
            ok &= parts[i] != NULL;
        if (ok)
            result = PyTuple_Pack(10, parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6], parts[7],
                                  parts[8], parts[9]);
        for (int i = 0; i < 10; i++)
            Py_XDECREF(parts[i]);
    }

done:
    if (claimed != NULL)
        pyllm_kv_cache_unclaim(claimed, 0);
    buffers_release(&buffers);
    Py_XDECREF(ids);
    Py_XDECREF(mask);
    Py_XDECREF(out);
    Py_XDECREF(counts);
    Py_XDECREF(logprobs);
    Py_XDECREF(top_ids);
    Py_XDECREF(top_values);
    Py_XDECREF(scores);
    Py_XDECREF(raw_logits);
    Py_XDECREF(seq_scores);
    Py_XDECREF(beam_indices);
    Py_XDECREF(drafted);
    Py_XDECREF(accepted);
    Py_XDECREF(stopped_at);
    if (assistant_claimed != NULL)
        pyllm_decoder_unclaim(assistant_claimed);
    return result;
}

/* ---- the processors alone, for tests -------------------------------------------------------- */

/* scores as a fresh float32 [batch, vocab] copy (the result), input_ids as int32 [batch, t]. */
static int scores_and_ids(PyObject *scores_obj, PyObject *ids_obj, PyArrayObject **scores, PyArrayObject **ids)
{
    *ids = NULL;
    *scores = (PyArrayObject *)PyArray_FROMANY(scores_obj, NPY_FLOAT32, 2, 2, NPY_ARRAY_ENSURECOPY |
                                               NPY_ARRAY_DEFAULT | NPY_ARRAY_FORCECAST);
    if (*scores == NULL)
        return -1;
    if (ids_obj != NULL) {
        /* Test inputs: token ids are small, so casting any integer array to int32 is exact. */
        *ids = (PyArrayObject *)PyArray_FROMANY(ids_obj, NPY_INT32, 2, 2, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
        if (*ids == NULL || PyArray_DIM(*ids, 0) != PyArray_DIM(*scores, 0)) {
            if (*ids != NULL)
                PyErr_SetString(PyExc_ValueError, "input_ids and scores must have the same number of rows");
            Py_CLEAR(*ids);
            Py_CLEAR(*scores);
            return -1;
        }
    }
    if (PyArray_DIM(*scores, 1) < 1 || PyArray_DIM(*scores, 1) > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "scores need between 1 and 2**31 - 1 columns");
        Py_CLEAR(*ids);
        Py_CLEAR(*scores);
        return -1;
    }
    return 0;
}

static PyObject *apply_processors(PyObject *self, PyObject *args, PyObject *kwds)
{
    (void)self;
    static char *kwlist[] = {"input_ids", "scores", "prompt_length", "logit_bias", "repetition_penalty",
                             "frequency_penalty", "presence_penalty", "no_repeat_ngram_size", "bad_words_ids",
                             "min_new_tokens", "eos_token_ids", NULL};
    PyObject *ids_obj, *scores_obj, *bias_obj = Py_None, *bad_obj = Py_None, *eos_obj = Py_None;
    long long prompt_length = 0, ngram = 0, min_new = 0;
    double repetition = 1.0, frequency = 0.0, presence = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$LOdddLOLO:apply_processors", kwlist, &ids_obj, &scores_obj,
                                     &prompt_length, &bias_obj, &repetition, &frequency, &presence, &ngram,
                                     &bad_obj, &min_new, &eos_obj))
        return NULL;
    PyArrayObject *scores, *ids;
    if (scores_and_ids(scores_obj, ids_obj, &scores, &ids) < 0)
        return NULL;
    const int64_t rows = PyArray_DIM(scores, 0), vocab = PyArray_DIM(scores, 1), t = PyArray_DIM(ids, 1);
    pyllm_processor_params p;
    processor_buffers buffers;
    pyllm_processor_scratch scratch = {0};
    pyllm_status st = PYLLM_OK;
    if (processor_params_from(bias_obj, repetition, frequency, presence, ngram, bad_obj, min_new, eos_obj, &p,
                              &buffers) < 0)
        goto fail;
    if (prompt_length < 0 || prompt_length > t) {
        PyErr_Format(PyExc_ValueError, "prompt_length must be in [0, %lld], got %lld", (long long)t, prompt_length);
        goto fail;
    }
    const int32_t *tok = PyArray_DATA(ids);
    for (int64_t i = 0; i < rows * t; i++)
        if (tok[i] < 0 || tok[i] >= vocab) {
            PyErr_Format(PyExc_ValueError, "input_ids holds %d, outside [0, %lld)", (int)tok[i], (long long)vocab);
            goto fail;
        }
    st = pyllm_processor_params_check(&p, (int32_t)vocab);
    if (st == PYLLM_OK)
        st = pyllm_processor_scratch_init(&scratch, (int32_t)vocab);
    if (st != PYLLM_OK) {
        pyllm_raise(st);
        goto fail;
    }
    float *s = PyArray_DATA(scores);
    Py_BEGIN_ALLOW_THREADS
    for (int64_t r = 0; r < rows; r++)
        pyllm_process_row(&p, &scratch, tok + r * t, t, prompt_length, s + r * vocab);
    Py_END_ALLOW_THREADS
    pyllm_processor_scratch_release(&scratch);
    buffers_release(&buffers);
    Py_DECREF(ids);
    return (PyObject *)scores;
fail:
    pyllm_processor_scratch_release(&scratch);
    buffers_release(&buffers);
    Py_DECREF(ids);
    Py_DECREF(scores);
    return NULL;
}

static PyObject *apply_warpers(PyObject *self, PyObject *args, PyObject *kwds)
{
    (void)self;
    static char *kwlist[] = {"scores", "temperature", "top_k", "top_p", "min_p", "typical_p", NULL};
    PyObject *scores_obj;
    double temperature = 1.0, top_p = 1.0, min_p = 0.0, typical_p = 1.0;
    long long top_k = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$dLddd:apply_warpers", kwlist, &scores_obj, &temperature, &top_k,
                                     &top_p, &min_p, &typical_p))
        return NULL;
    PyArrayObject *scores, *ids;
    if (scores_and_ids(scores_obj, NULL, &scores, &ids) < 0)
        return NULL;
    const int64_t rows = PyArray_DIM(scores, 0), vocab = PyArray_DIM(scores, 1);
    pyllm_sampling_params p = {.do_sample = 1, .temperature = (float)temperature,
                               .top_k = top_k > INT32_MAX ? INT32_MAX : top_k < INT32_MIN ? INT32_MIN : (int32_t)top_k,
                               .top_p = (float)top_p, .min_p = (float)min_p, .typical_p = (float)typical_p};
    pyllm_sampler sampler = {0};
    pyllm_processor_scratch scratch = {0};
    pyllm_status st = pyllm_sampling_params_check(&p);
    if (st == PYLLM_OK)
        st = pyllm_sampler_init(&sampler, (int32_t)vocab);
    if (st == PYLLM_OK)
        st = pyllm_processor_scratch_init(&scratch, (int32_t)vocab);
    if (st == PYLLM_OK) {
        float *s = PyArray_DATA(scores);
        Py_BEGIN_ALLOW_THREADS
        for (int64_t r = 0; r < rows; r++)
            pyllm_warp_row(&p, &sampler, &scratch, s + r * vocab);
        Py_END_ALLOW_THREADS
    }
    pyllm_sampler_release(&sampler);
    pyllm_processor_scratch_release(&scratch);
    if (st != PYLLM_OK) {
        Py_DECREF(scores);
        return pyllm_raise(st);
    }
    return (PyObject *)scores;
}

static PyObject *decoder_tokens_run(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyLong_FromLongLong(pyllm_decoder_tokens_run());
}

static PyMethodDef processor_methods[] = {
    {"apply_processors", (PyCFunction)(void (*)(void))apply_processors, METH_VARARGS | METH_KEYWORDS,
     "apply_processors(input_ids, scores, *, prompt_length=0, logit_bias=None, repetition_penalty=1.0, "
     "frequency_penalty=0.0, presence_penalty=0.0, no_repeat_ngram_size=0, bad_words_ids=None, "
     "min_new_tokens=0, eos_token_ids=None)\n--\n\n"
     "The generation loop's logits processors on float32 scores [batch, vocab] (a processed copy is "
     "returned); each row's history is its row of input_ids, the first prompt_length tokens its prompt."},
    {"apply_warpers", (PyCFunction)(void (*)(void))apply_warpers, METH_VARARGS | METH_KEYWORDS,
     "apply_warpers(scores, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0)\n--\n\n"
     "The sampling warpers (temperature, top-k, top-p, min-p, typical-p, in transformers' order) on "
     "float32 scores [batch, vocab]; removed tokens become -inf in the returned copy."},
    {"decoder_tokens_run", decoder_tokens_run, METH_NOARGS,
     "decoder_tokens_run()\n--\n\nTokens (rows x new tokens) every forward pass of the process has taken in."},
    {NULL, NULL, 0, NULL},
};

int pyllm_register_processors(PyObject *module)
{
    return PyModule_AddFunctions(module, processor_methods);
}
