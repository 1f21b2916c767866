#include "ops/matmul.h"

#include <string.h>

#include "core/alloc.h"
#include "ops/dnnl_status.h"
#include "core/threads.h"
#include "ops/gemm_f32.h"
#include "ops/gemv.h"

/* The M whose preferred weight layout we pack into. Decode (M = batch, small) streams every
 * weight once per token and is the latency users feel, so its layout wins; larger M reuse
 * it (oneDNN's brgemm matmul accepts any blocked weight layout for any M). */
#define PACK_FOR_M 1

pyllm_status pyllm_matmul_ctx_init(pyllm_matmul_ctx *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    DNNL_TRY(dnnl_engine_create(&ctx->engine, dnnl_cpu, 0), "create the CPU engine");
    dnnl_status_t st = dnnl_stream_create(&ctx->stream, ctx->engine, dnnl_stream_default_flags);
    if (st != dnnl_success) {
        dnnl_engine_destroy(ctx->engine);
        ctx->engine = NULL;
        return pyllm_dnnl_fail(st, "create a stream");
    }
    return PYLLM_OK;
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

/* Descriptors of one matmul: src [m, k] and dst [m, n] dense, bias [1, n], weights either
 * in the given layout or (weights_md == NULL) "any", for oneDNN to choose. */
static dnnl_status_t matmul_pd(pyllm_matmul_ctx *ctx, int64_t m, int64_t k, int64_t n, int has_bias,
                               const_dnnl_memory_desc_t weights_md, dnnl_primitive_desc_t *pd)
{
    dnnl_memory_desc_t src = NULL, dst = NULL, bias = NULL, any_w = NULL;
    dnnl_dims_t src_dims = {m, k}, dst_dims = {m, n}, w_dims = {k, n}, b_dims = {1, n};
    dnnl_status_t st = dnnl_memory_desc_create_with_tag(&src, 2, src_dims, dnnl_f32, dnnl_ab);
    if (st == dnnl_success)
        st = dnnl_memory_desc_create_with_tag(&dst, 2, dst_dims, dnnl_f32, dnnl_ab);
    if (st == dnnl_success && has_bias)
        st = dnnl_memory_desc_create_with_tag(&bias, 2, b_dims, dnnl_f32, dnnl_ab);
    if (st == dnnl_success && weights_md == NULL) {
        st = dnnl_memory_desc_create_with_tag(&any_w, 2, w_dims, dnnl_f32, dnnl_format_tag_any);
        weights_md = any_w;
    }
    if (st == dnnl_success)
        st = dnnl_matmul_primitive_desc_create(pd, ctx->engine, src, weights_md, bias, dst, NULL);
    dnnl_memory_desc_destroy(src);
    dnnl_memory_desc_destroy(dst);
    dnnl_memory_desc_destroy(bias);
    dnnl_memory_desc_destroy(any_w);
    return st;
}

/* The prefill product of the low-precision paths: src [m, k] dense, weights a tile of n rows
 * [n, k] row-major (the matmul's [k, n] with strides (1, k)), both of the element type dt (bf16,
 * or f32 where the CPU has no bf16 dot products), dst f32 [m, n] inside rows of ldd floats. */
static dnnl_status_t rows_pd(pyllm_matmul_ctx *ctx, dnnl_data_type_t dt, int64_t m, int64_t k, int64_t n,
                             int64_t ldd, dnnl_primitive_desc_t *pd)
{
    dnnl_memory_desc_t src = NULL, dst = NULL, w = NULL;
    dnnl_dims_t src_dims = {m, k}, dst_dims = {m, n}, dst_strides = {ldd, 1}, w_dims = {k, n}, w_strides = {1, k};
    dnnl_status_t st = dnnl_memory_desc_create_with_tag(&src, 2, src_dims, dt, dnnl_ab);
    if (st == dnnl_success)
        st = dnnl_memory_desc_create_with_strides(&dst, 2, dst_dims, dnnl_f32, dst_strides);
    if (st == dnnl_success)
        st = dnnl_memory_desc_create_with_strides(&w, 2, w_dims, dt, w_strides);
    if (st == dnnl_success)
        st = dnnl_matmul_primitive_desc_create(pd, ctx->engine, src, w, NULL, dst, NULL);
    dnnl_memory_desc_destroy(src);
    dnnl_memory_desc_destroy(dst);
    dnnl_memory_desc_destroy(w);
    return st;
}

/* Whether prefill computes in bf16: where the CPU has AVX-512 BF16 (pyllm's AVX-512 kernels
 * need it too) and oneDNN has a bf16 matmul for it. Elsewhere oneDNN 3.2 has none (AVX2) or
 * emulates it slower than f32, so the weights are dequantized to f32 tiles instead: bf16 is
 * then never slower than float32, and keeps its memory saving. */
static int prefill_in_bf16(pyllm_matmul_ctx *ctx)
{
    if (ctx->prefill_dt == 0) {
        dnnl_primitive_desc_t pd = NULL;
        int ok = pyllm_gemv_isa() == PYLLM_ISA_AVX512 && rows_pd(ctx, dnnl_bf16, 16, 64, 64, 64, &pd) == dnnl_success;
        if (pd != NULL)
            dnnl_primitive_desc_destroy(pd);
        ctx->prefill_dt = ok ? dnnl_bf16 : dnnl_f32;
    }
    return ctx->prefill_dt == dnnl_bf16;
}

/* Weight rows per prefill tile: about 1 MB, a multiple of 64 rows. bf16 weights that the GEMM
 * takes as they are are used in place, all rows at once. */
static int64_t tile_rows(pyllm_matmul_ctx *ctx, const pyllm_linear *lin)
{
    if (lin->type == PYLLM_WEIGHT_BF16 && prefill_in_bf16(ctx))
        return lin->n;
    const int64_t element = prefill_in_bf16(ctx) ? 2 : 4;
    int64_t rows = ((int64_t)1 << 20) / (element * lin->k) / 64 * 64;
    if (rows < 64)
        rows = 64;
    return rows < lin->n ? rows : lin->n;
}

static pyllm_status f32_linear_init(pyllm_linear *lin, pyllm_matmul_ctx *ctx, const float *weight,
                                    const float *bias, int64_t n, int64_t k);

/* Batch-invariant float32: the weights as given, [n, k] row-major f32, for ops/gemm_f32.h. */
static pyllm_status plain_f32_linear_init(pyllm_linear *lin, const void *weight, pyllm_source_type src_type,
                                          const float *bias, int64_t n, int64_t k)
{
    memset(lin, 0, sizeof *lin);
    lin->k = k;
    lin->n = n;
    lin->type = PYLLM_WEIGHT_F32;
    lin->invariant = 1;
    lin->packed = pyllm_alloc_big(pyllm_mul_size(pyllm_mul_size((size_t)n, (size_t)k), sizeof(float)));
    if (lin->packed == NULL)
        return PYLLM_ERR_MEMORY;
    pyllm_source_to_f32(weight, src_type, n * k, lin->packed);
    if (bias != NULL) {
        if ((lin->bias = pyllm_alloc(sizeof(float) * (size_t)n)) == NULL) {
            pyllm_linear_release(lin);
            return PYLLM_ERR_MEMORY;
        }
        memcpy(lin->bias, bias, sizeof(float) * (size_t)n);
    }
    return PYLLM_OK;
}

pyllm_status pyllm_linear_init(pyllm_linear *lin, pyllm_matmul_ctx *ctx, pyllm_weight_type type, const void *weight,
                               pyllm_source_type src_type, const float *bias, int64_t n, int64_t k)
{
    if (type != PYLLM_WEIGHT_F32) {
        memset(lin, 0, sizeof *lin);
        lin->k = k;
        lin->n = n;
        lin->type = type;
        lin->invariant = ctx->batch_invariant;
        PYLLM_TRY(pyllm_qweight_init(&lin->q, type, weight, src_type, n, k));
        if (bias != NULL) {
            lin->bias = pyllm_alloc(sizeof(float) * (size_t)n);
            if (lin->bias == NULL) {
                pyllm_linear_release(lin);
                return PYLLM_ERR_MEMORY;
            }
            memcpy(lin->bias, bias, sizeof(float) * (size_t)n);
        }
        return PYLLM_OK;
    }
    if (ctx->batch_invariant)
        return plain_f32_linear_init(lin, weight, src_type, bias, n, k);
    if (src_type == PYLLM_SOURCE_F32)
        return f32_linear_init(lin, ctx, weight, bias, n, k);
    float *wide = pyllm_alloc_big(pyllm_mul_size(pyllm_mul_size((size_t)n, (size_t)k), sizeof(float)));
    if (wide == NULL)
        return PYLLM_ERR_MEMORY;
    pyllm_source_to_f32(weight, src_type, n * k, wide);
    pyllm_status st = f32_linear_init(lin, ctx, wide, bias, n, k);
    pyllm_free(wide);
    return st;
}

size_t pyllm_linear_bytes(const pyllm_linear *lin)
{
    size_t bias = lin->bias != NULL ? sizeof(float) * (size_t)lin->n : 0;
    if (lin->type == PYLLM_WEIGHT_F32 && lin->invariant)
        return sizeof(float) * (size_t)(lin->n * lin->k) + bias;
    if (lin->type == PYLLM_WEIGHT_F32)
        return (lin->weights_md != NULL ? dnnl_memory_desc_get_size(lin->weights_md) : 0) + bias;
    return pyllm_weight_bytes(lin->type, lin->n, lin->k) + bias;
}

static pyllm_status f32_linear_init(pyllm_linear *lin, pyllm_matmul_ctx *ctx, const float *weight,
                                    const float *bias, int64_t n, int64_t k)
{
    memset(lin, 0, sizeof *lin);
    lin->k = k;
    lin->n = n;
    lin->type = PYLLM_WEIGHT_F32;
    pyllm_status status = PYLLM_OK;
    dnnl_primitive_desc_t pd = NULL, reorder_pd = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_memory_desc_t plain_md = NULL;
    dnnl_memory_t plain_mem = NULL;
    dnnl_status_t st;

    st = matmul_pd(ctx, PACK_FOR_M, k, n, bias != NULL, NULL, &pd);
    if (st != dnnl_success) {
        status = pyllm_dnnl_fail(st, "create a matmul primitive descriptor");
        goto done;
    }
    st = dnnl_memory_desc_clone(&lin->weights_md, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0));
    if (st != dnnl_success) {
        status = pyllm_dnnl_fail(st, "query the packed weight layout");
        goto done;
    }
    lin->packed = pyllm_alloc_big(dnnl_memory_desc_get_size(lin->weights_md));
    if (lin->packed == NULL) {
        status = PYLLM_ERR_MEMORY;
        goto done;
    }

    /* HF's weight [n, k] row-major is the matmul's [k, n] operand with strides (1, k). */
    dnnl_dims_t dims = {k, n}, strides = {1, k};
    st = dnnl_memory_desc_create_with_strides(&plain_md, 2, dims, dnnl_f32, strides);
    if (st == dnnl_success)
        st = dnnl_memory_create(&plain_mem, plain_md, ctx->engine, (void *)weight);
    if (st == dnnl_success)
        st = dnnl_memory_create(&lin->weights_mem, lin->weights_md, ctx->engine, lin->packed);
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(&reorder_pd, plain_md, ctx->engine, lin->weights_md,
                                                ctx->engine, NULL);
    if (st == dnnl_success)
        st = dnnl_primitive_create(&reorder, reorder_pd);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, plain_mem}, {DNNL_ARG_TO, lin->weights_mem}};
        st = dnnl_primitive_execute(reorder, ctx->stream, 2, args);
    }
    if (st == dnnl_success)
        st = dnnl_stream_wait(ctx->stream);
    if (st != dnnl_success) {
        status = pyllm_dnnl_fail(st, "pack a weight matrix");
        goto done;
    }

    if (bias != NULL) {
        lin->bias = pyllm_alloc(sizeof(float) * (size_t)n);
        if (lin->bias == NULL) {
            status = PYLLM_ERR_MEMORY;
            goto done;
        }
        memcpy(lin->bias, bias, sizeof(float) * (size_t)n);
        dnnl_memory_desc_t bias_md = NULL;
        dnnl_dims_t b_dims = {1, n};
        st = dnnl_memory_desc_create_with_tag(&bias_md, 2, b_dims, dnnl_f32, dnnl_ab);
        if (st == dnnl_success)
            st = dnnl_memory_create(&lin->bias_mem, bias_md, ctx->engine, lin->bias);
        dnnl_memory_desc_destroy(bias_md);
        if (st != dnnl_success) {
            status = pyllm_dnnl_fail(st, "wrap a bias vector");
            goto done;
        }
    }

