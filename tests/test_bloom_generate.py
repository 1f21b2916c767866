"""BLOOM's model.generate against transformers' generate: greedy output token for token for 64
new tokens (batch 1 and a left-padded batch, end tokens and padding) on random models whose
output is varied, through the same generation loop, KV cache and sampler as LLaMA."""
import numpy as np
import pytest

from bloom_reference import left_padded, make_config, make_pair, reference_logits
from test_generate import assert_same_greedy, reference_generate

VOCAB = 1000
TOL = 1e-4

# name -> config overrides; "h8" is the plain model. Block weights are scaled up (gain 6, MLP
# gain 2, small biases) so that greedy decoding does not lock onto one token (bloom_reference).
MODELS = {
    "h8": {},
    "h5_post": {"num_attention_heads": 5, "apply_residual_connection_post_layernorm": True},
    "h12": {"num_attention_heads": 12},
}
# Seed of the left-padded batch's prompts per model: a 1-token row still locks onto a repeated
# token for many prompts (ALiBi sees a repeated token's context unchanged), so the batch is one
# whose every reference row is varied, which the test asserts.
BATCH_SEED = {"h8": 3, "h5_post": 4, "h12": 3}

_pairs = {}


def pair(name):
    if name not in _pairs:
        config = make_config(vocab_size=VOCAB, **MODELS[name])
        _pairs[name] = make_pair(config, seed=3, gain=6.0, mlp_gain=2.0, bias_std=0.02)
    return _pairs[name]


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"h8"}))
def test_variant_changes_the_reference(name):
    plain_hf, _ = pair("h8")
    hf, _ = pair(name)
    ids = np.random.default_rng(0).integers(0, VOCAB, size=(1, 100))
    diff = float(np.abs(reference_logits(hf, ids) - reference_logits(plain_hf, ids)).max())
    assert diff >= 100 * TOL, f"variant {name} barely changes the logits ({diff:.3g})"


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("prompt_len", [1, 12, 90])
def test_greedy_batch1_matches_transformers(name, prompt_len):
    hf, model = pair(name)
    ids = np.random.default_rng(prompt_len).integers(0, VOCAB, size=(1, prompt_len))
    ref_new, ref_logits = reference_generate(hf, ids, np.ones_like(ids), 64)
    assert ref_new.shape == (1, 64)
    assert len(set(ref_new[0].tolist())) >= 8, "reference output too repetitive to prove anything"
    out = model.generate(ids, max_new_tokens=64, do_sample=False, eos_token_id=[])
    assert out.dtype == np.int64 and out.shape == (1, prompt_len + 64)
    np.testing.assert_array_equal(out[:, :prompt_len], ids)
    assert_same_greedy(out[:, prompt_len:], ref_new, ref_logits)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_greedy_left_padded_batch_matches_transformers(name):
    hf, model = pair(name)
    ids, mask = left_padded(np.random.default_rng(BATCH_SEED[name]), [20, 7, 13, 1], VOCAB, pad=3)
    ref_new, ref_logits = reference_generate(hf, ids, mask, 64, pad=3)
    for row in range(4):
        assert len(set(ref_new[row].tolist())) >= 8, f"row {row}: reference output too repetitive"
    out = model.generate(ids, attention_mask=mask, max_new_tokens=64, eos_token_id=[], pad_token_id=3)
    assert out.shape == (4, ids.shape[1] + 64)
    np.testing.assert_array_equal(out[:, :ids.shape[1]], ids)
    assert_same_greedy(out[:, ids.shape[1]:], ref_new, ref_logits)


def test_end_token_stops_rows_and_pads_like_transformers():
    hf, model = pair("h5_post")
    ids, mask = left_padded(np.random.default_rng(9), [10, 6, 15], VOCAB, pad=3)
    free, _ = reference_generate(hf, ids, mask, 40, pad=3)
    eos = [int(free[0, 3]), int(free[1, 9])]
    ref_new, ref_logits = reference_generate(hf, ids, mask, 40, eos=eos, pad=7)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=40, eos_token_id=eos, pad_token_id=7)
    new = out[:, ids.shape[1]:]
    assert_same_greedy(new, ref_new, ref_logits)
    assert new.shape[1] < 40 or (new == 7).any(), "the end tokens never took effect"


def test_config_eos_and_seeded_sampling():
    """The config's eos_token_id (2) is used when none is given; seeded sampling is reproducible."""
    _, model = pair("h8")
    ids = np.random.default_rng(4).integers(4, VOCAB, size=(2, 9))
    greedy = model.generate(ids, max_new_tokens=30, eos_token_id=[])
    assert model.generate(ids, max_new_tokens=30).shape[1] <= greedy.shape[1]
    a = model.generate(ids, max_new_tokens=30, do_sample=True, temperature=1.5, seed=11, eos_token_id=[])
    b = model.generate(ids, max_new_tokens=30, do_sample=True, temperature=1.5, seed=11, eos_token_id=[])
    c = model.generate(ids, max_new_tokens=30, do_sample=True, temperature=1.5, seed=12, eos_token_id=[])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
