/* Placeholder until the sampling binding lands. */
#include "python/common.h"

int pyllm_register_sampling(PyObject *module)
{
    (void)module;
    return 0;
}
