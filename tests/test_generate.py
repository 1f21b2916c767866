"""model.generate against transformers' generate: greedy output token for token (batch 1 and
a left-padded batch, end tokens and padding), seeded sampling, and option handling."""
import numpy as np
import pytest
import torch

import pyllm
from llama_reference import left_padded, make_config, make_pair

LLAMA3 = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 64}

MODELS = {
    "mha": ({}, {}),
    "gqa": ({"num_key_value_heads": 2}, {}),
    "tied_mqa": ({"tie_word_embeddings": True, "num_key_value_heads": 1}, {}),
    "llama3_bias": ({"rope_parameters": LLAMA3, "attention_bias": True, "num_key_value_heads": 2}, {}),
    "dynamic": ({"max_position_embeddings": 128, "rope_scaling": {"type": "dynamic", "factor": 2.0}},
                {"n_ctx": 256}),
}

_pairs = {}


def pair(name, seed=3):
    key = (name, seed)
    if key not in _pairs:
        overrides, kwargs = MODELS[name]
        _pairs[key] = make_pair(make_config(**overrides), seed=seed, gain=2.5, **kwargs)
    return _pairs[key]


def reference_generate(hf, ids, mask, new, eos=None, pad=0):
    """transformers' greedy generate: (new tokens [batch, steps], logits per step [steps][batch, vocab])."""
    hf.generation_config.eos_token_id = eos
    hf.generation_config.pad_token_id = pad
    with torch.no_grad():
        out = hf.generate(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), max_new_tokens=new,
                          min_new_tokens=0, do_sample=False, eos_token_id=eos, pad_token_id=pad,
                          output_logits=True, return_dict_in_generate=True)
    return out.sequences[:, ids.shape[1]:].numpy(), [l.float().numpy() for l in out.logits]


def assert_same_greedy(ours_new, ref_new, ref_logits):
    """Token-identical, except after a step where the reference's top two logits are within 1e-4
    (a tie that float rounding may break either way); the row is not compared past that."""
    assert ours_new.shape == ref_new.shape, (ours_new.shape, ref_new.shape)
    for row in range(ref_new.shape[0]):
        for step in range(ref_new.shape[1]):
            if ours_new[row, step] != ref_new[row, step]:
                top2 = np.sort(ref_logits[step][row])[-2:]
                assert top2[1] - top2[0] < 1e-4, (
                    f"row {row} diverges at step {step}: {ours_new[row, step]} vs {ref_new[row, step]}, "
                    f"reference margin {top2[1] - top2[0]:.3g}")
                break


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("prompt_len", [1, 12, 90])
def test_greedy_batch1_matches_transformers(name, prompt_len):
    hf, model = pair(name)
    rng = np.random.default_rng(prompt_len)
    ids = rng.integers(0, 160, size=(1, prompt_len))
    ref_new, ref_logits = reference_generate(hf, ids, np.ones_like(ids), 64)
    assert ref_new.shape == (1, 64)
    assert len(set(ref_new[0].tolist())) >= 8, "reference output too repetitive to prove anything"
    out = model.generate(ids, max_new_tokens=64, do_sample=False, eos_token_id=[])
    assert out.dtype == np.int64 and out.shape == (1, prompt_len + 64)
    np.testing.assert_array_equal(out[:, :prompt_len], ids)
    assert_same_greedy(out[:, prompt_len:], ref_new, ref_logits)


@pytest.mark.parametrize("name", ["gqa", "tied_mqa", "llama3_bias"])
def test_greedy_left_padded_batch_matches_transformers(name):
    hf, model = pair(name)
    ids, mask = left_padded(np.random.default_rng(5), [20, 7, 13, 1], 160, pad=0)
    ref_new, ref_logits = reference_generate(hf, ids, mask, 64)
    for row in range(4):
        assert len(set(ref_new[row].tolist())) >= 8
    out = model.generate(ids, attention_mask=mask, max_new_tokens=64, eos_token_id=[])
    assert out.shape == (4, ids.shape[1] + 64)
    np.testing.assert_array_equal(out[:, :ids.shape[1]], ids)
    assert_same_greedy(out[:, ids.shape[1]:], ref_new, ref_logits)


def test_end_token_stops_rows_and_pads_like_transformers():
    hf, model = pair("gqa")
    ids, mask = left_padded(np.random.default_rng(9), [10, 6, 15], 160, pad=0)
    free, _ = reference_generate(hf, ids, mask, 40)
    # An end token each row meets at a different step.
    eos = [int(free[0, 3]), int(free[1, 9])]
    ref_new, ref_logits = reference_generate(hf, ids, mask, 40, eos=eos, pad=7)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=40, eos_token_id=eos, pad_token_id=7)
    new = out[:, ids.shape[1]:]
    assert_same_greedy(new, ref_new, ref_logits)
    assert new.shape[1] < 40 or (new == 7).any(), "the end tokens never took effect"


