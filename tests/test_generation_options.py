"""Every generation option: the C processors against transformers' own processor classes on
random scores and histories, pyllm's extra processors against NumPy, the greedy path with
processors against transformers' generate(), GenerationConfig, logprobs, hooks and bad values."""
import _thread
import json
import threading

import numpy as np
import pytest
import torch
from transformers.generation import logits_process as hf_lp

import pyllm
from pyllm import _testing
from llama_reference import left_padded, make_config, make_pair

VOCAB = 160
_pairs = {}


def pair(seed=3, **overrides):
    key = (seed, tuple(sorted(overrides.items())))
    if key not in _pairs:
        _pairs[key] = make_pair(make_config(**overrides), seed=seed, gain=2.5)
    return _pairs[key]


def random_scores(rng, rows, vocab, scale=3.0):
    return (rng.standard_normal((rows, vocab)) * scale).astype(np.float32)


def hf_apply(processor, ids, scores):
    if ids is None:  # warpers ignore the history
        ids = np.zeros((scores.shape[0], 1), dtype=np.int64)
    with torch.no_grad():
        return processor(torch.as_tensor(np.asarray(ids, dtype=np.int64)), torch.as_tensor(scores.copy())).numpy()


def assert_same_scores(ours, ref):
    """Identical -inf pattern, finite values equal up to float rounding (1e-6 relative)."""
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=1e-6, atol=1e-6)


# ---- processors against transformers' classes -----------------------------------------------------

@pytest.mark.parametrize("trial", range(6))
def test_repetition_penalty_matches_transformers(trial):
    rng = np.random.default_rng(trial)
    vocab = int(rng.integers(20, 400))
    penalty = float(rng.choice([0.5, 0.9, 1.2, 2.0, 3.7]))
    ids = rng.integers(0, min(vocab, 30), size=(5, int(rng.integers(1, 40))))
    scores = random_scores(rng, 5, vocab)
    ours = _testing.apply_processors(ids, scores, repetition_penalty=penalty)
    ref = hf_apply(hf_lp.RepetitionPenaltyLogitsProcessor(penalty), ids, scores)
    assert_same_scores(ours, ref)
    assert not np.array_equal(ours, scores)


@pytest.mark.parametrize("size", [1, 2, 3, 4])
@pytest.mark.parametrize("trial", range(4))
def test_no_repeat_ngram_matches_transformers(size, trial):
    rng = np.random.default_rng(100 + 10 * size + trial)
    vocab = 50
    # A small alphabet so n-grams repeat and the tail often matches an earlier one.
    ids = rng.integers(0, 4, size=(6, int(rng.integers(1, 30))))
    scores = random_scores(rng, 6, vocab)
    ours = _testing.apply_processors(ids, scores, no_repeat_ngram_size=size)
    ref = hf_apply(hf_lp.NoRepeatNGramLogitsProcessor(size), ids, scores)
    assert_same_scores(ours, ref)


def test_no_repeat_ngram_bans_something():
    ids = np.array([[1, 2, 3, 1, 2]])
    out = _testing.apply_processors(ids, np.zeros((1, 10), np.float32), no_repeat_ngram_size=3)
    assert np.isneginf(out[0, 3]) and np.isneginf(out).sum() == 1


@pytest.mark.parametrize("trial", range(6))
def test_min_new_tokens_matches_transformers(trial):
    rng = np.random.default_rng(200 + trial)
    vocab, t = 80, int(rng.integers(2, 20))
    prompt = int(rng.integers(0, t + 1))
    min_new = int(rng.integers(0, 12))
    eos = [int(e) for e in rng.choice(vocab, size=int(rng.integers(1, 4)), replace=False)]
    ids = rng.integers(0, vocab, size=(3, t))
    scores = random_scores(rng, 3, vocab)
    ours = _testing.apply_processors(ids, scores, prompt_length=prompt, min_new_tokens=min_new, eos_token_ids=eos)
    ref = hf_apply(hf_lp.MinNewTokensLengthLogitsProcessor(prompt, min_new, eos), ids, scores)
    assert_same_scores(ours, ref)


