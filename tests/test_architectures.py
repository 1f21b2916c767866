"""The architecture registry (pyllm.architectures): one DecoderSpec per source's config, the
tensor-name maps, clear errors for families it does not know, the structural checks made once
(in C) for every source, and a family added from outside as one small module (Qwen2: LLaMA with
q/k/v biases), checked against transformers."""
import os
import re
import types

import numpy as np
import pytest
import torch

import pyllm
from pyllm import architectures
from pyllm.architectures import bloom, canonical_shapes, llama, spec_from_hf

from conftest import REPO

LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 50, "hidden_size": 32,
         "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "max_position_embeddings": 64}
BLOOM = {"model_type": "bloom", "architectures": ["BloomForCausalLM"], "vocab_size": 50, "n_embed": 32,
         "n_layer": 2, "n_head": 4}


def test_llama_spec_from_hf():
    spec = spec_from_hf(dict(LLAMA, attention_bias=True))
    assert spec["architecture"] == "llama"
    assert (spec["norm"], spec["position"], spec["mlp"]) == ("rms", "rope", "swiglu")
    assert (spec["head_dim"], spec["num_key_value_heads"], spec["n_ctx"]) == (8, 2, 64)
    assert spec["qkv_bias"] and spec["o_bias"] and not spec["mlp_bias"]
    assert not spec["embedding_norm"] and not spec["residual_from_norm"] and not spec["tie_word_embeddings"]
    assert spec_from_hf(LLAMA, n_ctx=10)["n_ctx"] == 10


def test_bloom_spec_from_hf():
    spec = spec_from_hf(dict(BLOOM, apply_residual_connection_post_layernorm=True, seq_length=77))
    assert spec["architecture"] == "bloom"
    assert (spec["norm"], spec["position"], spec["mlp"]) == ("layer", "alibi", "gelu_tanh")
    assert (spec["hidden_size"], spec["intermediate_size"], spec["head_dim"], spec["n_ctx"]) == (32, 128, 8, 77)
    assert spec["embedding_norm"] and spec["residual_from_norm"] and spec["tie_word_embeddings"]
    assert spec["qkv_bias"] and spec["o_bias"] and spec["mlp_bias"]
    assert "rope_theta" not in spec


def test_llama2c_header_gives_the_spec_of_its_hf_config():
    header = {"dim": 32, "hidden_dim": 48, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 50,
              "seq_len": 64}
    spec = llama.spec_from_llama2c(header, shared_classifier=True)
    assert spec == spec_from_hf(dict(LLAMA, rms_norm_eps=1e-5, tie_word_embeddings=True))
    assert spec["norm_eps"] == 1e-5 and spec["tie_word_embeddings"]
    with pytest.raises(ValueError, match="divisible"):
        llama.spec_from_llama2c(dict(header, n_heads=5), True)


@pytest.mark.parametrize("config, named", [
    (dict(LLAMA, model_type="mistral", architectures=["MistralForCausalLM"]), "mistral"),
    (dict(LLAMA, model_type=None, architectures=["Qwen2ForCausalLM"]), "Qwen2ForCausalLM"),
    (dict(LLAMA, model_type="gpt2", architectures=None), "gpt2"),
])
def test_unknown_hf_architecture_is_named(config, named):
    with pytest.raises(ValueError, match=f"unsupported architecture.*{named}.*pyllm runs LLaMA"):
        spec_from_hf(config)


def test_unknown_registry_and_gguf_names_are_named(tmp_path):
    from gguf_files import write_gguf
    from pyllm.gguf import open_gguf
    with pytest.raises(ValueError, match="unsupported architecture 'falcon'"):
        architectures.get("falcon")
    path = write_gguf(tmp_path / "phi3.gguf", arch="phi3")
    with pytest.raises(ValueError, match="architecture 'phi3' is not supported \\(supported: llama, bloom\\)"):
        architectures.spec_from_gguf(open_gguf(path))


def test_every_module_has_a_reader_per_source():
    for name, module in architectures.ARCHITECTURES.items():
        assert module.NAME == name
        for source in ("hf", "gguf"):
            assert callable(getattr(module, f"spec_from_{source}")), (name, source)
            assert callable(getattr(module, f"weights_from_{source}")), (name, source)


def test_structural_rules_are_checked_once_for_every_source():
    """The C core's rules reject a spec however it was made."""
    with pytest.raises(ValueError, match=r"num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)"):
        spec_from_hf(dict(LLAMA, num_key_value_heads=3))
    with pytest.raises(ValueError, match="must be even for rotary"):
        spec_from_hf(dict(LLAMA, head_dim=7))
    with pytest.raises(ValueError, match=r"num_attention_heads \(4\) must be a multiple"):
        llama.spec_from_llama2c({"dim": 32, "hidden_dim": 48, "n_layers": 1, "n_heads": 4, "n_kv_heads": 3,
                                 "vocab_size": 50, "seq_len": 64}, True)
    spec = spec_from_hf(LLAMA)
    with pytest.raises(ValueError, match="must be even for rotary"):
        spec.replace(head_dim=7)
    assert spec.replace(position="alibi", head_dim=7)["head_dim"] == 7  # ALiBi has no such rule
    with pytest.raises(ValueError, match="'norm' must be one of 'rms', 'layer', got 'batch'"):
        spec.replace(norm="batch")
    with pytest.raises(ValueError, match="n_ctx is 2147483648, above pyllm's limit"):
        spec_from_hf(BLOOM, n_ctx=2**31)


