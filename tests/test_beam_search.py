"""Beam search (num_beams, length_penalty, early_stopping, num_return_sequences) against
transformers' own generate(num_beams=...) on random LLaMA and BLOOM models in float32, the
transformers-named outputs of return_dict_in_generate (scores, logits, sequences_scores,
beam_indices) for greedy, sampling and beams, the KV cache reuse, and bad arguments.

Float rounding differs between pyllm and torch by ~1e-6 relative, so where two candidates of a
step are nearly tied either may win. The reference's own per-step scores say where that happened
(replayed below); a prompt with such a tie is compared only up to it (its per-step scores until
the tied step), not token by token, and the test asserts such prompts stay a small minority."""
import collections

import numpy as np
import pytest
import torch

import pyllm
from pyllm import _testing
import bloom_reference
import llama_reference

VOCAB = 160
PAD = 5
_models = {}


def model_pair(arch):
    if arch not in _models:
        if arch == "llama":
            _models[arch] = llama_reference.make_pair(llama_reference.make_config(), seed=3, gain=2.5)
        else:  # block weights scaled up so that decoding does not lock onto one token (bloom_reference)
            _models[arch] = bloom_reference.make_pair(bloom_reference.make_config(), seed=3, gain=6.0, mlp_gain=2.0,
                                                      bias_std=0.02)
    return _models[arch]


def frequent_tokens(model):
    """Two end tokens greedy decoding often emits (its 2nd and 4th most frequent new tokens), so
    that hypotheses do end before the budget, but not all at once."""
    ids = np.random.default_rng(1).integers(0, VOCAB, size=(8, 5))
    new = model.generate(ids, max_new_tokens=12, eos_token_id=[])[:, 5:]
    ranked = [t for t, _ in collections.Counter(new.ravel().tolist()).most_common()]
    return [ranked[1], ranked[3]]


def prompts(batch, seed):
    rng = np.random.default_rng(seed)
    lengths = [6] if batch == 1 else [6, 3, 4]
    return llama_reference.left_padded(rng, lengths, VOCAB, pad=PAD)


def hf_beam(hf, ids, mask, **kw):
    with torch.no_grad():
        return hf.generate(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), do_sample=False,
                           output_scores=True, return_dict_in_generate=True, **kw)


def first_ties(ref_scores, batch, num_beams, eos, max_new, margin=1e-4, rtol=1e-5):
    """Per prompt, the first step at which two of the candidates transformers ranked were within
    margin (+ rtol relative) of each other, or None: replays its running-beam scores from its own
    per-step processed log-probabilities (transformers' _beam_search, steps c and e)."""
    keep = max(2, 1 + len(eos)) * num_beams
    running = np.zeros((batch, num_beams), np.float32)
    running[:, 1:] = -1e9
    ties = [None] * batch
    for step, scores in enumerate(ref_scores):
        scores = scores.reshape(batch, num_beams, -1)
        vocab = scores.shape[-1]
        total = (scores + running[:, :, None]).reshape(batch, -1)
        for b in range(batch):
            order = np.argsort(-total[b], kind="stable")[:keep + 1]
            values = total[b][order]
            values = values[np.isfinite(values) & (values > -1e8)]
            gaps = values[:-1] - values[1:]
            if ties[b] is None and np.any(gaps < margin + rtol * np.abs(values[:-1])):
                ties[b] = step
            top = order[:keep]
            hit = np.isin(top % vocab, eos) | (step + 1 == max_new)
            chosen = np.concatenate([top[~hit], top[hit]])[:num_beams]
            penalty = np.where(np.isin(chosen, top[hit]), np.float32(-1e9), np.float32(0))
            running[b] = total[b][chosen] + penalty
    return ties


# (batch, num_beams, num_return_sequences, length_penalty, early_stopping, max_new_tokens)
CASES = [
    (1, 2, 1, 1.0, False, 10),
    (3, 2, 2, 0.0, True, 12),
    (3, 3, 1, 2.0, "never", 12),
    (1, 4, 3, -1.0, False, 10),
    (3, 4, 4, 1.0, "never", 10),
    (3, 5, 2, 0.0, False, 12),
    (3, 5, 5, -1.0, True, 8),
    (1, 3, 3, 2.0, True, 12),
    (3, 3, 2, -1.0, "never", 12),
    (3, 2, 1, 2.0, False, 14),
]
_tally = collections.Counter()