@pytest.mark.parametrize("trial", range(8))
def test_bad_words_match_transformers(trial):
    rng = np.random.default_rng(300 + trial)
    vocab = 40
    ids = rng.integers(0, 6, size=(5, int(rng.integers(1, 12))))
    words = [[int(rng.integers(0, vocab))]]
    for _ in range(5):  # multi-token words, some ending the way a row's history ends
        n = int(rng.integers(2, 5))
        row = ids[int(rng.integers(0, 5))]
        if rng.random() < 0.6 and len(row) >= n - 1:
            words.append([int(x) for x in row[len(row) - (n - 1):]] + [int(rng.integers(0, vocab))])
        else:
            words.append([int(x) for x in rng.integers(0, 6, size=n)])
    scores = random_scores(rng, 5, vocab)
    ours = _testing.apply_processors(ids, scores, bad_words_ids=words)
    ref = hf_apply(hf_lp.NoBadWordsLogitsProcessor(words), ids, scores)
    assert_same_scores(ours, ref)
    assert np.isneginf(ours).sum() > 5


@pytest.mark.parametrize("temperature", [0.3, 0.7, 1.6])
def test_temperature_matches_transformers(temperature):
    scores = random_scores(np.random.default_rng(1), 4, 500)
    ref = hf_apply(hf_lp.TemperatureLogitsWarper(temperature), None, scores)
    assert_same_scores(_testing.apply_warpers(scores, temperature=temperature), ref)


@pytest.mark.parametrize("top_k", [1, 2, 7, 50, 499, 500, 900])
def test_top_k_matches_transformers(top_k):
    rng = np.random.default_rng(top_k)
    scores = random_scores(rng, 4, 500)
    scores[0, 10:20] = scores[0, 5]  # ties at the cut are kept by both
    ref = hf_apply(hf_lp.TopKLogitsWarper(top_k), None, scores)
    assert_same_scores(_testing.apply_warpers(scores, top_k=top_k), ref)


@pytest.mark.parametrize("top_p", [0.01, 0.3, 0.8, 0.95, 0.999])
@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_top_p_matches_transformers(top_p, scale):
    scores = random_scores(np.random.default_rng(int(top_p * 1000)), 6, 700, scale)
    ref = hf_apply(hf_lp.TopPLogitsWarper(top_p), None, scores)
    ours = _testing.apply_warpers(scores, top_p=top_p)
    assert_same_scores(ours, ref)


@pytest.mark.parametrize("min_p", [0.0, 0.01, 0.1, 0.5, 1.0])
def test_min_p_matches_transformers(min_p):
    scores = random_scores(np.random.default_rng(7), 6, 300, 2.0)
    ref = hf_apply(hf_lp.MinPLogitsWarper(min_p), None, scores)
    assert_same_scores(_testing.apply_warpers(scores, min_p=min_p), ref)


