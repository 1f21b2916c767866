/* ThreadSanitizer driver of the C core (issue 9, section 3), with its own pthreads and no CPython:
 *
 *   - every worker runs the generation loop (greedy and sampled) on a model of its own, all at
 *     once: whatever the core shares between models (globals, oneDNN's engine, kernel choice)
 *     is touched from several threads without any lock of ours;
 *   - every worker also generates on one shared model, taking a mutex as the Python binding
 *     takes the model's lock;
 *   - every worker runs jobs on the worker pool (core/pool.h) with 3 threads, all at once: one
 *     caller owns the pool's workers at a time, the others run their jobs alone; a job's items
 *     and its two phases (pyllm_pool_await) must come out whole whoever ran them;
 *   - every worker encodes and decodes with three shared tokenizers (SentencePiece from a
 *     tokenizer.model, SentencePiece from a llama2.c file, byte-level merges BPE described by
 *     dump_merges.py) under the shared side of a readers-writer lock while another thread adds
 *     tokens under its exclusive side, as py_tokenizer.c does.
 *
 * Every result must equal the one computed single-threaded beforehand. Run with
 * OMP_NUM_THREADS=1: libgomp and libdnnl are not instrumented (this build's own loops are
 * compiled without OpenMP, and one thread never opens a region in the extension either).
 *
 *   driver TOKENIZER_MODEL LLAMA2C_TOKENIZER LLAMA2C_VOCAB_SIZE MERGES_DUMP */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/pool.h"
#include "generate/generate.h"
#include "models/decoder.h"
#include "tokenizers/tokenizer.h"

#define WORKERS 4
#define ROUNDS 3
#define NEW_TOKENS 12
#define ADDED 40

static void die(const char *what)
{
    fprintf(stderr, "tsan driver: %s failed: %s\n", what, pyllm_error_message());
    exit(2);
}

/* ---- a small random LLaMA, built here ----------------------------------------------------- */

