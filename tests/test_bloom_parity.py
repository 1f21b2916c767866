"""Logits of pyllm's BLOOM against transformers.BloomForCausalLM in float32: full passes over 1 to
300 tokens for 1, 3, 5, 8 and 12 heads and both residual rules, a left-padded batch (ALiBi
positions from the mask), token-by-token evaluation through the KV cache, a 4,096-token pass
past any training length, and checkpoints with and without the `transformer.` prefix, in
f32/f16/bf16. Bad inputs are in test_bloom_inputs.py."""
import numpy as np
import pytest
import torch

import pyllm
import decoder_checks
from bloom_reference import make_config, make_pair, reference_logits, reference_model, state_arrays

TOL = 1e-4
VOCAB = 160

# name -> config overrides. "h8" (BLOOM's usual pre-LN residual) is the plain model.
VARIANTS = {
    "h8": {},
    "h1": {"num_attention_heads": 1},
    "h3": {"num_attention_heads": 3},
    "h5": {"num_attention_heads": 5},
    "h12": {"num_attention_heads": 12},
    "h8_post": {"apply_residual_connection_post_layernorm": True},
    "h3_post": {"num_attention_heads": 3, "apply_residual_connection_post_layernorm": True},
    "h12_post": {"num_attention_heads": 12, "apply_residual_connection_post_layernorm": True},
}

LENGTHS = (1, 2, 9, 64, 300)

_cache = {}


def pair(name):
    if name not in _cache:
        _cache[name] = make_pair(make_config(**VARIANTS[name]), seed=1)
    return _cache[name]


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(4321).integers(0, VOCAB, size=(1, max(LENGTHS)))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_full_pass_matches_transformers(name, tokens):
    hf, model = pair(name)
    decoder_checks.check_full_pass(hf, model, reference_logits, tokens, LENGTHS, name)


@pytest.mark.parametrize("name", sorted(set(VARIANTS) - {"h8"}))
def test_variant_changes_the_reference(name, tokens):
    decoder_checks.check_variant_changes_the_reference(pair("h8")[0], pair(name)[0], reference_logits, tokens, name)


def test_positions_matter(tokens):
    """ALiBi really acts: the same tokens shifted one place later give different logits."""
    hf, model = pair("h8")
    ids = tokens[:, :40]
    padded_ids = np.concatenate([tokens[:, 40:41], ids], axis=1)
    shifted = model(padded_ids)[:, 1:]
    assert float(np.abs(shifted - model(ids)).max()) >= 100 * TOL


@pytest.mark.parametrize("name", ["h8", "h3", "h3_post", "h12"])
def test_left_padded_batch(name):
    hf, model = pair(name)
    decoder_checks.check_left_padded_batch(hf, model, reference_logits, VOCAB, 3, name)


@pytest.mark.parametrize("name", ["h8", "h1", "h5", "h12_post"])
def test_incremental_equals_full_pass(name, tokens):
    hf, model = pair(name)
    decoder_checks.check_incremental_equals_full_pass(hf, model, reference_logits, tokens, name)


def test_incremental_left_padded_batch():
    hf, model = pair("h5")
    decoder_checks.check_incremental_left_padded_batch(hf, model, reference_logits, VOCAB, 3)


def test_cache_copy_branches_independently(tokens):
    _, model = pair("h3")
    decoder_checks.check_cache_copy_branches_independently(model, tokens)


def test_long_context_past_training_length():
    """4,096 tokens with n_ctx=4096 (no position limit with ALiBi) on a tiny model."""
    config = make_config(vocab_size=64, n_embed=32, n_layer=1, num_attention_heads=4)
    hf, model = make_pair(config, seed=5, n_ctx=4096)
    assert model.n_ctx == 4096
    ids = np.random.default_rng(3).integers(0, 64, size=(1, 4096))
    ref = reference_logits(hf, ids)
    ours = model(ids)
    err = float(np.abs(ours - ref).max())
    assert err <= TOL, f"4096 tokens: max |dlogit| {err:.3g}"
    # The default context (no seq_length in the config) is 2048, and longer input is refused.
    default = pyllm.Model.from_arrays(config, state_arrays(hf))
    assert default.n_ctx == 2048
    with pytest.raises(ValueError, match="n_ctx"):
        default(ids[:, :2049])


def test_n_ctx_defaults_to_seq_length():
    config = make_config(n_layer=1, seq_length=96)
    _, model = make_pair(config, seed=2)
    assert model.n_ctx == 96
    _, wider = make_pair(config, seed=2, n_ctx=300)
    assert wider.n_ctx == 300


def test_bloommodel_names_without_prefix_and_half_weights(tokens):
    """A BloomModel state dict (no `transformer.` prefix, no lm_head) and float16 weights load."""
    config = make_config(**VARIANTS["h5"])
    hf = reference_model(config, seed=1)
    weights = {name[len("transformer."):]: array for name, array in state_arrays(hf).items()
               if name.startswith("transformer.")}
    assert "h.0.self_attention.query_key_value.weight" in weights
    model = pyllm.Model.from_arrays(dict(config, architectures=["BloomModel"]), weights)
    ids = tokens[:, :40]
    assert float(np.abs(model(ids) - reference_logits(hf, ids)).max()) <= TOL

    half = {k: v.astype(np.float16) for k, v in state_arrays(hf).items()}
    hf16 = reference_model(config, seed=1)
    with torch.no_grad():
        for name, p in hf16.named_parameters():
            p.copy_(torch.from_numpy(half[name].astype(np.float32)))
    model16 = pyllm.Model.from_arrays(config, half)
    assert float(np.abs(model16(ids) - reference_logits(hf16, ids)).max()) <= TOL


def test_untied_lm_head(tokens):
    config = make_config(tie_word_embeddings=False)
    hf, model = make_pair(config, seed=6)
    assert not torch.equal(hf.lm_head.weight, hf.transformer.word_embeddings.weight)
    ids = tokens[:, :30]
    assert float(np.abs(model(ids) - reference_logits(hf, ids)).max()) <= TOL


def test_one_dimensional_input(tokens):
    hf, model = pair("h3")
    out = model(tokens[0, :20])
    assert out.shape == (20, VOCAB)
    np.testing.assert_allclose(out, reference_logits(hf, tokens[:, :20])[0], atol=TOL, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_from_pretrained_reads_saved_checkpoints(tmp_path, dtype, tokens):
    """A BloomForCausalLM saved by transformers (safetensors, tied lm_head left out) in f32, f16
    or bf16 loads with Model.from_pretrained and matches transformers reading the same folder."""
    from transformers import BloomForCausalLM
    saved = reference_model(make_config(**VARIANTS["h3_post"]), seed=1).to(dtype)
    saved.save_pretrained(tmp_path, safe_serialization=True)
    hf = BloomForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    model = pyllm.Model.from_pretrained(tmp_path)
    assert model.config["model_type"] == "bloom"
    ids = tokens[:, :50]
    err = float(np.abs(model(ids) - reference_logits(hf, ids)).max())
    assert err <= TOL, f"{dtype}: max |dlogit| {err:.3g}"