@pytest.mark.parametrize("typical_p", [0.05, 0.2, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_typical_p_matches_transformers(typical_p, scale):
    scores = random_scores(np.random.default_rng(11), 6, 300, scale)
    ref = hf_apply(hf_lp.TypicalLogitsWarper(typical_p), None, scores)
    assert_same_scores(_testing.apply_warpers(scores, typical_p=typical_p), ref)


@pytest.mark.parametrize("trial", range(5))
def test_warper_chain_matches_transformers_order(trial):
    rng = np.random.default_rng(40 + trial)
    scores = random_scores(rng, 4, 400)
    kw = dict(temperature=float(rng.uniform(0.5, 1.5)), top_k=int(rng.integers(5, 300)),
              top_p=float(rng.uniform(0.5, 0.99)), min_p=float(rng.uniform(0, 0.1)),
              typical_p=float(rng.uniform(0.5, 0.99)))
    chain = [hf_lp.TemperatureLogitsWarper(kw["temperature"]), hf_lp.TopKLogitsWarper(kw["top_k"]),
             hf_lp.TopPLogitsWarper(kw["top_p"]), hf_lp.MinPLogitsWarper(kw["min_p"]),
             hf_lp.TypicalLogitsWarper(kw["typical_p"])]
    ref = scores
    for proc in chain:
        ref = hf_apply(proc, None, ref)
    assert_same_scores(_testing.apply_warpers(scores, **kw), ref)


# ---- pyllm's own processors against NumPy -----------------------------------------------------------

@pytest.mark.parametrize("trial", range(6))
def test_frequency_presence_penalty_and_logit_bias_match_numpy(trial):
    rng = np.random.default_rng(500 + trial)
    vocab, t = 60, int(rng.integers(1, 30))
    prompt = int(rng.integers(0, t + 1))
    ids = rng.integers(0, 15, size=(4, t))
    scores = random_scores(rng, 4, vocab)
    freq, pres = float(rng.uniform(-1, 2)), float(rng.uniform(-1, 2))
    rep = float(rng.choice([1.0, 1.3]))
    bias = {int(k): float(rng.uniform(-5, 5)) for k in rng.choice(vocab, size=6, replace=False)}
    ours = _testing.apply_processors(ids, scores, prompt_length=prompt, frequency_penalty=freq,
                                  presence_penalty=pres, logit_bias=bias, repetition_penalty=rep)
    ref = scores.copy()
    for k, b in bias.items():  # logit_bias first
        ref[:, k] += np.float32(b)
    for row in range(4):
        for token in set(ids[row].tolist()):  # repetition penalty over the whole history
            s = ref[row, token]
            ref[row, token] = s * np.float32(rep) if s < 0 else s / np.float32(rep)
        counts = np.bincount(ids[row, prompt:], minlength=vocab)  # generated tokens only
        ref[row] -= (counts * freq + (counts > 0) * pres).astype(np.float32)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


# ---- the greedy path against transformers' generate() -------------------------------------------------

def hf_generate(hf, ids, new, **kw):
    with torch.no_grad():
        out = hf.generate(torch.as_tensor(np.asarray(ids, dtype=np.int64)), max_new_tokens=new, do_sample=False,
                          output_scores=True, return_dict_in_generate=True, **kw)
    return out.sequences[:, ids.shape[1]:].numpy(), [s.float().numpy() for s in out.scores]


def assert_same_greedy(ours_new, ref_new, ref_scores):
    """Token-identical, except after a step where the reference's top two (processed) scores are
    within 1e-4: float rounding may break that tie either way; the row is not compared past it."""
    assert ours_new.shape == ref_new.shape, (ours_new.shape, ref_new.shape)
    for row in range(ref_new.shape[0]):
        for step in range(ref_new.shape[1]):
            if ours_new[row, step] != ref_new[row, step]:
                top2 = np.sort(ref_scores[step][row])[-2:]
                assert top2[1] - top2[0] < 1e-4, f"row {row} diverges at step {step}"
                break


GREEDY_CASES = {
    "repetition_penalty": {"repetition_penalty": 1.8},
    "repetition_penalty_below_1": {"repetition_penalty": 0.7},
    "no_repeat_ngram_2": {"no_repeat_ngram_size": 2},
    "no_repeat_ngram_1": {"no_repeat_ngram_size": 1},
    "bad_words": None,  # built from the free run below
    "min_new_tokens": None,
    "all_together": None,
}


@pytest.mark.parametrize("case", sorted(GREEDY_CASES))
@pytest.mark.parametrize("prompt_len", [3, 17])
def test_greedy_with_processors_matches_transformers(case, prompt_len):
    hf, model = pair()
    ids = np.random.default_rng(prompt_len).integers(0, VOCAB, size=(1, prompt_len))
    free, _ = hf_generate(hf, ids, 40, eos_token_id=None, pad_token_id=0)
    kw = GREEDY_CASES[case]
    eos = None
    if case == "bad_words":
        kw = {"bad_words_ids": [[int(free[0, 5])], [int(free[0, 8]), int(free[0, 9])], [7, 8, 9]]}
    elif case == "min_new_tokens":
        eos = int(free[0, 2])
        kw = {"min_new_tokens": 9}
    elif case == "all_together":
        eos = int(free[0, 12])
        kw = {"repetition_penalty": 1.3, "no_repeat_ngram_size": 3, "min_new_tokens": 14,
              "bad_words_ids": [[int(free[0, 4])], [int(free[0, 6]), int(free[0, 7])]]}
    ref_new, ref_scores = hf_generate(hf, ids, 40, eos_token_id=eos, pad_token_id=0, **kw)
    out = model.generate(ids, max_new_tokens=40, eos_token_id=[] if eos is None else eos, pad_token_id=0, **kw)
    ours = out[:, prompt_len:]
    if ref_new.shape[1] != 40 or ours.shape[1] != 40:  # an end token met: compare up to it
        assert ours.shape == ref_new.shape
    assert_same_greedy(ours, ref_new, ref_scores)
    assert not np.array_equal(ref_new[0, :len(free[0])], free[0, :ref_new.shape[1]]), \
        "the option did not change the output: the test proves nothing"


def test_penalties_in_a_padded_batch_equal_single_prompt_runs():
    """Penalties see each row's own tokens (padding excluded): a padded batch gives what each
    prompt gives alone, in transformers as in pyllm."""
    hf, model = pair()
    ids, mask = left_padded(np.random.default_rng(21), [9, 3, 14], VOCAB, pad=5)
    kw = dict(repetition_penalty=1.6, no_repeat_ngram_size=2, max_new_tokens=30, eos_token_id=[], pad_token_id=0)
    batch = model.generate(ids, attention_mask=mask, **kw)
    for row in range(3):
        prompt = ids[row][mask[row] == 1][None]
        ref_new, ref_scores = hf_generate(hf, prompt, 30, eos_token_id=None, pad_token_id=0,
                                          repetition_penalty=1.6, no_repeat_ngram_size=2)
        assert_same_greedy(batch[row:row + 1, ids.shape[1]:], ref_new, ref_scores)


# ---- GenerationConfig -----------------------------------------------------------------------------

def test_generation_config_defaults_update_and_errors():
    cfg = pyllm.GenerationConfig()
    assert cfg.top_k == 50 and cfg.do_sample is False and cfg.num_return_sequences == 1
    cfg.update(temperature=0.5, top_p=0.9)
    assert cfg.temperature == 0.5 and cfg.is_set("top_p") and not cfg.is_set("top_k")
    with pytest.raises(TypeError, match="tempreature"):
        cfg.update(tempreature=0.3)
    with pytest.raises(TypeError, match="bogus"):
        pyllm.GenerationConfig(bogus=1)
    with pytest.raises(ValueError, match="top_p"):
        cfg.update(top_p=2)
    cfg2 = pyllm.GenerationConfig.from_dict({"max_new_tokens": 5, "transformers_version": "4.0", "top_k": 3})
    assert cfg2.max_new_tokens == 5 and cfg2.top_k == 3 and cfg2.extra == {"transformers_version": "4.0"}
    assert cfg2.copy() == cfg2 and cfg2.copy() is not cfg2


def test_generation_config_from_pretrained_and_inheritance(tmp_path):
    hf, model = pair()
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"max_new_tokens": 7, "eos_token_id": [], "repetition_penalty": 1.5, "_from_model_config": True}))
    cfg = pyllm.GenerationConfig.from_pretrained(tmp_path)
    assert cfg.max_new_tokens == 7 and cfg.repetition_penalty == 1.5
    with pytest.raises(FileNotFoundError):
        pyllm.GenerationConfig.from_pretrained(tmp_path / "nowhere")
    ids = np.random.default_rng(3).integers(0, VOCAB, size=(1, 6))
    out = model.generate(ids, generation_config=cfg)
    assert out.shape == (1, 13)
    np.testing.assert_array_equal(out, model.generate(ids, max_new_tokens=7, eos_token_id=[], repetition_penalty=1.5))
    # Overrides win, unset options inherit from the config given.
    out = model.generate(ids, generation_config=cfg, max_new_tokens=3)
    np.testing.assert_array_equal(out, model.generate(ids, max_new_tokens=10, eos_token_id=[],
                                                      repetition_penalty=1.5)[:, :9])
    # max_length as transformers reads it: prompt + new.
    assert model.generate(ids, max_length=10, eos_token_id=[]).shape == (1, 10)


