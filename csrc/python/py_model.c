/* Placeholder until the model binding lands. */
#include "python/common.h"

int pyllm_register_model(PyObject *module)
{
    (void)module;
    return 0;
}
