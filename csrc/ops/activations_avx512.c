/* The MLP activations on AVX-512, from the polynomial of ops/exp_poly.h (within a few ulp of expf):
 *   silu(g) * u: sigmoid(g) from e = e^-|g|, which never overflows: 1 / (1 + e) for g >= 0,
 *     e / (1 + e) below;
 *   BLOOM's tanh GeLU: tanh(u) = sign(u) (1 - t) / (1 + t) with t = e^-2|u| (no overflow either;
 *     for small |u| the cancellation in 1 - t costs ~1e-7 absolute, which 1 + tanh absorbs). */
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

void pyllm_gelu_tanh_avx512(float *x, int64_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    const __m512 c0 = _mm512_set1_ps(0.79788456f), c1 = _mm512_set1_ps(0.044715f);
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + j);
        /* transformers' order: 0.79788456 * v * (1 + 0.044715 * v * v) */
        const __m512 inner = _mm512_mul_ps(_mm512_mul_ps(c0, v), _mm512_add_ps(one, _mm512_mul_ps(_mm512_mul_ps(c1, v), v)));
        const __m512 a = _mm512_abs_ps(inner);
        const __m512 t = pyllm_exp16(_mm512_mul_ps(_mm512_set1_ps(-2.0f), a));
        const __m512 mag = _mm512_div_ps(_mm512_sub_ps(one, t), _mm512_add_ps(one, t));
        const __mmask16 negative = _mm512_cmp_ps_mask(inner, _mm512_setzero_ps(), _CMP_LT_OQ);
        const __m512 th = _mm512_mask_sub_ps(mag, negative, _mm512_setzero_ps(), mag);
        _mm512_mask_storeu_ps(x + j, m, _mm512_mul_ps(_mm512_mul_ps(v, half), _mm512_add_ps(one, th)));
    }
}