enum { VOCAB = 512, HIDDEN = 64, FF = 128, LAYERS = 2, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 16, N_CTX = 128 };

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* rows x cols uniform in [-scale, scale) (ones when scale is 0: a norm's weight). */
static float *filled(uint64_t *seed, int64_t rows, int64_t cols, float scale)
{
    float *a = malloc(sizeof(float) * (size_t)(rows * cols));
    if (a == NULL)
        die("malloc");
    for (int64_t i = 0; i < rows * cols; i++)
        a[i] = scale == 0 ? 1.0f : scale * (float)((double)(splitmix(seed) >> 11) / 4503599627370496.0 - 1.0);
    return a;
}

typedef struct {
    pyllm_decoder_config config;
    pyllm_layer_source layers[LAYERS];
    pyllm_decoder_source src;
    float *arrays[16 * LAYERS + 8];
    int n_arrays;
} model_source;

static const float *keep(model_source *ms, float *a)
{
    ms->arrays[ms->n_arrays++] = a;
    return a;
}

static pyllm_tensor matrix(model_source *ms, uint64_t *seed, int64_t rows, int64_t cols)
{
    /* scaled well above an initialisation's std so that greedy output varies */
    return (pyllm_tensor){keep(ms, filled(seed, rows, cols, 3.0f / (float)cols)), PYLLM_SOURCE_F32};
}

static void make_source(model_source *ms)
{
    memset(ms, 0, sizeof *ms);
    uint64_t seed = 5;
    pyllm_decoder_config *c = &ms->config;
    c->arch = (pyllm_decoder_arch){.norm = PYLLM_NORM_RMS, .position = PYLLM_POSITION_ROPE, .mlp = PYLLM_MLP_SILU_GATED};
    c->vocab_size = VOCAB;
    c->hidden_size = HIDDEN;
    c->intermediate_size = FF;
    c->n_layers = LAYERS;
    c->n_heads = HEADS;
    c->n_kv_heads = KV_HEADS;
    c->head_dim = HEAD_DIM;
    c->norm_eps = 1e-5f;
    c->rope = (pyllm_rope_params){.type = PYLLM_ROPE_DEFAULT, .dim = HEAD_DIM, .theta = 10000.0, .factor = 1.0,
                                  .low_freq_factor = 1.0, .high_freq_factor = 4.0,
                                  .original_max_position_embeddings = N_CTX, .max_position_embeddings = N_CTX,
                                  .attention_scaling = 1.0f};
    c->n_ctx = N_CTX;
    c->weight_type = PYLLM_WEIGHT_F32;
    c->lm_head_type = PYLLM_WEIGHT_F32;
    c->kv_type = PYLLM_KV_F32;
    for (int l = 0; l < LAYERS; l++) {
        pyllm_layer_source *s = &ms->layers[l];
        s->q = matrix(ms, &seed, HEADS * HEAD_DIM, HIDDEN);
        s->k = matrix(ms, &seed, KV_HEADS * HEAD_DIM, HIDDEN);
        s->v = matrix(ms, &seed, KV_HEADS * HEAD_DIM, HIDDEN);
        s->o = matrix(ms, &seed, HIDDEN, HEADS * HEAD_DIM);
        s->gate = matrix(ms, &seed, FF, HIDDEN);
        s->up = matrix(ms, &seed, FF, HIDDEN);
        s->down = matrix(ms, &seed, HIDDEN, FF);
        s->input_norm = keep(ms, filled(&seed, HIDDEN, 1, 0));
        s->post_attention_norm = keep(ms, filled(&seed, HIDDEN, 1, 0));
    }
    ms->src.embed = (pyllm_tensor){keep(ms, filled(&seed, VOCAB, HIDDEN, 0.5f)), PYLLM_SOURCE_F32};
    ms->src.layers = ms->layers;
    ms->src.final_norm = keep(ms, filled(&seed, HIDDEN, 1, 0));
    ms->src.lm_head = matrix(ms, &seed, VOCAB, HIDDEN);
}

static void free_source(model_source *ms)
{
    for (int i = 0; i < ms->n_arrays; i++)
        free(ms->arrays[i]);
}

static void build_model(pyllm_decoder *m, const model_source *ms)
{
    if (pyllm_decoder_init(m, &ms->config, &ms->src, 1) != PYLLM_OK)
        die("pyllm_decoder_init");
}

/* ---- generation ---------------------------------------------------------------------------- */

#define N_PROMPTS 3
static const int32_t prompts[N_PROMPTS][6] = {{1, 17, 300, 42, 9, 250}, {1, 5, 5, 5, 80, 81}, {1, 499, 2, 3, 4, 100}};
#define PROMPT_LEN 6
#define WIDTH (PROMPT_LEN + NEW_TOKENS)

/* The prompt's sequence after NEW_TOKENS steps, greedy or sampled (seeded), into out[WIDTH]. */
static void generate(pyllm_decoder *m, int prompt, int sample, int64_t *out)
{
    pyllm_generate_options opt = {
        .max_new_tokens = NEW_TOKENS,
        .sampling = {.do_sample = sample, .temperature = 0.9f, .top_k = sample ? 40 : 0, .top_p = sample ? 0.95f : 1.0f,
                     .min_p = 0.0f, .typical_p = 1.0f},
        .processors = {.repetition_penalty = 1.1f},
        .seed = 11,
        .pad_token_id = 0,
    };
    pyllm_kv_cache cache;
    int64_t steps = 0;
    if (pyllm_kv_cache_init(&cache, m, 1, WIDTH - 1) != PYLLM_OK)
        die("pyllm_kv_cache_init");
    if (pyllm_generate(m, &cache, prompts[prompt], NULL, PROMPT_LEN, &opt, out, &steps, NULL) != PYLLM_OK)
        die("pyllm_generate");
    pyllm_kv_cache_release(&cache);
    if (steps != NEW_TOKENS)
        die("generate: fewer steps than asked");
}

/* ---- the worker pool ----------------------------------------------------------------------- */

#define POOL_JOBS 200
#define POOL_ITEMS 1000

/* Phase one writes item i's square, phase two (after every square is in) reads its neighbour's. */
typedef struct {
    pyllm_chunks first, second;
    _Atomic int64_t done;
    int64_t squares[POOL_ITEMS], sums[POOL_ITEMS];
} pool_job;

static void pool_job_run(void *p, int self)
{
    pool_job *j = p;
    int64_t lo, hi;
    (void)self;
    while (pyllm_chunks_next(&j->first, &lo, &hi)) {
        for (int64_t i = lo; i < hi; i++)
            j->squares[i] = i * i;
        atomic_fetch_add_explicit(&j->done, hi - lo, memory_order_release);
    }
    pyllm_pool_await(&j->done, POOL_ITEMS);
    while (pyllm_chunks_next(&j->second, &lo, &hi))
        for (int64_t i = lo; i < hi; i++)
            j->sums[i] = j->squares[i] + j->squares[(i + 1) % POOL_ITEMS];
}

/* The number of wrong items over POOL_JOBS jobs. */
static int pool_jobs(void)
{
    static _Thread_local pool_job j;
    int wrong = 0;
    for (int r = 0; r < POOL_JOBS; r++) {
        pyllm_chunks_init(&j.first, POOL_ITEMS, 7 + r % 50);
        pyllm_chunks_init(&j.second, POOL_ITEMS, 3 + r % 30);
        atomic_init(&j.done, 0);
        pyllm_pool_run(pool_job_run, &j, 3);
        for (int64_t i = 0; i < POOL_ITEMS; i++)
            wrong += j.sums[i] != i * i + ((i + 1) % POOL_ITEMS) * ((i + 1) % POOL_ITEMS);
    }
    return wrong;
}

/* ---- tokenizers ---------------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0) {
        perror(path);
        exit(2);
    }
    long n = ftell(f);
    rewind(f);
    char *data = malloc((size_t)n + 1);
    if (data == NULL || fread(data, 1, (size_t)n, f) != (size_t)n)
        die(path);
    fclose(f);
    *len = (size_t)n;
    return data;
}

/* A hex string of dump_merges.py in place into bytes ("-" and "=" are empty); its length. */
static size_t unhex(char *s)
{
    if (strcmp(s, "-") == 0 || strcmp(s, "=") == 0)
        return 0;
    size_t n = strlen(s) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            die("a hex string of the merges dump");
        s[i] = (char)v;
    }
    return n;
}

