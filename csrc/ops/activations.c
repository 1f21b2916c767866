#include "ops/activations.h"

#include <math.h>

#include "core/pool.h"

#include "ops/gemv.h"

static inline float silu_times(float g, float u)
{
    return (g / (1.0f + expf(-g))) * u;
}

static void silu_mul_span(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        gate[i] = silu_times(gate[i], up[i]);
}

/* libm's expf is a call per element: on AVX-512 the vector polynomial of ops/exp_poly.h instead
 * (in prefill, silu spent more time in expf than in its own loop). */
static void silu_mul_any(float *gate, const float *up, int64_t n)
{
    if (pyllm_gemv_isa() == PYLLM_ISA_AVX512)
        pyllm_silu_mul_avx512(gate, up, n);
    else
        silu_mul_span(gate, up, n);
}

/* Elements a claim of the threads takes (a multiple of the vector kernels' 16). */
#define GRAIN 4096

typedef struct {
    float *x;
    const float *up;
} pair;

static void silu_mul_range(void *p, int64_t lo, int64_t hi, int self)
{
    (void)self;
    const pair *v = p;
    silu_mul_any(v->x + lo, v->up + lo, hi - lo);
}

void pyllm_silu_mul(float *gate, const float *up, int64_t n)
{
    pair v = {gate, up};
    pyllm_pool_for(n, GRAIN, n > 16384, silu_mul_range, &v);
}

static inline float gelu_tanh(float v)
{
    const float inner = 0.79788456f * v * (1.0f + 0.044715f * v * v);
    return v * 0.5f * (1.0f + tanhf(inner));
}

/* As silu: libm's tanhf (expm1f inside) per element took a quarter of BLOOM's prefill. */
static void gelu_tanh_any(float *x, int64_t n)
{
    if (pyllm_gemv_isa() == PYLLM_ISA_AVX512) {
        pyllm_gelu_tanh_avx512(x, n);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        x[i] = gelu_tanh(x[i]);
}

static void gelu_tanh_range(void *p, int64_t lo, int64_t hi, int self)
{
    (void)self;
    gelu_tanh_any((float *)p + lo, hi - lo);
}

void pyllm_gelu_tanh(float *x, int64_t n)
{
    pyllm_pool_for(n, GRAIN, n > 16384, gelu_tanh_range, x);
}