done:
    if (reorder)
        dnnl_primitive_destroy(reorder);
    if (reorder_pd)
        dnnl_primitive_desc_destroy(reorder_pd);
    if (plain_mem)
        dnnl_memory_destroy(plain_mem);
    dnnl_memory_desc_destroy(plain_md);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (status != PYLLM_OK)
        pyllm_linear_release(lin);
    return status;
}

pyllm_status pyllm_linear_packed_bytes(pyllm_matmul_ctx *ctx, int64_t n, int64_t k, size_t *bytes)
{
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = matmul_pd(ctx, PACK_FOR_M, k, n, 0, NULL, &pd);
    if (st != dnnl_success)
        return pyllm_dnnl_fail(st, "create a matmul primitive descriptor");
    *bytes = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0));
    dnnl_primitive_desc_destroy(pd);
    return PYLLM_OK;
}

void pyllm_linear_release(pyllm_linear *lin)
{
    if (lin->weights_mem)
        dnnl_memory_destroy(lin->weights_mem);
    if (lin->bias_mem)
        dnnl_memory_destroy(lin->bias_mem);
    if (lin->weights_md)
        dnnl_memory_desc_destroy(lin->weights_md);
    pyllm_free(lin->packed);
    pyllm_free(lin->bias);
    pyllm_qweight_release(&lin->q);
    memset(lin, 0, sizeof *lin);
}

