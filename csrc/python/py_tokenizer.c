/* Placeholder until the tokenizer binding lands. */
#include "python/common.h"

int pyllm_register_tokenizer(PyObject *module)
{
    (void)module;
    return 0;
}
