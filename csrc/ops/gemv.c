#include "ops/gemv.h"

#include <cpuid.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pool.h"
#include "core/row_claims.h"
#include "core/threads.h"
#include "ops/gemv_kernels.h"

/* ---- instruction set ---------------------------------------------------------------------- */

/* F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports has no "f16c" (the
 * ThreadSanitizer build, .ci/tsan.sh, is clang's). */
static int has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}

static pyllm_isa detect_isa(void)
{
    __builtin_cpu_init();
    pyllm_isa best = PYLLM_ISA_GENERIC;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c())
        best = PYLLM_ISA_AVX2;
    if (best == PYLLM_ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
        __builtin_cpu_supports("avx512bf16"))
        best = PYLLM_ISA_AVX512;
    const char *asked = getenv("PYLLM_ISA"); /* may only lower the choice: a CPU lacking an ISA would fault */
    if (asked != NULL) {
        if (strcmp(asked, "generic") == 0)
            best = PYLLM_ISA_GENERIC;
        else if (strcmp(asked, "avx2") == 0 && best > PYLLM_ISA_AVX2)
            best = PYLLM_ISA_AVX2;
    }
    return best;
}

pyllm_isa pyllm_gemv_isa(void)
{
    /* Found once; threads racing through the first calls all store the same value, atomically so
     * that the race is defined (and ThreadSanitizer, .ci/tsan.sh, sees none). */
    static _Atomic int isa = -1;
    int v = atomic_load_explicit(&isa, memory_order_relaxed);
    if (v < 0) {
        v = (int)detect_isa();
        atomic_store_explicit(&isa, v, memory_order_relaxed);
    }
    return (pyllm_isa)v;
}

const char *pyllm_isa_name(pyllm_isa isa)
{
    return isa == PYLLM_ISA_AVX512 ? "avx512" : isa == PYLLM_ISA_AVX2 ? "avx2" : "generic";
}

/* ---- activations -------------------------------------------------------------------------- */

static int64_t group_blocks_for(const pyllm_qweight *w, pyllm_isa isa)
{
    if (isa != PYLLM_ISA_AVX512 || w->type == PYLLM_WEIGHT_BF16)
        return 1;
    return PYLLM_LANE_GROUP;
}


static void *carve(char *base, size_t at) { return base != NULL ? base + at : NULL; }

/* The layout of the activations in scratch: a's pointers point into base (NULL when base is
 * NULL: sizing only); returns the bytes it takes. */
static size_t layout(const pyllm_qweight *w, int64_t m, pyllm_isa isa, char *base, pyllm_gemv_act *a)
{
    memset(a, 0, sizeof *a);
    a->m = m;
    a->k = w->k;
    size_t at = 0;
    if (w->type == PYLLM_WEIGHT_BF16) {
        a->bf16 = carve(base, at);
        return pyllm_round64(sizeof(uint16_t) * (size_t)(m * w->k));
    }
    a->blocks = w->blocks;
    a->group_blocks = group_blocks_for(w, isa);
    a->groups = (w->blocks + a->group_blocks - 1) / a->group_blocks;
    a->row_bytes = a->groups * a->group_blocks * PYLLM_QBLOCK;
    const int64_t padded_blocks = a->groups * a->group_blocks;
    a->q = carve(base, at);
    at += pyllm_round64((size_t)(m * a->row_bytes));
    a->d = carve(base, at);
    at += pyllm_round64(sizeof(float) * (size_t)(m * padded_blocks));
    a->qsum = carve(base, at);
    at += pyllm_round64(sizeof(int32_t) * (size_t)(m * padded_blocks));
    if (isa == PYLLM_ISA_AVX512) {
        a->corr = carve(base, at);
        at += pyllm_round64(sizeof(int32_t) * 16 * (size_t)(m * a->groups));
    }
    return at;
}

size_t pyllm_gemv_scratch_bytes(const pyllm_qweight *w, int64_t m)
{
    pyllm_gemv_act a;
    return layout(w, m, pyllm_gemv_isa(), NULL, &a);
}

/* One block of 32 activations: d = amax / 127, q = round(x / d) (ggml's quantize_row_q8_0). */
static inline void quantize_block(const float *x, int64_t n, int8_t *q, float *d, int32_t *qsum)
{
    float amax = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        const float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }
    const float scale = amax / 127.0f, inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    int32_t sum = 0;
    for (int64_t j = 0; j < PYLLM_QBLOCK; j++) {
        q[j] = j < n ? (int8_t)pyllm_round_half_away(x[j] * inv) : 0;
        sum += q[j];
    }
    *d = scale;
    *qsum = sum;
}

