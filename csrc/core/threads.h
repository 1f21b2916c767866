/* Thread count shared by our own parallel loops (the worker pool's jobs, core/pool.h, and
 * prefill's remaining OpenMP loops) and oneDNN: OpenMP's setting (omp_set_num_threads) is the
 * one that governs all of them. */
#ifndef PYLLM_CORE_THREADS_H
#define PYLLM_CORE_THREADS_H

#include <omp.h>
#include <stdint.h>

int pyllm_get_num_threads(void);
void pyllm_set_num_threads(int n);

/* Whether a loop of ours should run on several threads (a pool job, core/pool.h, or an OpenMP
 * region in prefill's remaining ones): only when it is big enough (`big`) and more than one
 * thread may run. libgomp allocates and frees a team for every region that runs on one thread,
 * an `if (0)` clause included, which would put a malloc into every decode step; so small loops
 * run plainly. */
static inline int pyllm_parallel(int big)
{
    return big && omp_get_max_threads() > 1;
}

/* Thread t's even, contiguous share [*begin, *end) of n rows among `threads`, in whole units of
 * `unit` rows (a kernel's tile), possibly empty. */
static inline void pyllm_share_of(int64_t n, int64_t unit, int64_t t, int64_t threads, int64_t *begin, int64_t *end)
{
    const int64_t units = (n + unit - 1) / unit;
    const int64_t u0 = units * t / threads, u1 = units * (t + 1) / threads;
    *begin = u0 * unit;
    *end = u1 * unit < n ? u1 * unit : n;
}

/* Tests only (_testing.set_claim_rows): rows per claim of every product that shares its rows out
 * as the threads go (core/row_claims.h) instead of its own choice, so that the stealing runs
 * often; 0 restores the products' choice. */
void pyllm_set_claim_rows(int64_t rows);
int64_t pyllm_claim_rows_override(void);

#endif
