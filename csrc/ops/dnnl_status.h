/* oneDNN status codes turned into pyllm errors, for every file that calls oneDNN. */
#ifndef PYLLM_OPS_DNNL_STATUS_H
#define PYLLM_OPS_DNNL_STATUS_H

#include <oneapi/dnnl/dnnl.h>

#include "core/error.h"

/* A RuntimeError saying which oneDNN step failed and its status. */
pyllm_status pyllm_dnnl_fail(dnnl_status_t st, const char *what);

/* Return from the calling function when a oneDNN call fails. */
#define DNNL_TRY(call, what)                            \
    do {                                                \
        dnnl_status_t dnnl_st_ = (call);                \
        if (dnnl_st_ != dnnl_success)                   \
            return pyllm_dnnl_fail(dnnl_st_, (what));   \
    } while (0)

#endif
