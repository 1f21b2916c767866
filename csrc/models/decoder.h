/* The decoder-only transformer skeleton shared by every architecture: configuration, packed
 * weights, the KV cache, and the forward pass over a batch of rows.
 *
 * A model family is a small table of differences (pyllm_decoder_arch) over this skeleton, filled
 * from the generic spec pyllm.architectures makes of any source (csrc/python/py_model.c reads it):
 * the C core never knows a family by name. The loop, the KV cache, the workspace and the sampler
 * are common. */
#ifndef PYLLM_MODELS_DECODER_H
#define PYLLM_MODELS_DECODER_H

#include <stdint.h>

#include "core/error.h"
#include "models/interventions.h"
#include "ops/attention.h"
#include "ops/matmul.h"
#include "ops/rope.h"

typedef enum { PYLLM_NORM_RMS = 0, PYLLM_NORM_LAYER } pyllm_norm_kind;   /* LAYER: with a shift */
typedef enum { PYLLM_POSITION_ROPE = 0, PYLLM_POSITION_ALIBI } pyllm_position_kind;
typedef enum { PYLLM_MLP_SILU_GATED = 0, PYLLM_MLP_GELU_TANH } pyllm_mlp_kind; /* GELU: up, gelu, down */

/* What distinguishes one architecture from another. */
typedef struct {
    pyllm_norm_kind norm;
    pyllm_position_kind position;
    pyllm_mlp_kind mlp;
    int embedding_norm;        /* a norm right after the token embedding */
    int qkv_bias, o_bias, mlp_bias; /* which linear layers have biases (mlp: every one of them) */
} pyllm_decoder_arch;

typedef struct {
    pyllm_decoder_arch arch;
    int64_t vocab_size, hidden_size, intermediate_size, n_layers;
    int64_t n_heads, n_kv_heads, head_dim;
    float norm_eps;
    pyllm_rope_params rope;
    int64_t n_ctx;   /* KV-cache capacity a cache gets by default */
    int residual_from_norm; /* residual = the norm's output, not its input (the spec's
                               residual_from_norm) */
    pyllm_weight_type weight_type;  /* of the blocks' linear layers */
    pyllm_weight_type lm_head_type; /* of the lm_head */
    int batch_invariant;    /* every linear layer computes each row alone, in one order whatever
                               the rows around it (ops/matmul.h): a sequence's logits are the same
                               bits in any batch, padding or cache split */
    pyllm_kv_type kv_type;          /* of the KV cache's keys and values */
} pyllm_decoder_config;

/* A borrowed row-major matrix in its stored element type, converted while it is packed. */
typedef struct {
    const void *data;
    pyllm_source_type type;
} pyllm_tensor;

/* Borrowed arrays as Hugging Face names them: matrices in their stored type, vectors f32; biases
 * may be NULL. gate is only read by a gated MLP; the norm biases (shifts) only by LayerNorm, which
 * needs them. */
typedef struct {
    pyllm_tensor q, k, v, o, gate, up, down;
    const float *q_bias, *k_bias, *v_bias, *o_bias;
    const float *gate_bias, *up_bias, *down_bias;
    const float *input_norm, *post_attention_norm;
    const float *input_norm_bias, *post_attention_norm_bias;
} pyllm_layer_source;

typedef struct {
    pyllm_tensor embed;        /* [vocab, hidden] */
    const float *embed_norm, *embed_norm_bias; /* [hidden], when the arch has embedding_norm */
    const pyllm_layer_source *layers;
    const float *final_norm;   /* [hidden] */
    const float *final_norm_bias; /* [hidden], LayerNorm only */
    pyllm_tensor lm_head;      /* [vocab, hidden]; may equal embed (tied) */
    const float *rope_freq_factors; /* [head_dim / 2] or NULL: each rotary frequency divided by its
                                       factor (GGUF rope_freqs) */
    /* Called after each layer is packed (its source arrays are no longer read), e.g. to release
     * their memory or show progress; a status other than PYLLM_OK stops the load with it. */
    pyllm_status (*layer_packed)(void *ctx, int64_t layer);
    void *layer_packed_ctx;
} pyllm_decoder_source;

typedef struct {
    pyllm_linear q, k, v, o, gate, up, down;
    float *input_norm, *post_attention_norm;
    float *input_norm_bias, *post_attention_norm_bias; /* LayerNorm only */
} pyllm_decoder_layer;

