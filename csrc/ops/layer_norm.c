#include "ops/layer_norm.h"

#include <string.h>

#include "ops/dnnl_status.h"

void pyllm_layer_norm_init(pyllm_layer_norm *ln, dnnl_engine_t engine, dnnl_stream_t stream, int64_t dim,
                           float eps)
{
    memset(ln, 0, sizeof *ln);
    ln->engine = engine;
    ln->stream = stream;
    ln->dim = dim;
    ln->eps = eps;
}

static void entry_release(pyllm_layer_norm_entry *e)
{
    dnnl_memory_t *mems[] = {&e->src, &e->dst, &e->scale, &e->shift};
    if (e->primitive)
        dnnl_primitive_destroy(e->primitive);
    for (size_t i = 0; i < sizeof mems / sizeof *mems; i++)
        if (*mems[i])
            dnnl_memory_destroy(*mems[i]);
    memset(e, 0, sizeof *e);
}

void pyllm_layer_norm_release(pyllm_layer_norm *ln)
{
    for (int i = 0; i < PYLLM_LAYER_NORM_CACHE_SIZE; i++)
        entry_release(&ln->cache[i]);
}

static dnnl_status_t create_entry(pyllm_layer_norm *ln, int64_t rows, pyllm_layer_norm_entry *e)
{
    dnnl_memory_desc_t data_md = NULL, param_md = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_dims_t data_dims = {rows, ln->dim}, param_dims = {ln->dim};
    dnnl_status_t st = dnnl_memory_desc_create_with_tag(&data_md, 2, data_dims, dnnl_f32, dnnl_ab);
    if (st == dnnl_success)
        st = dnnl_memory_desc_create_with_tag(&param_md, 1, param_dims, dnnl_f32, dnnl_a);
    /* Statistics derived from src (NULL stat_desc): f32 mean and variance per row. */
    if (st == dnnl_success)
        st = dnnl_layer_normalization_forward_primitive_desc_create(
            &pd, ln->engine, dnnl_forward_inference, data_md, data_md, NULL, ln->eps,
            dnnl_use_scale | dnnl_use_shift, NULL);
    if (st == dnnl_success)
        st = dnnl_primitive_create(&e->primitive, pd);
    if (st == dnnl_success)
        st = dnnl_memory_create(&e->src, data_md, ln->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success)
        st = dnnl_memory_create(&e->dst, data_md, ln->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success)
        st = dnnl_memory_create(&e->scale, param_md, ln->engine, DNNL_MEMORY_NONE);
    if (st == dnnl_success)
        st = dnnl_memory_create(&e->shift, param_md, ln->engine, DNNL_MEMORY_NONE);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    dnnl_memory_desc_destroy(data_md);
    dnnl_memory_desc_destroy(param_md);
    return st;
}

/* The cached primitive for `rows`, created (evicting the least recently used) if new. */
static pyllm_status lookup(pyllm_layer_norm *ln, int64_t rows, pyllm_layer_norm_entry **out)
{
    pyllm_layer_norm_entry *victim = &ln->cache[0];
    ln->clock++;
    for (int i = 0; i < PYLLM_LAYER_NORM_CACHE_SIZE; i++) {
        pyllm_layer_norm_entry *e = &ln->cache[i];
        if (e->primitive && e->rows == rows) {
            e->last_use = ln->clock;
            *out = e;
            return PYLLM_OK;
        }
        if (e->last_use < victim->last_use)
            victim = e;
    }
    entry_release(victim);
    dnnl_status_t st = create_entry(ln, rows, victim);
    if (st != dnnl_success) {
        entry_release(victim);
        return pyllm_dnnl_fail(st, "create a layer normalization primitive");
    }
    victim->rows = rows;
    victim->last_use = ln->clock;
    *out = victim;
    return PYLLM_OK;
}

pyllm_status pyllm_layer_norm_prepare(pyllm_layer_norm *ln, int64_t rows)
{
    pyllm_layer_norm_entry *e = NULL;
    return lookup(ln, rows, &e);
}

pyllm_status pyllm_layer_norm_forward(pyllm_layer_norm *ln, const float *x, const float *scale,
                                      const float *shift, float *y, int64_t rows)
{
    if (rows <= 0)
        return PYLLM_OK;
    pyllm_layer_norm_entry *e = NULL;
    PYLLM_TRY(lookup(ln, rows, &e));
    DNNL_TRY(dnnl_memory_set_data_handle(e->src, (void *)x), "set the layer norm input");
    DNNL_TRY(dnnl_memory_set_data_handle(e->dst, y), "set the layer norm output");
    DNNL_TRY(dnnl_memory_set_data_handle(e->scale, (void *)scale), "set the layer norm scale");
    DNNL_TRY(dnnl_memory_set_data_handle(e->shift, (void *)shift), "set the layer norm shift");
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, e->src},
        {DNNL_ARG_DST, e->dst},
        {DNNL_ARG_SCALE, e->scale},
        {DNNL_ARG_SHIFT, e->shift},
    };
    DNNL_TRY(dnnl_primitive_execute(e->primitive, ln->stream, 4, args), "run a layer normalization");
    DNNL_TRY(dnnl_stream_wait(ln->stream), "finish a layer normalization");
    return PYLLM_OK;
}
