/* Python binding of the C tokenizer: the type pyllm._core.Tokenizer (either kind: SentencePiece BPE
 * or merges BPE) and its constructors. Encoding and decoding run without the GIL.
 *
 * Sharing across threads (docs/threads.md): a tokenizer is guarded by a readers-writer lock.
 * Encoding, decoding and every query read it under the shared side, any number at once;
 * add_token and set_added_flags change its tables (growing them frees the old ones) under the
 * exclusive side, so no reader ever sees them half changed or freed. No thread holding the lock
 * waits for the GIL or for the lock again (the guarded sections are plain C, or Python calls that
 * run no Python code), so waiting for it is safe with the GIL held or released: long sections
 * wait with it released. */
#include "python/common.h"
#include "python/py_args.h"

#include <pthread.h>
#include <string.h>

#include "tokenizers/tokenizer.h"
#include "tokenizers/utf8.h"

typedef struct {
    PyObject_HEAD
    pyllm_tokenizer *tok;
    pthread_rwlock_t guard; /* of *tok, see the top */
} TokenizerObject;

static PyTypeObject TokenizerType;

static void tokenizer_dealloc(TokenizerObject *self)
{
    /* no call is running: each holds a reference to self */
    pthread_rwlock_destroy(&self->guard);
    pyllm_tokenizer_free(self->tok);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *wrap(pyllm_tokenizer *tok)
{
    TokenizerObject *obj = PyObject_New(TokenizerObject, &TokenizerType);
    if (obj == NULL) {
        pyllm_tokenizer_free(tok);
        return NULL;
    }
    obj->tok = tok;
    pthread_rwlockattr_t attr;
    int failed = pthread_rwlockattr_init(&attr);
#ifdef PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP
    /* glibc lets a stream of readers starve a writer by default: add_token would wait for a pause
     * in encoding that a busy server never has */
    if (!failed)
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    if (!failed) {
        failed = pthread_rwlock_init(&obj->guard, &attr);
        pthread_rwlockattr_destroy(&attr);
    }
    if (failed) {
        obj->tok = NULL;
        PyObject_Free(obj);
        pyllm_tokenizer_free(tok);
        return PyErr_NoMemory();
    }
    return (PyObject *)obj;
}

/* The shared side for a short query with the GIL held: taken at once unless a writer has it or
 * waits for it, else waited for with the GIL released. */
static void read_lock(TokenizerObject *self)
{
    if (pthread_rwlock_tryrdlock(&self->guard) == 0)
        return;
    Py_BEGIN_ALLOW_THREADS
    pthread_rwlock_rdlock(&self->guard);
    Py_END_ALLOW_THREADS
}

static void unlock(TokenizerObject *self) { pthread_rwlock_unlock(&self->guard); }

static PyObject *from_sentencepiece(PyObject *module, PyObject *arg)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    pyllm_tokenizer *tok = NULL;
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pyllm_tokenizer_from_sentencepiece(view.buf, (size_t)view.len, &tok);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (st != PYLLM_OK)
        return pyllm_raise(st);
    return wrap(tok);
}

static PyObject *from_llama2c(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer view;
    int vocab_size;
    if (!PyArg_ParseTuple(args, "y*i:sentencepiece_from_llama2c", &view, &vocab_size))
        return NULL;
    pyllm_tokenizer *tok = NULL;
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pyllm_tokenizer_from_llama2c(view.buf, (size_t)view.len, vocab_size, &tok);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (st != PYLLM_OK)
        return pyllm_raise(st);
    return wrap(tok);
}

static PyObject *ids_to_list(const pyllm_ids *ids)
{
    PyObject *list = PyList_New((Py_ssize_t)ids->len);
    if (list == NULL)
        return NULL;
    for (size_t i = 0; i < ids->len; i++) {
        PyObject *v = PyLong_FromLong(ids->data[i]);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, v);
    }
    return list;
}

static const char *utf8_of(PyObject *text, Py_ssize_t *len)
{
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "text must be a str, got %.200s", Py_TYPE(text)->tp_name);
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(text, len);
}

static int encode_flags(int split_specials, int prefix_after_special)
{
    return (split_specials ? PYLLM_ENCODE_SPLIT_SPECIALS : 0) |
           (prefix_after_special ? 0 : PYLLM_ENCODE_NO_PREFIX_AFTER_SPECIAL);
}

