#include "ops/matmul.h"

#include <string.h>

#include "core/alloc.h"
#include "core/pool.h"
#include "ops/dnnl_status.h"
#include "core/threads.h"
#include "ops/gemm_f32.h"
#include "ops/gemv.h"
#include "ops/quant_gguf.h"

static dnnl_status_t rows_pd(pyllm_matmul_ctx *ctx, dnnl_data_type_t dt, int64_t m, int64_t k, int64_t n,
                             int64_t ldd, dnnl_primitive_desc_t *pd);

/* Whether prefill computes in bf16: where the CPU has AVX-512 BF16 (pyllm's AVX-512 kernels
 * need it too) and oneDNN has a bf16 matmul for it. Elsewhere oneDNN 3.2 has none (AVX2) or
 * emulates it slower than f32, so the weights are dequantized to f32 tiles instead: bf16 is
 * then never slower than float32, and keeps its memory saving. Decided once, here, where a
 * failure can be reported: oneDNN running out of memory is an error, not a "no" that would
 * switch the context to f32 for good. */
static pyllm_status decide_prefill_type(pyllm_matmul_ctx *ctx)
{
    ctx->prefill_dt = dnnl_f32;
    if (pyllm_gemv_isa() != PYLLM_ISA_AVX512)
        return PYLLM_OK;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = rows_pd(ctx, dnnl_bf16, 16, 64, 64, 64, &pd);
    if (pd != NULL)
        dnnl_primitive_desc_destroy(pd);
    if (st == dnnl_out_of_memory)
        return pyllm_dnnl_fail(st, "probe for a bf16 matmul");
    if (st == dnnl_success) {
        ctx->prefill_dt = dnnl_bf16;
        /* ISAs are nested bit sets; ONEDNN_MAX_CPU_ISA lowers what this returns */
        const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
        ctx->prefill_amx = (isa & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx;
    }
    return PYLLM_OK;
}

pyllm_status pyllm_matmul_ctx_init(pyllm_matmul_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    DNNL_TRY(dnnl_engine_create(&ctx->engine, dnnl_cpu, 0), "create the CPU engine");
    dnnl_status_t st = PYLLM_DNNL(dnnl_stream_create(&ctx->stream, ctx->engine, dnnl_stream_default_flags));
    pyllm_status status = st == dnnl_success ? decide_prefill_type(ctx) : pyllm_dnnl_fail(st, "create a stream");
    if (status != PYLLM_OK)
        pyllm_matmul_ctx_release(ctx);
    return status;
}

static void entry_release(pyllm_matmul_entry *e)
{
    if (e->primitive)
        dnnl_primitive_destroy(e->primitive);
    if (e->src)
        dnnl_memory_destroy(e->src);
    if (e->dst)
        dnnl_memory_destroy(e->dst);
    if (e->weights)
        dnnl_memory_destroy(e->weights);
    memset(e, 0, sizeof *e);
}

void pyllm_matmul_ctx_release(pyllm_matmul_ctx *ctx)
{
    for (int i = 0; i < PYLLM_MATMUL_CACHE_SIZE; i++)
        entry_release(&ctx->cache[i]);
    pyllm_free(ctx->scratch);
    ctx->scratch = NULL;
    ctx->scratch_bytes = 0;
    if (ctx->stream)
        dnnl_stream_destroy(ctx->stream);
    if (ctx->engine)
        dnnl_engine_destroy(ctx->engine);
    ctx->stream = NULL;
    ctx->engine = NULL;
}

/* The prefill product of the low-precision paths: src [m, k] dense, weights a tile of n rows
 * [n, k] row-major (the matmul's [k, n] with strides (1, k)), both of the element type dt (bf16,
 * or f32 where the CPU has no bf16 dot products), dst f32 [m, n] inside rows of ldd floats. */
static dnnl_status_t rows_pd(pyllm_matmul_ctx *ctx, dnnl_data_type_t dt, int64_t m, int64_t k, int64_t n,
                             int64_t ldd, dnnl_primitive_desc_t *pd)
{
    dnnl_memory_desc_t src = NULL, dst = NULL, w = NULL;
    dnnl_dims_t src_dims = {m, k}, dst_dims = {m, n}, dst_strides = {ldd, 1}, w_dims = {k, n}, w_strides = {1, k};
    dnnl_status_t st = PYLLM_DNNL(dnnl_memory_desc_create_with_tag(&src, 2, src_dims, dt, dnnl_ab));
    if (st == dnnl_success)
        st = PYLLM_DNNL(dnnl_memory_desc_create_with_strides(&dst, 2, dst_dims, dnnl_f32, dst_strides));
    if (st == dnnl_success)
        st = PYLLM_DNNL(dnnl_memory_desc_create_with_strides(&w, 2, w_dims, dt, w_strides));
    if (st == dnnl_success)
        st = PYLLM_DNNL(dnnl_matmul_primitive_desc_create(pd, ctx->engine, src, w, NULL, dst, NULL));
    dnnl_memory_desc_destroy(src);
    dnnl_memory_desc_destroy(dst);
    dnnl_memory_desc_destroy(w);
    return st;
}

/* The decision of decide_prefill_type. */
static int prefill_in_bf16(const pyllm_matmul_ctx *ctx) { return ctx->prefill_dt == dnnl_bf16; }

/* Whether this layer's prefill runs the decode kernels' int8 dot products (pyllm_gemv_tiled):
 * the block types on AVX-512 (VNNI). A 2048 x 5632 matrix at m = 512 took 23 ms there against
 * 29-30 ms dequantized to bf16 tiles for oneDNN's GEMM (Q8_0 and Q4_0, alternating runs), the
 * dequantization alone being 15% of the int8 prefill. AVX2 has no int8 dot product that keeps up
 * with oneDNN's f32 GEMM. Where oneDNN's bf16 GEMM runs on AMX tiles, dequantizing to bf16 for it
 * wins instead (the numerics of a bf16 prefill, see prefill_compute): at m = 512 on a Xeon with
 * AMX, 2048 x 2048 ran at 1,250 GOP/s (Q8_0) and 1,330 (Q4_0) against 598 and 602 in int8, and
 * 2048 x 5632 at 1,206 and 1,208 against 558 and 617. */
static int prefill_in_int8(const pyllm_matmul_ctx *ctx, pyllm_weight_type type)
{
    return type != PYLLM_WEIGHT_BF16 && pyllm_gemv_isa() == PYLLM_ISA_AVX512 && !ctx->prefill_amx;
}

/* Weight rows per prefill tile: about 1 MB, a multiple of 64 rows (whole matrices, which spare
 * the copy of each tile's product into y, measured no faster: 1,683-1,709 against 1,706-1,727
 * tok/s at int4). bf16 weights that the GEMM takes as they are are used in place, all rows at once. */
static int64_t tile_rows(pyllm_matmul_ctx *ctx, const pyllm_linear *lin)
{
    if (lin->type == PYLLM_WEIGHT_BF16 && prefill_in_bf16(ctx))
        return lin->n;
    const int64_t element = prefill_in_bf16(ctx) ? 2 : 4;
    int64_t rows = ((int64_t)1 << 20) / (element * lin->k) / 64 * 64;
    /* AMX: 64 rows of a 2048 x 5632 matrix at m = 512 ran at 1,050-1,130 GOP/s, 320 rows at
     * 1,200-1,220 (2048 x 2048 in 256-row tiles: 1,260-1,410 either way) */
    const int64_t fewest = ctx->prefill_amx ? 256 : 64;
    if (rows < fewest)
        rows = fewest;
    return rows < lin->n ? rows : lin->n;
}

/* float32: the weights as given, [n, k] row-major, for our streaming kernel (decode, and every M
 * in batch-invariant mode) and for oneDNN's GEMM, which reads them in place as its [k, n] operand
 * with strides (1, k) (prefill). */
static void start_linear(pyllm_linear *lin, const pyllm_matmul_ctx *ctx, pyllm_weight_type type, int64_t n,
                         int64_t k)
{
    memset(lin, 0, sizeof *lin);
    lin->k = k;
    lin->n = n;
    lin->type = type;
    lin->invariant = ctx->batch_invariant;
}

static pyllm_status copy_bias(pyllm_linear *lin, const float *bias)
{
    if (bias == NULL)
        return PYLLM_OK;
    if ((lin->bias = pyllm_alloc(sizeof(float) * (size_t)lin->n)) == NULL)
        return PYLLM_ERR_MEMORY;
    memcpy(lin->bias, bias, sizeof(float) * (size_t)lin->n);
    return PYLLM_OK;
}

static pyllm_status f32_linear_init(pyllm_linear *lin, pyllm_matmul_ctx *ctx, const void *weight,
                                    pyllm_source_type src_type, const float *bias, int64_t n, int64_t k)
{
    start_linear(lin, ctx, PYLLM_WEIGHT_F32, n, k);
    lin->plain = pyllm_alloc_big(pyllm_mul_size(pyllm_mul_size((size_t)n, (size_t)k), sizeof(float)));
    if (lin->plain == NULL)
        return PYLLM_ERR_MEMORY;
    pyllm_status st = pyllm_source_widen(weight, src_type, n * k, lin->plain);
    if (st == PYLLM_OK)
        st = copy_bias(lin, bias);
    if (st != PYLLM_OK)
        pyllm_linear_release(lin);
    return st;
}

/* Block-type weights in the layout the decode kernels read: lane order for AVX-512's. */
static pyllm_status kernel_layout(pyllm_qweight *w)
{
    return pyllm_gemv_isa() == PYLLM_ISA_AVX512 ? pyllm_qweight_to_lanes16(w) : PYLLM_OK;
}

/* The packed types from ggml blocks: Q8_0/Q4_0/Q4_1 blocks into the same type are taken as they
 * are (their values unchanged: no re-quantizing); every other pair goes through float32, one
 * matrix at a time. */
static pyllm_status ggml_linear_init(pyllm_linear *lin, pyllm_matmul_ctx *ctx, pyllm_weight_type type,
                                     const void *weight, pyllm_source_type src_type, const float *bias, int64_t n,
                                     int64_t k)
{
    const int ggml = pyllm_ggml_type_of_source(src_type);
    if (pyllm_ggml_native_weight_type(ggml) == (int)type) {
        start_linear(lin, ctx, type, n, k);
        pyllm_status st = pyllm_qweight_from_ggml(&lin->q, ggml, weight, n, k);
        if (st == PYLLM_OK)
            st = kernel_layout(&lin->q);
        if (st == PYLLM_OK)
            st = copy_bias(lin, bias);
        if (st != PYLLM_OK)
            pyllm_linear_release(lin);
        return st;
    }
    float *wide = pyllm_alloc_big(pyllm_mul_size(pyllm_mul_size((size_t)n, (size_t)k), sizeof(float)));
    if (wide == NULL)
        return PYLLM_ERR_MEMORY;
    pyllm_status st = pyllm_source_widen(weight, src_type, n * k, wide);
    if (st == PYLLM_OK)
        st = pyllm_linear_init(lin, ctx, type, wide, PYLLM_SOURCE_F32, bias, n, k);
    pyllm_free(wide);
    return st;
}

pyllm_status pyllm_linear_init(pyllm_linear *lin, pyllm_matmul_ctx *ctx, pyllm_weight_type type, const void *weight,
                               pyllm_source_type src_type, const float *bias, int64_t n, int64_t k)
{
    if (type == PYLLM_WEIGHT_F32)
        return f32_linear_init(lin, ctx, weight, src_type, bias, n, k);
    if (!PYLLM_SOURCE_IS_PLAIN(src_type))
        return ggml_linear_init(lin, ctx, type, weight, src_type, bias, n, k);
    start_linear(lin, ctx, type, n, k);
    pyllm_status st = pyllm_qweight_init(&lin->q, type, weight, src_type, n, k);
    if (st == PYLLM_OK)
        st = kernel_layout(&lin->q);
    if (st == PYLLM_OK)
        st = copy_bias(lin, bias);
    if (st != PYLLM_OK)
        pyllm_linear_release(lin);
    return st;
}

size_t pyllm_linear_bytes(const pyllm_linear *lin)
{
    size_t bias = lin->bias != NULL ? sizeof(float) * (size_t)lin->n : 0;
    if (lin->type == PYLLM_WEIGHT_F32)
        return sizeof(float) * (size_t)(lin->n * lin->k) + bias;
    return pyllm_weight_bytes(lin->type, lin->n, lin->k) + bias;
}

void pyllm_linear_release(pyllm_linear *lin)
{
    pyllm_free(lin->plain);
    pyllm_free(lin->bias);
    pyllm_qweight_release(&lin->q);
    memset(lin, 0, sizeof *lin);
}

/* The cached primitive for this product (element type dt, m rows, a weight tile of n rows, output
 * rows of ldd floats), created (evicting the least recently used) if new. */
static pyllm_status lookup(pyllm_matmul_ctx *ctx, dnnl_data_type_t dt, int64_t m, int64_t k, int64_t n, int64_t ldd,
                           pyllm_matmul_entry **out)
{
    pyllm_matmul_entry *victim = &ctx->cache[0];
    ctx->clock++;
    for (int i = 0; i < PYLLM_MATMUL_CACHE_SIZE; i++) {
        pyllm_matmul_entry *e = &ctx->cache[i];
        if (e->primitive && e->dt == (int)dt && e->m == m && e->k == k && e->n == n && e->ldd == ldd) {
            e->last_use = ctx->clock;
            *out = e;
            return PYLLM_OK;
        }
        if (e->last_use < victim->last_use)
            victim = e;
    }
    entry_release(victim);

    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = rows_pd(ctx, dt, m, k, n, ldd, &pd);
    if (st != dnnl_success)
        return pyllm_dnnl_fail(st, "create a matmul primitive descriptor");
    st = PYLLM_DNNL(dnnl_primitive_create(&victim->primitive, pd));
    if (st == dnnl_success)
        st = PYLLM_DNNL(dnnl_memory_create(&victim->src, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0),
                                           ctx->engine, DNNL_MEMORY_NONE));
    if (st == dnnl_success)
        st = PYLLM_DNNL(dnnl_memory_create(&victim->dst, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0),
                                           ctx->engine, DNNL_MEMORY_NONE));
    if (st == dnnl_success)
        st = PYLLM_DNNL(dnnl_memory_create(&victim->weights,
                                           dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), ctx->engine,
                                           DNNL_MEMORY_NONE));
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) {
        entry_release(victim);
        return pyllm_dnnl_fail(st, "create a matmul primitive");
    }
    victim->dt = (int)dt;
    victim->m = m;
    victim->k = k;
    victim->n = n;
    victim->ldd = ldd;
    victim->last_use = ctx->clock;
    *out = victim;
    return PYLLM_OK;
}

