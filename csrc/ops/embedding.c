#include "ops/embedding.h"

#include <string.h>

void pyllm_embedding(const float *table, int64_t dim, const int32_t *tokens, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++)
        memcpy(out + i * dim, table + (int64_t)tokens[i] * dim, sizeof(float) * (size_t)dim);
}

