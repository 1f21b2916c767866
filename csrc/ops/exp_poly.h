/* The exponential of the attention softmax and the MLP's silu, the same polynomial on every ISA:
 * n = round(x·log2 e), r = x - n·ln 2 (ln 2 in two parts, so r is nearly exact),
 * exp(x) = 2^n · Σ_k r^k / k! for k <= 7 (Horner, fused; the first omitted term is under 0.05 ulp
 * for |r| <= ln 2 / 2). Arguments are <= 0; below PYLLM_EXP_FLOOR the callers flush or clamp (e^-87
 * is near the smallest normal float). */
#ifndef PYLLM_OPS_EXP_POLY_H
#define PYLLM_OPS_EXP_POLY_H

#define PYLLM_EXP_FLOOR (-87.0f)
#define PYLLM_EXP_LOG2E 1.44269504f
#define PYLLM_EXP_LN2_HI 0.693145751953125f     /* ln 2's leading 16 bits: n·LN2_HI is exact */
#define PYLLM_EXP_LN2_LO 1.42860676533018e-06f  /* ln 2 - LN2_HI */
#define PYLLM_EXP_C2 (1.0f / 2.0f)
#define PYLLM_EXP_C3 (1.0f / 6.0f)
#define PYLLM_EXP_C4 (1.0f / 24.0f)
#define PYLLM_EXP_C5 (1.0f / 120.0f)
#define PYLLM_EXP_C6 (1.0f / 720.0f)
#define PYLLM_EXP_C7 (1.0f / 5040.0f)

#endif
