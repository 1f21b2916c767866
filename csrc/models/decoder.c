#include "models/decoder.h"

#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pool.h"
#include "core/threads.h"
#include "ops/activations.h"
#include "ops/alibi.h"
#include "ops/attention.h"
#include "ops/embedding.h"
#include "ops/norm.h"
#include "ops/quant.h"
#include "ops/quant_gguf.h"

/* ---- weights ---------------------------------------------------------------------------- */

static float *copy_floats(const float *src, int64_t n)
{
    size_t bytes = pyllm_mul_size((size_t)n, sizeof(float));
    if (bytes == 0)
        return NULL;
    float *dst = n >= (1 << 18) ? pyllm_alloc_big(bytes) : pyllm_alloc(bytes);
    if (dst != NULL)
        memcpy(dst, src, bytes);
    return dst;
}

/* An f32 copy of a tensor of n values in any source type (ggml blocks dequantized). */
static float *widen_copy(pyllm_tensor src, int64_t n)
{
    if (src.type == PYLLM_SOURCE_F32)
        return copy_floats(src.data, n);
    float *dst = pyllm_alloc_big(pyllm_mul_size((size_t)n, sizeof(float)));
    if (dst != NULL && pyllm_source_widen(src.data, src.type, n, dst) != PYLLM_OK) {
        pyllm_free(dst);
        return NULL;
    }
    return dst;
}

/* A norm's shift, present exactly when the norm is a LayerNorm. */
static pyllm_status copy_shift(const pyllm_decoder *m, const float *src, float **dst, const char *what)
{
    if (m->config.arch.norm != PYLLM_NORM_LAYER)
        return PYLLM_OK;
    if (src == NULL)
        return pyllm_error(PYLLM_ERR_VALUE, "%s: a LayerNorm needs its bias", what);
    *dst = copy_floats(src, m->config.hidden_size);
    return *dst == NULL ? PYLLM_ERR_MEMORY : PYLLM_OK;
}

static int gated(const pyllm_decoder *m)
{
    return m->config.arch.mlp == PYLLM_MLP_SILU_GATED;
}

static pyllm_status init_layer(pyllm_decoder *m, pyllm_decoder_layer *layer, const pyllm_layer_source *s)
{
    const pyllm_decoder_config *c = &m->config;
    const int64_t d = c->hidden_size, qw = c->n_heads * c->head_dim, kvw = c->n_kv_heads * c->head_dim;
    pyllm_matmul_ctx *ctx = &m->matmul;
    PYLLM_TRY(pyllm_linear_init(&layer->q, ctx, c->weight_type, s->q.data, s->q.type, s->q_bias, qw, d));
    PYLLM_TRY(pyllm_linear_init(&layer->k, ctx, c->weight_type, s->k.data, s->k.type, s->k_bias, kvw, d));
    PYLLM_TRY(pyllm_linear_init(&layer->v, ctx, c->weight_type, s->v.data, s->v.type, s->v_bias, kvw, d));
    PYLLM_TRY(pyllm_linear_init(&layer->o, ctx, c->weight_type, s->o.data, s->o.type, s->o_bias, d, qw));
    if (gated(m))
        PYLLM_TRY(pyllm_linear_init(&layer->gate, ctx, c->weight_type, s->gate.data, s->gate.type, s->gate_bias, c->intermediate_size, d));
    PYLLM_TRY(pyllm_linear_init(&layer->up, ctx, c->weight_type, s->up.data, s->up.type, s->up_bias, c->intermediate_size, d));
    PYLLM_TRY(pyllm_linear_init(&layer->down, ctx, c->weight_type, s->down.data, s->down.type, s->down_bias, d, c->intermediate_size));
    layer->input_norm = copy_floats(s->input_norm, d);
    layer->post_attention_norm = copy_floats(s->post_attention_norm, d);
    if (layer->input_norm == NULL || layer->post_attention_norm == NULL)
        return PYLLM_ERR_MEMORY;
    PYLLM_TRY(copy_shift(m, s->input_norm_bias, &layer->input_norm_bias, "input_layernorm"));
    PYLLM_TRY(copy_shift(m, s->post_attention_norm_bias, &layer->post_attention_norm_bias,
                         "post_attention_layernorm"));
    return PYLLM_OK;
}