static PyObject *tokenizer_encode(TokenizerObject *self, PyObject *args)
{
    PyObject *text;
    int split_specials = 1, prefix_after_special = 1;
    if (!PyArg_ParseTuple(args, "O|pp:encode", &text, &split_specials, &prefix_after_special))
        return NULL;
    int flags = encode_flags(split_specials, prefix_after_special);
    Py_ssize_t len;
    const char *utf8 = utf8_of(text, &len);
    if (utf8 == NULL)
        return NULL;
    pyllm_ids ids = {0};
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    pthread_rwlock_rdlock(&self->guard);
    st = pyllm_tokenizer_encode(self->tok, utf8, (size_t)len, flags, &ids);
    unlock(self);
    Py_END_ALLOW_THREADS
    PyObject *result = st == PYLLM_OK ? ids_to_list(&ids) : pyllm_raise(st);
    pyllm_ids_free(&ids);
    return result;
}

static PyObject *tokenizer_encode_batch(TokenizerObject *self, PyObject *args)
{
    PyObject *texts;
    int split_specials = 1, prefix_after_special = 1;
    if (!PyArg_ParseTuple(args, "O|pp:encode_batch", &texts, &split_specials, &prefix_after_special))
        return NULL;
    int flags = encode_flags(split_specials, prefix_after_special);
    if (PyUnicode_Check(texts)) {
        PyErr_SetString(PyExc_TypeError, "encode_batch expects a list of str, got a single str");
        return NULL;
    }
    /* A tuple of our own: another thread cannot drop the strings while the GIL is released. */
    PyObject *seq = PySequence_Tuple(texts);
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(seq);
    const char **utf8 = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    Py_ssize_t *lens = PyMem_Calloc((size_t)n + 1, sizeof(Py_ssize_t));
    pyllm_ids *ids = PyMem_Calloc((size_t)n + 1, sizeof(pyllm_ids));
    PyObject *result = NULL;
    if (utf8 == NULL || lens == NULL || ids == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        utf8[i] = utf8_of(PyTuple_GET_ITEM(seq, i), &lens[i]);
        if (utf8[i] == NULL)
            goto done;
    }
    pyllm_status st = PYLLM_OK;
    Py_BEGIN_ALLOW_THREADS
    pthread_rwlock_rdlock(&self->guard);
    for (Py_ssize_t i = 0; i < n && st == PYLLM_OK; i++)
        st = pyllm_tokenizer_encode(self->tok, utf8[i], (size_t)lens[i], flags, &ids[i]);
    unlock(self);
    Py_END_ALLOW_THREADS
    if (st != PYLLM_OK) {
        pyllm_raise(st);
        goto done;
    }
    result = PyList_New(n);
    if (result == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = ids_to_list(&ids[i]);
        if (item == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, item);
    }
done:
    if (ids != NULL)
        for (Py_ssize_t i = 0; i < n; i++)
            pyllm_ids_free(&ids[i]);
    PyMem_Free(ids);
    PyMem_Free(lens);
    PyMem_Free(utf8);
    Py_DECREF(seq);
    return result;
}

