"""The one description of a decoder that every architecture module produces and the C core reads.

A spec says *what* a model is in the decoder skeleton's own terms (sizes, norm kind, position
scheme, MLP kind, which biases exist, ...) and never which family it came from: the C core
(csrc/python/py_model.c) reads these keys and nothing else. Its structural rules (heads
dividing into key/value groups, an even head_dim for rotary positions, positions that fit
int32, ...) are checked once, in C (csrc/models/decoder_config.c), when a spec is made.

The canonical tensor names are the Hugging Face LLaMA state-dict names, plus
``model.embed_norm.*`` for an embedding norm and ``*.bias`` for LayerNorm shifts; each
architecture module maps its sources' names onto them.
"""
import numpy as np

from .. import _core
from .._checks import float32_weight, matrix_weight

# The kinds the C core knows, by field (csrc/python/py_model.c maps them to its enums).
NORMS = ("rms", "layer")                # layer: LayerNorm with a shift
POSITIONS = ("rope", "alibi")
MLPS = ("swiglu", "gelu_tanh")           # swiglu: down(silu(gate(x)) * up(x)); gelu_tanh: down(gelu(up(x)))
ROPE_TYPES = ("default", "linear", "dynamic", "llama3")

_SIZES = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
          "num_key_value_heads", "head_dim", "n_ctx")
_FLAGS = ("embedding_norm", "residual_from_norm", "qkv_bias", "o_bias", "mlp_bias", "tie_word_embeddings")
_ROPE_KEYS = ("rope_type", "rope_theta", "rope_factor", "low_freq_factor", "high_freq_factor",
              "max_position_embeddings", "original_max_position_embeddings")


class DecoderSpec(dict):
    """A dict of the decoder skeleton's settings (the C core takes it as is).

    Keys: ``architecture`` (the registry name, for messages only), the sizes
    (``vocab_size``, ``hidden_size``, ``intermediate_size``, ``num_hidden_layers``,
    ``num_attention_heads``, ``num_key_value_heads``, ``head_dim``, ``n_ctx``), ``norm``
    (one of NORMS) and ``norm_eps``, ``position`` (one of POSITIONS; ``rope`` brings the
    ROPE_KEYS), ``mlp`` (one of MLPS), and the flags ``embedding_norm`` (a norm right after the
    token embedding), ``residual_from_norm`` (the residual is the norm's output, not its input),
    ``qkv_bias``, ``o_bias``, ``mlp_bias`` (which linear layers have biases) and
    ``tie_word_embeddings``. Model.from_arrays adds the run settings (weight types, KV type)."""

    def __init__(self, architecture, *, norm, norm_eps, position, mlp, rope=None, **fields):
        missing = [k for k in _SIZES + _FLAGS if k not in fields]
        extra = [k for k in fields if k not in _SIZES + _FLAGS]
        if missing or extra:
            raise TypeError(f"DecoderSpec: missing {missing}, unknown {extra}")
        super().__init__(architecture=architecture, norm=norm, norm_eps=float(norm_eps), position=position,
                         mlp=mlp)
        self.update({k: int(fields[k]) for k in _SIZES})
        self.update({k: bool(fields[k]) for k in _FLAGS})
        if position == "rope":
            if rope is None or sorted(rope) != sorted(_ROPE_KEYS):
                raise TypeError(f"DecoderSpec: rotary positions need exactly the keys {_ROPE_KEYS}")
            self.update(rope)
        # The structural rules, in C only: ValueError naming the rule broken.
        _core.check_spec(self)

    def replace(self, **changes):
        """A new spec with some fields changed, checked again: how a family that differs from
        another by a flag (Qwen2 from LLaMA: qkv_bias) reuses that family's readers."""
        fields = {**self, **changes}
        architecture = fields.pop("architecture")
        kinds = {k: fields.pop(k) for k in ("norm", "norm_eps", "position", "mlp")}
        rope = {k: fields.pop(k) for k in _ROPE_KEYS if k in fields}
        return DecoderSpec(architecture, rope=rope if kinds["position"] == "rope" else None, **kinds, **fields)


