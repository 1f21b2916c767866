#include "generate/beam.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/alloc.h"
#include "ops/log_softmax.h"

/* transformers' stand-in for "impossible": added, in float32, to scores that must lose. */
#define BEAM_NEG 1.0e9f

/* A hypothesis: its tokens (prompt as given, then new ones, pad_token_id after), its real tokens
 * for the processors (padding left out), and the running beam each step extended. */
typedef struct {
    int64_t *seq;  /* [width] */
    int32_t *hist; /* [n_prompt + max_new] */
    int64_t *bidx; /* [max_new] */
} hyp_arrays;

typedef struct {
    int64_t batch, beams, keep, vocab, width, max_new, prompt_len, hist_width;
    hyp_arrays run, fin, cand;          /* [batch * beams], [batch * beams], [keep] (one prompt's) */
    hyp_arrays tmp;                     /* [beams]: next running beams of one prompt */
    float *run_score, *fin_score;       /* [batch * beams] */
    uint8_t *fin_flag;                  /* [batch * beams] */
    uint8_t *heur, *done;               /* [batch]: an improvement still possible; search ended */
    int64_t *n_prompt;                  /* [batch] */
    float *logits, *lp;                 /* [batch * beams, vocab] */
    float *cand_score, *merged_score;   /* [keep], [beams + keep] */
    int64_t *cand_beam, *merged_from;   /* [keep], [beams + keep] */
    int32_t *cand_token;
    uint8_t *cand_hit, *merged_flag;
    float *tmp_score;                   /* [beams] */
    uint8_t *tmp_flag;                  /* [beams] */
    int64_t *src_beam;                  /* [batch * beams]: the running beam each new one extends */
    int64_t *live, *gather;             /* [batch], [batch * beams] */
    int32_t *next;                      /* [batch * beams] */
    void *cache_scratch;
    pyllm_processor_scratch scratch;
} beam_state;

static void hyp_free(hyp_arrays *h)
{
    pyllm_free(h->seq);
    pyllm_free(h->hist);
    pyllm_free(h->bidx);
}

static int hyp_alloc(hyp_arrays *h, const beam_state *s, int64_t n)
{
    h->seq = pyllm_alloc(pyllm_mul_size((size_t)n, (size_t)s->width * sizeof(int64_t)));
    h->hist = pyllm_alloc(pyllm_mul_size((size_t)n, (size_t)s->hist_width * sizeof(int32_t)));
    h->bidx = pyllm_alloc(pyllm_mul_size((size_t)n, (size_t)(s->max_new > 0 ? s->max_new : 1) * sizeof(int64_t)));
    return h->seq != NULL && h->hist != NULL && h->bidx != NULL;
}

static void hyp_copy(const beam_state *s, hyp_arrays *dst, int64_t d, const hyp_arrays *src, int64_t i)
{
    memcpy(dst->seq + d * s->width, src->seq + i * s->width, sizeof(int64_t) * (size_t)s->width);
    memcpy(dst->hist + d * s->hist_width, src->hist + i * s->hist_width, sizeof(int32_t) * (size_t)s->hist_width);
    memcpy(dst->bidx + d * s->max_new, src->bidx + i * s->max_new, sizeof(int64_t) * (size_t)s->max_new);
}

static void state_release(beam_state *s)
{
    hyp_free(&s->run);
    hyp_free(&s->fin);
    hyp_free(&s->cand);
    hyp_free(&s->tmp);
    void *bufs[] = {s->run_score, s->fin_score, s->fin_flag, s->heur, s->done, s->n_prompt, s->logits, s->lp,
                    s->cand_score, s->merged_score, s->cand_beam, s->merged_from, s->cand_token, s->cand_hit,
                    s->merged_flag, s->tmp_score, s->tmp_flag, s->src_beam, s->live, s->gather, s->next, s->cache_scratch};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        pyllm_free(bufs[i]);
    pyllm_processor_scratch_release(&s->scratch);
}

