#include "python/common.h"

PyObject *pyllm_raise(pyllm_status status)
{
    PyObject *type;
    switch (status) {
    case PYLLM_ERR_VALUE: type = PyExc_ValueError; break;
    case PYLLM_ERR_TYPE: type = PyExc_TypeError; break;
    case PYLLM_ERR_INDEX: type = PyExc_IndexError; break;
    case PYLLM_ERR_MEMORY: type = PyExc_MemoryError; break;
    case PYLLM_ERR_IO: type = PyExc_OSError; break;
    case PYLLM_ERR_NOT_FOUND: type = PyExc_FileNotFoundError; break;
    case PYLLM_ERR_INTERRUPTED: type = PyExc_KeyboardInterrupt; break;
    default: type = PyExc_RuntimeError; break;
    }
    const char *msg = pyllm_error_message();
    PyErr_SetString(type, msg[0] ? msg : "internal error in pyllm's C core");
    pyllm_error_clear();
    return NULL;
}
