"""Checks shared by every architecture's config and weight readers."""
import numpy as np


def positive_int(key, value):
    """value as an int >= 1; ValueError naming the config key otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"config '{key}' must be a positive integer, got {value!r}")
    return int(value)


def float32_weight(name, array, shape):
    """array (float32 or float16, exactly `shape`) as a C-contiguous float32 array; TypeError or
    ValueError naming the tensor otherwise."""
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except Exception as e:
            raise TypeError(f"weight '{name}' is not array-like: {e}") from None
    if array.dtype not in (np.float32, np.float16):
        raise TypeError(f"weight '{name}' must be float32 or float16, got {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"weight '{name}' has shape {array.shape}, expected {shape}")
    return np.ascontiguousarray(array, dtype=np.float32)