/* Read token ids from a list/tuple of ints or a 1-D integer NumPy array. */
static int ids_from_object(PyObject *obj, pyllm_ids *out)
{
    if (PyArray_Check(obj)) {
        PyArrayObject *arr = (PyArrayObject *)obj;
        if (!PyArray_ISINTEGER(arr)) {
            PyErr_Format(PyExc_TypeError, "token ids must have an integer dtype, got %S",
                         (PyObject *)PyArray_DESCR(arr));
            return -1;
        }
        if (PyArray_NDIM(arr) != 1) {
            PyErr_Format(PyExc_ValueError, "token ids must be 1-D, got an array of %d dimensions", PyArray_NDIM(arr));
            return -1;
        }
        PyArrayObject *cast = (PyArrayObject *)PyArray_FROM_OTF(obj, NPY_INT64, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
        if (cast == NULL)
            return -1;
        npy_intp n = PyArray_SIZE(cast);
        const int64_t *v = PyArray_DATA(cast);
        if (pyllm_ids_reserve(out, (size_t)n) != PYLLM_OK) {
            Py_DECREF(cast);
            pyllm_raise(PYLLM_ERR_MEMORY);
            return -1;
        }
        for (npy_intp i = 0; i < n; i++) {
            if (v[i] < INT32_MIN || v[i] > INT32_MAX) {
                PyErr_Format(PyExc_IndexError, "token id %lld at position %zd is out of range", (long long)v[i],
                             (Py_ssize_t)i);
                Py_DECREF(cast);
                return -1;
            }
            out->data[out->len++] = (int32_t)v[i];
        }
        Py_DECREF(cast);
        return 0;
    }
    if (PyUnicode_Check(obj) || PyBytes_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "token ids must be a sequence of int, got %.200s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *seq = PySequence_Fast(obj, "token ids must be a sequence of int");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (pyllm_ids_reserve(out, (size_t)n) != PYLLM_OK) {
        Py_DECREF(seq);
        pyllm_raise(PYLLM_ERR_MEMORY);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (PyBool_Check(item) || !PyIndex_Check(item)) {
            PyErr_Format(PyExc_TypeError, "token ids must be int, got %.200s at position %zd",
                         Py_TYPE(item)->tp_name, i);
            Py_DECREF(seq);
            return -1;
        }
        PyObject *index = PyNumber_Index(item);
        if (index == NULL) {
            Py_DECREF(seq);
            return -1;
        }
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
        Py_DECREF(index);
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
        if (overflow || v < INT32_MIN || v > INT32_MAX) {
            PyErr_Format(PyExc_IndexError, "token id at position %zd is out of range", i);
            Py_DECREF(seq);
            return -1;
        }
        out->data[out->len++] = (int32_t)v;
    }
    Py_DECREF(seq);
    return 0;
}

static PyObject *tokenizer_decode(TokenizerObject *self, PyObject *args)
{
    PyObject *obj;
    int skip_specials = 0;
    if (!PyArg_ParseTuple(args, "O|p:decode", &obj, &skip_specials))
        return NULL;
    pyllm_ids ids = {0};
    if (ids_from_object(obj, &ids) < 0) {
        pyllm_ids_free(&ids);
        return NULL;
    }
    pyllm_bytes text = {0};
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    pthread_rwlock_rdlock(&self->guard);
    st = pyllm_tokenizer_decode(self->tok, ids.data, ids.len, skip_specials, &text);
    unlock(self);
    Py_END_ALLOW_THREADS
    pyllm_ids_free(&ids);
    PyObject *result = st == PYLLM_OK ? PyUnicode_DecodeUTF8(text.data, (Py_ssize_t)text.len, "replace")
                                      : pyllm_raise(st);
    pyllm_bytes_free(&text);
    return result;
}

static PyObject *tokenizer_id_to_token(TokenizerObject *self, PyObject *arg)
{
    long id = PyLong_AsLong(arg);
    if (id == -1 && PyErr_Occurred())
        return NULL;
    read_lock(self);
    const int32_t n = pyllm_tokenizer_table(self->tok)->vocab.n_tokens;
    PyObject *result = NULL;
    if (id < 0 || id >= n) {
        PyErr_Format(PyExc_IndexError, "token id %ld is out of range [0, %d)", id, n);
    } else {
        size_t len;
        const char *s = pyllm_vocab_token(&pyllm_tokenizer_table(self->tok)->vocab, (int32_t)id, &len);
        result = PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "surrogateescape"); /* s is only valid under the lock */
    }
    unlock(self);
    return result;
}

static PyObject *tokenizer_token_to_id(TokenizerObject *self, PyObject *arg)
{
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "token must be a str, got %.200s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    PyObject *bytes = PyUnicode_AsEncodedString(arg, "utf-8", "surrogateescape");
    if (bytes == NULL)
        return NULL;
    read_lock(self);
    int32_t id = pyllm_vocab_find(&pyllm_tokenizer_table(self->tok)->vocab, PyBytes_AS_STRING(bytes), (size_t)PyBytes_GET_SIZE(bytes));
    unlock(self);
    Py_DECREF(bytes);
    if (id < 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(id);
}

static PyObject *tokenizer_token_type(TokenizerObject *self, PyObject *arg)
{
    long id = PyLong_AsLong(arg);
    if (id == -1 && PyErr_Occurred())
        return NULL;
    read_lock(self);
    const int32_t n = pyllm_tokenizer_table(self->tok)->vocab.n_tokens;
    const int type = id >= 0 && id < n ? pyllm_tokenizer_table(self->tok)->types[id] : -1;
    unlock(self);
    if (type < 0) {
        PyErr_Format(PyExc_IndexError, "token id %ld is out of range [0, %d)", id, n);
        return NULL;
    }
    return PyLong_FromLong(type);
}

static PyObject *tokenizer_add_token(TokenizerObject *self, PyObject *args)
{
    PyObject *text, *id_obj;
    int special = 1;
    int64_t id;
    if (!PyArg_ParseTuple(args, "UO|p:add_token", &text, &id_obj, &special) ||
        pyllm_arg_int64(id_obj, "add_token's id", 0, INT32_MAX, &id) < 0)
        return NULL;
    Py_ssize_t len;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &len);
    if (utf8 == NULL)
        return NULL;
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    pthread_rwlock_wrlock(&self->guard);
    st = pyllm_tokenizer_add_token(self->tok, utf8, (size_t)len, (int32_t)id, special);
    unlock(self);
    Py_END_ALLOW_THREADS
    if (st != PYLLM_OK)
        return pyllm_raise(st);
    Py_RETURN_NONE;
}

