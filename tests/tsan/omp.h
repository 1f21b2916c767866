/* The OpenMP calls the C core makes, for the ThreadSanitizer build only (.ci/tsan.sh): clang has
 * no omp.h without its own OpenMP runtime and gcc's uses attributes clang rejects. The core is
 * compiled here without -fopenmp (its pragmas are ignored: one thread) and these resolve to
 * libgomp, the runtime libdnnl uses too. */
#ifndef PYLLM_TSAN_OMP_H
#define PYLLM_TSAN_OMP_H

int omp_get_max_threads(void);
int omp_get_num_threads(void);
int omp_get_thread_num(void);
void omp_set_num_threads(int n);

#endif
