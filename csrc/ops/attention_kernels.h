/* Between ops/attention.c and its per-ISA kernels: one pass of up to PYLLM_ATTN_MAX_HEADS query
 * heads of a group over their KV head. Not for other callers.
 *
 * The kernels keep every result independent of where a slot or a head sits in a block: a slot's
 * score is the same chain of fused multiply-adds over head_dim whichever vector lane (or scalar
 * tail) computes it, and an output element is the same chain over the slots in order. So a
 * sequence gets the same bits alone, left-padded in a batch, or with its heads split differently
 * across passes (batch invariance relies on it). */
#ifndef PYLLM_OPS_ATTENTION_KERNELS_H
#define PYLLM_OPS_ATTENTION_KERNELS_H

#include <stdint.h>

#include "ops/attention.h"
#include "ops/exp_poly.h"

#define PYLLM_ATTN_MAX_HEADS 8

typedef struct {
    int64_t heads;            /* query heads in this pass, 1..PYLLM_ATTN_MAX_HEADS */
    int64_t n_slots, head_dim, capacity;
    pyllm_kv_type type;
    const float *q;           /* [heads][head_dim] */
    const void *keys_t;       /* [head_dim][capacity] */
    const void *values;       /* [capacity][head_dim] */
    const uint8_t *valid;     /* [n_slots] */
    float *scores;            /* [heads][n_slots]: raw q·k in, softmax weights out */
    float *out;               /* [heads][head_dim] */
} pyllm_attn_pass;

/* scores[h][j] = Σ_i q[h][i] · k[i][j] for j < n_slots. */
typedef void (*pyllm_attn_scores_fn)(const pyllm_attn_pass *p);
/* out[h] = Σ over valid j of scores[h][j] · v[j] (weights already normalised). */
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

/* For the per-ISA files: kernel(p, type, heads) instantiated for each element type and head
 * count (1..8) of a pass, so every loop bound in a kernel is a constant. */
#define FOR_HEADS(kernel, p, type)                                                                            \
    switch ((p)->heads) {                                                                                     \
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