/* append_token(text, special, flags) -> (id, fresh): transformers' add_tokens for one token, the
 * id chosen under the exclusive side so that threads adding at once never take the same id. */
static PyObject *tokenizer_append_token(TokenizerObject *self, PyObject *args)
{
    PyObject *text;
    int special, flags;
    if (!PyArg_ParseTuple(args, "Upi:append_token", &text, &special, &flags))
        return NULL;
    Py_ssize_t len;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &len);
    if (utf8 == NULL)
        return NULL;
    int32_t id = -1;
    int fresh = 0;
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    pthread_rwlock_wrlock(&self->guard);
    st = pyllm_tokenizer_append_token(self->tok, utf8, (size_t)len, special, flags, &id, &fresh);
    unlock(self);
    Py_END_ALLOW_THREADS
    if (st != PYLLM_OK)
        return pyllm_raise(st);
    return Py_BuildValue("(iO)", (int)id, fresh ? Py_True : Py_False);
}

/* Text argument as UTF-8 (None -> empty). */
static int optional_utf8(PyObject *obj, const char **s, Py_ssize_t *len)
{
    if (obj == Py_None) {
        *s = "";
        *len = 0;
        return 0;
    }
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "expected a str, got %.200s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    *s = PyUnicode_AsUTF8AndSize(obj, len);
    return *s == NULL ? -1 : 0;
}

/* UTF-8 of a str without the cached copy PyUnicode_AsUTF8AndSize keeps in every non-ASCII string
 * (750k allocations for a 250k vocabulary and its merges): ASCII is used in place, short strings
 * are encoded into buf (room for PYLLM_SCRATCH bytes), anything else falls back. */
#define PYLLM_SCRATCH 256
static const char *utf8_quick(PyObject *text, char *buf, Py_ssize_t *len)
{
    if (!PyUnicode_Check(text))
        return utf8_of(text, len);
    if (PyUnicode_IS_ASCII(text)) {
        *len = PyUnicode_GET_LENGTH(text);
        return (const char *)PyUnicode_DATA(text);
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (n <= PYLLM_SCRATCH / 4) {
        int kind = PyUnicode_KIND(text);
        const void *data = PyUnicode_DATA(text);
        size_t out = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 cp = PyUnicode_READ(kind, data, i);
            if (cp >= 0xD800 && cp <= 0xDFFF)
                return utf8_of(text, len); /* a lone surrogate: let Python raise */
            out += pyllm_utf8_encode(cp, buf + out);
        }
        *len = (Py_ssize_t)out;
        return buf;
    }
    return utf8_of(text, len);
}

/* hf_bpe_tokenizer(vocab, merges, steps, unk_id, byte_fallback, fuse_unk, ignore_merges):
 * vocab is a list of str by id, merges the JSON list by rank ("a b" or [a, b]), steps a list of
 * (stage, kind, s1, s2, is_regex, a, b) tuples (see csrc/tokenizers/tokenizer_json.h). */