static pyllm_status state_init(beam_state *s, const pyllm_kv_cache *cache, const pyllm_generate_options *opt,
                               int64_t batch, int64_t beams, int64_t vocab, int64_t prompt_len)
{
    const int64_t n_eos = opt->processors.n_eos;
    s->batch = batch;
    s->beams = beams;
    s->keep = (n_eos + 1 > 2 ? n_eos + 1 : 2) * beams; /* at least `beams` of them do not end */
    if (s->keep > beams * vocab)
        s->keep = beams * vocab;
    s->vocab = vocab;
    s->max_new = opt->max_new_tokens;
    s->prompt_len = prompt_len;
    s->width = prompt_len + s->max_new;
    s->hist_width = s->width;
    const size_t rows = (size_t)(batch * beams), b = (size_t)batch, k = (size_t)s->keep;
    const size_t rv = pyllm_mul_size(rows, (size_t)vocab * sizeof(float));
    int ok = hyp_alloc(&s->run, s, batch * beams) && hyp_alloc(&s->fin, s, batch * beams) &&
             hyp_alloc(&s->cand, s, s->keep) && hyp_alloc(&s->tmp, s, beams);
    s->run_score = pyllm_alloc(sizeof(float) * rows);
    s->fin_score = pyllm_alloc(sizeof(float) * rows);
    s->fin_flag = pyllm_calloc(rows, 1);
    s->heur = pyllm_alloc(b);
    s->done = pyllm_calloc(b, 1);
    s->n_prompt = pyllm_alloc(sizeof(int64_t) * b);
    s->logits = pyllm_alloc(rv);
    s->lp = pyllm_alloc(rv);
    s->cand_score = pyllm_alloc(sizeof(float) * k);
    s->merged_score = pyllm_alloc(sizeof(float) * (k + (size_t)beams));
    s->cand_beam = pyllm_alloc(sizeof(int64_t) * k);
    s->merged_from = pyllm_alloc(sizeof(int64_t) * (k + (size_t)beams));
    s->cand_token = pyllm_alloc(sizeof(int32_t) * k);
    s->cand_hit = pyllm_alloc(k);
    s->merged_flag = pyllm_alloc(k + (size_t)beams);
    s->tmp_score = pyllm_alloc(sizeof(float) * (size_t)beams);
    s->tmp_flag = pyllm_alloc((size_t)beams);
    s->src_beam = pyllm_alloc(sizeof(int64_t) * rows);
    s->live = pyllm_alloc(sizeof(int64_t) * b);
    s->gather = pyllm_alloc(sizeof(int64_t) * rows);
    s->next = pyllm_alloc(sizeof(int32_t) * rows);
    s->cache_scratch = pyllm_alloc(pyllm_kv_cache_gather_scratch_bytes(cache, (int64_t)rows) + 64);
    if (!ok || s->run_score == NULL || s->fin_score == NULL || s->fin_flag == NULL || s->heur == NULL ||
        s->done == NULL || s->n_prompt == NULL || s->logits == NULL || s->lp == NULL || s->cand_score == NULL ||
        s->merged_score == NULL || s->cand_beam == NULL || s->merged_from == NULL || s->cand_token == NULL ||
        s->cand_hit == NULL || s->merged_flag == NULL || s->tmp_score == NULL || s->tmp_flag == NULL || s->src_beam == NULL ||
        s->live == NULL || s->gather == NULL || s->next == NULL || s->cache_scratch == NULL)
        return PYLLM_ERR_MEMORY;
    return pyllm_processor_scratch_init(&s->scratch, (int32_t)vocab);
}

/* Every beam of prompt b starts as the prompt; only beam 0 counts at first (the others score
 * -1e9, so the first step does not pick the same token on every beam). */
static void load_prompts(beam_state *s, const int32_t *prompt, const uint8_t *mask, int32_t pad)
{
    for (int64_t b = 0; b < s->batch; b++) {
        int64_t n = 0;
        const int64_t first = b * s->beams;
        for (int64_t t = 0; t < s->prompt_len; t++) {
            const int32_t token = prompt[b * s->prompt_len + t];
            s->run.seq[first * s->width + t] = token;
            if (mask == NULL || mask[b * s->prompt_len + t])
                s->run.hist[first * s->hist_width + n++] = token;
        }
        for (int64_t t = s->prompt_len; t < s->width; t++)
            s->run.seq[first * s->width + t] = pad;
        for (int64_t t = 0; t < s->max_new; t++)
            s->run.bidx[first * s->max_new + t] = -1;
        s->n_prompt[b] = n;
        s->heur[b] = 1;
        for (int64_t k = 0; k < s->beams; k++) {
            if (k > 0)
                hyp_copy(s, &s->run, first + k, &s->run, first);
            hyp_copy(s, &s->fin, first + k, &s->run, first);
            s->run_score[first + k] = k == 0 ? 0.0f : -BEAM_NEG;
            s->fin_score[first + k] = -BEAM_NEG;
        }
    }
}