/* Scratch of the low-precision paths for m rows: the GEMV's prepared activations, or the
 * prefill's activations in the GEMM's type, one weight tile and its product. */
static size_t scratch_need(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, int64_t m)
{
    if (lin->invariant)
        return pyllm_gemv_scratch_bytes(&lin->q, m < PYLLM_INVARIANT_PASS_M ? m : PYLLM_INVARIANT_PASS_M);
    if (m <= PYLLM_GEMV_MAX_M || prefill_in_int8(ctx, lin->type))
        return pyllm_gemv_scratch_bytes(&lin->q, m);
    const size_t element = prefill_in_bf16(ctx) ? 2 : 4, rows = (size_t)tile_rows(ctx, lin);
    const size_t src = prefill_in_bf16(ctx) ? pyllm_round64(element * (size_t)(m * lin->k)) : 0; /* f32: x itself */
    if (lin->type == PYLLM_WEIGHT_BF16 && prefill_in_bf16(ctx))
        return src;
    return src + pyllm_round64(element * rows * (size_t)lin->k) + sizeof(float) * (size_t)m * rows;
}

static pyllm_status reserve_scratch(pyllm_matmul_ctx *ctx, size_t bytes)
{
    if (bytes <= ctx->scratch_bytes)
        return PYLLM_OK;
    pyllm_free(ctx->scratch);
    ctx->scratch_bytes = 0;
    if ((ctx->scratch = pyllm_alloc_big(bytes)) == NULL)
        return PYLLM_ERR_MEMORY;
    ctx->scratch_bytes = bytes;
    return PYLLM_OK;
}

