"""LLaMA (LlamaForCausalLM) and the checkpoints that share its layout: RMSNorm, rotary positions
(with transformers' scalings), grouped-query attention with separate q/k/v projections,
a SiLU-gated MLP, optional attention and MLP biases.

One function per source turns that source's configuration into a DecoderSpec, and one per
source maps its tensor names onto the canonical (Hugging Face LLaMA) names.
"""
import numpy as np

from .._checks import LIMITS, bounded_int, check_n_ctx
from . import _hf
from .spec import DecoderSpec, gather_weights

NAME = "llama"
FAMILY = "LLaMA"
HF_MODEL_TYPE = "llama"
HF_CLASSES = ("LlamaForCausalLM",)  # the classes whose checkpoints run as a causal LM


def _spec(c, n_ctx):
    """The DecoderSpec of LLaMA settings c (sizes, eps, rope, bias flags), n_ctx defaulting to
    max_position_embeddings."""
    return DecoderSpec(
        NAME, norm="rms", norm_eps=c["rms_norm_eps"], position="rope", mlp="swiglu", rope=c["rope"],
        vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], intermediate_size=c["intermediate_size"],
        num_hidden_layers=c["num_hidden_layers"], num_attention_heads=c["num_attention_heads"],
        num_key_value_heads=c["num_key_value_heads"], head_dim=c["head_dim"],
        n_ctx=check_n_ctx(c["rope"]["max_position_embeddings"] if n_ctx is None else n_ctx),
        embedding_norm=False, residual_from_norm=False, qkv_bias=c["attention_bias"], o_bias=c["attention_bias"],
        mlp_bias=c["mlp_bias"], tie_word_embeddings=c["tie_word_embeddings"])


# ---- Hugging Face config.json and state dict -----------------------------------------------------

def spec_from_hf(config, n_ctx=None):
    """The spec of a LlamaForCausalLM config.json dict, with transformers' defaults filled in."""
    c = {key: _hf.required_int(config, (key,), FAMILY)
         for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")}
    c["num_key_value_heads"] = bounded_int("num_key_value_heads",
                                           _hf.first(config, ("num_key_value_heads",), c["num_attention_heads"])[1])
    head_dim = config.get("head_dim")
    if head_dim is None:
        if c["hidden_size"] % c["num_attention_heads"]:
            raise ValueError(f"hidden_size ({c['hidden_size']}) is not a multiple of num_attention_heads "
                             f"({c['num_attention_heads']}) and the config gives no head_dim")
        head_dim = c["hidden_size"] // c["num_attention_heads"]
    c["head_dim"] = bounded_int("head_dim", head_dim)
    c["rms_norm_eps"] = _hf.number(config, "rms_norm_eps", 1e-6)
    max_pos = bounded_int("max_position_embeddings", config.get("max_position_embeddings", 2048), LIMITS["context"])
    c["rope"] = _hf.rope(config, max_pos)
    for key in ("attention_bias", "mlp_bias", "tie_word_embeddings"):
        c[key] = _hf.flag(config, key, False)
    return _spec(c, n_ctx)


def weights_from_hf(spec, weights):
    """HF LLaMA names are the canonical names."""
    return gather_weights(spec, weights, lambda name: name)


# ---- llama.c checkpoints (Karpathy's run.c format; pyllm/llama2c.py reads the file) ---------------

def hf_config_from_llama2c(header, shared_classifier):
    """The LlamaForCausalLM config.json dict of a llama2.c header (dim, hidden_dim, n_layers,
    n_heads, n_kv_heads, vocab_size, seq_len): run.c's fixed settings made explicit."""
    if header["dim"] % header["n_heads"]:
        raise ValueError(f"dim {header['dim']} is not divisible by n_heads {header['n_heads']}")
    return {
        "architectures": list(HF_CLASSES),
        "model_type": HF_MODEL_TYPE,
        "hidden_size": header["dim"],
        "intermediate_size": header["hidden_dim"],
        "num_hidden_layers": header["n_layers"],
        "num_attention_heads": header["n_heads"],
        "num_key_value_heads": header["n_kv_heads"],
        "head_dim": header["dim"] // header["n_heads"],
        "vocab_size": header["vocab_size"],
        "max_position_embeddings": header["seq_len"],
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": shared_classifier,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def spec_from_llama2c(header, shared_classifier, n_ctx=None):
    return spec_from_hf(hf_config_from_llama2c(header, shared_classifier), n_ctx)


def rope_rows_to_hf(w, n_heads):
    """Rows of a Q or K projection [n_heads * head_dim, ...] (a bias too) reordered from adjacent
    pairs (2i, 2i+1), which Meta's and llama2.c's weights rotate and llama.cpp's GGUF files store,
    to halves (i, i + head_dim/2), which the HF formulation rotates: the permutation transformers'
    convert_llama_weights_to_hf applies, and the inverse of convert_hf_to_gguf's. For K, n_heads
    is the number of KV heads."""
    w = np.asarray(w)
    rows = w.shape[0]
    if rows % (2 * n_heads):
        raise ValueError(f"{rows} rows do not split into {n_heads} heads of an even size")
    half = rows // n_heads // 2
    return np.ascontiguousarray(w.reshape(n_heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def hf_weights_from_llama2c(arrays, header, shared_classifier):
    """{HF name: array} of llama2.c's stacked arrays (embed, rms_att, wq, wk, wv, wo, rms_ffn, w1,
    w2, w3, rms_final, wcls)."""
    weights = {"model.embed_tokens.weight": arrays["embed"], "model.norm.weight": arrays["rms_final"]}
    for i in range(header["n_layers"]):
        pre = f"model.layers.{i}."
        weights[pre + "input_layernorm.weight"] = arrays["rms_att"][i]
        weights[pre + "self_attn.q_proj.weight"] = rope_rows_to_hf(arrays["wq"][i], header["n_heads"])
        weights[pre + "self_attn.k_proj.weight"] = rope_rows_to_hf(arrays["wk"][i], header["n_kv_heads"])
        weights[pre + "self_attn.v_proj.weight"] = arrays["wv"][i]
        weights[pre + "self_attn.o_proj.weight"] = arrays["wo"][i]
        weights[pre + "post_attention_layernorm.weight"] = arrays["rms_ffn"][i]
        weights[pre + "mlp.gate_proj.weight"] = arrays["w1"][i]
        weights[pre + "mlp.down_proj.weight"] = arrays["w2"][i]
        weights[pre + "mlp.up_proj.weight"] = arrays["w3"][i]
    if not shared_classifier:
        weights["lm_head.weight"] = arrays["wcls"]
    return weights


# ---- GGUF (the hook: pyllm/formats/gguf.py will read the file) -----------------------------------

def spec_from_gguf(metadata, n_ctx=None):
    """The spec of a GGUF file's `llama.*` metadata: to be written with the GGUF reader."""
    raise NotImplementedError("GGUF LLaMA metadata is not read yet")


def weights_from_gguf(spec, tensors):
    """GGUF names (token_embd, blk.N.attn_q, ...) onto canonical ones, Q/K rows un-interleaved:
    to be written with the GGUF reader."""
    raise NotImplementedError("GGUF LLaMA tensors are not read yet")
