/* The NumPy arrays the binding returns, made through the fault switch (core/faults.h) as
 * allocations: tests can then make any of them fail and check the binding frees what it held. */
#include "python/common.h"

#include "core/faults.h"

PyObject *pyllm_new_array(int ndim, npy_intp *dims, int type, int zeroed)
{
    if (pyllm_fault_hit(PYLLM_FAULT_ALLOC))
        return PyErr_Format(PyExc_MemoryError, "cannot allocate a %d-dimensional array", ndim);
    return zeroed ? PyArray_ZEROS(ndim, dims, type, 0) : PyArray_SimpleNew(ndim, dims, type);
}
