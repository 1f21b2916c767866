"""Activations you can read and change (issue 12 §2), against transformers on the same random
LLaMA (GQA) and BLOOM (ALiBi) models: output_attentions against eager attention (1e-5),
model.unembed against lm_head(norm(h)) (1e-5), and pyllm.Intervention in model(...) and
generate(...) against the same change made by forward hooks on the bare modules (o_proj /
down_proj / the decoder layer; BLOOM: self_attention.dense / mlp.dense_4h_to_h / the block):
logits within 1e-4, greedy tokens equal."""
import inspect

import numpy as np
import pytest
import torch

import bloom_reference
import llama_reference
import pyllm
from test_generate import assert_same_greedy

ATTN_TOL = 1e-5
TOL = 1e-4
VOCAB = {"llama": 160, "bloom": 1000}
_pairs = {}


def pair(arch, sharp=True):
    """(transformers model with eager attention, pyllm model) of the same random weights. sharp:
    weights scaled for varied greedy output (test_generate's, test_bloom_generate's); else the
    parity tests' milder scale, whose attention probabilities are not so close to 0 and 1 that
    f32 rounding of the scores moves them by 1e-5."""
    key = (arch, sharp)
    if key not in _pairs:
        if arch == "llama":  # GQA: 4 query heads over 2 KV heads
            hf, model = llama_reference.make_pair(llama_reference.make_config(num_key_value_heads=2), seed=3,
                                                  gain=2.5 if sharp else 1.5, n_threads=1)
        elif sharp:
            hf, model = bloom_reference.make_pair(bloom_reference.make_config(vocab_size=VOCAB["bloom"]), seed=3,
                                                  gain=6.0, mlp_gain=2.0, bias_std=0.02, n_threads=1)
        else:
            hf, model = bloom_reference.make_pair(bloom_reference.make_config(vocab_size=VOCAB["bloom"]), seed=3,
                                                  n_threads=1)
        hf.set_attn_implementation("eager")
        _pairs[key] = hf, model
    return _pairs[key]


def base(hf):
    return hf.model if hasattr(hf, "model") else hf.transformer


def hidden_size(model):
    return model.spec["hidden_size"]


def hf_call(hf, ids, mask, past=None, **kwargs):
    """transformers' forward on int arrays; LLaMA gets the positions pyllm uses (cumsum(mask) - 1)."""
    ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    mask_t = torch.as_tensor(np.asarray(mask, dtype=np.int64))
    if hasattr(hf, "model"):
        kwargs["position_ids"] = (mask_t.cumsum(-1) - 1).clamp(min=0)[:, -ids_t.shape[1]:]
    if past is not None:
        kwargs["cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"] = past
    with torch.no_grad():
        return hf(ids_t, attention_mask=mask_t, **kwargs)


def padded(arch, lengths, seed):
    return llama_reference.left_padded(np.random.default_rng(seed), lengths, VOCAB[arch], pad=3)


