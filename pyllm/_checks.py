"""Checks shared by every architecture's config and weight readers."""
import numpy as np

from . import _core


def positive_int(key, value):
    """value as an int >= 1; ValueError naming the config key otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"config '{key}' must be a positive integer, got {value!r}")
    return int(value)


def _as_array(name, array):
    if isinstance(array, np.ndarray):
        return array
    try:
        return np.asarray(array)
    except Exception as e:
        raise TypeError(f"weight '{name}' is not array-like: {e}") from None


def matrix_weight(name, array, shape):
    """A big tensor (a matrix or the embedding table) checked but not converted: C-contiguous in
    its own type — float32, float16, or bfloat16 bits (pyllm.checkpoint.BFloat16Bits, handed on
    as plain uint16) — for the C core to convert while it packs; TypeError or ValueError naming
    the tensor otherwise."""
    from .checkpoint import BFloat16Bits
    from .gguf import GGMLMatrix
    if isinstance(array, GGMLMatrix):  # ggml blocks from a GGUF file, handed on as they are
        if array.shape != shape:
            raise ValueError(f"weight '{name}' has shape {array.shape}, expected {shape}")
        return array
    bf16 = isinstance(array, BFloat16Bits)
    array = _as_array(name, array)
    if not bf16 and array.dtype not in (np.float32, np.float16):
        raise TypeError(f"weight '{name}' must be float32, float16 or bfloat16, got {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"weight '{name}' has shape {array.shape}, expected {shape}")
    return np.ascontiguousarray(array.view(np.uint16) if bf16 else array)


# Upper bounds on a config's counts, checked before anything is sized from them (a table per
# layer, a KV cache per position): far above every published model (LLaMA-3.1-405B has 126
# layers, 128 heads, hidden 16384, MLP 53248; vocabularies reach 256k), far below what would
# exhaust memory before the memory check could speak. Context lengths are int32 positions.
LIMITS = {
    "num_hidden_layers": _core.MAX_LAYERS,  # the C core's own limit, which sizes its tables
    "num_attention_heads": 4096,
    "num_key_value_heads": 4096,
    "head_dim": 4096,
    "hidden_size": 1 << 17,
    "intermediate_size": 1 << 20,
    "vocab_size": 1 << 24,
    "context": 2**31 - 1,
}


def bounded_int(key, value, limit=None):
    """positive_int(key, value) that is also at most limit (default LIMITS[key]); ValueError
    naming the key, the value and the limit otherwise."""
    value = positive_int(key, value)
    limit = LIMITS[key] if limit is None else limit
    if value > limit:
        raise ValueError(f"config '{key}' is {value}, above pyllm's limit of {limit}")
    return value


def check_n_ctx(n_ctx):
    """n_ctx (the KV-cache capacity) as a positive int; ValueError otherwise. Its upper bound (int32
    positions) is a rule of the spec, checked in C (csrc/models/decoder_config.c); whether a cache
    that long fits in memory is checked when one is made (pyllm.memory)."""
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, (int, np.integer)) or n_ctx < 1:
        raise ValueError(f"n_ctx must be a positive integer or None, got {n_ctx!r}")
    return int(n_ctx)


def float32_weight(name, array, shape):
    """array (float32, float16 or bfloat16 bits, exactly `shape`) as a C-contiguous float32
    array; TypeError or ValueError naming the tensor otherwise."""
    from .checkpoint import BFloat16Bits
    from .gguf import GGMLMatrix
    if isinstance(array, GGMLMatrix):
        array = array.dequantize()
    if isinstance(array, BFloat16Bits):
        array = (np.asarray(array).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    array = _as_array(name, array)
    if array.dtype not in (np.float32, np.float16):
        raise TypeError(f"weight '{name}' must be float32 or float16, got {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"weight '{name}' has shape {array.shape}, expected {shape}")
    return np.ascontiguousarray(array, dtype=np.float32)