static void release_layer(pyllm_decoder_layer *layer)
{
    pyllm_linear_release(&layer->q);
    pyllm_linear_release(&layer->k);
    pyllm_linear_release(&layer->v);
    pyllm_linear_release(&layer->o);
    pyllm_linear_release(&layer->gate);
    pyllm_linear_release(&layer->up);
    pyllm_linear_release(&layer->down);
    pyllm_free(layer->input_norm);
    pyllm_free(layer->post_attention_norm);
    pyllm_free(layer->input_norm_bias);
    pyllm_free(layer->post_attention_norm_bias);
}

static pyllm_status decoder_init(pyllm_decoder *m, const pyllm_decoder_source *src)
{
    const pyllm_decoder_config *c = &m->config;
    PYLLM_TRY(pyllm_matmul_ctx_init(&m->matmul));
    m->matmul.batch_invariant = c->batch_invariant;
    /* The table keeps its stored precision, whatever the weight type: it costs memory, not
     * bandwidth (one row per token), and rounding an f32 table to bf16 moved stories260K's greedy
     * story at step 186. A bf16 table stays bf16 (exact); others become f32. */
    const int64_t table = c->vocab_size * c->hidden_size;
    if (src->embed.type == PYLLM_SOURCE_BF16) {
        m->embed_bf16 = pyllm_alloc_big(pyllm_mul_size((size_t)table, sizeof(uint16_t)));
        if (m->embed_bf16 != NULL)
            memcpy(m->embed_bf16, src->embed.data, sizeof(uint16_t) * (size_t)table);
    } else {
        m->embed = widen_copy(src->embed, table);
    }
    m->final_norm = copy_floats(src->final_norm, c->hidden_size);
    m->base_inv_freq = pyllm_alloc(sizeof(float) * (size_t)(c->head_dim / 2 + 1));
    m->layers = pyllm_calloc((size_t)c->n_layers, sizeof *m->layers);
    if ((m->embed == NULL && m->embed_bf16 == NULL) || m->final_norm == NULL || m->base_inv_freq == NULL ||
        m->layers == NULL)
        return PYLLM_ERR_MEMORY;
    if (c->arch.position == PYLLM_POSITION_ROPE) {
        pyllm_rope_inv_freq(&c->rope, c->rope.max_position_embeddings, m->base_inv_freq);
        /* a GGUF's rope_freqs (Llama-3 scaling as llama.cpp applies it: theta / factor) */
        if (src->rope_freq_factors != NULL) {
            if (c->rope.type == PYLLM_ROPE_DYNAMIC)
                return pyllm_error(PYLLM_ERR_VALUE, "rope frequency factors do not combine with dynamic scaling");
            for (int64_t i = 0; i < c->head_dim / 2; i++)
                m->base_inv_freq[i] /= src->rope_freq_factors[i];
        }
    }
    if (c->arch.position == PYLLM_POSITION_ALIBI) {
        m->alibi_slopes = pyllm_alloc(sizeof(float) * (size_t)c->n_heads);
        if (m->alibi_slopes == NULL)
            return PYLLM_ERR_MEMORY;
        pyllm_alibi_slopes(c->n_heads, m->alibi_slopes);
    }
    if (c->arch.embedding_norm) {
        if (src->embed_norm == NULL)
            return pyllm_error(PYLLM_ERR_VALUE, "the embedding norm's weight is missing");
        if ((m->embed_norm = copy_floats(src->embed_norm, c->hidden_size)) == NULL)
            return PYLLM_ERR_MEMORY;
        PYLLM_TRY(copy_shift(m, src->embed_norm_bias, &m->embed_norm_bias, "model.embed_norm"));
    }
    PYLLM_TRY(copy_shift(m, src->final_norm_bias, &m->final_norm_bias, "model.norm"));
    for (int64_t l = 0; l < c->n_layers; l++) {
        PYLLM_TRY(init_layer(m, &m->layers[l], &src->layers[l]));
        if (src->layer_packed != NULL)
            PYLLM_TRY(src->layer_packed(src->layer_packed_ctx, l));
    }
    PYLLM_TRY(pyllm_linear_init(&m->lm_head, &m->matmul, c->lm_head_type, src->lm_head.data, src->lm_head.type, NULL,
                                c->vocab_size, c->hidden_size));
    return PYLLM_OK;
}

