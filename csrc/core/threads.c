#include "core/threads.h"

#include <omp.h>

int pyllm_get_num_threads(void) { return omp_get_max_threads(); }

void pyllm_set_num_threads(int n)
{
    if (n > 0)
        omp_set_num_threads(n);
}