static int is_eos(const pyllm_processor_params *p, int32_t token)
{
    for (int64_t i = 0; i < p->n_eos; i++)
        if (p->eos_ids[i] == token)
            return 1;
    return 0;
}

/* The `keep` best (beam, token) continuations of one prompt by summed score, best first (equal
 * scores: the lower flat index first). lp holds its beams' processed log-probabilities. */
static void top_continuations(beam_state *s, const float *lp, const float *run_score)
{
    int64_t n = 0;
    for (int64_t k = 0; k < s->beams; k++)
        for (int64_t v = 0; v < s->vocab; v++) {
            const float x = lp[k * s->vocab + v] + run_score[k];
            if (n == s->keep && !(x > s->cand_score[n - 1]))
                continue;
            int64_t at = n < s->keep ? n++ : n - 1;
            while (at > 0 && x > s->cand_score[at - 1]) {
                s->cand_score[at] = s->cand_score[at - 1];
                s->cand_beam[at] = s->cand_beam[at - 1];
                s->cand_token[at] = s->cand_token[at - 1];
                at--;
            }
            s->cand_score[at] = x;
            s->cand_beam[at] = k;
            s->cand_token[at] = (int32_t)v;
        }
}

/* One prompt's step after its candidates are known: file the finished ones among its best
 * finished hypotheses, pick its next running beams, update its stopping heuristic. */
static void advance_prompt(beam_state *s, const pyllm_generate_options *opt, const pyllm_beam_params *bp,
                           int64_t b, int64_t step)
{
    const int64_t nb = s->beams, first = b * nb, column = s->prompt_len + step;
    const float denom = (float)pow((double)(step + 1), (double)bp->length_penalty);
    /* The candidates as hypotheses: their running beam, extended by their token. */
    for (int64_t c = 0; c < s->keep; c++) {
        const int64_t from = first + s->cand_beam[c];
        hyp_copy(s, &s->cand, c, &s->run, from);
        s->cand.seq[c * s->width + column] = s->cand_token[c];
        s->cand.hist[c * s->hist_width + s->n_prompt[b] + step] = s->cand_token[c];
        s->cand.bidx[c * s->max_new + step] = from;
        s->cand_hit[c] = is_eos(&opt->processors, s->cand_token[c]) || step + 1 == s->max_new;
    }
    /* Finished: only the first num_beams candidates may enter, scored with the length penalty.
     * (transformers also bars prompts that are full under early_stopping=True or cannot improve:
     * here those have left the search, see `done`.) */
    int64_t n = 0;
    for (int64_t k = 0; k < nb; k++, n++) {
        s->merged_score[n] = s->fin_score[first + k];
        s->merged_from[n] = -1 - k;
        s->merged_flag[n] = s->fin_flag[first + k];
    }
    for (int64_t c = 0; c < s->keep; c++, n++) {
        const int just = s->cand_hit[c] && c < nb;
        float x = s->cand_score[c] / denom;
        if (!just)
            x += -BEAM_NEG;
        s->merged_score[n] = x;
        s->merged_from[n] = c;
        s->merged_flag[n] = (uint8_t)just;
    }
    /* The best nb of the merged list (a selection: earlier entries win ties), into tmp. */
    for (int64_t k = 0; k < nb; k++) {
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++)
            if (s->merged_from[i] != INT64_MIN && (best < 0 || s->merged_score[i] > s->merged_score[best]))
                best = i;
        const int64_t from = s->merged_from[best];
        if (from >= 0)
            hyp_copy(s, &s->tmp, k, &s->cand, from);
        else
            hyp_copy(s, &s->tmp, k, &s->fin, first + (-1 - from));
        s->tmp_score[k] = s->merged_score[best];
        s->tmp_flag[k] = s->merged_flag[best];
        s->merged_from[best] = INT64_MIN;
    }
    for (int64_t k = 0; k < nb; k++) {
        hyp_copy(s, &s->fin, first + k, &s->tmp, k);
        s->fin_score[first + k] = s->tmp_score[k];
        s->fin_flag[first + k] = s->tmp_flag[k];
    }
    /* Running: the best nb candidates that did not end, then (if too few) those that did. */
    int64_t k = 0;
    for (int pass = 0; pass < 2 && k < nb; pass++)
        for (int64_t c = 0; c < s->keep && k < nb; c++)
            if (s->cand_hit[c] == pass) {
                hyp_copy(s, &s->tmp, k, &s->cand, c);
                s->tmp_score[k] = s->cand_score[c] + (pass ? -BEAM_NEG : 0.0f);
                s->src_beam[first + k] = s->cand_beam[c];
                k++;
            }
    for (k = 0; k < nb; k++) {
        hyp_copy(s, &s->run, first + k, &s->tmp, k);
        s->run_score[first + k] = s->tmp_score[k];
    }
    /* Can a running beam still beat the worst finished one? With a positive length penalty and
     * "never", assume it runs to the budget; otherwise that it stops now. */
    const int64_t best_len = bp->early_stopping == PYLLM_EARLY_STOP_NEVER && bp->length_penalty > 0.0f
                                 ? s->max_new : step + 1;
    const float best = s->run_score[first] / (float)pow((double)best_len, (double)bp->length_penalty);
    float worst = s->fin_score[first];
    for (k = 1; k < nb; k++)
        worst = s->fin_score[first + k] < worst ? s->fin_score[first + k] : worst;
    int improvable = 0, all_finished = 1;
    for (k = 0; k < nb; k++) {
        improvable |= best > (s->fin_flag[first + k] ? worst : -BEAM_NEG);
        all_finished &= s->fin_flag[first + k];
    }
    s->heur[b] &= (uint8_t)improvable;
    s->done[b] = !s->heur[b] || (bp->early_stopping == PYLLM_EARLY_STOP_TRUE && all_finished);
}

