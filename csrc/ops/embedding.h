/* Token embedding lookup. */
#ifndef PYLLM_OPS_EMBEDDING_H
#define PYLLM_OPS_EMBEDDING_H

#include <stdint.h>

/* out[i, :] = table[tokens[i], :] for i < n; ids are checked by the caller. */
void pyllm_embedding(const float *table, int64_t dim, const int32_t *tokens, int64_t n, float *out);
/* The same from a bf16 table, widened to f32. */
void pyllm_embedding_bf16(const uint16_t *table, int64_t dim, const int32_t *tokens, int64_t n, float *out);

#endif