/* Per-call buffers, grown between calls only (never inside the token loop). */
typedef struct {
    int64_t tokens, batch, capacity, threads; /* sizes the buffers currently hold */
    float *x, *h, *q, *k, *v, *attn, *gate, *up;
    float *cos_v, *sin_v;      /* [tokens, head_dim / 2] */
    float *inv_freq;           /* [batch, head_dim / 2] */
    float *scores;             /* [threads, capacity] */
    int64_t *positions;        /* [tokens] */
    int64_t *row_length;       /* [batch]: lengths once the call succeeds */
} pyllm_workspace;

typedef struct {
    pyllm_decoder_config config;
    int n_threads;
    pyllm_matmul_ctx matmul;
    float *embed;              /* [vocab, hidden] f32, or NULL when */
    uint16_t *embed_bf16;      /* the checkpoint's table is bf16: kept so */
    float *embed_norm, *embed_norm_bias;
    pyllm_decoder_layer *layers;
    float *final_norm, *final_norm_bias;
    pyllm_linear lm_head;
    float *base_inv_freq;      /* frequencies of every row unless dynamic scaling grows them */
    float *alibi_slopes;       /* [n_heads], ALiBi archs */
    pyllm_workspace work;
} pyllm_decoder;

/* The keys and values of every layer for `batch` rows of up to `capacity` tokens. */
typedef struct {
    int64_t n_layers, batch, capacity, kv_width; /* kv_width = n_kv_heads * head_dim */
    int64_t head_dim;
    int64_t max_batch;         /* rows the buffers were allocated for (batch may be fewer) */
    int64_t used;              /* slots filled, the same for every row */
    pyllm_kv_type type;        /* of keys and values */
    void *keys;                /* [n_layers][batch][n_kv_heads][head_dim][capacity] */
    void *values;              /* [n_layers][batch][n_kv_heads][capacity][head_dim] */
    uint8_t *valid;            /* [batch][capacity] */
    int32_t *position;         /* [batch][capacity]: the token's position (ALiBi's distance) */
    int64_t *length;           /* [batch]: real (unpadded) tokens so far = next position */
    /* Applied to every token a forward pass appends (models/interventions.h), or NULL: set by the
     * caller that holds the cache for the length of its call (a generation, a model call). */
    const pyllm_intervention_list *interventions;
} pyllm_kv_cache;

/* Layers a model may have: per-layer tables are sized from it before any weight is read
 * (pyllm/_checks.py's LIMITS takes it from _core.MAX_LAYERS). */
#define PYLLM_MAX_LAYERS 4096

/* ValueError naming the first structural rule c breaks (positive sizes, heads in whole key/value
 * groups, an even head_dim for rotary positions, positions that fit int32, ...): decoder_config.c. */
pyllm_status pyllm_decoder_config_check(const pyllm_decoder_config *c);

/* Bytes of the model's weights as packed (linear layers, embedding, norms). */
size_t pyllm_decoder_weight_bytes(const pyllm_decoder *m);

/* Checks the configuration, copies and packs the weights. */
pyllm_status pyllm_decoder_init(pyllm_decoder *m, const pyllm_decoder_config *config,
                                const pyllm_decoder_source *src, int n_threads);
void pyllm_decoder_release(pyllm_decoder *m);

/* The bytes pyllm_kv_cache_init would reserve for `batch` rows of `capacity` slots (checked for
 * overflow: PYLLM_ERR_MEMORY when they cannot be addressed). */
pyllm_status pyllm_kv_cache_bytes(const pyllm_decoder_config *c, int64_t batch, int64_t capacity, size_t *bytes);
/* Reserves the cache without writing to it: memory is taken as slots fill. */
pyllm_status pyllm_kv_cache_init(pyllm_kv_cache *c, const pyllm_decoder *m, int64_t batch, int64_t capacity);
void pyllm_kv_cache_release(pyllm_kv_cache *c);
/* dst (uninitialised) becomes an independent copy of src. */
pyllm_status pyllm_kv_cache_copy(pyllm_kv_cache *dst, const pyllm_kv_cache *src);

/* dst (uninitialised) becomes a cache of `batch` rows, each a copy of src's single row: a shared
 * prompt prefix computed once, continued differently by every row. */
