/* ALiBi (attention with linear biases): a per-head slope times the key's position is added to
 * each attention score, instead of rotating queries and keys. No position limit. */
#ifndef PYLLM_OPS_ALIBI_H
#define PYLLM_OPS_ALIBI_H

#include <stdint.h>

/* slopes[n_heads] as transformers' BLOOM computes them in f32: with p the largest power of two
 * <= n_heads, head h < p gets (2^(-8/p))^(h+1); the remaining heads take every other power of
 * the 2p sequence, (2^(-4/p))^(1, 3, 5, ...). */
void pyllm_alibi_slopes(int64_t n_heads, float *slopes);

#endif
