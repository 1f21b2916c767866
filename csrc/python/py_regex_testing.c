/* Test-only entry point (pyllm._core._testing.regex_find_all): the tokenizer regex engine run on
 * raw bytes, pattern and subject, the way a Split step runs it. Python's str always reaches the
 * engine as well-formed UTF-8, so malformed subjects (which the engine reads one byte at a time,
 * and the fuzz harness feeds it) can only be tested through here. */
#include "python/common.h"

#include "tokenizers/regex.h"
#include "tokenizers/utf8.h"

static PyObject *regex_find_all(PyObject *module, PyObject *args)
{
    (void)module;
    const char *pattern, *subject;
    Py_ssize_t pattern_len, subject_len;
    if (!PyArg_ParseTuple(args, "y#y#:regex_find_all", &pattern, &pattern_len, &subject, &subject_len))
        return NULL;
    pyllm_regex *re = NULL;
    pyllm_status st = pyllm_regex_compile(pattern, (size_t)pattern_len, &re);
    if (st != PYLLM_OK)
        return pyllm_raise(st);
    PyObject *out = PyList_New(0);
    size_t from = 0, len = (size_t)subject_len, start, end;
    pyllm_regex_budget budget = {0, pyllm_regex_budget_for(re, len)}; /* one per subject, as Split has */
    while (out != NULL && from <= len && pyllm_regex_find_counted(re, subject, len, from, &start, &end, &budget) > 0) {
        PyObject *span = Py_BuildValue("(nn)", (Py_ssize_t)start, (Py_ssize_t)end);
        if (span == NULL || PyList_Append(out, span) < 0)
            Py_CLEAR(out);
        Py_XDECREF(span);
        if (end > start) {
            from = end;
        } else if (start == len) {
            break;
        } else { /* an empty match: one character further, as Split goes */
            uint32_t cp;
            from = start + pyllm_utf8_decode_lossy(subject + start, len - start, &cp);
        }
    }
    pyllm_regex_free(re);
    return out;
}

static PyMethodDef methods[] = {
    {"regex_find_all", regex_find_all, METH_VARARGS,
     "regex_find_all(pattern: bytes, subject: bytes) -> [(start, end)]: the matches a Split step finds."},
    {NULL, NULL, 0, NULL},
};

int pyllm_register_regex_testing(PyObject *module) { return PyModule_AddFunctions(module, methods); }