pyllm_status pyllm_decoder_init(pyllm_decoder *m, const pyllm_decoder_config *config,
                                const pyllm_decoder_source *src, int n_threads)
{
    memset(m, 0, sizeof *m);
    PYLLM_TRY(pyllm_decoder_config_check(config));
    m->config = *config;
    m->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
    omp_set_num_threads(m->n_threads);
    pyllm_status st = decoder_init(m, src);
    if (st != PYLLM_OK)
        pyllm_decoder_release(m);
    return st;
}

size_t pyllm_decoder_weight_bytes(const pyllm_decoder *m)
{
    const pyllm_decoder_config *c = &m->config;
    const size_t d = (size_t)c->hidden_size, norm = sizeof(float) * d;
    const size_t shifts = c->arch.norm == PYLLM_NORM_LAYER ? 2 : 1;
    size_t bytes = (size_t)c->vocab_size * d * (m->embed != NULL ? sizeof(float) : sizeof(uint16_t));
    bytes += pyllm_linear_bytes(&m->lm_head) + norm * shifts * (1 + (c->arch.embedding_norm ? 1 : 0));
    for (int64_t l = 0; l < c->n_layers; l++) {
        const pyllm_decoder_layer *layer = &m->layers[l];
        const pyllm_linear *all[] = {&layer->q, &layer->k, &layer->v, &layer->o, &layer->gate, &layer->up,
                                     &layer->down};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++)
            bytes += pyllm_linear_bytes(all[i]);
        bytes += 2 * norm * shifts;
    }
    return bytes;
}

static void workspace_release(pyllm_workspace *w)
{
    float **buffers[] = {&w->x, &w->h, &w->q, &w->k, &w->v, &w->attn, &w->gate, &w->up,
                         &w->cos_v, &w->sin_v, &w->inv_freq, &w->scores};
    for (size_t i = 0; i < sizeof buffers / sizeof *buffers; i++) {
        pyllm_free(*buffers[i]);
        *buffers[i] = NULL;
    }
    pyllm_free(w->positions);
    pyllm_free(w->row_length);
    memset(w, 0, sizeof *w);
}

void pyllm_decoder_release(pyllm_decoder *m)
{
    if (m->layers != NULL)
        for (int64_t l = 0; l < m->config.n_layers; l++)
            release_layer(&m->layers[l]);
    pyllm_free(m->layers);
    pyllm_linear_release(&m->lm_head);
    pyllm_free(m->embed);
    pyllm_free(m->embed_bf16);
    pyllm_free(m->embed_norm);
    pyllm_free(m->embed_norm_bias);
    pyllm_free(m->final_norm);
    pyllm_free(m->final_norm_bias);
    pyllm_free(m->base_inv_freq);
    pyllm_free(m->alibi_slopes);
    workspace_release(&m->work);
    pyllm_matmul_ctx_release(&m->matmul);
    memset(m, 0, sizeof *m);
}

/* ---- workspace ---------------------------------------------------------------------------- */

static int grow(float **buf, int64_t count)
{
    pyllm_free(*buf);
    *buf = pyllm_alloc(sizeof(float) * (size_t)(count > 0 ? count : 1));
    return *buf != NULL;
}

static pyllm_status prepare_primitives(pyllm_decoder *m, int64_t rows)
{
    for (int64_t l = 0; l < m->config.n_layers; l++) {
        pyllm_decoder_layer *layer = &m->layers[l];
        const pyllm_linear *all[] = {&layer->q, &layer->k, &layer->v, &layer->o, &layer->gate, &layer->up,
                                     &layer->down};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++)
            if (all[i] != &layer->gate || gated(m))
                PYLLM_TRY(pyllm_linear_prepare(&m->matmul, all[i], rows));
    }
    return pyllm_linear_prepare(&m->matmul, &m->lm_head, rows);
}

