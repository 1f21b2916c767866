"""Importing llama2.c checkpoints (Karpathy's `run.c` format) as a Hugging Face LLaMA.

Two layouts are read, both float32 and little-endian:
- legacy v0: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len),
  a negative vocab_size meaning an unshared classifier at the end; then the embedding,
  the per-kind layer stacks, the final norm, and the unused RoPE tables;
- v1: uint32 magic "ak42", int32 version 1, the same 7 int32, a uint8 shared-classifier
  flag, zero padding to 256 bytes; then the norms first, the embedding, the layer stacks.

llama2.c rotates adjacent pairs (2i, 2i+1) of each head; Hugging Face LLaMA rotates
(i, i + head_dim/2). Reordering the rows of wq and wk within each head — row 2i to i, row
2i+1 to head_dim/2 + i, the permutation transformers' convert_llama_weights_to_hf applies
to Meta's weights, which share llama2.c's layout — makes the HF formulation compute the
same attention scores.
"""
import math
import mmap
import os
import struct

import numpy as np

_MAGIC_V1 = 0x616B3432  # "ak42"
_V1_HEADER_BYTES = 256
_V0_HEADER_BYTES = 28
_FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")


def _read_header(path, mapped, size):
    """(version, params dict, shared_classifier, data offset)."""
    if size < _V0_HEADER_BYTES:
        raise ValueError(f"{path}: {size} bytes is too short for a llama2.c header "
                         f"({_V0_HEADER_BYTES} bytes at least)")
    magic = struct.unpack_from("<I", mapped, 0)[0]
    if magic == _MAGIC_V1:
        if size < _V1_HEADER_BYTES:
            raise ValueError(f"{path}: llama2.c v1 header needs {_V1_HEADER_BYTES} bytes, the file has {size}")
        version = struct.unpack_from("<i", mapped, 4)[0]
        if version != 1:
            raise ValueError(f"{path}: llama2.c format version {version} is not supported "
                             f"(only the float32 versions 0 and 1; version 2 is int8-quantized)")
        params = dict(zip(_FIELDS, struct.unpack_from("<7i", mapped, 8)))
        shared = mapped[36]
        if shared not in (0, 1):
            raise ValueError(f"{path}: shared-classifier flag must be 0 or 1, got {shared}")
        return 1, params, bool(shared), _V1_HEADER_BYTES
    params = dict(zip(_FIELDS, struct.unpack_from("<7i", mapped, 0)))
    shared = params["vocab_size"] > 0
    params["vocab_size"] = abs(params["vocab_size"])
    return 0, params, shared, _V0_HEADER_BYTES