def test_unknown_generate_option_raises_type_error():
    _, model = pair()
    with pytest.raises(TypeError, match="top_q"):
        model.generate([1, 2, 3], top_q=0.5)


# ---- num_return_sequences, seeds, logprobs --------------------------------------------------------

def test_num_return_sequences_shapes_and_seeds():
    _, model = pair()
    ids, mask = left_padded(np.random.default_rng(4), [5, 8], VOCAB)
    kw = dict(attention_mask=mask, max_new_tokens=12, do_sample=True, num_return_sequences=3, eos_token_id=[])
    a = model.generate(ids, seed=9, **kw)
    assert a.shape == (6, 8 + 12)
    np.testing.assert_array_equal(a[:, :8], np.repeat(ids, 3, axis=0))
    np.testing.assert_array_equal(a, model.generate(ids, seed=9, **kw))
    assert not np.array_equal(a, model.generate(ids, seed=10, **kw))
    assert len({tuple(r) for r in a[:3, 8:].tolist()}) == 3, "copies of one prompt must differ"
    one = model.generate(ids[1], max_new_tokens=4, do_sample=True, num_return_sequences=2, seed=1)
    assert one.shape == (2, 12)
    with pytest.raises(ValueError, match="num_return_sequences"):
        model.generate(ids, max_new_tokens=4, num_return_sequences=2)