# ---- output_attentions --------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_attentions_equal_eager_attention_in_a_padded_batch(arch):
    hf, model = pair(arch, sharp=False)
    ids, mask = padded(arch, [9, 4, 7], seed=1)
    logits, attentions = model(ids, attention_mask=mask, output_attentions=True)
    ref = hf_call(hf, ids, mask, output_attentions=True).attentions
    heads = model.spec["num_attention_heads"]
    assert len(attentions) == len(ref) == model.spec["num_hidden_layers"]
    for layer, (ours, theirs) in enumerate(zip(attentions, ref)):
        assert ours.shape == (3, heads, 9, 9) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs.numpy(), atol=ATTN_TOL, rtol=0, err_msg=f"layer {layer}")
    assert attentions[0][1, :, :5].min() > 0.1  # padding queries: uniform 1/k_len, as transformers
    assert np.all(attentions[1][1, :, 5:, :5] == 0)  # real queries never see padding slots
    np.testing.assert_allclose(attentions[1].sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_attentions_with_a_cache_cover_the_cached_slots(arch):
    hf, model = pair(arch, sharp=False)
    ids, mask = padded(arch, [8, 5], seed=2)
    cache = model.new_cache(batch_size=2)
    model(ids[:, :6], attention_mask=mask[:, :6], cache=cache)
    _, states, attentions = model(ids[:, 6:], attention_mask=mask, cache=cache, output_attentions=True,
                                  output_hidden_states=True)
    first = hf_call(hf, ids[:, :6], mask[:, :6], use_cache=True)
    ref = hf_call(hf, ids[:, 6:], mask, past=first.past_key_values, output_attentions=True,
                  output_hidden_states=True)
    for ours, theirs in zip(attentions, ref.attentions):
        assert ours.shape == (2, model.spec["num_attention_heads"], 2, 8)
        np.testing.assert_allclose(ours, theirs.numpy(), atol=ATTN_TOL, rtol=0)
    np.testing.assert_allclose(states[-1], ref.hidden_states[-1].numpy(), atol=TOL, rtol=0)


def test_one_dimensional_input_gives_attentions_without_the_batch_axis():
    _, model = pair("llama")
    logits, attentions = model([5, 6, 7], output_attentions=True)
    assert logits.shape == (3, VOCAB["llama"]) and attentions[0].shape == (4, 3, 3)
    batched = model([[5, 6, 7]], output_attentions=True)[1]
    np.testing.assert_array_equal(attentions[1], batched[1][0])


# ---- unembed ------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_unembed_equals_lm_head_of_the_final_norm(arch):
    hf, model = pair(arch, sharp=False)
    hidden = np.random.default_rng(4).normal(0, 2, (2, 3, hidden_size(model))).astype(np.float32)
    norm = base(hf).norm if arch == "llama" else base(hf).ln_f
    with torch.no_grad():
        ref = hf.lm_head(norm(torch.as_tensor(hidden))).numpy()
    logits = model.unembed(hidden)
    assert logits.shape == (2, 3, VOCAB[arch]) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, ref, atol=ATTN_TOL, rtol=0)
    np.testing.assert_allclose(model.unembed(hidden[1, 2].astype(np.float64)), ref[1, 2], atol=ATTN_TOL, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_logit_lens_of_each_layer(arch):
    hf, model = pair(arch, sharp=False)
    ids, mask = padded(arch, [6, 4], seed=5)
    _, states = model(ids, attention_mask=mask, output_hidden_states=True)
    ref = hf_call(hf, ids, mask, output_hidden_states=True).hidden_states
    norm = base(hf).norm if arch == "llama" else base(hf).ln_f
    for layer in range(len(states) - 1):
        with torch.no_grad():
            lens = hf.lm_head(norm(ref[layer])).numpy()
        np.testing.assert_allclose(model.unembed(states[layer])[mask == 1], lens[mask == 1], atol=TOL, rtol=0)


def test_unembed_refuses_bad_hidden():
    _, model = pair("llama")
    for bad, error in [(np.zeros((2, 5), np.float32), ValueError), ("x", TypeError),
                       (np.zeros((2, 64), bool), TypeError), (np.float32(1.0), ValueError)]:
        with pytest.raises(error, match="hidden"):
            model.unembed(bad)
    assert model.unembed(np.zeros((0, 64), np.float32)).shape == (0, VOCAB["llama"])


# ---- interventions ------------------------------------------------------------------------------

class Hooks:
    """The interventions made by forward hooks on transformers' modules. Each spec is
    (layer, site, positions, mode, values) as given to pyllm.Intervention; a pre-hook on the base
    model reads each call's attention mask, whose cumsum gives the positions of the new tokens."""

    def __init__(self, hf, specs):
        self.handles = [base(hf).register_forward_pre_hook(self.read_mask, with_kwargs=True)]
        layers = base(hf).layers if hasattr(hf, "model") else base(hf).h
        for spec in specs:
            layer, site = layers[spec[0]], spec[1]
            if site == "attn_out":
                module = layer.self_attn.o_proj if hasattr(hf, "model") else layer.self_attention.dense
            elif site == "mlp_out":
                module = layer.mlp.down_proj if hasattr(hf, "model") else layer.mlp.dense_4h_to_h
            else:
                module = layer
            self.handles.append(module.register_forward_hook(self.change(spec)))

    def read_mask(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs["attention_mask"]
        seq = ids.shape[1]
        self.positions = (mask.cumsum(-1) - 1)[:, -seq:]
        self.real = mask[:, -seq:].bool()

    def change(self, spec):
        _, _, positions, mode, values = spec
        values = torch.as_tensor(np.asarray(values, dtype=np.float32))

        def hook(module, args, output):
            x = (output[0] if isinstance(output, tuple) else output).clone()
            for b in range(x.shape[0]):
                for t in range(x.shape[1]):
                    p = int(self.positions[b, t])
                    if not self.real[b, t] or (positions is not None and p not in positions):
                        continue
                    v = values if values.ndim == 1 else values[positions.index(p)]
                    x[b, t] = v if mode == "replace" else x[b, t] + v
            return (x,) + tuple(output[1:]) if isinstance(output, tuple) else x
        return hook

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def interventions_of(specs):
    return [pyllm.Intervention(layer, site, positions=positions, **{mode: values})
            for layer, site, positions, mode, values in specs]


def cases(width):
    rng = np.random.default_rng(7)
    vec = lambda *shape: rng.normal(0, 1.5, shape + (width,)).astype(np.float32)  # noqa: E731
    return {
        "steer_residual_everywhere": [(0, "residual", None, "add", vec())],
        "attn_out_listed": [(1, "attn_out", [4, 1], "add", vec(2))],  # unsorted, one row each
        "mlp_out_patch": [(0, "mlp_out", [0, 3, 5], "replace", vec(3))],
        "residual_patch_one_vector": [(1, "residual", [2], "replace", vec())],
        "several": [(0, "attn_out", None, "add", vec()), (0, "mlp_out", [1, 2], "add", vec()),
                    (1, "residual", [3], "replace", vec()), (1, "residual", [3], "add", vec())],
    }


@pytest.mark.parametrize("case", sorted(cases(8)))
@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_interventions_in_a_forward_pass_equal_hooks(arch, case):
    hf, model = pair(arch, sharp=False)
    specs = cases(hidden_size(model))[case]
    ids, mask = padded(arch, [8, 5, 7], seed=8)
    with Hooks(hf, specs):
        ref = hf_call(hf, ids, mask).logits.numpy()
    logits = model(ids, attention_mask=mask, interventions=interventions_of(specs))
    real = mask == 1
    np.testing.assert_allclose(logits[real], ref[real], atol=TOL, rtol=0)
    plain = model(ids, attention_mask=mask)
    assert np.abs(plain[real] - logits[real]).max() > 100 * TOL, "the intervention changed nothing"


@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_interventions_continue_positions_across_cache_calls(arch):
    _, model = pair(arch)
    specs = cases(hidden_size(model))["several"] + cases(hidden_size(model))["attn_out_listed"]
    ids, mask = padded(arch, [8, 6], seed=9)
    full = model(ids, attention_mask=mask, interventions=interventions_of(specs))
    cache = model.new_cache(batch_size=2)
    first = model(ids[:, :5], attention_mask=mask[:, :5], cache=cache, interventions=interventions_of(specs))
    rest = model(ids[:, 5:], attention_mask=mask, cache=cache, interventions=interventions_of(specs))
    real = mask == 1
    np.testing.assert_allclose(np.concatenate([first, rest], axis=1)[real], full[real], atol=TOL, rtol=0)


def hf_generate(hf, ids, mask, new, specs, pad=3):
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = pad
    with Hooks(hf, specs), torch.no_grad():
        out = hf.generate(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), max_new_tokens=new,
                          min_new_tokens=0, do_sample=False, eos_token_id=None, pad_token_id=pad,
                          output_logits=True, return_dict_in_generate=True)
    return out.sequences[:, ids.shape[1]:].numpy(), [l.float().numpy() for l in out.logits]


@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_interventions_in_generate_equal_hooked_transformers(arch):
    hf, model = pair(arch)
    rng = np.random.default_rng(10)
    d = hidden_size(model)
    # steering everywhere (generated tokens included), patching at positions that only the
    # generated tokens of some rows reach, at several layers and sites
    specs = [(0, "residual", None, "add", rng.normal(0, 1.0, d).astype(np.float32)),
             (1, "attn_out", [3, 14, 20], "add", rng.normal(0, 2.0, (3, d)).astype(np.float32)),
             (1, "mlp_out", [16], "replace", rng.normal(0, 2.0, d).astype(np.float32))]
    ids, mask = padded(arch, [12, 6, 9], seed=3)
    ref_new, ref_logits = hf_generate(hf, ids, mask, 24, specs)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=24, eos_token_id=[], pad_token_id=3,
                         interventions=interventions_of(specs))
    assert_same_greedy(out[:, ids.shape[1]:], ref_new, ref_logits)
    plain = model.generate(ids, attention_mask=mask, max_new_tokens=24, eos_token_id=[], pad_token_id=3)
    for row in range(3):
        assert not np.array_equal(plain[row], out[row]), f"row {row}: the interventions changed nothing"