pyllm_status pyllm_linear_prepare(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, int64_t m)
{
    pyllm_matmul_entry *e = NULL;
    if (lin->type == PYLLM_WEIGHT_F32)
        return lin->invariant || m <= PYLLM_GEMV_MAX_M ? PYLLM_OK : lookup(ctx, dnnl_f32, m, lin->k, lin->n, lin->n, &e);
    PYLLM_TRY(reserve_scratch(ctx, scratch_need(ctx, lin, m)));
    if (m <= PYLLM_GEMV_MAX_M || lin->invariant || prefill_in_int8(ctx, lin->type))
        return PYLLM_OK;
    const int64_t rows = tile_rows(ctx, lin);
    const dnnl_data_type_t dt = prefill_in_bf16(ctx) ? dnnl_bf16 : dnnl_f32;
    PYLLM_TRY(lookup(ctx, dt, m, lin->k, rows, rows, &e));
    if (lin->n % rows != 0)
        PYLLM_TRY(lookup(ctx, dt, m, lin->k, lin->n % rows, lin->n % rows, &e));
    return PYLLM_OK;
}

/* y = x · weights with a cached primitive (x, weights and y as its descriptors say). */
static pyllm_status run(pyllm_matmul_ctx *ctx, pyllm_matmul_entry *e, const void *x, const void *weights, float *y)
{
    DNNL_TRY(dnnl_memory_set_data_handle(e->src, (void *)x), "set the matmul input");
    DNNL_TRY(dnnl_memory_set_data_handle(e->dst, y), "set the matmul output");
    DNNL_TRY(dnnl_memory_set_data_handle(e->weights, (void *)weights), "set the matmul weights");
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->src}, {DNNL_ARG_DST, e->dst}, {DNNL_ARG_WEIGHTS, e->weights}};
    pyllm_pool_rest(); /* oneDNN runs on OpenMP's threads: ours must not spin beside them */
    DNNL_TRY(dnnl_primitive_execute(e->primitive, ctx->stream, 3, args), "run a matmul");
    DNNL_TRY(dnnl_stream_wait(ctx->stream), "finish a matmul");
    return PYLLM_OK;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void round_to_bf16(const float *x, int64_t n, uint16_t *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = pyllm_f32_to_bf16(x[i]);
}