def test_logprobs_equal_log_softmax_of_model_logits():
    _, model = pair()
    ids = np.random.default_rng(6).integers(0, VOCAB, size=(2, 9))
    out = model.generate(ids, max_new_tokens=10, eos_token_id=[], output_logprobs=True, top_logprobs=5)
    assert isinstance(out, pyllm.GenerateOutput)
    assert out.logprobs.shape == (2, 10) and out.top_logprob_ids.shape == (2, 10, 5)
    logits = model(out.sequences[:, :-1])[:, 8:]  # the logits each new token was chosen from
    ref = torch.log_softmax(torch.as_tensor(logits, dtype=torch.float64), -1).numpy()
    chosen = np.take_along_axis(ref, out.sequences[:, 9:, None], -1)[..., 0]
    np.testing.assert_allclose(out.logprobs, chosen, atol=2e-5)
    order = np.argsort(-ref, axis=-1, kind="stable")[..., :5]
    np.testing.assert_array_equal(out.top_logprob_ids, order)
    np.testing.assert_allclose(out.top_logprobs, np.take_along_axis(ref, order, -1), atol=2e-5)
    np.testing.assert_array_equal(out.top_logprob_ids[..., 0], out.sequences[:, 9:])  # greedy = best
    np.testing.assert_array_equal(out.num_new_tokens, [10, 10])


def test_processed_logprobs_come_from_the_warped_scores():
    _, model = pair()
    ids = np.random.default_rng(7).integers(0, VOCAB, size=(1, 5))
    out = model.generate(ids, max_new_tokens=8, do_sample=True, top_k=3, seed=2, eos_token_id=[],
                         output_logprobs=True, top_logprobs=4, logprobs_processed=True)
    # Only three tokens survive top_k=3: the fourth alternative has no probability left.
    assert np.isneginf(out.top_logprobs[0, :, 3]).all()
    np.testing.assert_allclose(np.exp(out.top_logprobs[0, :, :3]).sum(-1), 1.0, rtol=1e-5)
    raw = model.generate(ids, max_new_tokens=8, do_sample=True, top_k=3, seed=2, eos_token_id=[],
                         output_logprobs=True, top_logprobs=4)
    np.testing.assert_array_equal(raw.sequences, out.sequences)  # the choice does not depend on it
    assert np.isfinite(raw.top_logprobs).all() and (raw.logprobs < out.logprobs).all()


# ---- hooks ---------------------------------------------------------------------------------------

def test_logits_processor_runs_before_warpers_and_can_steer():
    _, model = pair()
    ids = np.random.default_rng(8).integers(0, VOCAB, size=(2, 6))
    seen = []

    def force_token_11(input_ids, scores):
        seen.append((input_ids.shape, input_ids.dtype, scores.shape, scores.dtype))
        out = np.full_like(scores, -np.inf)
        out[:, 11] = 0.0
        return out

    out = model.generate(ids, max_new_tokens=5, eos_token_id=[], logits_processor=[force_token_11])
    assert (out[:, 6:] == 11).all()
    assert seen[0] == ((2, 6), np.int64, (2, VOCAB), np.float32) and seen[-1][0] == (2, 10)
    # Same outcome as banning everything else with logit_bias, through sampling too.
    bias = {t: -np.inf for t in range(VOCAB) if t != 11}
    sampled = model.generate(ids, max_new_tokens=5, eos_token_id=[], do_sample=True, seed=1, logit_bias=bias)
    assert (sampled[:, 6:] == 11).all()


@pytest.mark.parametrize("bad, match", [
    (lambda ids, s: s[:, :-1], "shape"),
    (lambda ids, s: s.astype(np.float64), "float32"),
    (lambda ids, s: None, "float32"),
])
def test_logits_processor_with_a_wrong_result_raises_value_error(bad, match):
    _, model = pair()
    with pytest.raises(ValueError, match=match):
        model.generate([1, 2, 3], max_new_tokens=4, logits_processor=bad)
    assert model.generate([1, 2, 3], max_new_tokens=2, eos_token_id=[]).shape == (5,)