static pyllm_status reserve_buffers(pyllm_decoder *m, const pyllm_kv_cache *cache, int64_t tokens);

pyllm_status pyllm_decoder_reserve_fewer_rows(pyllm_decoder *m, int64_t rows)
{
    for (int64_t r = rows - 1; r >= 1; r--)
        PYLLM_TRY(prepare_primitives(m, r));
    return PYLLM_OK;
}

pyllm_status pyllm_decoder_reserve(pyllm_decoder *m, const pyllm_kv_cache *cache, int64_t tokens)
{
    PYLLM_TRY(reserve_buffers(m, cache, tokens));
    return prepare_primitives(m, tokens * cache->batch);
}

static pyllm_status reserve_buffers(pyllm_decoder *m, const pyllm_kv_cache *cache, int64_t tokens)
{
    pyllm_workspace *w = &m->work;
    const pyllm_decoder_config *c = &m->config;
    const int64_t total = tokens * cache->batch;
    const int64_t threads = omp_get_max_threads();
    const int64_t half = c->head_dim / 2;
    if (total <= w->tokens && cache->batch <= w->batch && cache->capacity <= w->capacity && threads <= w->threads)
        return PYLLM_OK;
    const int64_t t = total > w->tokens ? total : w->tokens;
    const int64_t b = cache->batch > w->batch ? cache->batch : w->batch;
    const int64_t cap = cache->capacity > w->capacity ? cache->capacity : w->capacity;
    const int64_t th = threads > w->threads ? threads : w->threads;
    workspace_release(w);
    const int64_t qw = c->n_heads * c->head_dim, kvw = c->n_kv_heads * c->head_dim;
    int ok = grow(&w->x, t * c->hidden_size) && grow(&w->h, t * c->hidden_size) && grow(&w->q, t * qw) &&
             grow(&w->k, t * kvw) && grow(&w->v, t * kvw) && grow(&w->attn, t * qw) &&
             grow(&w->gate, t * c->intermediate_size) && grow(&w->up, t * c->intermediate_size) &&
             grow(&w->cos_v, t * half) && grow(&w->sin_v, t * half) &&
             grow(&w->inv_freq, b * half) && grow(&w->scores, th * pyllm_attention_rows_per_pass() * cap);
    w->positions = ok ? pyllm_alloc(sizeof(int64_t) * (size_t)t) : NULL;
    w->row_length = ok ? pyllm_alloc(sizeof(int64_t) * (size_t)b) : NULL;
    if (!ok || w->positions == NULL || w->row_length == NULL) {
        workspace_release(w);
        return PYLLM_ERR_MEMORY;
    }
    w->tokens = t;
    w->batch = b;
    w->capacity = cap;
    w->threads = th;
    return PYLLM_OK;
}

/* ---- forward ------------------------------------------------------------------------------ */

/* The architecture's normalisation of `rows` hidden states (bias: LayerNorm's shift). y may be x. */
static pyllm_status normalize(pyllm_decoder *m, const float *x, const float *weight, const float *bias, float *y,
                              int64_t rows)
{
    switch (m->config.arch.norm) {
    case PYLLM_NORM_RMS:
        pyllm_rms_norm(x, weight, y, rows, m->config.hidden_size, m->config.norm_eps);
        break;
    case PYLLM_NORM_LAYER:
        pyllm_layer_norm(x, weight, bias, y, rows, m->config.hidden_size, m->config.norm_eps);
        break;
    }
    return PYLLM_OK;
}

typedef struct {
    float *x;
    const float *y;
} add_call;

static void add_range(void *p, int64_t lo, int64_t hi, int self)
{
    (void)self;
    const add_call *c = p;
    for (int64_t i = lo; i < hi; i++)
        c->x[i] += c->y[i];
}

