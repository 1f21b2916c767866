"""BLOOM (BloomForCausalLM, BloomModel): LayerNorm with shifts, a LayerNorm right after the word
embedding, ALiBi instead of rotary positions, a fused query_key_value laid out per head as
[n_head, 3, head_dim], a tanh-GeLU MLP, biases on every linear layer, the residual taken from
the norm's output when apply_residual_connection_post_layernorm, the lm_head tied by default.

One function per source turns that source's configuration into a DecoderSpec, and one per
source maps its tensor names onto the canonical ones (splitting the fused projection).
"""
from .. import limits
from .._checks import LIMITS, bounded_int, check_n_ctx, matrix_weight, float32_weight
from . import _hf
from ..gguf import REQUIRED
from . import llama
from .spec import DecoderSpec, canonical_shapes, gather_weights, map_rows, split_rows

NAME = "bloom"
FAMILY = "BLOOM"
HF_MODEL_TYPE = "bloom"
HF_CLASSES = ("BloomForCausalLM", "BloomModel")  # a BloomModel's embeddings are its tied lm_head
DEFAULT_N_CTX = 2048  # when the config has no seq_length; ALiBi itself has no position limit


# ---- Hugging Face config.json and state dict -----------------------------------------------------

def spec_from_hf(config, n_ctx=None):
    """The spec of a BLOOM config.json dict, with transformers' defaults filled in."""
    vocab = _hf.required_int(config, ("vocab_size",), FAMILY)
    d = _hf.required_int(config, ("n_embed", "hidden_size"), FAMILY)
    layers = _hf.required_int(config, ("n_layer", "num_hidden_layers"), FAMILY)
    heads = _hf.required_int(config, ("n_head", "num_attention_heads"), FAMILY)
    if d % heads:
        raise ValueError(f"BLOOM's hidden size ({d}) must be a multiple of n_head ({heads})")
    residual = _hf.flag(config, "apply_residual_connection_post_layernorm", False)
    if n_ctx is None:
        seq_length = config.get("seq_length")
        n_ctx = DEFAULT_N_CTX if seq_length is None else bounded_int("seq_length", seq_length, LIMITS["context"])
    return DecoderSpec(
        NAME, norm="layer", norm_eps=_hf.number(config, "layer_norm_epsilon", 1e-5), position="alibi",
        mlp="gelu_tanh", vocab_size=vocab, hidden_size=d, intermediate_size=4 * d, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, head_dim=d // heads, n_ctx=check_n_ctx(n_ctx),
        embedding_norm=True, residual_from_norm=residual, qkv_bias=True, o_bias=True, mlp_bias=True,
        tie_word_embeddings=_hf.flag(config, "tie_word_embeddings", True))


# canonical name (after "model.layers.N." / "model.") -> BLOOM's (after "h.N." / "")
_LAYER_NAMES = {
    "self_attn.o_proj": "self_attention.dense",
    "mlp.up_proj": "mlp.dense_h_to_4h",
    "mlp.down_proj": "mlp.dense_4h_to_h",
    "input_layernorm": "input_layernorm",
    "post_attention_layernorm": "post_attention_layernorm",
}
_MODEL_NAMES = {"embed_tokens": "word_embeddings", "embed_norm": "word_embeddings_layernorm", "norm": "ln_f"}


def hf_name(canonical, prefix=""):
    """The BLOOM state-dict name of a canonical tensor name (prefix: 'transformer.' for a
    BloomForCausalLM state dict, '' for a BloomModel's); lm_head.weight stays itself."""
    if canonical.startswith("model.layers."):
        layer, rest = canonical[len("model.layers."):].split(".", 1)
        module, part = rest.rsplit(".", 1)
        return f"{prefix}h.{layer}.{_LAYER_NAMES[module]}.{part}"
    if canonical.startswith("model."):
        module, part = canonical[len("model."):].rsplit(".", 1)
        return f"{prefix}{_MODEL_NAMES[module]}.{part}"
    return canonical


