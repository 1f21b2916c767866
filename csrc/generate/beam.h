/* Beam search in the C loop, with transformers 5.x's semantics (GenerationMixin._beam_search):
 * each prompt keeps num_beams running hypotheses scored by their summed (processed)
 * log-probabilities; every step takes the best (1 + end tokens) * num_beams continuations over
 * all its beams, files those that end (an end token, the length budget) among its num_beams
 * finished hypotheses scored sum / generated_length ** length_penalty, and continues the best
 * num_beams that did not end. The KV cache rows follow the beams (a row gather, no recompute);
 * one decoder call per step covers every beam of every prompt still searching. */
#ifndef PYLLM_GENERATE_BEAM_H
#define PYLLM_GENERATE_BEAM_H

#include <stdint.h>

#include "generate/generate.h"

typedef enum {
    PYLLM_EARLY_STOP_HEURISTIC = 0, /* early_stopping=False: stop when the best running beam, at its
                                       current length, cannot beat the worst finished one */
    PYLLM_EARLY_STOP_TRUE = 1,      /* stop as soon as num_beams hypotheses have finished */
    PYLLM_EARLY_STOP_NEVER = 2,     /* "never": as False, but with a positive length_penalty the
                                       bound assumes the longest possible length */
} pyllm_early_stopping;

typedef struct {
    int64_t num_beams, num_return_sequences; /* 1 <= num_return_sequences <= num_beams */
    float length_penalty;
    pyllm_early_stopping early_stopping;
} pyllm_beam_params;

/* What a search returns; rows are prompt b's num_return_sequences best, best first. */
typedef struct {
    int64_t *sequences;      /* [batch * num_return, prompt_len + max_new_tokens], padded with pad_token_id */
    float *sequence_scores;  /* [batch * num_return] */
    int64_t *beam_indices;   /* [batch * num_return, max_new_tokens]: per step, the running beam
                                (b * num_beams + beam) it extended; -1 past its end */
    int64_t n_steps;         /* generated columns of the longest returned hypothesis */
    int64_t steps_run;       /* decoder steps taken (rows of opt->scores filled) */
} pyllm_beam_outputs;

/* prompt[batch, prompt_len] (mask as in pyllm_decoder_forward). cache: empty, made for
 * batch * num_beams rows. opt: processors (applied to the log-probabilities, as transformers
 * does), end tokens, pad token, max_new_tokens, the interrupt hook, and scores / raw_logits
 * [max_new_tokens, batch * num_beams, vocab] when not NULL (zeros for prompts whose search
 * ended). Sampling, the logits / stopping / stream hooks and log-probabilities are refused. */
pyllm_status pyllm_beam_search(pyllm_decoder *m, pyllm_kv_cache *cache, const int32_t *prompt, const uint8_t *mask,
                               int64_t batch, int64_t prompt_len, const pyllm_generate_options *opt,
                               const pyllm_beam_params *beam, pyllm_beam_outputs *out);

#endif