def test_generate_one_dimensional_and_sampled_rows_take_interventions():
    _, model = pair("llama")
    steer = pyllm.Intervention(1, "residual", add=np.full(64, 3.0, np.float32))
    one = model.generate([5, 6, 7], max_new_tokens=6, eos_token_id=[], interventions=steer)
    two = model.generate([[5, 6, 7]], max_new_tokens=6, eos_token_id=[], interventions=[steer])
    np.testing.assert_array_equal(one, two[0])
    kw = dict(max_new_tokens=6, eos_token_id=[], do_sample=True, seed=3, num_return_sequences=2)
    sampled = model.generate([5, 6, 7], interventions=[steer], **kw)
    np.testing.assert_array_equal(sampled, model.generate([5, 6, 7], interventions=[steer], **kw))


def test_bad_interventions_are_refused_by_name():
    _, model = pair("llama")
    vec = np.ones(64, np.float32)
    with pytest.raises(ValueError, match="layer=2 is out of range"):
        model([1, 2, 3], interventions=[pyllm.Intervention(2, add=vec)])
    with pytest.raises(ValueError, match="hidden_size=64"):
        model([1, 2, 3], interventions=[pyllm.Intervention(0, add=np.ones(8))])
    with pytest.raises(ValueError, match="position 3 is out of range"):
        model([1, 2, 3], interventions=[pyllm.Intervention(0, positions=[1, 3], add=vec)])
    with pytest.raises(ValueError, match="position 9 is out of range"):
        model.generate([1, 2, 3], max_new_tokens=6, interventions=[pyllm.Intervention(0, positions=9, add=vec)])
    with pytest.raises(ValueError, match="beam search takes no interventions"):
        model.generate([1, 2, 3], max_new_tokens=2, num_beams=2, interventions=pyllm.Intervention(0, add=vec))
    with pytest.raises(ValueError, match="interventions are not supported with speculative decoding"):
        model.generate([1, 2, 3], max_new_tokens=2, prompt_lookup_num_tokens=2,
                       interventions=pyllm.Intervention(0, add=vec))
    with pytest.raises(ValueError, match="interventions are not supported with speculative decoding"):
        model.generate([1, 2, 3], max_new_tokens=2, assistant_model=model, interventions=pyllm.Intervention(0, add=vec))
    with pytest.raises(TypeError, match=r"interventions\[1\] must be a pyllm.Intervention"):
        model([1, 2, 3], interventions=[pyllm.Intervention(0, add=vec), "x"])
    with pytest.raises(TypeError, match="interventions must be"):
        model([1, 2, 3], interventions="x")
    bad = [(dict(layer=-1, add=vec), ValueError, "layer"), (dict(layer="0", add=vec), TypeError, "layer"),
           (dict(layer=0, site="mlp", add=vec), ValueError, "site must be one of"),
           (dict(layer=0), ValueError, "exactly one of add="),
           (dict(layer=0, add=vec, replace=vec), ValueError, "add="),
           (dict(layer=0, positions=[1, 1], add=vec), ValueError, "positions must be distinct"),
           (dict(layer=0, positions=[-1], add=vec), ValueError, "positions must be >= 0"),
           (dict(layer=0, positions=[], add=vec), ValueError, "positions must list"),
           (dict(layer=0, positions=[1.5], add=vec), TypeError, "positions"),
           (dict(layer=0, positions=[1, 2], replace=np.ones((3, 64))), ValueError, "replace must be"),
           (dict(layer=0, replace=np.ones((2, 64))), ValueError, "replace must be"),
           (dict(layer=0, add=np.ones((1, 1, 64))), ValueError, "add must be"),
           (dict(layer=0, add="x"), TypeError, "add must be"),
           (dict(layer=0, add=[np.nan] * 64), ValueError, "add must be finite")]
    for kwargs, error, message in bad:
        with pytest.raises(error, match=message):
            pyllm.Intervention(**kwargs)