def weights_from_hf(spec, weights):
    """The checked BLOOM tensors under canonical names: the fused query_key_value, whose rows are
    [head][q|k|v][head_dim], split into q, k and v projections."""
    prefix = "transformer." if any(name.startswith("transformer.") for name in weights) else ""
    d, heads, hd = spec["hidden_size"], spec["num_attention_heads"], spec["head_dim"]
    derived = {}
    for i in range(spec["num_hidden_layers"]):
        fused = f"{prefix}h.{i}.self_attention.query_key_value."
        for part, shape, check in (("weight", (3 * d, d), matrix_weight), ("bias", (3 * d,), float32_weight)):
            if fused + part not in weights:
                raise ValueError(f"weights lack the tensor '{fused + part}' (expected shape {shape})")
            rows = split_rows(check(fused + part, weights[fused + part], shape), heads, 3, hd)
            for name, array in zip(("q_proj", "k_proj", "v_proj"), rows):
                derived[f"model.layers.{i}.self_attn.{name}.{part}"] = array
    return gather_weights(spec, weights, lambda name: hf_name(name, prefix), derived)


# ---- GGUF (pyllm/gguf.py reads the file; pyllm/gguf_model.py loads a model from it) --------------

def config_from_gguf(f):
    """The BloomForCausalLM config.json dict of a GGUF file's `bloom.*` metadata (llama.cpp keeps
    no apply_residual_connection_post_layernorm: its BLOOM runs without it)."""
    a = "bloom."
    d = f.get_count(a + "embedding_length", limits.MAX_HIDDEN)
    ff = f.get_count(a + "feed_forward_length", limits.MAX_INTERMEDIATE, 4 * d)
    if ff != 4 * d:
        raise ValueError(f"{a}feed_forward_length is {ff}, but BLOOM's MLP is 4 x embedding_length = {4 * d}")
    heads = f.get_count(a + "attention.head_count", limits.MAX_HEADS)
    kv_heads = f.get_count(a + "attention.head_count_kv", limits.MAX_HEADS, heads)
    if kv_heads != heads:
        raise ValueError(f"{a}attention.head_count_kv is {kv_heads}, but BLOOM has as many KV heads as heads ({heads})")
    vocab = f.get_count(a + "vocab_size", limits.MAX_VOCAB, None)
    if vocab is None:
        vocab = f.tensors["token_embd.weight"].shape[0] if "token_embd.weight" in f.tensors else None
    return {
        "architectures": [HF_CLASSES[0]], "model_type": HF_MODEL_TYPE, "vocab_size": vocab, "hidden_size": d,
        "n_layer": f.get_count(a + "block_count", limits.MAX_LAYERS), "n_head": heads,
        "layer_norm_epsilon": f.get_float(a + "attention.layer_norm_epsilon", REQUIRED),
        "seq_length": f.get_count(a + "context_length", limits.MAX_CONTEXT, DEFAULT_N_CTX),
        "apply_residual_connection_post_layernorm": False,
        "tie_word_embeddings": "output.weight" not in f.tensors,
    }


def spec_from_gguf(f, n_ctx=None):
    """The spec of a GGUF file (a pyllm.gguf.GGUFFile) of architecture `bloom`."""
    return spec_from_hf(config_from_gguf(f), n_ctx)


def _gguf_name(canonical):
    if canonical == "model.embed_norm.weight" or canonical == "model.embed_norm.bias":
        return "token_embd_norm." + canonical.rsplit(".", 1)[1]
    return llama.gguf_name(canonical)


def weights_from_gguf(spec, f):
    """The checked tensors of a GGUF file under canonical names. llama.cpp's converter stores the
    fused projection as attn_qkv with [q; k; v] row blocks (it regroups BLOOM's per-head layout),
    so q, k and v are its three thirds; ggml blocks stay blocks."""
    shapes = canonical_shapes(spec)
    weights = {name: f.weight(name) for name in map(_gguf_name, shapes) if name in f.tensors}
    d = spec["hidden_size"]
    derived = {}
    for i in range(spec["num_hidden_layers"]):
        for part, shape in (("weight", (3 * d, d)), ("bias", (3 * d,))):
            name = f"blk.{i}.attn_qkv.{part}"
            if name not in f.tensors:
                raise ValueError(f"the file lacks the tensor '{name}' (expected shape {shape})")
            check = matrix_weight if part == "weight" else float32_weight
            fused = check(name, f.weight(name), shape)
            for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                derived[f"model.layers.{i}.self_attn.{proj}.{part}"] = map_rows(fused, lambda w, j=j: w[j * d:(j + 1) * d])
    return gather_weights(spec, weights, _gguf_name, derived)