static PyObject *from_hf_bpe(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *vocab, *merges, *steps;
    int unk_id, byte_fallback, fuse_unk, ignore_merges;
    if (!PyArg_ParseTuple(args, "O!O!O!ippp:hf_bpe_tokenizer", &PyList_Type, &vocab, &PyList_Type, &merges,
                          &PyList_Type, &steps, &unk_id, &byte_fallback, &fuse_unk, &ignore_merges))
        return NULL;
    pyllm_tokenizer *tok = NULL;
    if (PyList_GET_SIZE(vocab) > INT32_MAX / 2) {
        PyErr_Format(PyExc_ValueError, "a vocabulary of %zd tokens is too large", PyList_GET_SIZE(vocab));
        return NULL;
    }
    tok = pyllm_tokenizer_new(PYLLM_TOKENIZER_MERGES);
    if (tok == NULL)
        return pyllm_raise(PYLLM_ERR_MEMORY);
    pyllm_merges_tokenizer *m = &tok->as.merges;
    pyllm_status st = pyllm_merges_tokenizer_init(m, (int32_t)PyList_GET_SIZE(vocab), (size_t)PyList_GET_SIZE(merges));
    if (st != PYLLM_OK)
        goto fail_status;
    char buf_a[PYLLM_SCRATCH], buf_b[PYLLM_SCRATCH];
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(vocab); i++) {
        Py_ssize_t len;
        const char *s = utf8_quick(PyList_GET_ITEM(vocab, i), buf_a, &len);
        if (s == NULL)
            goto fail;
        if ((st = pyllm_merges_add_vocab(m, s, (size_t)len)) != PYLLM_OK)
            goto fail_status;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(merges); i++) {
        /* tokenizer.json writes a merge as "left right" (older files) or ["left", "right"] */
        PyObject *merge = PyList_GET_ITEM(merges, i);
        const char *a, *b;
        Py_ssize_t alen, blen;
        if (PyUnicode_Check(merge)) {
            Py_ssize_t len;
            a = utf8_quick(merge, buf_a, &len);
            if (a == NULL)
                goto fail;
            const char *space = memchr(a, ' ', (size_t)len);
            if (space == NULL || memchr(space + 1, ' ', (size_t)(a + len - space - 1)) != NULL) {
                PyErr_Format(PyExc_ValueError, "merge %zd %R is not two tokens separated by one space", i, merge);
                goto fail;
            }
            alen = space - a;
            b = space + 1;
            blen = len - alen - 1;
        } else if ((PyList_Check(merge) || PyTuple_Check(merge)) && PySequence_Fast_GET_SIZE(merge) == 2) {
            a = utf8_quick(PySequence_Fast_GET_ITEM(merge, 0), buf_a, &alen);
            b = a == NULL ? NULL : utf8_quick(PySequence_Fast_GET_ITEM(merge, 1), buf_b, &blen);
            if (b == NULL)
                goto fail;
        } else {
            PyErr_Format(PyExc_ValueError, "merge %zd must be \"left right\" or [left, right], got %R", i, merge);
            goto fail;
        }
        if ((st = pyllm_merges_add_merge(m, a, (size_t)alen, b, (size_t)blen)) != PYLLM_OK)
            goto fail_status;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(steps); i++) {
        int stage, kind, is_regex, a, b;
        PyObject *o1, *o2;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(steps, i), "iiOOpii:pipeline step", &stage, &kind, &o1, &o2, &is_regex,
                              &a, &b))
            goto fail;
        const char *s1, *s2;
        Py_ssize_t len1, len2;
        if (optional_utf8(o1, &s1, &len1) < 0 || optional_utf8(o2, &s2, &len2) < 0)
            goto fail;
        st = pyllm_merges_add_step(m, stage, kind, s1, (size_t)len1, s2, (size_t)len2, is_regex, a, b);
        if (st != PYLLM_OK)
            goto fail_status;
    }
    if ((st = pyllm_merges_finish(m, unk_id, byte_fallback, fuse_unk, ignore_merges)) != PYLLM_OK)
        goto fail_status;
    return wrap(tok);
fail_status:
    pyllm_raise(st);
fail:
    pyllm_tokenizer_free(tok);
    return NULL;
}

/* sentencepiece_from_pieces(tokens, scores, types, add_dummy_prefix, remove_extra_whitespaces, what):
 * a SentencePiece-BPE tokenizer from arrays (a GGUF vocabulary): tokens a list of str, scores a
 * float32 buffer and types an int32 buffer of the same length. */