static char *next_field(char **cursor)
{
    char *f = strsep(cursor, " \n");
    if (f == NULL)
        die("a field of the merges dump");
    return f;
}

/* The merges-BPE tokenizer dump_merges.py described. */
static pyllm_tokenizer *load_merges(const char *path)
{
    size_t len;
    char *text = read_file(path, &len);
    text[len] = '\0';
    char *cursor = text;
    int n_vocab, n_steps, unk, byte_fallback, fuse_unk, ignore_merges;
    long n_merges;
    char *header = strsep(&cursor, "\n");
    if (sscanf(header, "pyllm-merges %d %ld %d %d %d %d %d", &n_vocab, &n_merges, &n_steps, &unk, &byte_fallback,
               &fuse_unk, &ignore_merges) != 7)
        die("the merges dump's header");
    pyllm_tokenizer *tok = pyllm_tokenizer_new(PYLLM_TOKENIZER_MERGES);
    pyllm_merges_tokenizer *m = &tok->as.merges;
    if (tok == NULL || pyllm_merges_tokenizer_init(m, n_vocab, (size_t)n_merges) != PYLLM_OK)
        die("pyllm_merges_tokenizer_init");
    for (int i = 0; i < n_vocab; i++) {
        char *t = next_field(&cursor);
        size_t n = unhex(t);
        if (pyllm_merges_add_vocab(m, t, n) != PYLLM_OK)
            die("pyllm_merges_add_vocab");
    }
    for (long i = 0; i < n_merges; i++) {
        char *a = next_field(&cursor), *b = next_field(&cursor);
        size_t na = unhex(a), nb = unhex(b);
        if (pyllm_merges_add_merge(m, a, na, b, nb) != PYLLM_OK)
            die("pyllm_merges_add_merge");
    }
    for (int i = 0; i < n_steps; i++) {
        int v[5];
        for (int j = 0; j < 5; j++)
            v[j] = atoi(next_field(&cursor));
        char *s1 = next_field(&cursor), *s2 = next_field(&cursor);
        size_t n1 = unhex(s1), n2 = unhex(s2);
        if (pyllm_merges_add_step(m, v[0], v[1], s1, n1, s2, n2, v[2], v[3], v[4]) != PYLLM_OK)
            die("pyllm_merges_add_step");
    }
    if (pyllm_merges_finish(m, unk, byte_fallback, fuse_unk, ignore_merges) != PYLLM_OK)
        die("pyllm_merges_finish");
    free(text);
    return tok;
}

