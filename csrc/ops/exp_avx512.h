/* The polynomial of ops/exp_poly.h on 16 floats, for translation units compiled for AVX-512F
 * (they include this after their `#pragma GCC target`). e^x for x <= 0; 0 below PYLLM_EXP_FLOOR. */
#ifndef PYLLM_OPS_EXP_AVX512_H
#define PYLLM_OPS_EXP_AVX512_H

#include <immintrin.h>

#include "ops/exp_poly.h"

static inline __attribute__((always_inline)) __m512 pyllm_exp16(__m512 x)
{
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(PYLLM_EXP_FLOOR), _CMP_GE_OQ);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(PYLLM_EXP_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-PYLLM_EXP_LN2_HI), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-PYLLM_EXP_LN2_LO), r);
    __m512 poly = _mm512_set1_ps(PYLLM_EXP_C7);
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(PYLLM_EXP_C6));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(PYLLM_EXP_C5));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(PYLLM_EXP_C4));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(PYLLM_EXP_C3));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(PYLLM_EXP_C2));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f));
    poly = _mm512_fmadd_ps(poly, r, _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mul_ps(live, poly, _mm512_castsi512_ps(bits));
}

#endif
