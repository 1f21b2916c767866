#include "ops/dnnl_status.h"

pyllm_status pyllm_dnnl_fail(dnnl_status_t st, const char *what)
{
    const pyllm_status code = st == dnnl_out_of_memory ? PYLLM_ERR_MEMORY : PYLLM_ERR_RUNTIME;
    return pyllm_error(code, "oneDNN failed to %s (dnnl_status %d%s)", what, (int)st,
                       st == dnnl_out_of_memory ? ": out of memory" : "");
}
