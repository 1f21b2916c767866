"""Batched generation: rows of a left-padded batch end on their own (end token, stopping
criterion, length) and ended rows leave the KV cache, yet every row gives what its prompt gives
alone; seeded sampling is reproducible and each row's stream depends only on (seed, row)."""
import numpy as np
import pytest

import bloom_reference
from llama_reference import left_padded, make_config, make_pair

VOCAB = 160
_pairs = {}


def pair(name="gqa"):
    if name == "bloom" and name not in _pairs:  # ALiBi: the cache's slot positions move with their rows
        _pairs[name] = bloom_reference.make_pair(bloom_reference.make_config(), seed=5, gain=6.0, mlp_gain=2.0)
    if name not in _pairs:
        overrides = {"gqa": {"num_key_value_heads": 2},
                     "dynamic": {"max_position_embeddings": 64, "rope_scaling": {"type": "dynamic", "factor": 2.0}},
                     }[name]
        kwargs = {"n_ctx": 256} if name == "dynamic" else {}
        _pairs[name] = make_pair(make_config(**overrides), seed=5, gain=2.5, **kwargs)
    return _pairs[name]


def single_run(model, prompt, new, **kw):
    """(new tokens, per-step logits) of one prompt alone, the reference a batch row must equal."""
    out = model.generate(prompt, max_new_tokens=new, output_logprobs=True, top_logprobs=2, **kw)
    return out.sequences[len(prompt):], out.top_logprobs


def assert_row_equals_single(row_new, single_new, single_top2):
    """Equal token for token, except after a step where the single run's top two logits are within
    1e-4 (kernels at another batch size may round that tie the other way): not compared past it.
    log-probabilities differ from logits by a per-step constant, so their gap is the logits' gap."""
    n = len(single_new)
    assert len(row_new) >= n
    for step in range(n):
        if row_new[step] != single_new[step]:
            gap = single_top2[step, 0] - single_top2[step, 1]
            assert gap < 1e-4, f"diverges at step {step} with a margin of {gap:.3g}"
            return False
    return True


@pytest.mark.parametrize("name", ["gqa", "dynamic", "bloom"])
def test_greedy_batch_with_end_tokens_equals_per_prompt_runs(name):
    _, model = pair(name)
    lengths = [11, 3, 17, 6, 1, 9]
    ids, mask = left_padded(np.random.default_rng(3), lengths, VOCAB, pad=0)
    prompts = [ids[r][mask[r] == 1] for r in range(len(lengths))]
    free = [single_run(model, p, 40, eos_token_id=[])[0] for p in prompts]
    # End tokens that each row meets at a different step (some rows never).
    eos = [int(free[0][4]), int(free[2][15]), int(free[3][30])]
    out = model.generate(ids, attention_mask=mask, max_new_tokens=40, eos_token_id=eos, pad_token_id=7,
                         return_dict_in_generate=True)
    new = out.sequences[:, ids.shape[1]:]
    ended_early = 0
    for r, prompt in enumerate(prompts):
        single_new, top2 = single_run(model, prompt, 40, eos_token_id=eos, pad_token_id=7)
        assert out.num_new_tokens[r] >= 1
        if assert_row_equals_single(new[r], single_new, top2):
            n = len(single_new)
            assert out.num_new_tokens[r] == n
            assert (new[r, n:] == 7).all(), "an ended row is padded"
            ended_early += n < new.shape[1]
    assert ended_early >= 2, "rows must end at different steps for this test to prove anything"


def test_penalised_batch_rows_equal_per_prompt_runs():
    _, model = pair()
    ids, mask = left_padded(np.random.default_rng(8), [7, 15, 2, 10], VOCAB, pad=3)
    kw = dict(repetition_penalty=1.4, frequency_penalty=0.5, presence_penalty=0.3, no_repeat_ngram_size=2,
              eos_token_id=[int(x) for x in range(0, VOCAB, 17)], min_new_tokens=4)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=30, pad_token_id=0, **kw)
    for r in range(4):
        prompt = ids[r][mask[r] == 1]
        single_new, top2 = single_run(model, prompt, 30, pad_token_id=0, **kw)
        assert_row_equals_single(out[r, ids.shape[1]:], single_new, top2)


def test_stopping_criteria_end_rows_and_the_rest_runs_on_alone():
    _, model = pair()
    ids, mask = left_padded(np.random.default_rng(4), [5, 12, 8], VOCAB)
    base = model.generate(ids, attention_mask=mask, max_new_tokens=25, eos_token_id=[])

    def stop_rows_0_and_2(input_ids, scores):
        new = input_ids.shape[1] - ids.shape[1]
        return np.array([new >= 2, False, new >= 9])

    out = model.generate(ids, attention_mask=mask, max_new_tokens=25, eos_token_id=[], pad_token_id=0,
                         stopping_criteria=stop_rows_0_and_2)
    w = ids.shape[1]
    np.testing.assert_array_equal(out[0, w:w + 2], base[0, w:w + 2])
    np.testing.assert_array_equal(out[2, w:w + 9], base[2, w:w + 9])
    assert (out[0, w + 2:] == 0).all() and (out[2, w + 9:] == 0).all()
    # Row 1 kept running over a cache that lost rows 0 and 2 on the way: same tokens.
    np.testing.assert_array_equal(out[1], base[1])


def test_sampling_is_reproducible_and_each_row_stream_ignores_other_rows():
    _, model = pair()
    ids, mask = left_padded(np.random.default_rng(6), [6, 9, 4, 12], VOCAB)
    kw = dict(attention_mask=mask, max_new_tokens=24, do_sample=True, temperature=1.3, top_k=40, top_p=0.95,
              min_p=0.01, seed=77, pad_token_id=0)
    a = model.generate(ids, eos_token_id=[], **kw)
    np.testing.assert_array_equal(a, model.generate(ids, eos_token_id=[], **kw))
    assert len({tuple(r) for r in a[:, ids.shape[1]:].tolist()}) == 4

    # Rows 0 and 2 stop early: rows 1 and 3 draw exactly what they drew when all four ran.
    def stop_early(input_ids, scores):
        new = input_ids.shape[1] - ids.shape[1]
        return np.array([new >= 3, False, new >= 1, False])

    b = model.generate(ids, eos_token_id=[], stopping_criteria=stop_early, **kw)
    np.testing.assert_array_equal(b[1], a[1])
    np.testing.assert_array_equal(b[3], a[3])
    np.testing.assert_array_equal(b[0, :ids.shape[1] + 3], a[0, :ids.shape[1] + 3])
    # A different seed changes the draws.
    assert not np.array_equal(model.generate(ids, eos_token_id=[], **dict(kw, seed=78)), a)


def test_every_row_ended_stops_the_output_early():
    _, model = pair()
    ids = np.random.default_rng(10).integers(0, VOCAB, size=(3, 5))
    free = model.generate(ids, max_new_tokens=20, eos_token_id=[])
    eos = sorted({int(free[r, 5 + 2 * r]) for r in range(3)})
    out = model.generate(ids, max_new_tokens=20, eos_token_id=eos, return_dict_in_generate=True)
    assert out.sequences.shape[1] == 5 + int(out.num_new_tokens.max()) < 5 + 20
    for r in range(3):
        n = int(out.num_new_tokens[r])
        assert out.sequences[r, 5 + n - 1] in eos
