/* Integer arguments from Python, converted with their name in every error: a PyLong that does
 * not fit its C type raises OverflowError or ValueError naming the argument, its value and the
 * range, never wraps (py_args.c). */
#ifndef PYLLM_PYTHON_PY_ARGS_H
#define PYLLM_PYTHON_PY_ARGS_H

#include "python/common.h"

#include <stdint.h>

/* Threads one call may ask for (n_threads, set_num_threads): far above any CPU, far below what
 * would exhaust a process's thread stacks. pyllm.limits.MAX_THREADS is this (_core.MAX_THREADS). */
#define PYLLM_MAX_THREADS 4096

/* obj (an int) as an int64_t in [lo, hi]; 0, or -1 with TypeError (not an int), OverflowError
 * (beyond int64) or ValueError (outside [lo, hi]) naming `name`. A NULL obj leaves *out as it is. */
int pyllm_arg_int64(PyObject *obj, const char *name, int64_t lo, int64_t hi, int64_t *out);

#endif