def canonical_shapes(spec):
    """Canonical tensor name -> shape of every tensor the C core reads for this spec (a tied
    lm_head is not listed: it is the embedding)."""
    d, ff, v = spec["hidden_size"], spec["intermediate_size"], spec["vocab_size"]
    qw = spec["num_attention_heads"] * spec["head_dim"]
    kvw = spec["num_key_value_heads"] * spec["head_dim"]
    layer_norm = spec["norm"] == "layer"
    shapes = {"model.embed_tokens.weight": (v, d)}
    norms = ["model.norm"] + (["model.embed_norm"] if spec["embedding_norm"] else [])
    if not spec["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, d)
    for i in range(spec["num_hidden_layers"]):
        p = f"model.layers.{i}."
        attention = {"q_proj": (qw, d, spec["qkv_bias"]), "k_proj": (kvw, d, spec["qkv_bias"]),
                     "v_proj": (kvw, d, spec["qkv_bias"]), "o_proj": (d, qw, spec["o_bias"])}
        mlp = {"up_proj": (ff, d), "down_proj": (d, ff)}
        if spec["mlp"] == "swiglu":
            mlp["gate_proj"] = (ff, d)
        for name, (rows, cols, bias) in attention.items():
            shapes[p + f"self_attn.{name}.weight"] = (rows, cols)
            if bias:
                shapes[p + f"self_attn.{name}.bias"] = (rows,)
        for name, (rows, cols) in mlp.items():
            shapes[p + f"mlp.{name}.weight"] = (rows, cols)
            if spec["mlp_bias"]:
                shapes[p + f"mlp.{name}.bias"] = (rows,)
        norms += [p + "input_layernorm", p + "post_attention_layernorm"]
    for norm in norms:
        shapes[norm + ".weight"] = (d,)
        if layer_norm:
            shapes[norm + ".bias"] = (d,)
    return shapes


def gather_weights(spec, weights, source_name, derived=None):
    """The checked tensors under canonical names: each canonical tensor is taken from
    weights[source_name(canonical)] (errors name the source's tensor) unless ``derived`` (a dict
    canonical name -> already checked array, e.g. split from a fused tensor) has it. Matrices
    keep their type (float32, float16, bfloat16 bits) for the C core to convert while packing;
    vectors become float32. A tied lm_head is the embedding."""
    if not isinstance(weights, dict):
        raise TypeError(f"weights must be a dict of arrays, got {type(weights).__name__}")
    derived = derived or {}
    out = {}
    for name, shape in canonical_shapes(spec).items():
        if name in derived:
            out[name] = derived[name]
            continue
        source = source_name(name)
        if source not in weights:
            hint = ": the config unties it from the embeddings" if name == "lm_head.weight" else ""
            raise ValueError(f"weights lack the tensor '{source}' (expected shape {shape}){hint}")
        check = matrix_weight if len(shape) == 2 else float32_weight
        out[name] = check(source, weights[source], shape)
    if spec["tie_word_embeddings"]:
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return out


def split_rows(array, heads, parts, head_dim):
    """The `parts` row blocks of a fused projection laid out per head as [heads, parts, head_dim]
    (BLOOM's query_key_value): a list of C-contiguous [heads * head_dim, ...] arrays."""
    rest = array.shape[1:]
    fused = np.asarray(array).reshape((heads, parts, head_dim) + rest)
    return [np.ascontiguousarray(fused[:, j].reshape((heads * head_dim,) + rest)) for j in range(parts)]


def map_rows(weight, function):
    """function (of a 2-D or 1-D NumPy array, returning its rows reordered or selected) applied to
    a tensor in any storage the loaders hand on: a NumPy array, bfloat16 bits
    (pyllm.checkpoint.BFloat16Bits) or ggml blocks (pyllm.gguf.GGMLMatrix), keeping the storage."""
    from ..checkpoint import BFloat16Bits
    from ..gguf import GGMLMatrix
    if isinstance(weight, GGMLMatrix):
        return weight.with_rows(function)
    out = np.ascontiguousarray(function(np.asarray(weight)))
    return out.view(BFloat16Bits) if isinstance(weight, BFloat16Bits) else out