static PyObject *from_pieces(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *tokens;
    Py_buffer scores = {0}, types = {0};
    int add_dummy_prefix, remove_extra_whitespaces;
    const char *what;
    if (!PyArg_ParseTuple(args, "O!y*y*pps:sentencepiece_from_pieces", &PyList_Type, &tokens, &scores, &types,
                          &add_dummy_prefix, &remove_extra_whitespaces, &what))
        return NULL;
    const Py_ssize_t n = PyList_GET_SIZE(tokens);
    pyllm_bytes blob = {0};
    size_t *starts = NULL, *lengths = NULL;
    const char **texts = NULL;
    pyllm_tokenizer *tok = NULL;
    PyObject *result = NULL;
    if (n > INT32_MAX / 2 || (size_t)scores.len != (size_t)n * sizeof(float) ||
        (size_t)types.len != (size_t)n * sizeof(int32_t)) {
        PyErr_Format(PyExc_ValueError, "%s: %zd tokens need %zd float32 scores and int32 types, got %zd and %zd bytes",
                     what, n, n, n, scores.len, types.len);
        goto done;
    }
    starts = PyMem_Malloc(sizeof(size_t) * (size_t)(n + 1));
    lengths = PyMem_Malloc(sizeof(size_t) * (size_t)(n + 1));
    texts = PyMem_Malloc(sizeof(char *) * (size_t)(n + 1));
    if (starts == NULL || lengths == NULL || texts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* every token's UTF-8 in one buffer: pointers into it stay valid once it is complete */
    char buf[PYLLM_SCRATCH];
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t len;
        const char *s = utf8_quick(PyList_GET_ITEM(tokens, i), buf, &len);
        if (s == NULL)
            goto done;
        starts[i] = blob.len;
        lengths[i] = (size_t)len;
        if (pyllm_bytes_append(&blob, s, (size_t)len) != PYLLM_OK) {
            pyllm_raise(PYLLM_ERR_MEMORY);
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++)
        texts[i] = blob.data + starts[i];
    tok = pyllm_tokenizer_new(PYLLM_TOKENIZER_SENTENCEPIECE);
    if (tok == NULL) {
        pyllm_raise(PYLLM_ERR_MEMORY);
        goto done;
    }
    pyllm_spm_options options = {.add_dummy_prefix = add_dummy_prefix,
                                 .remove_extra_whitespaces = remove_extra_whitespaces};
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pyllm_spm_tokenizer_from_pieces(&tok->as.spm, texts, lengths, scores.buf, types.buf, (int32_t)n, &options,
                                         what);
    Py_END_ALLOW_THREADS
    if (st != PYLLM_OK) {
        pyllm_raise(st);
        goto done;
    }
    result = wrap(tok);
    tok = NULL;
done:
    pyllm_tokenizer_free(tok);
    pyllm_bytes_free(&blob);
    PyMem_Free(starts);
    PyMem_Free(lengths);
    PyMem_Free(texts);
    PyBuffer_Release(&scores);
    PyBuffer_Release(&types);
    return result;
}

static PyObject *tokenizer_set_added_flags(TokenizerObject *self, PyObject *args)
{
    int id, flags;
    if (!PyArg_ParseTuple(args, "ii:set_added_flags", &id, &flags))
        return NULL;
    if (self->tok->kind != PYLLM_TOKENIZER_MERGES) {
        PyErr_SetString(PyExc_TypeError, "added-token flags apply to merges-BPE (tokenizer.json) tokenizers only");
        return NULL;
    }
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    pthread_rwlock_wrlock(&self->guard);
    st = pyllm_merges_set_added_flags(&self->tok->as.merges, id, flags);
    unlock(self);
    Py_END_ALLOW_THREADS
    if (st != PYLLM_OK)
        return pyllm_raise(st);
    Py_RETURN_NONE;
}

static PyObject *tokenizer_pre_tokenize(TokenizerObject *self, PyObject *arg)
{
    if (self->tok->kind != PYLLM_TOKENIZER_MERGES) {
        PyErr_SetString(PyExc_TypeError, "pre_tokenize applies to merges-BPE (tokenizer.json) tokenizers only");
        return NULL;
    }
    Py_ssize_t len;
    const char *utf8 = utf8_of(arg, &len);
    if (utf8 == NULL)
        return NULL;
    pyllm_pieces pieces = {0};
    pyllm_status st;
    Py_BEGIN_ALLOW_THREADS
    pthread_rwlock_rdlock(&self->guard);
    st = pyllm_merges_pre_tokenize(&self->tok->as.merges, utf8, (size_t)len, &pieces);
    unlock(self);
    Py_END_ALLOW_THREADS
    PyObject *result = st == PYLLM_OK ? PyList_New((Py_ssize_t)pieces.n) : pyllm_raise(st);
    for (size_t i = 0; result != NULL && i < pieces.n; i++) {
        PyObject *piece = PyUnicode_DecodeUTF8(pieces.text.data + pieces.start[i],
                                               (Py_ssize_t)(pieces.end[i] - pieces.start[i]), "surrogateescape");
        if (piece == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)i, piece);
    }
    pyllm_pieces_free(&pieces);
    return result;
}