def test_canonical_shapes_follow_the_spec():
    shapes = canonical_shapes(spec_from_hf(dict(LLAMA, mlp_bias=True)))
    assert shapes["model.layers.1.self_attn.k_proj.weight"] == (16, 32)
    assert shapes["model.layers.1.mlp.gate_proj.bias"] == (48,)
    assert "model.layers.0.self_attn.q_proj.bias" not in shapes and "model.norm.bias" not in shapes
    shapes = canonical_shapes(spec_from_hf(BLOOM))
    assert "model.layers.0.mlp.gate_proj.weight" not in shapes and "lm_head.weight" not in shapes
    assert shapes["model.embed_norm.bias"] == shapes["model.layers.0.input_layernorm.bias"] == (32,)


def test_bloom_tensor_names_map_onto_canonical_ones():
    assert bloom.hf_name("model.layers.3.self_attn.o_proj.weight", "transformer.") == \
        "transformer.h.3.self_attention.dense.weight"
    assert bloom.hf_name("model.layers.0.mlp.up_proj.bias") == "h.0.mlp.dense_h_to_4h.bias"
    assert bloom.hf_name("model.embed_norm.weight") == "word_embeddings_layernorm.weight"
    assert bloom.hf_name("model.norm.bias") == "ln_f.bias"
    spec = spec_from_hf(dict(BLOOM, n_layer=1))
    rng = np.random.default_rng(0)
    shapes = {"word_embeddings.weight": (50, 32), "h.0.self_attention.query_key_value.weight": (96, 32),
              "h.0.self_attention.query_key_value.bias": (96,), "h.0.self_attention.dense.weight": (32, 32),
              "h.0.self_attention.dense.bias": (32,), "h.0.mlp.dense_h_to_4h.weight": (128, 32),
              "h.0.mlp.dense_h_to_4h.bias": (128,), "h.0.mlp.dense_4h_to_h.weight": (32, 128),
              "h.0.mlp.dense_4h_to_h.bias": (32,)}
    for norm in ("word_embeddings_layernorm", "ln_f", "h.0.input_layernorm", "h.0.post_attention_layernorm"):
        shapes[norm + ".weight"] = shapes[norm + ".bias"] = (32,)
    weights = {"transformer." + k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    out = architectures.weights_from_hf(spec, weights)
    assert sorted(out) == sorted(list(canonical_shapes(spec)) + ["lm_head.weight"])
    fused = weights["transformer.h.0.self_attention.query_key_value.weight"].reshape(4, 3, 8, 32)
    for j, name in enumerate(("q_proj", "k_proj", "v_proj")):  # rows [head][q|k|v][head_dim]
        assert np.array_equal(out[f"model.layers.0.self_attn.{name}.weight"], fused[:, j].reshape(32, 32))
    assert out["lm_head.weight"] is out["model.embed_tokens.weight"]


def test_c_core_names_no_family():
    """The C core reads the spec, never a family's name (the tokenizers, another concern, aside;
    'llama3' is a rotary scaling's name, not a family's)."""
    found = []
    for folder in ("models", "ops", "generate", "core"):
        for root, _, files in os.walk(os.path.join(REPO, "csrc", folder)):
            for name in files:
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    code = f.read()
                if re.search(r"\"[^\"\n]*(llama|bloom)[^\"\n]*\"|pyllm_(llama|bloom)", code, re.IGNORECASE):
                    found.append(name)
    with open(os.path.join(REPO, "csrc", "python", "py_model.c"), encoding="utf-8") as f:
        if re.search("llama(?!3)|bloom", f.read(), re.IGNORECASE):
            found.append("py_model.c")
    assert found == []


def _qwen2_module():
    """Qwen2 as one registry module written outside pyllm: LLaMA's readers, q/k/v biases, no
    o_proj bias (sliding window off, as Qwen2's configs default)."""
    def spec_from_hf(config, n_ctx=None):
        if config.get("use_sliding_window"):
            raise ValueError("sliding-window attention is not supported")
        return llama.spec_from_hf(dict(config, attention_bias=False), n_ctx).replace(
            architecture="qwen2", qkv_bias=True)

    return types.SimpleNamespace(NAME="qwen2", FAMILY="Qwen2", HF_MODEL_TYPE="qwen2",
                                 HF_CLASSES=("Qwen2ForCausalLM",), spec_from_hf=spec_from_hf,
                                 weights_from_hf=llama.weights_from_hf)


def test_a_family_added_as_one_module_matches_transformers(monkeypatch):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    monkeypatch.setitem(architectures.ARCHITECTURES, "qwen2", _qwen2_module())
    config = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 96, "hidden_size": 64,
              "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "tie_word_embeddings": False}
    torch.manual_seed(0)
    hf = Qwen2ForCausalLM(Qwen2Config(**config)).eval()
    with torch.no_grad():
        for name, param in hf.named_parameters():  # far above the init's scale: biases and heads matter
            param.copy_(torch.randn(param.shape) * (0.5 if param.ndim == 1 else 1.5 / param.shape[1] ** 0.5)
                        + (1.0 if name.endswith("norm.weight") else 0.0))
    weights = {name: t.detach().numpy().copy() for name, t in hf.state_dict().items()}
    model = pyllm.Model.from_arrays(config, weights)
    assert model.spec["qkv_bias"] and not model.spec["o_bias"]
    ids = np.random.default_rng(1).integers(0, 96, size=(2, 20))
    with torch.no_grad():
        ref = hf(torch.as_tensor(ids)).logits.numpy()
    ours = model(ids)
    assert float(np.abs(ours - ref).max()) <= 1e-4
    # The biases matter: without them the logits are far off.
    unbiased = {k: (np.zeros_like(v) if k.endswith("_proj.bias") else v) for k, v in weights.items()}
    assert float(np.abs(pyllm.Model.from_arrays(config, unbiased)(ids) - ref).max()) > 1e-2
    with pytest.raises(ValueError, match="sliding-window"):
        pyllm.Model.from_arrays(dict(config, use_sliding_window=True), weights)