@pytest.mark.parametrize("arch", ["llama", "bloom"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}-nb{}-nr{}-lp{}-es{}-n{}".format(*c))
def test_beam_search_matches_transformers(arch, case):
    check_case(arch, *case, seed=CASES.index(case))


def check_case(arch, batch, nb, nr, lp, es, max_new, seed, **extra):
    """pyllm's beam search against transformers' on one batch of prompts; returns transformers'
    sequences."""
    hf, model = model_pair(arch)
    eos = frequent_tokens(model)
    ids, mask = prompts(batch, seed=seed)
    kw = dict(num_beams=nb, num_return_sequences=nr, length_penalty=lp, early_stopping=es, max_new_tokens=max_new,
              eos_token_id=eos, pad_token_id=PAD, **extra)
    ref = hf_beam(hf, ids, mask, **kw)
    out = model.generate(ids, attention_mask=mask, return_dict_in_generate=True, output_scores=True, **kw)
    plain = model.generate(ids, attention_mask=mask, **kw)
    np.testing.assert_array_equal(plain, out.sequences)

    ref_seq, ref_scores = ref.sequences.numpy(), ref.sequences_scores.numpy()
    ref_bi = ref.beam_indices.numpy()
    ties = first_ties([s.numpy() for s in ref.scores], batch, nb, eos, max_new)
    prompt = ids.shape[1]
    assert out.sequences.shape[0] == batch * nr and out.sequences_scores.shape == (batch * nr,)
    if all(t is None for t in ties):
        assert out.sequences.shape == ref_seq.shape
        np.testing.assert_array_equal(out.beam_indices, ref_bi)
    for b in range(batch):
        _tally["prompts"] += 1
        rows = slice(b * nr, (b + 1) * nr)
        if ties[b] is not None:
            # Up to the tie both searches held the same beams: their scores at every step up to and
            # including the tied one must agree (the choice made at that step may then differ).
            _tally["tied"] += 1
            beams = slice(b * nb, (b + 1) * nb)
            for step in range(ties[b] + 1):
                np.testing.assert_allclose(out.scores[step, beams], ref.scores[step].numpy()[beams], rtol=1e-4,
                                           atol=1e-4, err_msg=f"prompt {b}, step {step} (tie at {ties[b]})")
            continue
        width = min(out.sequences.shape[1], ref_seq.shape[1])
        assert np.all(out.sequences[rows, width:] == PAD) and np.all(ref_seq[rows, width:] == PAD)
        np.testing.assert_array_equal(out.sequences[rows, :width], ref_seq[rows, :width])
        np.testing.assert_allclose(out.sequences_scores[rows], ref_scores[rows], rtol=1e-4, atol=1e-5)
        # Hypotheses that ended on an end token before the budget: counted to show eos is hit.
        new = out.sequences[rows, prompt:]
        _tally["ended early"] += int(np.sum([np.isin(r, eos).any() and (r == PAD).any() for r in new]))
    assert out.num_new_tokens.shape == (batch * nr,)
    np.testing.assert_array_equal(out.num_new_tokens, (out.beam_indices >= 0).sum(axis=1))
    return ref_seq


@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_beam_search_with_min_new_tokens_and_penalties(arch):
    """Processors apply to the log-probabilities, as transformers does: min_new_tokens holds the end
    tokens back, repetition_penalty and no_repeat_ngram_size reshape the beams' scores."""
    ref = check_case(arch, 3, 3, 2, 1.0, False, 10, seed=21, min_new_tokens=4, repetition_penalty=1.5,
                     no_repeat_ngram_size=2)
    assert ref.shape[1] > 4


@pytest.mark.parametrize("arch, seed, nb", [("llama", 0, 2), ("bloom", 8, 3)])
def test_early_stopping_modes(arch, seed, nb):
    """Prompts (found by a search over seeds) on which transformers' three early_stopping modes
    give different results with length_penalty=2: each mode's rule is exercised, and matched."""
    refs = {es: check_case(arch, 3, nb, 1, 2.0, es, 12, seed=seed) for es in (False, "never", True)}
    assert refs[False].shape != refs["never"].shape or not np.array_equal(refs[False], refs["never"])
    assert refs[False].shape != refs[True].shape or not np.array_equal(refs[False], refs[True])


def test_beam_cases_mostly_untied_and_ending():
    """Runs after the parity cases (file order): near-ties must stay rare, or the comparison above
    would prove little, and end tokens must end hypotheses early in many of them."""
    if _tally["prompts"] == 0:  # run alone: the cases again
        for arch in ("llama", "bloom"):
            for case in CASES:
                test_beam_search_matches_transformers(arch, case)
    assert _tally["tied"] <= 0.25 * _tally["prompts"], _tally
    assert _tally["ended early"] >= 10, _tally


def test_beam_scores_logits_and_indices_match_transformers():
    hf, model = model_pair("llama")
    ids, mask = prompts(3, seed=7)
    kw = dict(num_beams=3, num_return_sequences=2, max_new_tokens=8, eos_token_id=[], pad_token_id=PAD,
              repetition_penalty=1.3)
    ref = hf_beam(hf, ids, mask, output_logits=True, **kw)
    out = model.generate(ids, attention_mask=mask, return_dict_in_generate=True, output_scores=True,
                         output_logits=True, **kw)
    assert all(t is None for t in first_ties([s.numpy() for s in ref.scores], 3, 3, [], 8))
    assert out.scores.shape == out.logits.shape == (8, 9, VOCAB)
    for step in range(8):  # no end tokens: every prompt searches to the budget
        np.testing.assert_allclose(out.scores[step], ref.scores[step].numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out.logits[step], ref.logits[step].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(out.sequences, ref.sequences.numpy())
    np.testing.assert_array_equal(out.beam_indices, ref.beam_indices.numpy())
    np.testing.assert_allclose(out.sequences_scores, ref.sequences_scores.numpy(), rtol=1e-4)
    # Without output_scores transformers leaves sequences_scores out; so do we.
    bare = model.generate(ids, attention_mask=mask, return_dict_in_generate=True, **kw)
    assert bare.sequences_scores is None and bare.scores is None and bare.logits is None
    np.testing.assert_array_equal(bare.beam_indices, out.beam_indices)


def test_beam_search_feeds_each_token_once():
    """The prompt runs once per prompt row, then one token per beam per step: the beams' KV cache
    rows are gathered, never recomputed."""
    _, model = model_pair("llama")
    ids, mask = prompts(3, seed=11)
    batch, prompt, nb, max_new = 3, ids.shape[1], 4, 9
    before = _testing.decoder_tokens_run()
    out = model.generate(ids, attention_mask=mask, num_beams=nb, max_new_tokens=max_new, eos_token_id=[])
    fed = _testing.decoder_tokens_run() - before
    assert out.shape == (batch, prompt + max_new)
    assert fed == batch * prompt + (max_new - 1) * batch * nb, fed


def test_beam_search_one_row_and_num_return():
    hf, model = model_pair("bloom")
    ids, mask = prompts(1, seed=3)
    one = model.generate(ids[0], num_beams=3, max_new_tokens=6, eos_token_id=[], pad_token_id=PAD)
    assert one.ndim == 1 and one.shape == (ids.shape[1] + 6,)
    three = model.generate(ids[0], num_beams=3, num_return_sequences=3, max_new_tokens=6, eos_token_id=[],
                           pad_token_id=PAD)
    assert three.shape == (3, ids.shape[1] + 6)
    np.testing.assert_array_equal(three[0], one)
    assert len({tuple(r) for r in three}) == 3  # distinct hypotheses


# ---- output_scores / output_logits for greedy and sampling ------------------------------------------

def test_greedy_scores_and_logits_match_transformers():
    hf, model = model_pair("llama")
    ids, mask = prompts(3, seed=5)
    kw = dict(max_new_tokens=8, eos_token_id=[], pad_token_id=PAD, repetition_penalty=1.3)
    with torch.no_grad():
        ref = hf.generate(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), do_sample=False,
                          output_scores=True, output_logits=True, return_dict_in_generate=True, **kw)
    out = model.generate(ids, attention_mask=mask, return_dict_in_generate=True, output_scores=True,
                         output_logits=True, **kw)
    assert out.scores.shape == out.logits.shape == (8, 3, VOCAB) and out.scores.dtype == np.float32
    np.testing.assert_array_equal(out.sequences, ref.sequences.numpy())
    for step in range(8):
        np.testing.assert_allclose(out.scores[step], ref.scores[step].numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out.logits[step], ref.logits[step].numpy(), rtol=1e-4, atol=1e-4)
    assert not np.allclose(out.scores, out.logits)  # the penalty did change the scores
    # The old fields stay; without return_dict_in_generate the plain array comes back.
    assert out.logprobs.shape == (3, 8) and out.beam_indices is None and out.sequences_scores is None
    plain = model.generate(ids, attention_mask=mask, output_scores=True, **kw)
    assert isinstance(plain, np.ndarray)
    np.testing.assert_array_equal(plain, out.sequences)


def test_sampling_scores_are_the_warped_logits():
    """Sampling draws differ from torch's, so transformers' warpers are run on pyllm's own rows:
    scores = top_p(top_k(temperature(logits))) of the logits transformers computes for them."""
    from transformers.generation import logits_process as hf_lp
    hf, model = model_pair("llama")
    ids, mask = prompts(3, seed=9)
    new = 6
    out = model.generate(ids, attention_mask=mask, do_sample=True, temperature=0.7, top_k=20, top_p=0.9, seed=4,
                         max_new_tokens=new, eos_token_id=[], return_dict_in_generate=True, output_scores=True,
                         output_logits=True)
    full_mask = np.concatenate([mask, np.ones((3, new), np.int64)], axis=1)
    logits = llama_reference.reference_logits(hf, out.sequences, full_mask)
    warpers = [hf_lp.TemperatureLogitsWarper(0.7), hf_lp.TopKLogitsWarper(20), hf_lp.TopPLogitsWarper(0.9)]
    prompt = ids.shape[1]
    for step in range(new):
        raw = logits[:, prompt - 1 + step]
        np.testing.assert_allclose(out.logits[step], raw, rtol=1e-4, atol=1e-4)
        ref = torch.as_tensor(out.logits[step].copy())
        for w in warpers:
            ref = w(torch.as_tensor(out.sequences[:, :prompt + step]), ref)
        ref = ref.numpy()
        np.testing.assert_array_equal(np.isneginf(out.scores[step]), np.isneginf(ref))
        finite = np.isfinite(ref)
        np.testing.assert_allclose(out.scores[step][finite], ref[finite], rtol=1e-5, atol=1e-5)
        chosen = out.sequences[:, prompt + step]
        assert np.all(np.isfinite(out.scores[step][np.arange(3), chosen]))
    assert np.isneginf(out.scores).any()  # the warpers did cut


def test_scores_of_ended_rows_are_zero():
    _, model = model_pair("llama")
    ids, mask = prompts(3, seed=5)
    first = model.generate(ids, attention_mask=mask, max_new_tokens=1, eos_token_id=[])[:, -1]
    out = model.generate(ids, attention_mask=mask, max_new_tokens=5, eos_token_id=[int(first[0])],
                         return_dict_in_generate=True, output_scores=True)
    assert out.sequences[0, ids.shape[1]] == first[0]
    assert out.scores.shape[0] >= 2 and np.all(out.scores[1:, 0] == 0) and np.any(out.scores[1:, 1] != 0)


# ---- bad arguments ------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, words", [
    ({"num_beams": 0}, ["num_beams", ">= 1"]),
    ({"num_beams": -2}, ["num_beams", ">= 1"]),
    ({"num_beams": 2.5}, ["num_beams", "integer"]),
    ({"num_beams": "3"}, ["num_beams", "integer"]),
    ({"num_beams": 2, "num_return_sequences": 3}, ["num_return_sequences=3", "num_beams=2"]),
    ({"num_beams": 1, "num_return_sequences": 2}, ["num_return_sequences", "do_sample=True", "num_beams"]),
    ({"num_beams": 2, "early_stopping": "always"}, ["early_stopping", '"never"', "'always'"]),
    ({"num_beams": 2, "early_stopping": 1}, ["early_stopping", "True, False"]),
    ({"num_beams": 2, "length_penalty": float("nan")}, ["length_penalty", "finite"]),
    ({"num_beams": 2, "do_sample": True}, ["num_beams=2", "do_sample=False"]),
    ({"num_beams": 2, "output_logprobs": True}, ["output_logprobs", "num_beams=2"]),
    ({"num_beams": 3, "stop_strings": "x", "tokenizer": object()}, ["num_beams=3", "stop_strings"]),
    ({"num_beams": 3, "logits_processor": lambda i, s: s}, ["num_beams=3", "logits_processor"]),
    ({"output_scores": "yes"}, ["output_scores", "True or False"]),
])
def test_bad_beam_arguments(options, words):
    _, model = model_pair("llama")
    with pytest.raises(ValueError) as err:
        model.generate(np.array([[3, 4, 5]]), max_new_tokens=3, **options)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_generation_config_carries_beam_options():
    cfg = pyllm.GenerationConfig(num_beams=4, length_penalty=0.5, early_stopping="never", num_return_sequences=2)
    assert (cfg.num_beams, cfg.length_penalty, cfg.early_stopping) == (4, 0.5, "never")
    _, model = model_pair("llama")
    ids = np.array([[3, 4, 5, 6]])
    by_config = model.generate(ids, generation_config=cfg, max_new_tokens=5, eos_token_id=[])
    by_name = model.generate(ids, num_beams=4, length_penalty=0.5, early_stopping="never", num_return_sequences=2,
                             max_new_tokens=5, eos_token_id=[])
    np.testing.assert_array_equal(by_config, by_name)
    assert by_name.shape == (2, 9)