/* The cached primitive for this shape, created (evicting the least recently used) if new. */
static pyllm_status lookup(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, pyllm_matmul_kind kind, int64_t m,
                           int64_t n, int64_t ldd, pyllm_matmul_entry **out)
{
    int has_bias = kind == PYLLM_MATMUL_F32_PACKED && lin->bias != NULL;
    pyllm_matmul_entry *victim = &ctx->cache[0];
    ctx->clock++;
    for (int i = 0; i < PYLLM_MATMUL_CACHE_SIZE; i++) {
        pyllm_matmul_entry *e = &ctx->cache[i];
        if (e->primitive && e->kind == kind && e->m == m && e->k == lin->k && e->n == n && e->ldd == ldd &&
            e->has_bias == has_bias) {
            e->last_use = ctx->clock;
            *out = e;
            return PYLLM_OK;
        }
        if (e->last_use < victim->last_use)
            victim = e;
    }
    entry_release(victim);

    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = kind == PYLLM_MATMUL_F32_PACKED ? matmul_pd(ctx, m, lin->k, n, has_bias, lin->weights_md, &pd)
                                                       : rows_pd(ctx, (dnnl_data_type_t)ctx->prefill_dt, m, lin->k, n, ldd, &pd);
    if (st != dnnl_success)
        return pyllm_dnnl_fail(st, "create a matmul for the packed weights");
    st = dnnl_primitive_create(&victim->primitive, pd);
    if (st == dnnl_success)
        st = dnnl_memory_create(&victim->src, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0),
                                ctx->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success)
        st = dnnl_memory_create(&victim->dst, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0),
                                ctx->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success && kind == PYLLM_MATMUL_ROWS)
        st = dnnl_memory_create(&victim->weights, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0),
                                ctx->engine, DNNL_MEMORY_NONE);
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) {
        entry_release(victim);
        return pyllm_dnnl_fail(st, "create a matmul primitive");
    }
    victim->kind = kind;
    victim->m = m;
    victim->k = lin->k;
    victim->n = n;
    victim->ldd = ldd;
    victim->has_bias = has_bias;
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
    if (m <= PYLLM_GEMV_MAX_M)
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
    if (lin->type == PYLLM_WEIGHT_F32 && lin->invariant)
        return PYLLM_OK; /* no primitive, no scratch */
    if (lin->type == PYLLM_WEIGHT_F32)
        return lookup(ctx, lin, PYLLM_MATMUL_F32_PACKED, m, lin->n, lin->n, &e);
    PYLLM_TRY(reserve_scratch(ctx, scratch_need(ctx, lin, m)));
    if (m <= PYLLM_GEMV_MAX_M || lin->invariant)
        return PYLLM_OK;
    const int64_t rows = tile_rows(ctx, lin);
    PYLLM_TRY(lookup(ctx, lin, PYLLM_MATMUL_ROWS, m, rows, rows, &e));
    if (lin->n % rows != 0)
        PYLLM_TRY(lookup(ctx, lin, PYLLM_MATMUL_ROWS, m, lin->n % rows, lin->n % rows, &e));
    return PYLLM_OK;
}