static PyObject *optional_id(int32_t id)
{
    if (id < 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(id);
}

/* A field of the token table, read under the lock. */
enum { FIELD_VOCAB_SIZE, FIELD_UNK, FIELD_BOS, FIELD_EOS, FIELD_PAD, FIELD_BYTE_FALLBACK, FIELD_SPLIT_DIGITS };

static int32_t table_field(TokenizerObject *self, int field)
{
    read_lock(self);
    const pyllm_token_table *t = pyllm_tokenizer_table(self->tok);
    int32_t v = field == FIELD_VOCAB_SIZE ? t->vocab.n_tokens
              : field == FIELD_UNK ? t->unk_id
              : field == FIELD_BOS ? t->bos_id
              : field == FIELD_EOS ? t->eos_id
              : field == FIELD_PAD ? t->pad_id
              : field == FIELD_BYTE_FALLBACK ? t->byte_fallback
              : self->tok->kind == PYLLM_TOKENIZER_SENTENCEPIECE && self->tok->as.spm.split_digits;
    unlock(self);
    return v;
}

static PyObject *get_vocab_size(TokenizerObject *self, void *c)
{
    (void)c;
    return PyLong_FromLong(table_field(self, FIELD_VOCAB_SIZE));
}
static PyObject *get_unk_id(TokenizerObject *self, void *c)
{
    (void)c;
    return optional_id(table_field(self, FIELD_UNK));
}
static PyObject *get_bos_id(TokenizerObject *self, void *c)
{
    (void)c;
    return optional_id(table_field(self, FIELD_BOS));
}
static PyObject *get_eos_id(TokenizerObject *self, void *c)
{
    (void)c;
    return optional_id(table_field(self, FIELD_EOS));
}
static PyObject *get_pad_id(TokenizerObject *self, void *c)
{
    (void)c;
    return optional_id(table_field(self, FIELD_PAD));
}
static PyObject *get_byte_fallback(TokenizerObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(table_field(self, FIELD_BYTE_FALLBACK));
}
static PyObject *get_split_digits(TokenizerObject *self, void *c)
{
    (void)c;
    return PyBool_FromLong(table_field(self, FIELD_SPLIT_DIGITS));
}

static PyObject *get_kind(TokenizerObject *self, void *c)
{
    (void)c;
    return PyUnicode_FromString(self->tok->kind == PYLLM_TOKENIZER_SENTENCEPIECE ? "sentencepiece" : "merges");
}

static PyGetSetDef tokenizer_getset[] = {
    {"kind", (getter)get_kind, NULL, "The algorithm: 'sentencepiece' (scored pieces) or 'merges' (ranked merges).",
     NULL},
    {"vocab_size", (getter)get_vocab_size, NULL, "Number of token ids (pieces plus added tokens).", NULL},
    {"unk_id", (getter)get_unk_id, NULL, "Id of the unknown piece.", NULL},
    {"bos_id", (getter)get_bos_id, NULL, "Id of the BOS control piece, or None.", NULL},
    {"eos_id", (getter)get_eos_id, NULL, "Id of the EOS control piece, or None.", NULL},
    {"pad_id", (getter)get_pad_id, NULL, "Id of the PAD control piece, or None.", NULL},
    {"byte_fallback", (getter)get_byte_fallback, NULL, "Whether unknown characters become byte pieces.", NULL},
    {"split_digits", (getter)get_split_digits, NULL, "Whether the model was trained with split_digits.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef tokenizer_methods[] = {
    {"encode", (PyCFunction)tokenizer_encode, METH_VARARGS,
     "encode(text, split_special_tokens=True, prefix_after_special=True) -> list[int]: ids of text (no BOS/EOS "
     "added). prefix_after_special=False: stretches after a special token get no dummy prefix."},
    {"encode_batch", (PyCFunction)tokenizer_encode_batch, METH_VARARGS,
     "encode_batch(texts, split_special_tokens=True, prefix_after_special=True) -> list[list[int]]."},
    {"decode", (PyCFunction)tokenizer_decode, METH_VARARGS,
     "decode(ids, skip_special_tokens=False) -> str."},
    {"id_to_token", (PyCFunction)tokenizer_id_to_token, METH_O, "The piece of a token id."},
    {"token_to_id", (PyCFunction)tokenizer_token_to_id, METH_O, "The id of a piece, or None."},
    {"token_type", (PyCFunction)tokenizer_token_type, METH_O,
     "SentencePiece type of a token: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte."},
    {"add_token", (PyCFunction)tokenizer_add_token, METH_VARARGS,
     "add_token(text, id, special=True): split text out of inputs as this id (an existing piece or the next "
     "id); special tokens are skipped by decode(skip_special_tokens=True)."},
    {"append_token", (PyCFunction)tokenizer_append_token, METH_VARARGS,
     "append_token(text, special, flags) -> (id, fresh): make text an added token unless it is one already "
     "(fresh False); its id is its vocabulary id or the next free one. flags: lstrip 1 / rstrip 2 / single_word 4 "
     "(tokenizer.json only)."},
    {"pre_tokenize", (PyCFunction)tokenizer_pre_tokenize, METH_O,
     "pre_tokenize(text) -> list[str]: the pieces the normalizers and pre-tokenizers of a tokenizer.json make "
     "(byte-level pieces not yet mapped to their characters)."},
    {"set_added_flags", (PyCFunction)tokenizer_set_added_flags, METH_VARARGS,
     "set_added_flags(id, flags): lstrip 1 / rstrip 2 / single_word 4 of an added token (tokenizer.json)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TokenizerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyllm._core.Tokenizer",
    .tp_basicsize = sizeof(TokenizerObject),
    .tp_dealloc = (destructor)tokenizer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A tokenizer in C, SentencePiece BPE or merges BPE (kind). Build it with sentencepiece_from_bytes(), "
              "sentencepiece_from_llama2c(), sentencepiece_from_pieces() or hf_bpe_tokenizer().",
    .tp_methods = tokenizer_methods,
    .tp_getset = tokenizer_getset,
};

static PyMethodDef module_functions[] = {
    {"sentencepiece_from_bytes", from_sentencepiece, METH_O,
     "sentencepiece_from_bytes(data) -> Tokenizer from the bytes of a tokenizer.model."},
    {"sentencepiece_from_llama2c", from_llama2c, METH_VARARGS,
     "sentencepiece_from_llama2c(data, vocab_size) -> Tokenizer from a llama2.c tokenizer file."},
    {"sentencepiece_from_pieces", from_pieces, METH_VARARGS,
     "sentencepiece_from_pieces(tokens, scores, types, add_dummy_prefix, remove_extra_whitespaces, what) -> "
     "Tokenizer from arrays (a GGUF vocabulary; use pyllm.Tokenizer.from_pretrained)."},
    {"hf_bpe_tokenizer", from_hf_bpe, METH_VARARGS,
     "hf_bpe_tokenizer(vocab, merges, steps, unk_id, byte_fallback, fuse_unk, ignore_merges) -> a tokenizer.json "
     "BPE tokenizer (use pyllm.Tokenizer.from_file)."},
    {NULL, NULL, 0, NULL},
};

int pyllm_register_tokenizer(PyObject *module)
{
    if (PyType_Ready(&TokenizerType) < 0)
        return -1;
    Py_INCREF(&TokenizerType);
    if (PyModule_AddObject(module, "Tokenizer", (PyObject *)&TokenizerType) < 0) {
        Py_DECREF(&TokenizerType);
        return -1;
    }
    return PyModule_AddFunctions(module, module_functions);
}

const pyllm_tokenizer *pyllm_py_tokenizer_of(PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, &TokenizerType)) {
        PyErr_Format(PyExc_TypeError, "expected a pyllm._core.Tokenizer, got %s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return ((TokenizerObject *)obj)->tok;
}

void pyllm_py_tokenizer_read_lock(PyObject *obj) { read_lock((TokenizerObject *)obj); }

void pyllm_py_tokenizer_unlock(PyObject *obj) { unlock((TokenizerObject *)obj); }