# ---- memory failures ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["alloc", "any"])
def test_beam_search_memory_failures(kind):
    """Every allocation (and oneDNN call) of a beam search failing in turn: a MemoryError each
    time, and the model then gives the clean run's result (test_fault_injection's sweep)."""
    from test_fault_injection import sweep
    _, model = model_pair("llama")
    ids, mask = prompts(3, seed=2)
    eos = frequent_tokens(model)

    def action(_):
        out = model.generate(ids, attention_mask=mask, num_beams=3, num_return_sequences=2, max_new_tokens=6,
                             eos_token_id=eos, pad_token_id=PAD, return_dict_in_generate=True, output_scores=True,
                             output_logits=True)
        return [out.sequences, out.sequences_scores, out.beam_indices, out.scores, out.logits]

    sweep(kind, lambda: None, action, stride=3)


def test_llm_text_beam_search_equals_transformers(tmp_path, data_dir):
    """Text in, texts out: LLM.generate(num_beams=...) decodes transformers' beams."""
    from llm_models import hf_pair, write_llama
    write_llama(tmp_path, data_dir)
    hf, hf_tok = hf_pair(str(tmp_path))
    llm = pyllm.LLM(str(tmp_path), n_threads=2)
    try:
        for prompt in ["Once upon a time", "The dog"]:
            texts = llm.generate(prompt, num_beams=3, num_return_sequences=2, max_new_tokens=10)
            ids = torch.tensor([hf_tok(prompt)["input_ids"]])
            with torch.no_grad():
                ref = hf.generate(ids, attention_mask=torch.ones_like(ids), num_beams=3, num_return_sequences=2,
                                  max_new_tokens=10, do_sample=False,
                                  pad_token_id=hf_tok.pad_token_id or hf_tok.eos_token_id)
            assert texts == [hf_tok.decode(r[ids.shape[1]:], skip_special_tokens=True) for r in ref]
            assert len(texts) == 2 and texts[0] != texts[1]
    finally:
        llm.close()