def test_logits_processor_exception_propagates_and_model_stays_usable():
    _, model = pair()
    calls = []

    def explode(ids, scores):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom from the processor")
        return scores

    with pytest.raises(RuntimeError, match="boom"):
        model.generate([1, 2, 3], max_new_tokens=10, eos_token_id=[], logits_processor=explode)
    assert len(calls) == 3
    expected = model.generate([1, 2, 3], max_new_tokens=6, eos_token_id=[])
    np.testing.assert_array_equal(model.generate([1, 2, 3], max_new_tokens=6, eos_token_id=[]), expected)
    with pytest.raises(TypeError, match="logits_processor"):
        model.generate([1, 2, 3], logits_processor=42)


def test_stopping_criteria_end_rows_on_their_own():
    _, model = pair()
    ids = np.random.default_rng(12).integers(0, VOCAB, size=(3, 4))
    free = model.generate(ids, max_new_tokens=12, eos_token_id=[])

    def stop(input_ids, scores):  # row r stops once it has 3 + 2r new tokens
        new = input_ids.shape[1] - 4
        return np.array([new >= 3 + 2 * r for r in range(3)])

    out = model.generate(ids, max_new_tokens=12, eos_token_id=[], pad_token_id=0, stopping_criteria=stop,
                         return_dict_in_generate=True)
    assert out.sequences.shape == (3, 4 + 7)
    np.testing.assert_array_equal(out.num_new_tokens, [3, 5, 7])
    # return_dict_in_generate alone brings the chosen tokens' log-probabilities; 0 after a row ended.
    assert out.logprobs.shape == (3, 7) and out.top_logprobs.shape == (3, 7, 0)
    assert (out.logprobs[0, :3] < 0).all() and (out.logprobs[0, 3:] == 0).all()
    for r in range(3):
        n = 3 + 2 * r
        np.testing.assert_array_equal(out.sequences[r, 4:4 + n], free[r, 4:4 + n])
        assert (out.sequences[r, 4 + n:] == 0).all()
    with pytest.raises(ValueError, match="stopping_criteria"):
        model.generate(ids, max_new_tokens=3, stopping_criteria=lambda i, s: np.zeros(2, dtype=bool))


def test_streamer_sees_prompt_then_each_step_then_end():
    _, model = pair()
    ids = np.random.default_rng(13).integers(0, VOCAB, size=(2, 5))

    class Recorder:
        def __init__(self):
            self.puts, self.ended = [], 0

        def put(self, value):
            self.puts.append(np.array(value))

        def end(self):
            self.ended += 1

    rec = Recorder()
    out = model.generate(ids, max_new_tokens=6, eos_token_id=[], streamer=rec)
    assert rec.ended == 1 and len(rec.puts) == 7
    np.testing.assert_array_equal(rec.puts[0], ids)
    np.testing.assert_array_equal(np.stack(rec.puts[1:], axis=1), out[:, 5:])
    assert rec.puts[1].dtype == np.int64 and rec.puts[1].shape == (2,)
    with pytest.raises(TypeError, match="streamer"):
        model.generate(ids, streamer=object())


def test_keyboard_interrupt_stops_within_a_step_and_model_stays_usable():
    _, model = make_pair(make_config(num_hidden_layers=1, max_position_embeddings=30000), seed=1)
    started = threading.Event()

    def first_step(ids, scores):
        started.set()
        return scores

    timer = threading.Thread(target=lambda: (started.wait(30), _thread.interrupt_main()))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.generate([1, 2, 3], max_new_tokens=29000, eos_token_id=[], logits_processor=first_step)
    finally:
        timer.join()
    assert model.generate([1, 2, 3], max_new_tokens=3, eos_token_id=[]).shape == (6,)


# ---- bad values -----------------------------------------------------------------------------------

