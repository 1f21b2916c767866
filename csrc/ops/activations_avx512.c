/* silu(g) * u on AVX-512: sigmoid(g) from e = e^-|g|, which never overflows: 1 / (1 + e) for
 * g >= 0, e / (1 + e) below (the polynomial of ops/exp_poly.h, within a few ulp of expf). */
#pragma GCC target("avx512f,fma")
#include <immintrin.h>

#include "ops/activations.h"
#include "ops/exp_avx512.h"

void pyllm_silu_mul_avx512(float *gate, const float *up, int64_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        const __m512 g = _mm512_maskz_loadu_ps(m, gate + j), u = _mm512_maskz_loadu_ps(m, up + j);
        const __m512 e = pyllm_exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(g)));
        const __mmask16 positive = _mm512_cmp_ps_mask(g, _mm512_setzero_ps(), _CMP_GE_OQ);
        const __m512 sigmoid = _mm512_div_ps(_mm512_mask_blend_ps(positive, e, one), _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(gate + j, m, _mm512_mul_ps(_mm512_mul_ps(g, sigmoid), u));
    }
}
