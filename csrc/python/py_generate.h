/* The generation binding (py_generate.c), called by Decoder.generate in py_model.c. */
#ifndef PYLLM_PYTHON_PY_GENERATE_H
#define PYLLM_PYTHON_PY_GENERATE_H

#include "python/common.h"

#include "models/decoder.h"

/* Decoder.generate(input_ids, attention_mask=None, **options): runs the loop on `model` with
 * `lock` held and the GIL released, on n_threads threads. Python hooks run on this thread with
 * the GIL and without the lock, so a hook may call the same model. num_beams > 1 runs beam search
 * (generate/beam.h) instead. Returns (sequences, new_counts, logprobs, top_ids, top_logprobs,
 * scores, logits, sequences_scores, beam_indices, speculation): logprobs .. top_logprobs None
 * unless output_logprobs, scores / logits ([steps, rows, vocab]) unless output_scores /
 * output_logits, sequences_scores and beam_indices unless beam search. Speculative decoding
 * (prompt_lookup_num_tokens > 0, or assistant= another Decoder with num_assistant_tokens;
 * speculative_costs=(verify_fixed, verify_per_token, draft_step) for automatic mode) runs
 * generate/speculative.h instead; speculation is then (drafted, accepted, stopped_at) int64
 * [rows], else None. */
PyObject *pyllm_generate_call(pyllm_decoder *model, PyThread_type_lock lock, int n_threads, PyObject *args,
                              PyObject *kwds);

#endif
