"""Checks shared by every architecture's config and weight readers."""
import os

import numpy as np

from . import limits


def positive_int(key, value):
    """value as an int >= 1; ValueError naming the key otherwise."""
    return limits.check_count(key, value, limits.MAX_INT64)


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


# A config's counts and their limits (pyllm.limits says why each is what it is).
LIMITS = {
    "num_hidden_layers": limits.MAX_LAYERS,
    "num_attention_heads": limits.MAX_HEADS,
    "num_key_value_heads": limits.MAX_HEADS,
    "head_dim": limits.MAX_HEAD_DIM,
    "hidden_size": limits.MAX_HIDDEN,
    "intermediate_size": limits.MAX_INTERMEDIATE,
    "vocab_size": limits.MAX_VOCAB,
    "context": limits.MAX_CONTEXT,
}


def bounded_int(key, value, limit=None):
    """value as an int in [1, limit] (default LIMITS[key]); ValueError naming the key, the value
    and the limit otherwise (the caller adds which file or config it came from)."""
    return limits.check_count(key, value, LIMITS[key] if limit is None else limit)


def check_n_ctx(n_ctx):
    """n_ctx (the KV-cache capacity, a call argument) as an int in [1, MAX_CONTEXT]; ValueError
    otherwise. Whether a cache that long fits in memory is checked when one is made (pyllm.memory)."""
    return limits.check_count("n_ctx", n_ctx, limits.MAX_CONTEXT)


def flag(key, value, default):
    """A config's true/false setting: a bool (or 0/1), default when absent or null; ValueError
    naming the key otherwise (a string such as "false" would otherwise read as true)."""
    if value is None:
        return default
    if isinstance(value, (bool, np.bool_)) or (limits.is_int(value) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{key} must be true or false, got {value!r}")


def token_ids(key, value, many=False):
    """A config's special token id: None, an int >= 0 (or -1, "none", as some configs write it),
    or with many=True a list of them; ValueError naming the key otherwise."""
    if value is None:
        return None
    values = value if many and isinstance(value, list) else [value]
    for v in values:
        if not limits.is_int(v) or not -1 <= v <= limits.MAX_INT64:
            expected = "a token id or a list of token ids" if many else "a token id"
            raise ValueError(f"{key} must be {expected}, got {value!r}")
    return value


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


def path_argument(name, value):
    """A loader's path argument (a str or os.PathLike: a file, a directory or a Hub id) as a str;
    TypeError naming the argument otherwise (os.fspath's own message names none)."""
    if isinstance(value, str):
        return value
    try:
        value = os.fspath(value)
    except TypeError:
        raise TypeError(f"{name} must be a path (str or os.PathLike) or a Hugging Face Hub id, "
                        f"got {type(value).__name__}") from None
    return os.fsdecode(value)


def optional_str(name, value, accepted):
    """None or a str; TypeError naming the argument and what it accepts otherwise."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be {accepted} or None, got {type(value).__name__}")
    return value