static void add_inplace(float *x, const float *y, int64_t n)
{
    add_call c = {x, y};
    pyllm_pool_for(n, 16384, n > 65536, add_range, &c);
}

/* A loop over a call's new tokens, on the pool. */
typedef struct {
    pyllm_decoder *m;
    pyllm_kv_cache *cache;
    void *keys, *values;
    int64_t n_new;
} token_call;

static void rope_angles_range(void *p, int64_t lo, int64_t hi, int self)
{
    (void)self;
    const token_call *c = p;
    pyllm_workspace *w = &c->m->work;
    const int64_t half = c->m->config.head_dim / 2;
    for (int64_t i = lo; i < hi; i++)
        pyllm_rope_angles(&c->m->config.rope, w->inv_freq + (i / c->n_new) * half, w->positions[i],
                          w->cos_v + i * half, w->sin_v + i * half);
}

/* Positions of the new tokens, slot validity, and each token's cos/sin. Leaves the cache's
 * lengths untouched; returns the new lengths in new_length[batch]. */
static void prepare_positions(pyllm_decoder *m, pyllm_kv_cache *cache, const uint8_t *mask, int64_t n_new,
                              int64_t *new_length)
{
    pyllm_workspace *w = &m->work;
    const pyllm_rope_params *rope = &m->config.rope;
    const int64_t half = m->config.head_dim / 2;
    for (int64_t b = 0; b < cache->batch; b++) {
        int64_t len = cache->length[b];
        for (int64_t t = 0; t < n_new; t++) {
            int real = mask == NULL || mask[b * n_new + t];
            cache->valid[b * cache->capacity + cache->used + t] = (uint8_t)real;
            cache->position[b * cache->capacity + cache->used + t] = real ? (int32_t)len : 0;
            w->positions[b * n_new + t] = len; /* a padding token's position is never seen */
            if (real)
                w->positions[b * n_new + t] = len++;
        }
        new_length[b] = len;
        if (m->config.arch.position != PYLLM_POSITION_ROPE)
            continue;
        /* Dynamic scaling is stateless and per row: the frequencies for this row's length. */
        float *inv_freq = w->inv_freq + b * half;
        if (rope->type == PYLLM_ROPE_DYNAMIC && len > rope->max_position_embeddings)
            pyllm_rope_inv_freq(rope, len, inv_freq);
        else
            memcpy(inv_freq, m->base_inv_freq, sizeof(float) * (size_t)half);
    }
    if (m->config.arch.position != PYLLM_POSITION_ROPE)
        return;
    token_call c = {.m = m, .cache = cache, .n_new = n_new};
    const int64_t total = cache->batch * n_new;
    pyllm_pool_for(total, 64, total > 64, rope_angles_range, &c);
}

/* New token i of the call (row i / n_new): position its query and key (rotary: rotate them), then
 * file its key and value in its slot of this layer's keys and values (in the cache's type). */
static void place_token(pyllm_decoder *m, const pyllm_kv_cache *cache, void *keys, void *values, int64_t n_new,
                        int64_t i)
{
    const pyllm_decoder_config *c = &m->config;
    pyllm_workspace *w = &m->work;
    const int64_t hd = c->head_dim, half = hd / 2, qw = c->n_heads * hd, kvw = c->n_kv_heads * hd;
    const int64_t b = i / n_new, slot = cache->used + i % n_new;
    if (c->arch.position == PYLLM_POSITION_ROPE) {
        pyllm_rope_apply(w->q + i * qw, c->n_heads, hd, c->rope.dim, w->cos_v + i * half, w->sin_v + i * half);
        pyllm_rope_apply(w->k + i * kvw, c->n_kv_heads, hd, c->rope.dim, w->cos_v + i * half, w->sin_v + i * half);
    }
    for (int64_t g = 0; g < c->n_kv_heads; g++) {
        const int64_t head = (b * c->n_kv_heads + g) * cache->capacity * hd;
        const float *k = w->k + i * kvw + g * hd, *v = w->v + i * kvw + g * hd;
        pyllm_kv_store_span(cache->type, keys, head + slot, cache->capacity, k, hd); /* keys: [head_dim][capacity] */
        pyllm_kv_store_span(cache->type, values, head + slot * hd, 1, v, hd);
    }
}

