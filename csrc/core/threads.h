/* Thread count shared by our own OpenMP loops and oneDNN (the gomp build uses the same
 * OpenMP runtime, so one setting governs both). */
#ifndef PYLLM_CORE_THREADS_H
#define PYLLM_CORE_THREADS_H

#include <omp.h>

int pyllm_get_num_threads(void);
void pyllm_set_num_threads(int n);

/* Whether a loop of ours should open an OpenMP parallel region: only when it is big enough
 * (`big`) and more than one thread may run. libgomp allocates and frees a team for every region
 * that runs on one thread, an `if (0)` clause included, which would put a malloc into every
 * decode step; so small loops run plainly, outside OpenMP. */
static inline int pyllm_parallel(int big)
{
    return big && omp_get_max_threads() > 1;
}

#endif
