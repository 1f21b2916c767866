#include "core/threads.h"

#include <omp.h>
#include <stdatomic.h>

int pyllm_get_num_threads(void) { return omp_get_max_threads(); }

static _Atomic int64_t claim_rows; /* 0: each product's own chunk */

void pyllm_set_claim_rows(int64_t rows)
{
    atomic_store_explicit(&claim_rows, rows > 0 ? rows : 0, memory_order_relaxed);
}

int64_t pyllm_claim_rows_override(void) { return atomic_load_explicit(&claim_rows, memory_order_relaxed); }

void pyllm_set_num_threads(int n)
{
    if (n > 0)
        omp_set_num_threads(n);
}