BAD_OPTIONS = [
    ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"max_new_tokens": 1.5}, "max_new_tokens"),
    ({"max_length": 0}, "max_length"),
    ({"min_new_tokens": -2}, "min_new_tokens"),
    ({"do_sample": "yes"}, "do_sample"),
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"top_k": -3}, "top_k"),
    ({"top_k": 2.5}, "top_k"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.01}, "top_p"),
    ({"min_p": -0.1}, "min_p"),
    ({"min_p": 1.5}, "min_p"),
    ({"typical_p": 0.0}, "typical_p"),
    ({"typical_p": 2.0}, "typical_p"),
    ({"repetition_penalty": 0.0}, "repetition_penalty"),
    ({"repetition_penalty": float("inf")}, "repetition_penalty"),
    ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
    ({"bad_words_ids": [[]]}, "bad_words_ids"),
    ({"bad_words_ids": [1, 2]}, "bad_words_ids"),
    ({"bad_words_ids": [[1, 9999]]}, "bad_words_ids"),
    ({"eos_token_id": "x"}, "eos_token_id"),
    ({"eos_token_id": [3, 999]}, "eos_token_id"),
    ({"pad_token_id": -1}, "pad_token_id"),
    ({"pad_token_id": 999}, "pad_token_id"),
    ({"num_return_sequences": 0}, "num_return_sequences"),
    ({"seed": "abc"}, "seed"),
    ({"frequency_penalty": float("nan")}, "frequency_penalty"),
    ({"presence_penalty": float("inf")}, "presence_penalty"),
    ({"logit_bias": [1, 2]}, "logit_bias"),
    ({"logit_bias": {3: float("nan")}}, "logit_bias"),
    ({"logit_bias": {9999: 1.0}}, "logit_bias"),
    ({"top_logprobs": -1}, "top_logprobs"),
    ({"top_logprobs": 1000}, "top_logprobs"),
    ({"output_logprobs": 1}, "output_logprobs"),
    ({"return_dict_in_generate": "no"}, "return_dict_in_generate"),
]


@pytest.mark.parametrize("kw, match", BAD_OPTIONS, ids=[next(iter(k)) + str(i) for i, (k, _) in
                                                       enumerate(BAD_OPTIONS)])
def test_bad_option_values_raise_value_error_naming_the_option(kw, match):
    _, model = pair()
    with pytest.raises(ValueError, match=match):
        model.generate([1, 2, 3], **{"do_sample": True, "max_new_tokens": 3, **kw})
    assert model.generate([1, 2, 3], max_new_tokens=2, eos_token_id=[]).shape == (5,)


def test_overflowing_temperature_and_all_banned_rows_raise_clearly():
    _, model = pair()
    with pytest.raises(ValueError, match="cannot sample"):
        model.generate([1, 2, 3], do_sample=True, temperature=1e-40, top_k=0, max_new_tokens=3, seed=0)
    everything = {t: -np.inf for t in range(VOCAB)}
    with pytest.raises(ValueError, match="no finite logit"):
        model.generate([1, 2, 3], do_sample=True, logit_bias=everything, max_new_tokens=3, seed=0)
    assert model.generate([1, 2, 3], max_new_tokens=2, eos_token_id=[]).shape == (5,)


def test_a_hook_may_call_the_model_itself():
    """Hooks run without the model's lock: a processor may run the model (here to check that the
    scores it gets are the model's last-position logits)."""
    _, model = pair()
    ids = np.random.default_rng(14).integers(0, VOCAB, size=(2, 7))
    gaps = []

    def compare_with_full_forward(input_ids, scores):
        gaps.append(float(np.abs(model(input_ids)[:, -1] - scores).max()))
        return scores

    out = model.generate(ids, max_new_tokens=5, eos_token_id=[], logits_processor=compare_with_full_forward)
    np.testing.assert_array_equal(out, model.generate(ids, max_new_tokens=5, eos_token_id=[]))
    assert len(gaps) == 5 and max(gaps) < 1e-4


def test_generation_config_tolerates_published_quirks():
    cfg = pyllm.GenerationConfig.from_dict({"pad_token_id": -1, "eos_token_id": 2, "max_length": 4096,
                                            "use_cache": True})
    assert cfg.pad_token_id is None and cfg.get("pad_token_id", 0) == 0 and cfg.eos_token_id == [2]
    assert cfg.extra == {"pad_token_id": -1, "use_cache": True} and cfg.get("use_cache") is True
    with pytest.raises(ValueError, match="temperature"):
        pyllm.GenerationConfig.from_dict({"temperature": "hot"})
    # a generation_config.json with a wrong type (found by fuzz/py_config.py): a bad file, ValueError
    for bad in (5, ["ok", 5]):
        with pytest.raises(ValueError, match="stop_strings"):
            pyllm.GenerationConfig.from_dict({"stop_strings": bad})
