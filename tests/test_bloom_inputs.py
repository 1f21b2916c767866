"""BLOOM's bad configs, bad weights and bad inputs raise clear Python exceptions naming what was
wrong (never a crash), as LLaMA's do; an architecture that is neither raises naming it.
Bad input ids are checked for both architectures in test_model_inputs.py."""
import numpy as np
import pytest

import pyllm
from bloom_reference import make_config, make_pair, state_arrays

VOCAB = 160


@pytest.fixture(scope="module")
def small():
    config = make_config(n_layer=1, num_attention_heads=3, seq_length=64)
    hf, model = make_pair(config, seed=2)
    return config, state_arrays(hf), model


def test_too_long_input_and_bad_masks(small):
    _, _, model = small
    assert model.n_ctx == 64
    ids = np.random.default_rng(0).integers(0, VOCAB, size=(1, 65))
    with pytest.raises(ValueError, match="n_ctx"):
        model(ids)
    with pytest.raises(ValueError, match="n_ctx"):
        model.generate(ids[:, :60], max_new_tokens=10)
    with pytest.raises(ValueError, match="attention_mask"):
        model(ids[:, :5], attention_mask=[[1, 1, 1]])
    with pytest.raises(ValueError, match="0 and 1"):
        model(ids[:, :3], attention_mask=[[1, 2, 1]])
    cache = model.new_cache()
    model(ids[:, :60], cache=cache)
    with pytest.raises(ValueError, match="n_ctx"):
        model(ids[:, :5], cache=cache)


@pytest.mark.parametrize("change, exc, match", [
    (lambda c: c.pop("n_embed"), ValueError, "n_embed"),
    (lambda c: c.pop("vocab_size"), ValueError, "vocab_size"),
    (lambda c: c.pop("n_layer"), ValueError, "n_layer"),
    (lambda c: c.pop("num_attention_heads"), ValueError, "n_head"),
    (lambda c: c.update(n_embed=100), ValueError, "multiple of n_head"),
    (lambda c: c.update(n_layer=0), ValueError, "n_layer"),
    (lambda c: c.update(n_embed=2.5), ValueError, "n_embed"),
    (lambda c: c.update(layer_norm_epsilon="small"), ValueError, "layer_norm_epsilon"),
    (lambda c: c.update(apply_residual_connection_post_layernorm="yes"), ValueError,
     "apply_residual_connection_post_layernorm"),
    (lambda c: c.update(seq_length=0), ValueError, "seq_length"),
    (lambda c: c.update(architectures=["LlamaForCausalLM"]), ValueError, "BloomForCausalLM"),
    (lambda c: c.update(model_type="gpt2", architectures=["GPT2LMHeadModel"]), ValueError, "gpt2"),
    (lambda c: c.update(model_type="falcon", architectures=["FalconForCausalLM"]), ValueError,
     "FalconForCausalLM.*LLaMA.*BLOOM"),
])
def test_bad_configs(small, change, exc, match):
    config, weights, _ = small
    config = dict(config)
    change(config)
    with pytest.raises(exc, match=match):
        pyllm.Model.from_arrays(config, weights)


def test_hidden_size_alias_and_model_type_alone(small):
    """hidden_size / n_head / num_hidden_layers are accepted for n_embed / num_attention_heads /
    n_layer, and model_type alone (no architectures) is enough."""
    config, weights, model = small
    renamed = {k: v for k, v in config.items()
               if k not in ("n_embed", "n_layer", "num_attention_heads", "architectures")}
    renamed.update(hidden_size=120, num_hidden_layers=1, n_head=3)
    other = pyllm.Model.from_arrays(renamed, weights)
    ids = np.random.default_rng(1).integers(0, VOCAB, size=(1, 20))
    np.testing.assert_array_equal(other(ids), model(ids))