#define N_TOKENIZERS 3
#define N_TEXTS 5
static const char *const texts[N_TEXTS] = {
    "Hello world",
    "Once upon a time, in a land far away, there lived 3 kings and 12 dragons.",
    "Z\xc3\xbcrich \xe6\x9d\xb1\xe4\xba\xac 42 \xe2\x80\x94 na\xc3\xafve caf\xc3\xa9 \xf0\x9f\xa6\x99 and\ttabs\n",
    "   leading spaces and trailing   ",
    "a <|tsan_extra_ b <| c <|tsan_extra__x d <|tsan_extra___", /* prefixes of the added tokens */
};

typedef struct {
    pyllm_tokenizer *tok[N_TOKENIZERS];
    pthread_rwlock_t guard; /* one for all three: the binding has one per tokenizer */
    pyllm_ids ids[N_TOKENIZERS][N_TEXTS];
    pyllm_bytes text[N_TOKENIZERS][N_TEXTS];
} shared_tokenizers;

static void encode_decode(pyllm_tokenizer *tok, const char *text, pyllm_ids *ids, pyllm_bytes *out)
{
    if (pyllm_tokenizer_encode(tok, text, strlen(text), PYLLM_ENCODE_SPLIT_SPECIALS, ids) != PYLLM_OK)
        die("pyllm_tokenizer_encode");
    if (pyllm_tokenizer_decode(tok, ids->data, ids->len, 0, out) != PYLLM_OK)
        die("pyllm_tokenizer_decode");
}

/* ---- the threads --------------------------------------------------------------------------- */

typedef struct {
    shared_tokenizers *toks;
    pyllm_decoder *own, *shared;
    pthread_mutex_t *shared_lock;
    int64_t (*expected)[2][WIDTH];
    int index, mismatches;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    int64_t out[WIDTH];
    for (int r = 0; r < ROUNDS; r++) {
        w->mismatches += pool_jobs();
        for (int p = 0; p < N_PROMPTS; p++) {
            const int sample = (p + r + w->index) & 1;
            generate(w->own, p, sample, out);
            w->mismatches += memcmp(out, w->expected[p][sample], sizeof out) != 0;
            pthread_mutex_lock(w->shared_lock);
            generate(w->shared, p, !sample, out);
            pthread_mutex_unlock(w->shared_lock);
            w->mismatches += memcmp(out, w->expected[p][!sample], sizeof out) != 0;
        }
        for (int k = 0; k < N_TOKENIZERS; k++)
            for (int t = 0; t < N_TEXTS; t++) {
                pyllm_ids ids = {0};
                pyllm_bytes text = {0};
                pthread_rwlock_rdlock(&w->toks->guard);
                encode_decode(w->toks->tok[k], texts[t], &ids, &text);
                pthread_rwlock_unlock(&w->toks->guard);
                const pyllm_ids *want = &w->toks->ids[k][t];
                const pyllm_bytes *want_text = &w->toks->text[k][t];
                w->mismatches += ids.len != want->len || memcmp(ids.data, want->data, sizeof(int32_t) * ids.len) != 0;
                w->mismatches += text.len != want_text->len || memcmp(text.data, want_text->data, text.len) != 0;
                pyllm_ids_free(&ids);
                pyllm_bytes_free(&text);
            }
    }
    return NULL;
}

/* Tokens of new lengths (the special-token matcher regrows, freeing its tables, on each), none
 * whole in the texts: every other one by pyllm_tokenizer_append_token (Tokenizer.add_tokens),
 * which must give it the next id and say it is new, then say it is not when added again. */
