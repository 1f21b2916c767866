#include "models/scoring.h"

#include "ops/log_softmax.h"

pyllm_status pyllm_score_tokens(const float *logits, int64_t rows, int64_t vocab, const int32_t *targets,
                                double *logprob, uint8_t *greedy)
{
    if (rows < 0 || vocab <= 0)
        return pyllm_error(PYLLM_ERR_VALUE, "scoring needs rows >= 0 and vocab > 0, got %lld and %lld",
                           (long long)rows, (long long)vocab);
    for (int64_t r = 0; r < rows; r++)
        if (targets[r] < 0 || targets[r] >= vocab)
            return pyllm_error(PYLLM_ERR_VALUE, "target token id %d at row %lld is out of range [0, %lld)",
                               (int)targets[r], (long long)r, (long long)vocab);
#pragma omp parallel for schedule(static) if (rows * vocab > 65536)
    for (int64_t r = 0; r < rows; r++) {
        const float *row = logits + r * vocab;
        int64_t best = 0;
        for (int64_t i = 1; i < vocab; i++)
            if (row[i] > row[best])
                best = i;
        logprob[r] = (double)row[targets[r]] - pyllm_log_sum_exp(row, vocab);
        greedy[r] = (uint8_t)(best == targets[r]);
    }
    return PYLLM_OK;
}
