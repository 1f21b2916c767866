#include "ops/dnnl_status.h"

pyllm_status pyllm_dnnl_fail(dnnl_status_t st, const char *what)
{
    return pyllm_error(PYLLM_ERR_RUNTIME, "oneDNN failed to %s (dnnl_status %d)", what, (int)st);
}