/* Prefill with low-precision weights: oneDNN's GEMM in bf16 (activations rounded once) or f32
 * (see prefill_in_bf16). bf16 weights meet a bf16 GEMM in place; otherwise the weights are
 * dequantized a tile of rows at a time, each tile's product written to a dense buffer and copied
 * into its columns of y (with a strided output oneDNN 3.2 leaves its brgemm kernels for a slower
 * gemm). */
static pyllm_status forward_tiles(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, const float *x, float *y, int64_t m)
{
    const int64_t k = lin->k, n = lin->n, rows = tile_rows(ctx, lin);
    const int bf16 = prefill_in_bf16(ctx);
    const dnnl_data_type_t dt = bf16 ? dnnl_bf16 : dnnl_f32;
    PYLLM_TRY(reserve_scratch(ctx, scratch_need(ctx, lin, m)));
    char *at = ctx->scratch;
    const void *src = x;
    if (bf16) {
        uint16_t *rounded = (uint16_t *)at;
        if (pyllm_parallel(m * k > 65536)) {
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < m; i++)
                round_to_bf16(x + i * k, k, rounded + i * k);
        } else {
            round_to_bf16(x, m * k, rounded);
        }
        src = rounded;
        at += pyllm_round64(sizeof(uint16_t) * (size_t)(m * k));
    }
    pyllm_matmul_entry *e = NULL;
    if (lin->type == PYLLM_WEIGHT_BF16 && bf16) {
        PYLLM_TRY(lookup(ctx, dt, m, k, n, n, &e));
        PYLLM_TRY(run(ctx, e, src, lin->q.quants, y));
    } else {
        void *tile = at;
        float *out = (float *)(at + pyllm_round64((bf16 ? 2 : 4) * (size_t)(rows * k)));
        for (int64_t n0 = 0; n0 < n; n0 += rows) {
            const int64_t count = n - n0 < rows ? n - n0 : rows;
            PYLLM_TRY(lookup(ctx, dt, m, k, count, count, &e));
            if (bf16)
                pyllm_qweight_dequantize_bf16(&lin->q, n0, count, tile);
            else
                pyllm_qweight_dequantize_f32(&lin->q, n0, count, tile);
            PYLLM_TRY(run(ctx, e, src, tile, out));
            if (pyllm_parallel(m * count > 65536)) {
#pragma omp parallel for schedule(static)
                for (int64_t i = 0; i < m; i++)
                    memcpy(y + i * n + n0, out + i * count, sizeof(float) * (size_t)count);
            } else {
                for (int64_t i = 0; i < m; i++)
                    memcpy(y + i * n + n0, out + i * count, sizeof(float) * (size_t)count);
            }
        }
    }
    if (lin->bias != NULL)
        pyllm_add_bias(y, n, lin->bias, m, n);
    return PYLLM_OK;
}