def test_key_is_deterministic_and_covers_every_field():
    vec = np.arange(64, dtype=np.float32)
    a = pyllm.Intervention(1, "attn_out", positions=[3, 1], add=np.stack([vec, -vec]))
    same = pyllm.Intervention(1, "attn_out", positions=[1, 3], add=np.stack([-vec, vec]))
    assert isinstance(a.key(), bytes) and a.key() == same.key()
    others = [pyllm.Intervention(0, "attn_out", positions=[3, 1], add=np.stack([vec, -vec])),
              pyllm.Intervention(1, "mlp_out", positions=[3, 1], add=np.stack([vec, -vec])),
              pyllm.Intervention(1, "attn_out", positions=[3, 2], add=np.stack([vec, -vec])),
              pyllm.Intervention(1, "attn_out", positions=[3, 1], replace=np.stack([vec, -vec])),
              pyllm.Intervention(1, "attn_out", positions=[3, 1], add=np.stack([vec, -vec + 1e-3])),
              pyllm.Intervention(1, "attn_out", add=vec)]
    assert len({o.key() for o in others} | {a.key()}) == len(others) + 1
    assert pyllm.interventions.interventions_key([a, others[0]]) != pyllm.interventions.interventions_key(
        [others[0], a])
    assert pyllm.interventions.interventions_key(None) == b""
    source = vec.copy()
    b = pyllm.Intervention(0, add=source)
    key = b.key()
    source[0] = 99.0  # the intervention holds its own copy
    assert b.key() == key
