/* Test-only entry points (pyllm._core._testing) that report the work the tokenizers do, so tests
 * can prove it grows linearly with the text by counting it rather than timing it. They hold the
 * GIL throughout: nothing else can change the tokenizer meanwhile. */
#include "python/common.h"

#include <string.h>

#include "tokenizers/pretokenizer.h"
#include "tokenizers/regex.h"
#include "tokenizers/tokenizer.h"
#include "tokenizers/utf8.h"

static const char *utf8_text(PyObject *text, Py_ssize_t *len)
{
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "text must be str, got %s", Py_TYPE(text)->tp_name);
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(text, len);
}

/* {"name": count, ...} from pairs ending in a NULL name. */
static PyObject *counts_dict(const char *const *names, const uint64_t *values)
{
    PyObject *d = PyDict_New();
    for (size_t i = 0; d != NULL && names[i] != NULL; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(values[i]);
        if (v == NULL || PyDict_SetItemString(d, names[i], v) < 0) {
            Py_XDECREF(v);
            Py_CLEAR(d);
            break;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyObject *tokenizer_work(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *obj, *text;
    int split_specials = 1;
    if (!PyArg_ParseTuple(args, "OO|p:tokenizer_work", &obj, &text, &split_specials))
        return NULL;
    const pyllm_tokenizer *tok = pyllm_py_tokenizer_of(obj);
    Py_ssize_t len;
    const char *utf8 = tok != NULL ? utf8_text(text, &len) : NULL;
    if (utf8 == NULL)
        return NULL;
    pyllm_ids ids = {0};
    pyllm_tok_work work = {0};
    pyllm_py_tokenizer_read_lock(obj);
    pyllm_status st = pyllm_tokenizer_encode_counted(tok, utf8, (size_t)len,
                                                     split_specials ? PYLLM_ENCODE_SPLIT_SPECIALS : 0, &ids, &work);
    pyllm_py_tokenizer_unlock(obj);
    size_t n_ids = ids.len;
    pyllm_ids_free(&ids);
    if (st != PYLLM_OK)
        return pyllm_raise(st);
    static const char *const names[] = {"ids", "regex_steps", "bpe_steps", "special_steps", "normalizer_steps",
                                        "pre_tokenizer_steps", "pieces", NULL};
    const uint64_t values[] = {n_ids, work.regex_steps, work.bpe_steps, work.special_steps, work.normalizer_steps,
                               work.pre_tokenizer_steps, work.pieces};
    return counts_dict(names, values);
}

/* Every match of a pattern over a text, found as a Split step finds them, with one budget. */
static PyObject *regex_work(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *pattern, *text;
    if (!PyArg_ParseTuple(args, "UU:regex_work", &pattern, &text))
        return NULL;
    Py_ssize_t plen, len;
    const char *p = utf8_text(pattern, &plen);
    const char *t = p != NULL ? utf8_text(text, &len) : NULL;
    if (t == NULL)
        return NULL;
    pyllm_regex *re;
    pyllm_status st = pyllm_regex_compile(p, (size_t)plen, &re);
    if (st != PYLLM_OK)
        return pyllm_raise(st);
    pyllm_regex_budget budget = {0, pyllm_regex_budget_for(re, (size_t)len)};
    uint64_t matches = 0, matched_bytes = 0;
    size_t from = 0, ms, me;
    int found;
    while (from <= (size_t)len && (found = pyllm_regex_find_counted(re, t, (size_t)len, from, &ms, &me, &budget)) > 0) {
        matches++;
        matched_bytes += me - ms;
        from = me > ms ? me : ms + (ms < (size_t)len ? pyllm_utf8_char_len(t + ms, (size_t)len - ms) : 1);
    }
    pyllm_regex_free(re);
    if (found < 0) {
        PyErr_Format(PyExc_ValueError, "regex budget of %llu steps exhausted", (unsigned long long)budget.limit);
        return NULL;
    }
    static const char *const names[] = {"matches", "matched_bytes", "steps", "limit", NULL};
    const uint64_t values[] = {matches, matched_bytes, budget.steps, budget.limit};
    return counts_dict(names, values);
}

static PyMethodDef functions[] = {
    {"tokenizer_work", tokenizer_work, METH_VARARGS,
     "tokenizer_work(core_tokenizer, text, split_specials=True) -> {count name: count} of one encode call: "
     "ids, regex_steps, bpe_steps, special_steps, normalizer_steps, pre_tokenizer_steps, pieces."},
    {"regex_work", regex_work, METH_VARARGS,
     "regex_work(pattern, text) -> {matches, matched_bytes, steps, limit} of every match of pattern in text; "
     "ValueError when the step budget runs out."},
    {NULL, NULL, 0, NULL},
};

int pyllm_register_tokenizer_work(PyObject *module)
{
    return PyModule_AddFunctions(module, functions);
}