const char *pyllm_matmul_prefill_compute(pyllm_matmul_ctx *ctx, pyllm_weight_type type)
{
    if (type == PYLLM_WEIGHT_F32)
        return "float32";
    if (prefill_in_int8(ctx, type))
        return "int8";
    return prefill_in_bf16(ctx) ? "bfloat16" : "float32";
}

/* Batch-invariant mode: one path for every m, each activation row computed on its own. */
static pyllm_status forward_invariant(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, const float *x, float *y,
                                      int64_t m)
{
    if (lin->type == PYLLM_WEIGHT_F32) {
        pyllm_gemm_f32(lin->plain, lin->n, lin->k, x, m, lin->bias, y);
        return PYLLM_OK;
    }
    PYLLM_TRY(reserve_scratch(ctx, scratch_need(ctx, lin, m)));
    for (int64_t i = 0; i < m; i += PYLLM_INVARIANT_PASS_M) {
        const int64_t rows = m - i < PYLLM_INVARIANT_PASS_M ? m - i : PYLLM_INVARIANT_PASS_M;
        pyllm_gemv(&lin->q, x + i * lin->k, rows, lin->bias, y + i * lin->n, lin->n, ctx->scratch);
    }
    return PYLLM_OK;
}

/* float32: our streaming kernel for decode (a single pass over the weights, as fast as the
 * memory allows), oneDNN's GEMM on the same plain weights above. */