/* The num_return best finished hypotheses of every prompt, in order, into out. */
static void write_outputs(const beam_state *s, const pyllm_beam_params *bp, pyllm_beam_outputs *out)
{
    const int64_t nr = bp->num_return_sequences;
    out->n_steps = 0;
    for (int64_t b = 0; b < s->batch; b++)
        for (int64_t r = 0; r < nr; r++) {
            const int64_t i = b * s->beams + r, o = b * nr + r;
            memcpy(out->sequences + o * s->width, s->fin.seq + i * s->width, sizeof(int64_t) * (size_t)s->width);
            memcpy(out->beam_indices + o * s->max_new, s->fin.bidx + i * s->max_new,
                   sizeof(int64_t) * (size_t)s->max_new);
            out->sequence_scores[o] = s->fin_score[i];
            int64_t len = 0;
            while (len < s->max_new && s->fin.bidx[i * s->max_new + len] != -1)
                len++;
            out->n_steps = len > out->n_steps ? len : out->n_steps;
        }
}

/* Log-probabilities of the running slots, processed, into s->lp; scores / raw logits recorded. */
static void process_slots(beam_state *s, const pyllm_generate_options *opt, int64_t n_live, int64_t step)
{
    const int64_t nb = s->beams, v = s->vocab, rows = s->batch * nb;
    for (int64_t j = 0; j < n_live * nb; j++) {
        const int64_t b = s->live[j / nb], row = b * nb + j % nb;
        const float *raw = s->logits + j * v;
        float *lp = s->lp + j * v;
        if (opt->raw_logits != NULL)
            memcpy(opt->raw_logits + (step * rows + row) * v, raw, sizeof(float) * (size_t)v);
        pyllm_log_softmax(raw, v, lp);
        pyllm_process_row(&opt->processors, &s->scratch, s->run.hist + row * s->hist_width, s->n_prompt[b] + step,
                          s->n_prompt[b], lp);
        if (opt->scores != NULL)
            memcpy(opt->scores + (step * rows + row) * v, lp, sizeof(float) * (size_t)v);
    }
}

