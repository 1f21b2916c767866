#include "ops/matmul.h"

#include <string.h>

#include "core/alloc.h"
#include "ops/dnnl_status.h"

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
    memset(e, 0, sizeof *e);
}

void pyllm_matmul_ctx_release(pyllm_matmul_ctx *ctx)
{
    for (int i = 0; i < PYLLM_MATMUL_CACHE_SIZE; i++)
        entry_release(&ctx->cache[i]);
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

pyllm_status pyllm_linear_init(pyllm_linear *lin, pyllm_matmul_ctx *ctx, const float *weight,
                               const float *bias, int64_t n, int64_t k)
{
    memset(lin, 0, sizeof *lin);
    lin->k = k;
    lin->n = n;
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
    memset(lin, 0, sizeof *lin);
}

/* The cached primitive for this shape, created (evicting the least recently used) if new. */
static pyllm_status lookup(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, int64_t m,
                           pyllm_matmul_entry **out)
{
    int has_bias = lin->bias != NULL;
    pyllm_matmul_entry *victim = &ctx->cache[0];
    ctx->clock++;
    for (int i = 0; i < PYLLM_MATMUL_CACHE_SIZE; i++) {
        pyllm_matmul_entry *e = &ctx->cache[i];
        if (e->primitive && e->m == m && e->k == lin->k && e->n == lin->n && e->has_bias == has_bias) {
            e->last_use = ctx->clock;
            *out = e;
            return PYLLM_OK;
        }
        if (e->last_use < victim->last_use)
            victim = e;
    }
    entry_release(victim);

    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = matmul_pd(ctx, m, lin->k, lin->n, has_bias, lin->weights_md, &pd);
    if (st != dnnl_success)
        return pyllm_dnnl_fail(st, "create a matmul for the packed weights");
    st = dnnl_primitive_create(&victim->primitive, pd);
    if (st == dnnl_success)
        st = dnnl_memory_create(&victim->src, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0),
                                ctx->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success)
        st = dnnl_memory_create(&victim->dst, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0),
                                ctx->engine, DNNL_MEMORY_NONE);
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) {
        entry_release(victim);
        return pyllm_dnnl_fail(st, "create a matmul primitive");
    }
    victim->m = m;
    victim->k = lin->k;
    victim->n = lin->n;
    victim->has_bias = has_bias;
    victim->last_use = ctx->clock;
    *out = victim;
    return PYLLM_OK;
}

pyllm_status pyllm_linear_prepare(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, int64_t m)
{
    pyllm_matmul_entry *e = NULL;
    return lookup(ctx, lin, m, &e);
}

pyllm_status pyllm_linear_forward(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, const float *x,
                                  float *y, int64_t m)
{
    if (m <= 0)
        return PYLLM_OK;
    pyllm_matmul_entry *e = NULL;
    PYLLM_TRY(lookup(ctx, lin, m, &e));
    DNNL_TRY(dnnl_memory_set_data_handle(e->src, (void *)x), "set the matmul input");
    DNNL_TRY(dnnl_memory_set_data_handle(e->dst, y), "set the matmul output");
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, e->src},
        {DNNL_ARG_WEIGHTS, lin->weights_mem},
        {DNNL_ARG_DST, e->dst},
        {DNNL_ARG_BIAS, lin->bias_mem},
    };
    DNNL_TRY(dnnl_primitive_execute(e->primitive, ctx->stream, lin->bias ? 4 : 3, args), "run a matmul");
    DNNL_TRY(dnnl_stream_wait(ctx->stream), "finish a matmul");
    return PYLLM_OK;
}