static pyllm_status run(pyllm_matmul_ctx *ctx, pyllm_matmul_entry *e, const pyllm_linear *lin, const void *x,
                        const void *weights, float *y)
{
    DNNL_TRY(dnnl_memory_set_data_handle(e->src, (void *)x), "set the matmul input");
    DNNL_TRY(dnnl_memory_set_data_handle(e->dst, y), "set the matmul output");
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->src}, {DNNL_ARG_DST, e->dst}};
    int n_args = 2;
    if (e->kind == PYLLM_MATMUL_F32_PACKED) {
        args[n_args++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, lin->weights_mem};
        if (lin->bias != NULL)
            args[n_args++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, lin->bias_mem};
    } else {
        DNNL_TRY(dnnl_memory_set_data_handle(e->weights, (void *)weights), "set the matmul weights");
        args[n_args++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, e->weights};
    }
    DNNL_TRY(dnnl_primitive_execute(e->primitive, ctx->stream, n_args, args), "run a matmul");
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
        PYLLM_TRY(lookup(ctx, lin, PYLLM_MATMUL_ROWS, m, n, n, &e));
        PYLLM_TRY(run(ctx, e, lin, src, lin->q.quants, y));
    } else {
        void *tile = at;
        float *out = (float *)(at + pyllm_round64((bf16 ? 2 : 4) * (size_t)(rows * k)));
        for (int64_t n0 = 0; n0 < n; n0 += rows) {
            const int64_t count = n - n0 < rows ? n - n0 : rows;
            PYLLM_TRY(lookup(ctx, lin, PYLLM_MATMUL_ROWS, m, count, count, &e));
            if (bf16)
                pyllm_qweight_dequantize_bf16(&lin->q, n0, count, tile);
            else
                pyllm_qweight_dequantize_f32(&lin->q, n0, count, tile);
            PYLLM_TRY(run(ctx, e, lin, src, tile, out));
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

int pyllm_matmul_prefill_in_bf16(pyllm_matmul_ctx *ctx) { return prefill_in_bf16(ctx); }

/* Batch-invariant mode: one path for every m, each activation row computed on its own. */
static pyllm_status forward_invariant(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, const float *x, float *y,
                                      int64_t m)
{
    if (lin->type == PYLLM_WEIGHT_F32) {
        pyllm_gemm_f32(lin->packed, lin->n, lin->k, x, m, lin->bias, y);
        return PYLLM_OK;
    }
    PYLLM_TRY(reserve_scratch(ctx, scratch_need(ctx, lin, m)));
    for (int64_t i = 0; i < m; i += PYLLM_INVARIANT_PASS_M) {
        const int64_t rows = m - i < PYLLM_INVARIANT_PASS_M ? m - i : PYLLM_INVARIANT_PASS_M;
        pyllm_gemv(&lin->q, x + i * lin->k, rows, lin->bias, y + i * lin->n, lin->n, ctx->scratch);
    }
    return PYLLM_OK;
}

pyllm_status pyllm_linear_forward(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, const float *x,
                                  float *y, int64_t m)
{
    if (m <= 0)
        return PYLLM_OK;
    if (lin->invariant)
        return forward_invariant(ctx, lin, x, y, m);
    if (lin->type == PYLLM_WEIGHT_F32) {
        pyllm_matmul_entry *e = NULL;
        PYLLM_TRY(lookup(ctx, lin, PYLLM_MATMUL_F32_PACKED, m, lin->n, lin->n, &e));
        return run(ctx, e, lin, x, NULL, y);
    }
    if (m > PYLLM_GEMV_MAX_M)
        return forward_tiles(ctx, lin, x, y, m);
    PYLLM_TRY(reserve_scratch(ctx, scratch_need(ctx, lin, m)));
    pyllm_gemv(&lin->q, x, m, lin->bias, y, lin->n, ctx->scratch);
    return PYLLM_OK;
}