pyllm_status pyllm_kv_cache_repeat(pyllm_kv_cache *dst, const pyllm_kv_cache *src, int64_t batch);

/* dst (uninitialised) becomes a one-row cache of `capacity` slots holding the first `tokens` real
 * tokens of src's row `row` (padding dropped) in its first slots: a computed prefix kept apart
 * from the call that made it (pyllm/prefix_cache.py), or continued with more room. */
pyllm_status pyllm_kv_cache_take(pyllm_kv_cache *dst, const pyllm_kv_cache *src, int64_t row, int64_t tokens,
                                 int64_t capacity);

/* Keep only rows[0..n) (increasing) of the cache, in that order, as rows 0..n-1
 * (kv_cache.c). The buffers keep their size; cache->batch becomes n. */
pyllm_status pyllm_kv_cache_keep_rows(pyllm_kv_cache *c, const int64_t *rows, int64_t n);

/* Bytes of scratch pyllm_kv_cache_gather_rows needs to gather up to `rows` rows. */
size_t pyllm_kv_cache_gather_scratch_bytes(const pyllm_kv_cache *c, int64_t rows);

/* Row j of the cache becomes old row rows[j], for j in [0, n): any order, repeats allowed, n up to
 * max_batch (beam search: each surviving beam takes the keys of the beam it extends). Only the
 * filled slots move, through `scratch` (pyllm_kv_cache_gather_scratch_bytes(c, n) bytes); cache->batch
 * becomes n. */
pyllm_status pyllm_kv_cache_gather_rows(pyllm_kv_cache *c, const int64_t *rows, int64_t n, void *scratch);

/* Drop the last n filled positions of every row (0 <= n <= used): speculative decoding's
 * rollback of rejected draft tokens (kv_cache.c). */
pyllm_status pyllm_kv_cache_truncate(pyllm_kv_cache *c, int64_t n);

/* Make the workspace big enough for calls of up to `tokens` new tokens per row over `cache`,
 * and create the matmul primitives for calls of exactly that many. */
pyllm_status pyllm_decoder_reserve(pyllm_decoder *m, const pyllm_kv_cache *cache, int64_t tokens);

/* Create the matmul primitives of one-token calls over every row count below `rows`: the counts
 * a batch passes through as its rows end and the cache drops them, made before the token loop. */
pyllm_status pyllm_decoder_reserve_fewer_rows(pyllm_decoder *m, int64_t rows);

/* Run n_new tokens per row (tokens[batch, n_new], mask[batch, n_new] with 1 = real token,
 * NULL = all real) through the model, appending them to the cache. Position of a real token =
 * the row's real tokens before it. logits: [batch, n_new, vocab] when all_positions, else
 * [batch, vocab] for each row's last new token; NULL for none. */
pyllm_status pyllm_decoder_forward(pyllm_decoder *m, pyllm_kv_cache *cache, const int32_t *tokens,
                                   const uint8_t *mask, int64_t n_new, float *logits, int all_positions);

/* Tokens (rows x new tokens) all forward passes of the process have taken in so far. */
int64_t pyllm_decoder_tokens_run(void);

/* What a forward pass writes out; NULL pointers ask for nothing. */
typedef struct {
    float *logits;          /* [batch, keep, vocab] for the last keep new tokens of each row */
    int64_t logits_to_keep; /* keep; 0 = every new token */
    float *hidden_states;   /* [n_layers + 1][batch][n_new][hidden]: each layer's input (the
                               embeddings first), then the final norm's output, as transformers */
    float *attentions;      /* [n_layers][batch][n_heads][n_new][used + n_new]: each layer's
                               attention probabilities over the cache's slots (0 for a padding
                               slot; 1 / (used + n_new) everywhere for a padding query that
                               sees no slot, as transformers' eager attention) */
} pyllm_forward_outputs;

pyllm_status pyllm_decoder_forward_outputs(pyllm_decoder *m, pyllm_kv_cache *cache, const int32_t *tokens,
                                           const uint8_t *mask, int64_t n_new, const pyllm_forward_outputs *out);

/* logits[rows, vocab] of hidden[rows, hidden_size]: the final norm, then the lm_head (the logit
 * lens). normalized: rows x hidden_size floats of scratch. */
pyllm_status pyllm_decoder_unembed(pyllm_decoder *m, const float *hidden, int64_t rows, float *normalized,
                                   float *logits);

#endif