def test_bad_weights_name_the_tensor(small):
    config, weights, _ = small
    missing = dict(weights)
    del missing["transformer.h.0.mlp.dense_4h_to_h.bias"]
    with pytest.raises(ValueError, match=r"transformer\.h\.0\.mlp\.dense_4h_to_h\.bias"):
        pyllm.Model.from_arrays(config, missing)
    shaped = dict(weights, **{"transformer.h.0.self_attention.query_key_value.weight":
                              np.zeros((120, 120), np.float32)})
    with pytest.raises(ValueError, match=r"query_key_value\.weight.*\(360, 120\)"):
        pyllm.Model.from_arrays(config, shaped)
    typed = dict(weights, **{"transformer.ln_f.bias": np.ones(120, dtype=np.int32)})
    with pytest.raises(TypeError, match=r"ln_f\.bias.*int32"):
        pyllm.Model.from_arrays(config, typed)
    no_norm = dict(weights)
    del no_norm["transformer.word_embeddings_layernorm.weight"]
    with pytest.raises(ValueError, match="word_embeddings_layernorm.weight"):
        pyllm.Model.from_arrays(config, no_norm)
    untied = dict(weights)
    del untied["lm_head.weight"]
    with pytest.raises(ValueError, match="lm_head"):
        pyllm.Model.from_arrays(dict(config, tie_word_embeddings=False), untied)
    with pytest.raises(TypeError, match="dict"):
        pyllm.Model.from_arrays(config, list(weights.items()))


def test_bad_n_ctx(small):
    config, weights, _ = small
    for bad in (0, -5, 2.5, True, 2**31):
        with pytest.raises(ValueError, match="n_ctx"):
            pyllm.Model.from_arrays(config, weights, n_ctx=bad)


def test_crash_prone_inputs_in_a_fresh_process(isolated):
    """The C binding itself, fed BLOOM configs and weights it cannot use, raises instead of crashing."""
    kind, message = isolated("""
        import numpy as np, pyllm
        from pyllm import architectures
        c = {"model_type": "bloom", "vocab_size": 10, "n_embed": 8, "n_layer": 1, "n_head": 2}
        parsed = pyllm.architectures.spec_from_hf(c, None)
        good = {}
        for name in ("word_embeddings.weight",):
            good[name] = np.ones((10, 8), np.float32)
        for name in ("word_embeddings_layernorm", "ln_f", "h.0.input_layernorm", "h.0.post_attention_layernorm"):
            good[name + ".weight"] = np.ones(8, np.float32)
            good[name + ".bias"] = np.zeros(8, np.float32)
        for name, shape in (("h.0.self_attention.query_key_value", (24, 8)), ("h.0.self_attention.dense", (8, 8)),
                            ("h.0.mlp.dense_h_to_4h", (32, 8)), ("h.0.mlp.dense_4h_to_h", (8, 32))):
            good[name + ".weight"] = np.ones(shape, np.float32)
            good[name + ".bias"] = np.zeros(shape[0], np.float32)
        arrays = architectures.weights_from_hf(parsed, good)
        pyllm._core.Decoder(parsed, arrays)
        def expect(exc, config, weights):
            try:
                pyllm._core.Decoder(config, weights)
            except exc as e:
                print("ok", type(e).__name__, e)
            else:
                raise AssertionError(f"no {exc.__name__}")
        expect(KeyError, parsed, {k: v for k, v in arrays.items() if k != "model.norm.bias"})
        expect(KeyError, parsed, {k: v for k, v in arrays.items() if k != "model.embed_norm.bias"})
        expect(KeyError, parsed, {k: v for k, v in arrays.items() if k != "model.layers.0.input_layernorm.bias"})
        expect(ValueError, parsed, dict(arrays, **{"model.norm.bias": np.ones(3, np.float32)}))
        expect(TypeError, parsed, dict(arrays, **{"model.embed_norm.weight": np.ones(8, np.float64)}))
        expect(ValueError, dict(parsed, num_key_value_heads=1), arrays)
        expect(ValueError, dict(parsed, head_dim=3), arrays)
        expect(ValueError, dict(parsed, norm="batch"), arrays)
        expect(ValueError, dict(parsed, position="learned"), arrays)
        expect(KeyError, {k: v for k, v in parsed.items() if k != "norm_eps"}, arrays)
        expect(KeyError, {k: v for k, v in parsed.items() if k != "mlp"}, arrays)
        expect(KeyError, {k: v for k, v in parsed.items() if k != "qkv_bias"}, arrays)
        expect(KeyError, parsed, {k: v for k, v in arrays.items() if k != "model.layers.0.self_attn.q_proj.bias"})
    """)
    assert kind is None, f"{kind}: {message}"
