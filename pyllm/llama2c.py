"""Reading llama2.c checkpoints (Karpathy's `run.c` format): the file's layout only; what the
header and the arrays mean as a LLaMA (its config, its tensor names, the Q/K row order) is
pyllm.architectures.llama's.

Two layouts are read, both float32 and little-endian:
- legacy v0: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len),
  a negative vocab_size meaning an unshared classifier at the end; then the embedding,
  the per-kind layer stacks, the final norm, and the unused RoPE tables;
- v1: uint32 magic "ak42", int32 version 1, the same 7 int32, a uint8 shared-classifier
  flag, zero padding to 256 bytes; then the norms first, the embedding, the layer stacks.

"""
import math
import mmap
import os
import struct

import numpy as np

from . import file_kinds, limits
from .architectures import llama

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


# Each header field's limit (pyllm.limits), checked before anything is sized from the header.
_LIMITS = {"dim": limits.MAX_HIDDEN, "hidden_dim": limits.MAX_INTERMEDIATE, "n_layers": limits.MAX_LAYERS,
           "n_heads": limits.MAX_HEADS, "n_kv_heads": limits.MAX_HEADS, "vocab_size": limits.MAX_VOCAB,
           "seq_len": limits.MAX_CONTEXT}


def _check_params(path, p, shared):
    """The header's fields positive and within their limits, and the LLaMA they describe valid
    (its rules are the spec's); ValueError naming the file, the field, its value and the limit."""
    for name in _FIELDS:
        if p[name] <= 0:
            raise ValueError(f"{path}: llama2.c header field {name} must be positive, got {p[name]}")
        limits.check_count(f"llama2.c header field {name}", p[name], _LIMITS[name], path)
    try:
        llama.spec_from_llama2c(p, shared)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


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


def load_llama2c(path):
    """(Hugging Face LlamaConfig dict, {HF weight name: float32 array}) of a llama2.c .bin."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"llama2.c checkpoint not found: {path}")
    file_kinds.expect(path, {file_kinds.LLAMA2C_CHECKPOINT}, "a llama2.c checkpoint")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ValueError(f"{path}: the file is empty, expected a llama2.c checkpoint")
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    version, p, shared, offset = _read_header(path, mapped, size)
    _check_params(path, p, shared)
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

    return llama.hf_config_from_llama2c(p, shared), llama.hf_weights_from_llama2c(arrays, p, shared)


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
