/* Thread count shared by our own OpenMP loops and oneDNN (the gomp build uses the same
 * OpenMP runtime, so one setting governs both). */
#ifndef PYLLM_CORE_THREADS_H
#define PYLLM_CORE_THREADS_H

int pyllm_get_num_threads(void);
void pyllm_set_num_threads(int n);

#endif
