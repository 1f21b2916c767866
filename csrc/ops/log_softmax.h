/* Log-softmax of a row of scores: pyllm's one implementation, used by scoring (log-likelihoods)
 * and by generation (log-probabilities of the chosen tokens). */
#ifndef PYLLM_OPS_LOG_SOFTMAX_H
#define PYLLM_OPS_LOG_SOFTMAX_H

#include <stdint.h>

/* log(sum(exp(x[0..n)))), shifted by the row's maximum so exp never overflows and summed in
 * double for long vocabularies; NaN entries are skipped, -inf for a row with nothing above -inf. */
double pyllm_log_sum_exp(const float *x, int64_t n);

/* out[i] = x[i] - log_sum_exp(x) (-inf stays -inf); out may be x. */
void pyllm_log_softmax(const float *x, int64_t n, float *out);

#endif
