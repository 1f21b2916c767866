"""BLOOM's config and weights, read into the decoder skeleton's terms.

The C core runs BLOOM on the same skeleton as LLaMA (csrc/models/bloom.c lists the
differences). Here a ``BloomForCausalLM`` config.json becomes the skeleton's sizes, and its
state dict (with or without the ``transformer.`` prefix) becomes the skeleton's tensor names:
the fused ``query_key_value``, laid out per head as [n_head, 3, head_dim], is split into q, k
and v projections, and the LayerNorms bring their biases (shifts) along.
"""

from ._checks import LIMITS, bounded_int, check_n_ctx, float32_weight, matrix_weight

DEFAULT_N_CTX = 2048  # when the config has no seq_length; ALiBi itself has no position limit


def _first(config, keys, default=None):
    """The value of the first key present (not None) among aliases, else default."""
    for key in keys:
        if config.get(key) is not None:
            return key, config[key]
    return keys[0], default


def _required(config, keys):
    key, value = _first(config, keys)
    if value is None:
        raise ValueError(f"BLOOM config lacks the required key '{keys[0]}'"
                         + (f" (or '{keys[1]}')" if len(keys) > 1 else ""))
    return bounded_int(key, value, LIMITS[keys[-1]])


def parse_config(config, n_ctx):
    """The C core's view of a BLOOM config.json dict, with transformers' defaults filled in."""
    c = {
        "architecture": "bloom",
        "vocab_size": _required(config, ("vocab_size",)),
        "hidden_size": _required(config, ("n_embed", "hidden_size")),
        "num_hidden_layers": _required(config, ("n_layer", "num_hidden_layers")),
        "num_attention_heads": _required(config, ("n_head", "num_attention_heads")),
    }
    d, heads = c["hidden_size"], c["num_attention_heads"]
    if d % heads:
        raise ValueError(f"BLOOM's hidden size ({d}) must be a multiple of n_head ({heads})")
    c["num_key_value_heads"] = heads
    c["head_dim"] = d // heads
    c["intermediate_size"] = 4 * d
    eps = config.get("layer_norm_epsilon", 1e-5)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"layer_norm_epsilon must be a number >= 0, got {eps!r}")
    c["layer_norm_epsilon"] = float(eps)
    residual = config.get("apply_residual_connection_post_layernorm", False)
    if not isinstance(residual, bool):
        raise ValueError(f"apply_residual_connection_post_layernorm must be true or false, got {residual!r}")
    c["apply_residual_connection_post_layernorm"] = int(residual)
    tie = config.get("tie_word_embeddings", True)
    c["tie_word_embeddings"] = bool(True if tie is None else tie)
    if n_ctx is None:
        seq_length = config.get("seq_length")
        n_ctx = DEFAULT_N_CTX if seq_length is None else bounded_int("seq_length", seq_length, LIMITS["context"])
    c["n_ctx"] = check_n_ctx(n_ctx)
    return c


def _prefix(weights):
    """'transformer.' when the state dict is BloomForCausalLM's, '' for BloomModel's."""
    return "transformer." if any(name.startswith("transformer.") for name in weights) else ""


def checked_weights(c, weights):
    """The checked BLOOM tensors under the skeleton's (LLaMA-style) names: matrices in their own
    type (float32, float16, bfloat16 bits), vectors as float32."""
    d, v, heads, hd = c["hidden_size"], c["vocab_size"], c["num_attention_heads"], c["head_dim"]
    p = _prefix(weights)

    def get(name, shape):
        full = p + name
        if full not in weights:
            raise ValueError(f"weights lack the tensor '{full}' (expected shape {shape})")
        check = matrix_weight if len(shape) == 2 else float32_weight
        return check(full, weights[full], shape)

    out = {"model.embed_tokens.weight": get("word_embeddings.weight", (v, d))}
    for part in ("weight", "bias"):
        out[f"model.embed_norm.{part}"] = get(f"word_embeddings_layernorm.{part}", (d,))
        out[f"model.norm.{part}"] = get(f"ln_f.{part}", (d,))
    if c["tie_word_embeddings"]:
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    elif "lm_head.weight" in weights:
        out["lm_head.weight"] = matrix_weight("lm_head.weight", weights["lm_head.weight"], (v, d))
    else:
        raise ValueError(f"weights lack the tensor 'lm_head.weight' (expected shape {(v, d)}): "
                         "the config unties it from the embeddings")

    for i in range(c["num_hidden_layers"]):
        src, dst = f"h.{i}.", f"model.layers.{i}."
        for part in ("weight", "bias"):
            out[dst + f"input_layernorm.{part}"] = get(src + f"input_layernorm.{part}", (d,))
            out[dst + f"post_attention_layernorm.{part}"] = get(src + f"post_attention_layernorm.{part}", (d,))
        # Fused rows are [head][q|k|v][head_dim]: pick each third of every head.
        qkv = get(src + "self_attention.query_key_value.weight", (3 * d, d)).reshape(heads, 3, hd, d)
        qkv_bias = get(src + "self_attention.query_key_value.bias", (3 * d,)).reshape(heads, 3, hd)
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            out[dst + f"self_attn.{name}.weight"] = qkv[:, j].reshape(d, d).copy()
            out[dst + f"self_attn.{name}.bias"] = qkv_bias[:, j].reshape(d).copy()
        for name, hf_name, shape in (("self_attn.o_proj", "self_attention.dense", (d, d)),
                                     ("mlp.up_proj", "mlp.dense_h_to_4h", (4 * d, d)),
                                     ("mlp.down_proj", "mlp.dense_4h_to_h", (d, 4 * d))):
            out[dst + f"{name}.weight"] = get(src + f"{hf_name}.weight", shape)
            out[dst + f"{name}.bias"] = get(src + f"{hf_name}.bias", (shape[0],))
    return out