def test_single_int_eos_and_output_stops_when_all_rows_end():
    _, model = pair("mha")
    ids = np.random.default_rng(2).integers(0, 160, size=12)
    free = model.generate(ids, max_new_tokens=30, eos_token_id=[])
    first = int(free[12 + 4])
    out = model.generate(ids, max_new_tokens=30, eos_token_id=first)
    assert out.ndim == 1
    stop = 12 + list(free[12:]).index(first) + 1
    np.testing.assert_array_equal(out, free[:stop])


def test_one_dimensional_in_one_dimensional_out():
    _, model = pair("mha")
    ids = [5, 17, 33, 2, 90]
    out = model.generate(ids, max_new_tokens=6, eos_token_id=[])
    assert out.shape == (11,) and out.dtype == np.int64
    assert list(out[:5]) == ids


def test_same_seed_same_samples_and_seeds_matter():
    _, model = pair("gqa")
    ids, mask = left_padded(np.random.default_rng(1), [8, 5], 160)
    kw = dict(attention_mask=mask, max_new_tokens=32, do_sample=True, temperature=1.5, top_k=40, top_p=0.95,
              eos_token_id=[])
    a = model.generate(ids, seed=123, **kw)
    b = model.generate(ids, seed=123, **kw)
    c = model.generate(ids, seed=124, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    greedy = model.generate(ids, attention_mask=mask, max_new_tokens=32, eos_token_id=[])
    assert not np.array_equal(a, greedy)
    # Rows draw from their own streams: the two rows are not copies of one another's choices.
    assert not np.array_equal(a[0, 8:], a[1, 8:])


def test_degenerate_sampling_settings_are_greedy():
    _, model = pair("gqa")
    ids = np.random.default_rng(4).integers(0, 160, size=(1, 10))
    greedy = model.generate(ids, max_new_tokens=20, eos_token_id=[])
    for kw in ({"temperature": 0.0}, {"top_k": 1}, {"top_p": 1e-6}):
        out = model.generate(ids, max_new_tokens=20, do_sample=True, seed=5, eos_token_id=[], **kw)
        np.testing.assert_array_equal(out, greedy, err_msg=str(kw))


def test_generation_config_supplies_defaults():
    hf, _ = pair("mha")
    config = make_config()
    weights = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    ids = np.random.default_rng(8).integers(0, 160, size=(1, 6))
    plain = pyllm.Model.from_arrays(config, weights)
    free = plain.generate(ids, max_new_tokens=30, eos_token_id=[])
    assert plain.generate(ids, eos_token_id=[]).shape == (1, 26)  # 20 new tokens by default
    eos = int(free[0, 6 + 2])
    model = pyllm.Model.from_arrays(config, weights, generation_config={"max_new_tokens": 9, "eos_token_id": eos})
    out = model.generate(ids)
    assert out.shape[1] <= 6 + 3 and out[0, -1] == eos
    assert model.generate(ids, eos_token_id=[]).shape == (1, 15)
    # With none given anywhere, config.json's eos_token_id applies.
    cfg_eos = pyllm.Model.from_arrays(dict(config, eos_token_id=eos), weights)
    assert cfg_eos.generate(ids, max_new_tokens=30)[0, -1] == eos


@pytest.mark.parametrize("kw, match", [
    ({"temperature": -0.5}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"max_new_tokens": 600}, "n_ctx"),
    ({"pad_token_id": 1000}, "pad_token_id"),
    ({"eos_token_id": [3, 999]}, "eos_token_id"),
])
def test_bad_generation_options_raise(kw, match):
    _, model = pair("mha")
    with pytest.raises(ValueError, match=match):
        model.generate([1, 2, 3], do_sample=True, **kw)


def test_zero_new_tokens_returns_the_prompt():
    _, model = pair("mha")
    out = model.generate([[4, 5, 6]], max_new_tokens=0)
    np.testing.assert_array_equal(out, [[4, 5, 6]])


def test_ctrl_c_interrupts_a_long_generation():
    """SIGINT during generate() raises KeyboardInterrupt instead of running to the end."""
    import os
    import signal
    import threading
    config = make_config(num_hidden_layers=1, max_position_embeddings=40000)
    _, model = make_pair(config, seed=1)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.generate([1, 2, 3], max_new_tokens=39000, eos_token_id=[])
    finally:
        timer.cancel()
    # The model is still usable afterwards.
    assert model.generate([1, 2, 3], max_new_tokens=3, eos_token_id=[]).shape == (6,)
