"""Checks shared by every architecture's config and weight readers."""
import numpy as np


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
    bf16 = isinstance(array, BFloat16Bits)
    array = _as_array(name, array)
    if not bf16 and array.dtype not in (np.float32, np.float16):
        raise TypeError(f"weight '{name}' must be float32, float16 or bfloat16, got {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"weight '{name}' has shape {array.shape}, expected {shape}")
    return np.ascontiguousarray(array.view(np.uint16) if bf16 else array)


def float32_weight(name, array, shape):
    """array (float32, float16 or bfloat16 bits, exactly `shape`) as a C-contiguous float32
    array; TypeError or ValueError naming the tensor otherwise."""
    from .checkpoint import BFloat16Bits
    if isinstance(array, BFloat16Bits):
        array = (np.asarray(array).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    array = _as_array(name, array)
    if array.dtype not in (np.float32, np.float16):
        raise TypeError(f"weight '{name}' must be float32 or float16, got {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"weight '{name}' has shape {array.shape}, expected {shape}")
    return np.ascontiguousarray(array, dtype=np.float32)