static void place_tokens(void *p, int64_t lo, int64_t hi, int self)
{
    (void)self;
    const token_call *c = p;
    for (int64_t i = lo; i < hi; i++)
        place_token(c->m, c->cache, c->keys, c->values, c->n_new, i);
}

/* The call's interventions at (layer l, site) on x[batch * n_new][hidden] (none: one test). */
static void intervene(const pyllm_decoder *m, const pyllm_kv_cache *cache, int64_t l, pyllm_site site, float *x,
                      int64_t n_new)
{
    if (cache->interventions != NULL)
        pyllm_interventions_apply(cache->interventions, l, site, x, cache->batch * n_new, n_new, m->work.positions,
                                  cache->valid + cache->used, cache->capacity);
}

/* probs: NULL, or this layer's [batch][n_heads][n_new][used + n_new] attention probabilities. */
static pyllm_status attention_block(pyllm_decoder *m, pyllm_kv_cache *cache, int64_t l, int64_t n_new, float *probs)
{
    const pyllm_decoder_config *c = &m->config;
    pyllm_workspace *w = &m->work;
    pyllm_decoder_layer *layer = &m->layers[l];
    const int64_t total = cache->batch * n_new, hd = c->head_dim, kvw = c->n_kv_heads * hd;

    PYLLM_TRY(normalize(m, w->x, layer->input_norm, layer->input_norm_bias, w->h, total));
    if (c->residual_from_norm)
        memcpy(w->x, w->h, sizeof(float) * (size_t)(total * c->hidden_size));
    const pyllm_linear *qkv[3] = {&layer->q, &layer->k, &layer->v};
    float *const qkv_out[3] = {w->q, w->k, w->v};
    PYLLM_TRY(pyllm_linear_forward_many(&m->matmul, qkv, 3, w->h, qkv_out, total));

    const size_t layer_bytes = (size_t)(cache->batch * cache->capacity * kvw) * pyllm_kv_type_bytes(cache->type);
    void *keys = (char *)cache->keys + (size_t)l * layer_bytes;
    void *values = (char *)cache->values + (size_t)l * layer_bytes;
    token_call placing = {.m = m, .cache = cache, .keys = keys, .values = values, .n_new = n_new};
    pyllm_pool_for(total, 4, total > 1, place_tokens, &placing);

    pyllm_attention_shape shape = {
        .batch = cache->batch, .n_new = n_new, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
        .head_dim = hd, .capacity = cache->capacity, .start = cache->used,
        .scale = (float)(1.0 / sqrt((double)hd)),
        .alibi_slopes = m->alibi_slopes, .key_position = cache->position, .kv_type = cache->type,
        .probs = probs, .probs_len = cache->used + n_new,
    };
    pyllm_attention(&shape, w->q, keys, values, cache->valid, w->attn, w->scores);
    PYLLM_TRY(pyllm_linear_forward(&m->matmul, &layer->o, w->attn, w->h, total));
    intervene(m, cache, l, PYLLM_SITE_ATTN_OUT, w->h, n_new);
    add_inplace(w->x, w->h, total * c->hidden_size);
    return PYLLM_OK;
}

