#include "ops/embedding.h"

#include <string.h>

void pyllm_embedding(const float *table, int64_t dim, const int32_t *tokens, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++)
        memcpy(out + i * dim, table + (int64_t)tokens[i] * dim, sizeof(float) * (size_t)dim);
}


void pyllm_embedding_bf16(const uint16_t *table, int64_t dim, const int32_t *tokens, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++) {
        const uint16_t *row = table + (int64_t)tokens[i] * dim;
        for (int64_t j = 0; j < dim; j++) {
            const uint32_t bits = (uint32_t)row[j] << 16;
            memcpy(&out[i * dim + j], &bits, sizeof bits);
        }
    }
}
