/* A serial stand-in for <omp.h> in the fuzz builds: clang here has no OpenMP runtime of its own
 * (and gcc's omp.h does not parse under clang), and a second runtime next to oneDNN's libgomp is
 * not wanted. Without -fopenmp the parallel pragmas are ignored, so the C core runs on one thread
 * and these calls answer accordingly. */
#ifndef PYLLM_FUZZ_OMP_H
#define PYLLM_FUZZ_OMP_H

static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
static inline void omp_set_num_threads(int n) { (void)n; }

#endif