static pyllm_status mlp_block(pyllm_decoder *m, const pyllm_kv_cache *cache, int64_t l, int64_t n_new)
{
    const int64_t total = cache->batch * n_new;
    const pyllm_decoder_config *c = &m->config;
    pyllm_workspace *w = &m->work;
    pyllm_decoder_layer *layer = &m->layers[l];
    PYLLM_TRY(normalize(m, w->x, layer->post_attention_norm, layer->post_attention_norm_bias, w->h, total));
    if (c->residual_from_norm)
        memcpy(w->x, w->h, sizeof(float) * (size_t)(total * c->hidden_size));
    switch (c->arch.mlp) {
    case PYLLM_MLP_SILU_GATED: {
        const pyllm_linear *gate_up[2] = {&layer->gate, &layer->up};
        float *const gate_up_out[2] = {w->gate, w->up};
        PYLLM_TRY(pyllm_linear_forward_many(&m->matmul, gate_up, 2, w->h, gate_up_out, total));
        pyllm_silu_mul(w->gate, w->up, total * c->intermediate_size);
        break;
    }
    case PYLLM_MLP_GELU_TANH: /* the activation lands where the gated MLP's product does */
        PYLLM_TRY(pyllm_linear_forward(&m->matmul, &layer->up, w->h, w->gate, total));
        pyllm_gelu_tanh(w->gate, total * c->intermediate_size);
        break;
    }
    PYLLM_TRY(pyllm_linear_forward(&m->matmul, &layer->down, w->gate, w->h, total));
    intervene(m, cache, l, PYLLM_SITE_MLP_OUT, w->h, n_new);
    add_inplace(w->x, w->h, total * c->hidden_size);
    return PYLLM_OK;
}

/* The final norm of the kept positions (the last `keep` new tokens of every row), gathered
 * into w->h as [batch * keep, hidden]: copied from the already normalised rows when given, else
 * gathered first and normalised together (one primitive call). */
static pyllm_status gather_kept_rows(pyllm_decoder *m, const pyllm_kv_cache *cache, int64_t n_new, int64_t keep,
                                     const float *normalized)
{
    pyllm_workspace *w = &m->work;
    const int64_t d = m->config.hidden_size;
    const float *from = normalized != NULL ? normalized : w->x;
    for (int64_t b = 0; b < cache->batch; b++)
        memcpy(w->h + b * keep * d, from + (b * n_new + n_new - keep) * d, sizeof(float) * (size_t)(keep * d));
    if (normalized != NULL)
        return PYLLM_OK;
    return normalize(m, w->h, m->final_norm, m->final_norm_bias, w->h, cache->batch * keep);
}

/* Multiply-adds of the linear layers for one token: the size of a call's work. */
static int64_t linear_work_per_token(const pyllm_decoder_config *c)
{
    const int64_t d = c->hidden_size, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    const int64_t mlp = (c->arch.mlp == PYLLM_MLP_SILU_GATED ? 3 : 2) * c->intermediate_size * d;
    return c->n_layers * (d * q + 2 * d * kv + q * d + mlp) + c->vocab_size * d;
}

/* Below this many multiply-adds a call runs on one thread: every parallel job (dozens per token)
 * costs a hand-off between threads, which dwarfs tiny layers (with OpenMP's barriers, which also
 * stalled outright when the host had descheduled the other thread, stories260K decoded at 4,000
 * tok/s on one thread against 18-114 on two while another process held a core). */
#define PYLLM_PARALLEL_WORK (INT64_C(1) << 22)

static int threads_for(const pyllm_decoder *m, int64_t tokens)
{
    return linear_work_per_token(&m->config) * tokens < PYLLM_PARALLEL_WORK ? 1 : m->n_threads;
}

/* Tokens every forward pass of the process took in (rows x new tokens): tests read it to show that
 * a generation loop feeds each token once (pyllm._testing.decoder_tokens_run). */
static _Atomic int64_t tokens_run;

int64_t pyllm_decoder_tokens_run(void)
{
    return atomic_load(&tokens_run);
}

