/* Shared by every file of the Python binding: Python and NumPy headers set up for one
 * extension module spread over several translation units, the error bridge, and the
 * registration hook each binding file provides. */
#ifndef PYLLM_PYTHON_COMMON_H
#define PYLLM_PYTHON_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL pyllm_ARRAY_API
#ifndef PYLLM_IMPORT_ARRAY_HERE
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include "core/error.h"

/* Raise the Python exception matching a core status, with the recorded message; returns NULL. */
PyObject *pyllm_raise(pyllm_status status);

/* A new C-ordered array of `type` (zero-filled when asked), counted as an allocation by the
 * fault switch; NULL with MemoryError on failure (py_arrays.c). */
PyObject *pyllm_new_array(int ndim, npy_intp *dims, int type, int zeroed);

/* Each binding file adds its types and functions to the module; 0 on success, -1 with an
 * exception set. */
int pyllm_register_tokenizer(PyObject *module);
int pyllm_register_model(PyObject *module);
int pyllm_register_sampling(PyObject *module);
int pyllm_register_scoring(PyObject *module);
int pyllm_register_processors(PyObject *module);
int pyllm_register_quant(PyObject *module);
int pyllm_register_gguf(PyObject *module);
int pyllm_register_memory(PyObject *module);
int pyllm_register_threads_testing(PyObject *module);
int pyllm_register_faults(PyObject *module); /* into pyllm._core._testing */
int pyllm_register_tokenizer_work(PyObject *module);

/* The C tokenizer of a pyllm._core.Tokenizer (borrowed), for the test-only entry points; NULL with a
 * TypeError for any other object. */
struct pyllm_tokenizer;
const struct pyllm_tokenizer *pyllm_py_tokenizer_of(PyObject *obj);
/* Its shared side (py_tokenizer.c), held around any reading of it: add_token may change it
 * meanwhile from a thread without the GIL. Never taken twice by one thread. */
void pyllm_py_tokenizer_read_lock(PyObject *obj);
void pyllm_py_tokenizer_unlock(PyObject *obj);
int pyllm_register_regex_testing(PyObject *module);

#endif