/* Prepare units [u0, u1) of the activations: a unit is one group of group_blocks blocks of one row
 * (block types), or BF16_UNIT values of one row (bf16), so the threads can share the work; each
 * unit is prepared the same whoever does it. The block types' AVX-512 layout (lane order,
 * corr) is pyllm_gemv_prepare_avx512's; this one serves bf16 everywhere and the block
 * types on AVX2 and plain C. Cloned per ISA so the rounding and conversions inline. */
#define BF16_UNIT 256
__attribute__((target_clones("avx512f", "avx2", "default")))
void pyllm_gemv_prepare(const pyllm_qweight *w, const float *x, pyllm_gemv_act *a, int64_t u0, int64_t u1)
{
    const int64_t k = w->k;
    if (w->type == PYLLM_WEIGHT_BF16) {
        const int64_t per_row = (k + BF16_UNIT - 1) / BF16_UNIT;
        for (int64_t u = u0; u < u1; u++) {
            const int64_t i = u / per_row, j0 = (u % per_row) * BF16_UNIT;
            const int64_t j1 = k - j0 < BF16_UNIT ? k : j0 + BF16_UNIT;
            for (int64_t j = j0; j < j1; j++)
                a->bf16[i * k + j] = pyllm_f32_to_bf16(x[i * k + j]);
        }
        return;
    }
    const int64_t group_blocks = a->group_blocks, padded_blocks = a->groups * group_blocks;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t i = u / a->groups, g = u % a->groups;
        int8_t *q = a->q + i * a->row_bytes;
        float *d = a->d + i * padded_blocks;
        int32_t *qsum = a->qsum + i * padded_blocks;
        for (int64_t b = g * group_blocks; b < (g + 1) * group_blocks; b++) {
            const int64_t left = k - b * PYLLM_QBLOCK, n = left < 0 ? 0 : left < PYLLM_QBLOCK ? left : PYLLM_QBLOCK;
            quantize_block(x + i * k + b * PYLLM_QBLOCK, n, q + b * PYLLM_QBLOCK, &d[b], &qsum[b]);
        }
    }
}

/* The preparation of units [u0, u1): vectorised for the block types on AVX-512. */
static void prepare(const pyllm_qweight *w, const float *x, int avx512, pyllm_gemv_act *a, int64_t u0, int64_t u1)
{
    if (avx512 && w->type != PYLLM_WEIGHT_BF16)
        pyllm_gemv_prepare_avx512(w, x, a, u0, u1);
    else
        pyllm_gemv_prepare(w, x, a, u0, u1);
}

static int64_t prepare_units(const pyllm_gemv_act *a, const pyllm_qweight *w)
{
    return w->type == PYLLM_WEIGHT_BF16 ? a->m * ((a->k + BF16_UNIT - 1) / BF16_UNIT) : a->m * a->groups;
}

/* ---- the product -------------------------------------------------------------------------- */

static pyllm_gemv_rows_fn rows_kernel(pyllm_isa isa)
{
    return isa == PYLLM_ISA_AVX512 ? pyllm_gemv_rows_avx512
           : isa == PYLLM_ISA_AVX2 ? pyllm_gemv_rows_avx2
                                   : pyllm_gemv_rows_generic;
}

/* Weight bytes a thread takes at a time in decode (core/row_claims.h). */
#define CLAIM_BYTES (128 << 10)

/* One thread's part of a shared-input call: rows [r0, r1) of the outputs laid end to end, against
 * the activation rows of a, which are rows i0.. of the call's. */
static void rows_of_outputs(pyllm_gemv_rows_fn rows, const pyllm_gemv_out *outs, int count, const pyllm_gemv_act *a,
                            int64_t i0, int64_t r0, int64_t r1)
{
    int64_t base = 0;
    for (int o = 0; o < count && base < r1; base += outs[o].w->n, o++) {
        const int64_t lo = r0 > base ? r0 - base : 0, hi = r1 - base < outs[o].w->n ? r1 - base : outs[o].w->n;
        if (lo >= hi)
            continue;
        float *y = outs[o].y + i0 * outs[o].ldy;
        rows(outs[o].w, a, lo, hi, y, outs[o].ldy);
        if (outs[o].bias != NULL)
            pyllm_add_bias(y + lo, outs[o].ldy, outs[o].bias + lo, a->m, hi - lo);
    }
}

/* Activation rows [i0, i0 + count) of a, as a call of count rows would have them. */
static pyllm_gemv_act act_rows(const pyllm_gemv_act *a, int64_t i0, int64_t count)
{
    pyllm_gemv_act v = *a;
    const int64_t padded_blocks = a->groups * a->group_blocks;
    v.m = count;
    if (a->bf16 != NULL)
        v.bf16 = a->bf16 + i0 * a->k;
    if (a->q != NULL) {
        v.q = a->q + i0 * a->row_bytes;
        v.d = a->d + i0 * padded_blocks;
        v.qsum = a->qsum + i0 * padded_blocks;
    }
    if (a->corr != NULL)
        v.corr = a->corr + i0 * a->groups * 16;
    return v;
}