pyllm_status pyllm_decoder_forward_outputs(pyllm_decoder *m, pyllm_kv_cache *cache, const int32_t *tokens,
                                           const uint8_t *mask, int64_t n_new, const pyllm_forward_outputs *out)
{
    const pyllm_decoder_config *c = &m->config;
    omp_set_num_threads(threads_for(m, cache->batch * n_new));
    if (n_new <= 0)
        return pyllm_error(PYLLM_ERR_VALUE, "input_ids is empty: need at least one token");
    if (out->logits_to_keep < 0)
        return pyllm_error(PYLLM_ERR_VALUE, "logits_to_keep must be >= 0 (0 = every position), got %lld",
                           (long long)out->logits_to_keep);
    if (cache->used + n_new > cache->capacity)
        return pyllm_error(PYLLM_ERR_VALUE,
                           "%lld new tokens do not fit the KV cache: %lld of its %lld positions are used "
                           "(n_ctx)", (long long)n_new, (long long)cache->used, (long long)cache->capacity);
    const int64_t total = cache->batch * n_new, d = c->hidden_size;
    for (int64_t i = 0; i < total; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return pyllm_error(PYLLM_ERR_VALUE, "token id %d at position %lld is out of range [0, %lld)",
                               (int)tokens[i], (long long)i, (long long)c->vocab_size);
    if (cache->interventions != NULL)
        PYLLM_TRY(pyllm_interventions_check(cache->interventions, c->n_layers, d));
    atomic_fetch_add(&tokens_run, total);
    PYLLM_TRY(reserve_buffers(m, cache, n_new));
    pyllm_workspace *w = &m->work;

    int64_t *new_length = w->row_length;
    prepare_positions(m, cache, mask, n_new, new_length);

    /* hidden_states[i]: the input of layer i; the last one is the final norm's output. */
    float *hidden = out->hidden_states;
    const size_t state_bytes = sizeof(float) * (size_t)(total * d);
    if (m->embed != NULL)
        pyllm_embedding(m->embed, d, tokens, total, w->x);
    else
        pyllm_embedding_bf16(m->embed_bf16, d, tokens, total, w->x);
    if (c->arch.embedding_norm)
        PYLLM_TRY(normalize(m, w->x, m->embed_norm, m->embed_norm_bias, w->x, total));
    for (int64_t l = 0; l < c->n_layers; l++) {
        if (hidden != NULL)
            memcpy(hidden + l * total * d, w->x, state_bytes);
        float *probs = NULL;
        if (out->attentions != NULL)
            probs = out->attentions + l * total * c->n_heads * (cache->used + n_new);
        PYLLM_TRY(attention_block(m, cache, l, n_new, probs));
        PYLLM_TRY(mlp_block(m, cache, l, n_new));
        intervene(m, cache, l, PYLLM_SITE_RESIDUAL, w->x, n_new);
    }
    float *normalized = NULL;
    if (hidden != NULL) {
        normalized = hidden + c->n_layers * total * d;
        PYLLM_TRY(normalize(m, w->x, m->final_norm, m->final_norm_bias, normalized, total));
    }
    if (out->logits != NULL) {
        /* The lm_head only for the rows asked for: a long prompt's full logits can be gigabytes. */
        const int64_t keep = out->logits_to_keep == 0 || out->logits_to_keep > n_new ? n_new : out->logits_to_keep;
        PYLLM_TRY(gather_kept_rows(m, cache, n_new, keep, normalized));
        PYLLM_TRY(pyllm_linear_forward(&m->matmul, &m->lm_head, w->h, out->logits, cache->batch * keep));
    }
    /* The new tokens join the cache only once nothing can fail: a failed call leaves it as it was
     * (the slots past `used` it wrote are never read). */
    cache->used += n_new;
    for (int64_t b = 0; b < cache->batch; b++)
        cache->length[b] = new_length[b];
    return PYLLM_OK;
}

pyllm_status pyllm_decoder_forward(pyllm_decoder *m, pyllm_kv_cache *cache, const int32_t *tokens,
                                   const uint8_t *mask, int64_t n_new, float *logits, int all_positions)
{
    pyllm_forward_outputs out = {.logits = logits, .logits_to_keep = all_positions ? 0 : 1};
    return pyllm_decoder_forward_outputs(m, cache, tokens, mask, n_new, &out);
}

pyllm_status pyllm_decoder_unembed(pyllm_decoder *m, const float *hidden, int64_t rows, float *normalized,
                                   float *logits)
{
    omp_set_num_threads(threads_for(m, rows));
    PYLLM_TRY(normalize(m, hidden, m->final_norm, m->final_norm_bias, normalized, rows));
    return pyllm_linear_forward(&m->matmul, &m->lm_head, normalized, logits, rows);
}