def _check_params(path, p):
    for name in _FIELDS:
        if p[name] <= 0:
            raise ValueError(f"{path}: llama2.c header field {name} must be positive, got {p[name]}")
    if p["dim"] % p["n_heads"]:
        raise ValueError(f"{path}: dim {p['dim']} is not divisible by n_heads {p['n_heads']}")
    if p["n_heads"] % p["n_kv_heads"]:
        raise ValueError(f"{path}: n_heads {p['n_heads']} is not a multiple of n_kv_heads {p['n_kv_heads']}")
    if (p["dim"] // p["n_heads"]) % 2:
        raise ValueError(f"{path}: head size {p['dim'] // p['n_heads']} must be even for RoPE")


def _layout(version, p, shared):
    """[(name, shape)] of the float32 arrays in file order; None names are skipped."""
    dim, hidden, layers = p["dim"], p["hidden_dim"], p["n_layers"]
    head = dim // p["n_heads"]
    kv_dim = head * p["n_kv_heads"]
    emb = ("embed", (p["vocab_size"], dim))
    norms = [("rms_att", (layers, dim)), ("rms_ffn", (layers, dim)), ("rms_final", (dim,))]
    mats = [("wq", (layers, dim, dim)), ("wk", (layers, kv_dim, dim)), ("wv", (layers, kv_dim, dim)),
            ("wo", (layers, dim, dim)), ("w1", (layers, hidden, dim)), ("w2", (layers, dim, hidden)),
            ("w3", (layers, hidden, dim))]
    cls = [] if shared else [("wcls", (p["vocab_size"], dim))]
    if version == 1:
        return norms + [emb] + mats + cls
    rope = [(None, (p["seq_len"], head // 2)), (None, (p["seq_len"], head // 2))]
    return ([emb, norms[0]] + mats[:4] + [norms[1]] + mats[4:] + [norms[2]] + rope + cls)


def _rotate_half_rows(w, n_heads):
    """Rows of a [n_heads*head, in] projection reordered from adjacent pairs to halves."""
    rows, cols = w.shape
    head = rows // n_heads
    return np.ascontiguousarray(w.reshape(n_heads, head // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols))


def load_llama2c(path):
    """(Hugging Face LlamaConfig dict, {HF weight name: float32 array}) of a llama2.c .bin."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"llama2.c checkpoint not found: {path}")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ValueError(f"{path}: the file is empty, expected a llama2.c checkpoint")
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    version, p, shared, offset = _read_header(path, mapped, size)
    _check_params(path, p)
    layout = _layout(version, p, shared)
    expected = offset + 4 * sum(math.prod(shape) for _, shape in layout)
    if size != expected:
        raise ValueError(f"{path}: file has {size} bytes but its llama2.c v{version} header "
                         f"({', '.join(f'{k}={p[k]}' for k in _FIELDS)}, "
                         f"{'shared' if shared else 'separate'} classifier) implies {expected}")

    arrays = {}
    for name, shape in layout:
        count = math.prod(shape)
        if name is not None:
            arrays[name] = np.frombuffer(mapped, dtype="<f4", count=count, offset=offset).reshape(shape)
        offset += 4 * count

    weights = {"model.embed_tokens.weight": arrays["embed"], "model.norm.weight": arrays["rms_final"]}
    for i in range(p["n_layers"]):
        pre = f"model.layers.{i}."
        weights[pre + "input_layernorm.weight"] = arrays["rms_att"][i]
        weights[pre + "self_attn.q_proj.weight"] = _rotate_half_rows(arrays["wq"][i], p["n_heads"])
        weights[pre + "self_attn.k_proj.weight"] = _rotate_half_rows(arrays["wk"][i], p["n_kv_heads"])
        weights[pre + "self_attn.v_proj.weight"] = arrays["wv"][i]
        weights[pre + "self_attn.o_proj.weight"] = arrays["wo"][i]
        weights[pre + "post_attention_layernorm.weight"] = arrays["rms_ffn"][i]
        weights[pre + "mlp.gate_proj.weight"] = arrays["w1"][i]
        weights[pre + "mlp.down_proj.weight"] = arrays["w2"][i]
        weights[pre + "mlp.up_proj.weight"] = arrays["w3"][i]
    if not shared:
        weights["lm_head.weight"] = arrays["wcls"]

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": p["dim"],
        "intermediate_size": p["hidden_dim"],
        "num_hidden_layers": p["n_layers"],
        "num_attention_heads": p["n_heads"],
        "num_key_value_heads": p["n_kv_heads"],
        "head_dim": p["dim"] // p["n_heads"],
        "vocab_size": p["vocab_size"],
        "max_position_embeddings": p["seq_len"],
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": shared,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    return config, weights


def convert_llama2c(path, out_dir):
    """Write a llama2.c checkpoint as a Hugging Face model directory (config.json,
    generation_config.json, model.safetensors) that transformers and pyllm load."""
    import json

    from .checkpoint import save_safetensors

    config, weights = load_llama2c(path)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}, f, indent=2)
    save_safetensors(os.path.join(out_dir, "model.safetensors"), weights, metadata={"format": "pt"})
    return out_dir