static pyllm_status forward_f32(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, const float *x, float *y, int64_t m)
{
    if (m <= PYLLM_GEMV_MAX_M) {
        pyllm_gemm_f32(lin->plain, lin->n, lin->k, x, m, lin->bias, y);
        return PYLLM_OK;
    }
    pyllm_matmul_entry *e = NULL;
    PYLLM_TRY(lookup(ctx, dnnl_f32, m, lin->k, lin->n, lin->n, &e));
    PYLLM_TRY(run(ctx, e, x, lin->plain, y));
    if (lin->bias != NULL)
        pyllm_add_bias(y, lin->n, lin->bias, m, lin->n);
    return PYLLM_OK;
}

pyllm_status pyllm_linear_forward(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, const float *x,
                                  float *y, int64_t m)
{
    if (m <= 0)
        return PYLLM_OK;
    if (lin->invariant)
        return forward_invariant(ctx, lin, x, y, m);
    if (lin->type == PYLLM_WEIGHT_F32)
        return forward_f32(ctx, lin, x, y, m);
    if (m > PYLLM_GEMV_MAX_M && !prefill_in_int8(ctx, lin->type))
        return forward_tiles(ctx, lin, x, y, m);
    PYLLM_TRY(reserve_scratch(ctx, scratch_need(ctx, lin, m)));
    if (m > PYLLM_GEMV_MAX_M)
        pyllm_gemv_tiled(&lin->q, x, m, lin->bias, y, lin->n, ctx->scratch);
    else
        pyllm_gemv(&lin->q, x, m, lin->bias, y, lin->n, ctx->scratch);
    return PYLLM_OK;
}

pyllm_status pyllm_linear_forward_many(pyllm_matmul_ctx *ctx, const pyllm_linear *const *lins, int count,
                                       const float *x, float *const *ys, int64_t m)
{
    /* decode; or prefill by the int8 dot products, outside batch-invariant mode */
    const int tiled = m > PYLLM_GEMV_MAX_M;
    int shared = m > 0 && count <= PYLLM_LINEAR_MANY_MAX && lins[0]->type != PYLLM_WEIGHT_F32 &&
                 (!tiled || (prefill_in_int8(ctx, lins[0]->type) && !lins[0]->invariant));
    for (int i = 1; i < count && shared; i++)
        shared = lins[i]->type == lins[0]->type && lins[i]->k == lins[0]->k && lins[i]->invariant == lins[0]->invariant;
    if (!shared) {
        for (int i = 0; i < count; i++)
            PYLLM_TRY(pyllm_linear_forward(ctx, lins[i], x, ys[i], m));
        return PYLLM_OK;
    }
    pyllm_gemv_out outs[PYLLM_LINEAR_MANY_MAX];
    for (int i = 0; i < count; i++)
        outs[i] = (pyllm_gemv_out){.w = &lins[i]->q, .bias = lins[i]->bias, .y = ys[i], .ldy = lins[i]->n};
    PYLLM_TRY(reserve_scratch(ctx, scratch_need(ctx, lins[0], m)));
    if (tiled)
        pyllm_gemv_tiled_many(outs, count, x, m, ctx->scratch);
    else
        pyllm_gemv_many(outs, count, x, m, ctx->scratch);
    return PYLLM_OK;
}
