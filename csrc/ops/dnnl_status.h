/* oneDNN status codes turned into pyllm errors, for every file that calls oneDNN. */
#ifndef PYLLM_OPS_DNNL_STATUS_H
#define PYLLM_OPS_DNNL_STATUS_H

#include <oneapi/dnnl/dnnl.h>

#include "core/error.h"
#include "core/faults.h"

/* A RuntimeError saying which oneDNN step failed and its status (a MemoryError when oneDNN ran
 * out of memory). */
pyllm_status pyllm_dnnl_fail(dnnl_status_t st, const char *what);

/* Every oneDNN call that returns a status goes through this (destroy calls aside), so the fault
 * switch (core/faults.h) can make it fail as oneDNN does when memory runs out: the call is not
 * made and its outputs are left as they were. */
#define PYLLM_DNNL(call) (pyllm_fault_hit(PYLLM_FAULT_DNNL) ? dnnl_out_of_memory : (call))

/* Return from the calling function when a oneDNN call fails. */
#define DNNL_TRY(call, what)                            \
    do {                                                \
        dnnl_status_t dnnl_st_ = PYLLM_DNNL(call);      \
        if (dnnl_st_ != dnnl_success)                   \
            return pyllm_dnnl_fail(dnnl_st_, (what));   \
    } while (0)

#endif