/* Cache blocking of pyllm_gemv_tiled: a claim of weight rows is TILE_BYTES (they stay in the
 * thread's L2 while every activation chunk passes), the activations go CHUNK_ROWS rows at a time
 * (a chunk stays in L2 while a pair of weight rows, in L1, meets each of its rows). */
#define TILE_BYTES (192 << 10)
#define CHUNK_ROWS 64

/* A product as a pool job (core/pool.h): the threads prepare the activations together (units
 * claimed a few at a time), wait until all are done, then share out the weight rows of all the
 * outputs (laid end to end) in claims (core/row_claims.h; in fours, the kernels' unit). */
typedef struct {
    const pyllm_gemv_out *outs;
    int count;
    const float *x;
    pyllm_gemv_act *a;
    int avx512;
    int tiled; /* a claim meets the activations CHUNK_ROWS rows at a time (prefill) */
    pyllm_gemv_rows_fn rows;
    int64_t units;
    pyllm_chunks prepare;
    _Alignas(64) _Atomic int64_t prepared;
    pyllm_row_claims claims;
} product_job;

static void product_rows(const product_job *j, int64_t lo, int64_t hi)
{
    if (!j->tiled) {
        rows_of_outputs(j->rows, j->outs, j->count, j->a, 0, lo, hi);
        return;
    }
    for (int64_t i0 = 0; i0 < j->a->m; i0 += CHUNK_ROWS) {
        const pyllm_gemv_act chunk = act_rows(j->a, i0, j->a->m - i0 < CHUNK_ROWS ? j->a->m - i0 : CHUNK_ROWS);
        rows_of_outputs(j->rows, j->outs, j->count, &chunk, i0, lo, hi);
    }
}

static void product_job_run(void *p, int self)
{
    product_job *j = p;
    int64_t lo, hi;
    while (pyllm_chunks_next(&j->prepare, &lo, &hi)) {
        prepare(j->outs[0].w, j->x, j->avx512, j->a, lo, hi);
        atomic_fetch_add_explicit(&j->prepared, hi - lo, memory_order_release);
    }
    pyllm_pool_await(&j->prepared, j->units);
    while (pyllm_claim_next(&j->claims, self, &lo, &hi))
        product_rows(j, lo, hi);
}

/* Runs the product of outs[0..count) (one input x of m rows) on the threads, about claim_bytes of
 * weights a claim. */
static void run_product(const pyllm_gemv_out *outs, int count, const float *x, int64_t m, void *scratch, int tiled,
                        int64_t claim_bytes)
{
    const pyllm_isa isa = pyllm_gemv_isa();
    const pyllm_qweight *w = outs[0].w;
    pyllm_gemv_act a;
    layout(w, m, isa, scratch, &a);
    int64_t n = 0;
    for (int o = 0; o < count; o++)
        n += outs[o].w->n;
    const int threads = pyllm_parallel(n * w->k >= (1 << 16)) ? pyllm_pool_threads() : 1;
    if (!tiled)
        pyllm_pool_wake(); /* decode */
    product_job j = {.outs = outs, .count = count, .x = x, .a = &a, .avx512 = isa == PYLLM_ISA_AVX512,
                     .tiled = tiled, .rows = rows_kernel(isa), .units = prepare_units(&a, w)};
    pyllm_chunks_init(&j.prepare, j.units, (j.units + 4 * threads - 1) / (4 * threads));
    atomic_init(&j.prepared, 0);
    pyllm_claims_init(&j.claims, n, 4, claim_bytes / (int64_t)pyllm_weight_bytes(w->type, 1, w->k), threads);
    pyllm_pool_run(product_job_run, &j, threads);
}

void pyllm_gemv_many(const pyllm_gemv_out *outs, int count, const float *x, int64_t m, void *scratch)
{
    run_product(outs, count, x, m, scratch, 0, CLAIM_BYTES);
}

void pyllm_gemv_tiled_many(const pyllm_gemv_out *outs, int count, const float *x, int64_t m, void *scratch)
{
    run_product(outs, count, x, m, scratch, 1, TILE_BYTES);
}

void pyllm_gemv_tiled(const pyllm_qweight *w, const float *x, int64_t m, const float *bias, float *y, int64_t ldy,
                      void *scratch)
{
    const pyllm_gemv_out out = {.w = w, .bias = bias, .y = y, .ldy = ldy};
    pyllm_gemv_tiled_many(&out, 1, x, m, scratch);
}

void pyllm_gemv(const pyllm_qweight *w, const float *x, int64_t m, const float *bias, float *y, int64_t ldy,
                void *scratch)
{
    const pyllm_gemv_out out = {.w = w, .bias = bias, .y = y, .ldy = ldy};
    pyllm_gemv_many(&out, 1, x, m, scratch);
}
