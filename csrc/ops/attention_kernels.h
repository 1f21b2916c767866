/* Between ops/attention.c and its per-ISA kernels: one pass of up to PYLLM_ATTN_MAX_ROWS query
 * rows (heads of a group, times consecutive new tokens) over their KV head. Not for other callers.
 *
 * The kernels keep every result independent of where a slot or a row sits in a block: a slot's
 * score is the same chain of fused multiply-adds over head_dim whichever vector lane (or scalar
 * tail) computes it, and an output element is the same chain over the slots in order. So a
 * sequence gets the same bits alone, left-padded in a batch, with its heads split differently
 * across passes or its tokens tiled differently (batch invariance relies on it). */
#ifndef PYLLM_OPS_ATTENTION_KERNELS_H
#define PYLLM_OPS_ATTENTION_KERNELS_H

#include <stdint.h>

#include "ops/attention.h"
#include "ops/exp_poly.h"

#define PYLLM_ATTN_MAX_ROWS 8 /* query rows (token, head) of a pass: accumulators of the vector kernels */

/* A pass's query rows are `tokens` consecutive new tokens times `heads` consecutive query heads,
 * row r = token u · heads + head h. Token u sees slots 0..n_slots + u - 1 (causal): its scores row
 * holds n_slots + tokens - 1 slots (the pass's width), of which the kernels compute all and the
 * softmax and values passes use its own. Only the AVX-512 kernels take tokens > 1 (prefill); the
 * others are given one token at a time. */
typedef struct {
    int64_t heads;            /* query heads in this pass, 1..PYLLM_ATTN_MAX_ROWS */
    int64_t tokens;           /* new tokens, heads · tokens <= PYLLM_ATTN_MAX_ROWS */
    int64_t n_slots, head_dim, capacity;
    pyllm_kv_type type;
    const float *q;           /* token u, head h at q + u · row_stride + h · head_dim */
    int64_t row_stride;       /* floats between consecutive tokens of q and of out */
    const void *keys_t;       /* [head_dim][capacity] */
    const void *values;       /* [capacity][head_dim] */
    const uint8_t *valid;     /* [width] */
    float *scores;            /* [rows][width]: raw q·k in, softmax weights out */
    float *out;               /* as q */
} pyllm_attn_pass;

/* Slots in each scores row of the pass. */
static inline int64_t pyllm_attn_width(const pyllm_attn_pass *p) { return p->n_slots + p->tokens - 1; }

/* scores[r][j] = Σ_i q_r[i] · k[i][j] for j < width. */
typedef void (*pyllm_attn_scores_fn)(const pyllm_attn_pass *p);
/* out_r = Σ over the valid slots j its token sees of scores[r][j] · v[j] (weights normalised). */
typedef void (*pyllm_attn_values_fn)(const pyllm_attn_pass *p);

/* s[j] = exp(s[j] - max) for j < n (max >= every s[j]; -inf gives 0). The vector kernels use one
 * polynomial (degree 7 on a reduced argument, within 2 ulp of exp), the same on AVX2 and AVX-512,
 * and flush results below e^-87 (never a visible weight next to the maximum's 1) to 0. */
typedef void (*pyllm_attn_exp_fn)(float *s, int64_t n, float max);

void pyllm_attn_scores_generic(const pyllm_attn_pass *p);
void pyllm_attn_values_generic(const pyllm_attn_pass *p);
void pyllm_attn_exp_generic(float *s, int64_t n, float max);
void pyllm_attn_scores_avx2(const pyllm_attn_pass *p);
void pyllm_attn_values_avx2(const pyllm_attn_pass *p);
void pyllm_attn_exp_avx2(float *s, int64_t n, float max);
void pyllm_attn_scores_avx512(const pyllm_attn_pass *p);
void pyllm_attn_values_avx512(const pyllm_attn_pass *p);
void pyllm_attn_exp_avx512(float *s, int64_t n, float max);

/* For the per-ISA files: kernel(p, type, rows) instantiated for each element type and count of
 * query rows (1..8) of a pass, so every loop bound in a kernel is a constant. */
#define FOR_HEADS(kernel, p, type)                                                                            \
    switch ((p)->heads * (p)->tokens) {                                                                       \
    case 1: kernel(p, type, 1); break;                                                                        \
    case 2: kernel(p, type, 2); break;                                                                        \
    case 3: kernel(p, type, 3); break;                                                                        \
    case 4: kernel(p, type, 4); break;                                                                        \
    case 5: kernel(p, type, 5); break;                                                                        \
    case 6: kernel(p, type, 6); break;                                                                        \
    case 7: kernel(p, type, 7); break;                                                                        \
    default: kernel(p, type, 8); break;                                                                       \
    }

#define FOR_TYPES(kernel, p)                                                                                  \
    switch ((p)->type) {                                                                                      \
    case PYLLM_KV_F32: FOR_HEADS(kernel, p, PYLLM_KV_F32) break;                                             \
    case PYLLM_KV_BF16: FOR_HEADS(kernel, p, PYLLM_KV_BF16) break;                                           \
    case PYLLM_KV_F16: FOR_HEADS(kernel, p, PYLLM_KV_F16) break;                                             \
    }

#endif
