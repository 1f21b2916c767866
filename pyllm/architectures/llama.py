"""LLaMA (LlamaForCausalLM) and the checkpoints that share its layout: RMSNorm, rotary positions
(with transformers' scalings), grouped-query attention with separate q/k/v projections,
a SiLU-gated MLP, optional attention and MLP biases.

One function per source turns that source's configuration into a DecoderSpec, and one per
source maps its tensor names onto the canonical (Hugging Face LLaMA) names.
"""
import numpy as np

from .. import limits
from .._checks import LIMITS, bounded_int, check_n_ctx
from . import _hf
from .._checks import float32_weight, matrix_weight
from ..gguf import REQUIRED
from .spec import DecoderSpec, canonical_shapes, gather_weights, map_rows

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
    max_pos = bounded_int("max_position_embeddings", _hf.first(config, ("max_position_embeddings",), 2048)[1],
                          LIMITS["context"])
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


# ---- GGUF (pyllm/gguf.py reads the file; pyllm/gguf_model.py loads a model from it) --------------

# canonical name (after "model.layers.N.") -> llama.cpp's (after "blk.N.")
_GGUF_LAYER_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}
_GGUF_MODEL_NAMES = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}


def gguf_name(canonical):
    """llama.cpp's tensor name of a canonical one (the same table serves BLOOM's GGUF files)."""
    if canonical.startswith("model.layers."):
        layer, rest = canonical[len("model.layers."):].split(".", 1)
        module, part = rest.rsplit(".", 1)
        return f"blk.{layer}.{_GGUF_LAYER_NAMES[module]}.{part}"
    module, part = canonical.rsplit(".", 1)
    return f"{_GGUF_MODEL_NAMES[module]}.{part}"


def _gguf_rope(f, prefix, max_pos):
    """rope_scaling of the rope.scaling.* keys: none and linear run; llama.cpp's other kinds
    (yarn, longrope) are refused by name. Llama-3's scaling comes as the rope_freqs tensor."""
    kind = f.get_str(prefix + "rope.scaling.type", "none")
    factor = f.get_float(prefix + "rope.scaling.factor", 0.0)
    if kind == "linear" or (kind == "none" and factor not in (0.0, 1.0)):
        if not factor > 0:
            raise ValueError(f"rope.scaling.type linear needs a positive {prefix}rope.scaling.factor, got {factor}")
        return {"type": "linear", "factor": factor}
    if kind != "none":
        raise ValueError(f"{prefix}rope.scaling.type {kind!r} is not supported (none and linear are)")
    return None


def config_from_gguf(f):
    """The LlamaForCausalLM config.json dict of a GGUF file's `llama.*` metadata and tensor list
    (biases and an untied output are read off the tensors present), with llama.cpp's defaults."""
    a = "llama."
    heads = f.get_count(a + "attention.head_count", limits.MAX_HEADS)
    d = f.get_count(a + "embedding_length", limits.MAX_HIDDEN)
    vocab = f.get_count(a + "vocab_size", limits.MAX_VOCAB, None)
    if vocab is None:  # older files (stories260K.gguf): the embedding's rows, as llama.cpp takes them
        vocab = f.tensors["token_embd.weight"].shape[0] if "token_embd.weight" in f.tensors else None
    max_pos = f.get_count(a + "context_length", limits.MAX_CONTEXT)
    config = {
        "architectures": list(HF_CLASSES), "model_type": HF_MODEL_TYPE, "vocab_size": vocab, "hidden_size": d,
        "intermediate_size": f.get_count(a + "feed_forward_length", limits.MAX_INTERMEDIATE),
        "num_hidden_layers": f.get_count(a + "block_count", limits.MAX_LAYERS), "num_attention_heads": heads,
        "num_key_value_heads": f.get_count(a + "attention.head_count_kv", limits.MAX_HEADS, heads),
        "head_dim": f.get_count(a + "attention.key_length", limits.MAX_HEAD_DIM, None),  # None: hidden / heads
        "max_position_embeddings": max_pos,
        "rms_norm_eps": f.get_float(a + "attention.layer_norm_rms_epsilon", REQUIRED),
        "rope_theta": f.get_float(a + "rope.freq_base", 10000.0),
        "rope_scaling": _gguf_rope(f, a, max_pos),
        "tie_word_embeddings": "output.weight" not in f.tensors,
        "attention_bias": "blk.0.attn_q.bias" in f.tensors,
        "mlp_bias": "blk.0.ffn_up.bias" in f.tensors,
        "hidden_act": "silu",
    }
    return config


def spec_from_gguf(f, n_ctx=None):
    """The spec of a GGUF file (a pyllm.gguf.GGUFFile) of architecture `llama`."""
    spec = spec_from_hf(config_from_gguf(f), n_ctx)
    rope_dims = f.get_count("llama.rope.dimension_count", limits.MAX_HEAD_DIM, spec["head_dim"])
    if rope_dims != spec["head_dim"]:
        raise ValueError(f"llama.rope.dimension_count is {rope_dims} but heads have {spec['head_dim']} dimensions: "
                         "partial rotary embeddings are not supported")
    if spec["qkv_bias"]:  # llama.cpp may store Q/K/V biases without an output bias
        spec = spec.replace(o_bias="blk.0.attn_output.bias" in f.tensors)
    return spec


def weights_from_gguf(spec, f):
    """The checked tensors of a GGUF file under canonical names: Q/K rows (and biases) taken from
    GGUF's interleaved RoPE order to the rotate-half order; ggml blocks stay blocks; the
    `rope_freqs` tensor (Llama-3 scaling) as model.rope_freq_factors."""
    shapes = canonical_shapes(spec)
    weights = {name: f.weight(name) for name in map(gguf_name, shapes) if name in f.tensors}
    derived = {}
    for i in range(spec["num_hidden_layers"]):
        for proj, heads in (("q_proj", spec["num_attention_heads"]), ("k_proj", spec["num_key_value_heads"])):
            for part in ("weight", "bias") if spec["qkv_bias"] else ("weight",):
                canonical = f"model.layers.{i}.self_attn.{proj}.{part}"
                name = gguf_name(canonical)
                if name in weights:
                    derived[canonical] = map_rows(weights[name], lambda w, h=heads: rope_rows_to_hf(w, h))
    for canonical, tensor in list(derived.items()):
        shape = shapes[canonical]
        derived[canonical] = (matrix_weight if len(shape) == 2 else float32_weight)(gguf_name(canonical), tensor, shape)
    out = gather_weights(spec, weights, gguf_name, derived)
    if "rope_freqs.weight" in f.tensors:
        if spec["rope_type"] != "default":
            raise ValueError(f"the rope_freqs tensor does not combine with rope scaling {spec['rope_type']!r}")
        out["model.rope_freq_factors"] = float32_weight("rope_freqs.weight", f.weight("rope_freqs.weight"),
                                                        (spec["head_dim"] // 2,))
    return out
