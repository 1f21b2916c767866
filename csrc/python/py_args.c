/* Integer arguments from Python, named in every error (py_args.h). PyArg_Parse's own "i", "L" and
 * "n" formats raise "signed integer is greater than maximum" or "int too big to convert" without
 * saying which argument, and a cast after them can wrap: the binding converts through here. */
#include "python/py_args.h"

int pyllm_arg_int64(PyObject *obj, const char *name, int64_t lo, int64_t hi, int64_t *out)
{
    if (obj == NULL)
        return 0;
    /* NumPy integers and other __index__ types are ints too; bools are not counts. */
    if (PyBool_Check(obj) || !PyIndex_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, got %.200s", name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyObject *index = PyNumber_Index(obj);
    if (index == NULL)
        return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(index);
        return -1;
    }
    if (overflow) {
        PyErr_Format(PyExc_OverflowError, "%s is %R, outside [%lld, %lld]", name, index,
                     (long long)lo, (long long)hi);
        Py_DECREF(index);
        return -1;
    }
    Py_DECREF(index);
    if (v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "%s is %lld, outside [%lld, %lld]", name, v, (long long)lo, (long long)hi);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}
