/* Scoring tokens against logits: the log-probability of each target token under the softmax
 * of its row, and whether it is the row's greedy choice (what lm-evaluation-harness calls
 * `is_greedy`). */
#ifndef PYLLM_MODELS_SCORING_H
#define PYLLM_MODELS_SCORING_H

#include <stdint.h>

#include "core/error.h"

/* logits[rows, vocab] (f32) and targets[rows] in [0, vocab): logprob[r] = log_softmax(logits[r])[target]
 * with the normaliser accumulated in double; greedy[r] = 1 when target is the first arg-max of
 * the row (torch's argmax picks the first of equal maxima). */
pyllm_status pyllm_score_tokens(const float *logits, int64_t rows, int64_t vocab, const int32_t *targets,
                                double *logprob, uint8_t *greedy);

#endif