static pyllm_status run(pyllm_decoder *m, pyllm_kv_cache *cache, const int32_t *prompt, const uint8_t *mask,
                        const pyllm_generate_options *opt, const pyllm_beam_params *bp, pyllm_beam_outputs *out,
                        beam_state *s)
{
    const int64_t batch = s->batch, nb = s->beams, v = s->vocab;
    load_prompts(s, prompt, mask, opt->pad_token_id);
    out->steps_run = 0;
    if (s->max_new <= 0) {
        write_outputs(s, bp, out);
        return PYLLM_OK;
    }
    /* The prompt once per prompt row, then its keys copied to every beam of that row. */
    cache->batch = batch;
    PYLLM_TRY(pyllm_decoder_reserve(m, cache, s->prompt_len));
    PYLLM_TRY(pyllm_decoder_forward(m, cache, prompt, mask, s->prompt_len, s->logits, 0));
    for (int64_t j = batch * nb - 1; j >= 0; j--) {
        s->gather[j] = j / nb;
        if (j != j / nb)
            memcpy(s->logits + j * v, s->logits + (j / nb) * v, sizeof(float) * (size_t)v);
    }
    PYLLM_TRY(pyllm_kv_cache_gather_rows(cache, s->gather, batch * nb, s->cache_scratch));
    PYLLM_TRY(pyllm_decoder_reserve(m, cache, 1));
    int64_t n_live = batch;
    for (int64_t b = 0; b < batch; b++)
        s->live[b] = b;
    for (int64_t step = 0;; step++) {
        process_slots(s, opt, n_live, step);
        for (int64_t i = 0; i < n_live; i++) {
            const int64_t b = s->live[i];
            top_continuations(s, s->lp + i * nb * v, s->run_score + b * nb);
            advance_prompt(s, opt, bp, b, step);
        }
        out->steps_run = step + 1;
        /* Prompts whose search ended leave the batch (their results can no longer change). */
        int64_t kept = 0;
        for (int64_t i = 0; i < n_live; i++) {
            const int64_t b = s->live[i];
            if (s->done[b])
                continue;
            for (int64_t k = 0; k < nb; k++) {
                s->gather[kept * nb + k] = i * nb + s->src_beam[b * nb + k];
                s->next[kept * nb + k] = (int32_t)s->run.seq[(b * nb + k) * s->width + s->prompt_len + step];
            }
            s->live[kept++] = b;
        }
        if (kept == 0 || step + 1 == s->max_new)
            break;
        if (opt->hooks.interrupted != NULL && opt->hooks.interrupted(opt->hooks.ctx))
            return pyllm_error(PYLLM_ERR_INTERRUPTED, "generation interrupted after %lld steps",
                               (long long)(step + 1));
        PYLLM_TRY(pyllm_kv_cache_gather_rows(cache, s->gather, kept * nb, s->cache_scratch));
        if (kept != n_live)
            PYLLM_TRY(pyllm_decoder_reserve(m, cache, 1));
        n_live = kept;
        PYLLM_TRY(pyllm_decoder_forward(m, cache, s->next, NULL, 1, s->logits, 0));
    }
    write_outputs(s, bp, out);
    return PYLLM_OK;
}

pyllm_status pyllm_beam_search(pyllm_decoder *m, pyllm_kv_cache *cache, const int32_t *prompt, const uint8_t *mask,
                               int64_t batch, int64_t prompt_len, const pyllm_generate_options *opt,
                               const pyllm_beam_params *beam, pyllm_beam_outputs *out)
{
    if (beam->num_beams < 1 || beam->num_return_sequences < 1 || beam->num_return_sequences > beam->num_beams)
        return pyllm_error(PYLLM_ERR_VALUE, "beam search needs 1 <= num_return_sequences <= num_beams, got %lld and %lld",
                           (long long)beam->num_return_sequences, (long long)beam->num_beams);
    if (opt->sampling.do_sample || opt->hooks.process != NULL || opt->hooks.stop != NULL ||
        opt->hooks.stream != NULL || opt->logprobs != NULL)
        return pyllm_error(PYLLM_ERR_VALUE, "beam search takes no sampling, logits_processor, stopping_criteria, "
                                            "streamer or log-probabilities");
    if (cache->max_batch < batch * beam->num_beams || cache->used != 0)
        return pyllm_error(PYLLM_ERR_VALUE, "beam search needs an empty KV cache of batch * num_beams rows");
    omp_set_num_threads(m->n_threads);
    PYLLM_TRY(pyllm_processor_params_check(&opt->processors, (int32_t)m->config.vocab_size));
    beam_state s;
    memset(&s, 0, sizeof s);
    pyllm_status st = state_init(&s, cache, opt, batch, beam->num_beams, m->config.vocab_size, prompt_len);
    if (st == PYLLM_OK)
        st = run(m, cache, prompt, mask, opt, beam, out, &s);
    state_release(&s);
    return st;
}