static void *add_tokens(void *arg)
{
    shared_tokenizers *s = arg;
    char token[64];
    for (int j = 0; j < ADDED; j++) {
        int n = snprintf(token, sizeof token, "<|tsan_extra%.*s|>", j, "________________________________________");
        pthread_rwlock_wrlock(&s->guard);
        for (int k = 0; k < N_TOKENIZERS; k++) {
            const int32_t next = pyllm_tokenizer_table(s->tok[k])->vocab.n_tokens;
            if (j % 2 == 0) {
                if (pyllm_tokenizer_add_token(s->tok[k], token, (size_t)n, next, 1) != PYLLM_OK)
                    die("pyllm_tokenizer_add_token");
                continue;
            }
            int32_t id, again;
            int fresh, fresh_again;
            if (pyllm_tokenizer_append_token(s->tok[k], token, (size_t)n, 1, 0, &id, &fresh) != PYLLM_OK ||
                pyllm_tokenizer_append_token(s->tok[k], token, (size_t)n, 1, 0, &again, &fresh_again) != PYLLM_OK)
                die("pyllm_tokenizer_append_token");
            if (id != next || !fresh || again != id || fresh_again)
                die("pyllm_tokenizer_append_token: wrong id or freshness");
        }
        pthread_rwlock_unlock(&s->guard);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s TOKENIZER_MODEL LLAMA2C_TOKENIZER LLAMA2C_VOCAB_SIZE MERGES_DUMP\n", argv[0]);
        return 2;
    }
    static shared_tokenizers toks;
    size_t len;
    char *data = read_file(argv[1], &len);
    if (pyllm_tokenizer_from_sentencepiece(data, len, &toks.tok[0]) != PYLLM_OK)
        die("pyllm_tokenizer_from_sentencepiece");
    free(data);
    data = read_file(argv[2], &len);
    if (pyllm_tokenizer_from_llama2c(data, len, atoi(argv[3]), &toks.tok[1]) != PYLLM_OK)
        die("pyllm_tokenizer_from_llama2c");
    free(data);
    toks.tok[2] = load_merges(argv[4]);
    pthread_rwlock_init(&toks.guard, NULL);
    for (int k = 0; k < N_TOKENIZERS; k++)
        for (int t = 0; t < N_TEXTS; t++)
            encode_decode(toks.tok[k], texts[t], &toks.ids[k][t], &toks.text[k][t]);

    model_source ms;
    make_source(&ms);
    static pyllm_decoder shared, own[WORKERS];
    build_model(&shared, &ms);
    for (int i = 0; i < WORKERS; i++)
        build_model(&own[i], &ms);
    free_source(&ms);
    static int64_t expected[N_PROMPTS][2][WIDTH];
    for (int p = 0; p < N_PROMPTS; p++)
        for (int sample = 0; sample < 2; sample++)
            generate(&shared, p, sample, expected[p][sample]);
    int varied = 0;
    for (int p = 1; p < N_PROMPTS; p++)
        varied += memcmp(expected[p][0] + PROMPT_LEN, expected[0][0] + PROMPT_LEN, sizeof(int64_t) * NEW_TOKENS) != 0;

    pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
    worker workers[WORKERS];
    pthread_t threads[WORKERS + 1];
    for (int i = 0; i < WORKERS; i++) {
        workers[i] = (worker){.toks = &toks, .own = &own[i], .shared = &shared, .shared_lock = &shared_lock,
                              .expected = expected, .index = i};
        pthread_create(&threads[i], NULL, work, &workers[i]);
    }
    pthread_create(&threads[WORKERS], NULL, add_tokens, &toks);
    int mismatches = 0;
    for (int i = 0; i <= WORKERS; i++) {
        pthread_join(threads[i], NULL);
        mismatches += i < WORKERS ? workers[i].mismatches : 0;
    }

    for (int i = 0; i < WORKERS; i++)
        pyllm_decoder_release(&own[i]);
    pyllm_decoder_release(&shared);
    for (int k = 0; k < N_TOKENIZERS; k++) {
        for (int t = 0; t < N_TEXTS; t++) {
            pyllm_ids_free(&toks.ids[k][t]);
            pyllm_bytes_free(&toks.text[k][t]);
        }
        pyllm_tokenizer_free(toks.tok[k]);
    }
    pthread_rwlock_destroy(&toks.guard);
    printf("tsan driver: %d workers x %d rounds: %d mismatches; greedy output %s\n", WORKERS, ROUNDS, mismatches,
           varied ? "varies by prompt" : "does NOT vary by prompt");
    return mismatches == 0 && varied ? 0 : 1;
}
