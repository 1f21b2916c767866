"""Token ids and attention masks as the C core takes them, with every check the API promises;
shared by the model and the generation driver."""
import numpy as np


def as_ids(input_ids, vocab_size, what="input_ids"):
    """(int32 [batch, seq] C-contiguous array, was_1d) with every check the API promises."""
    if isinstance(input_ids, np.ndarray):
        ids = input_ids
    else:
        try:
            ids = np.asarray(input_ids)
        except ValueError as e:
            raise ValueError(f"{what} must be a rectangular list or array of token ids: {e}") from None
    if ids.size == 0:
        raise ValueError(f"{what} is empty: need at least one token")
    if ids.dtype == np.bool_ or ids.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integers, got dtype {ids.dtype}")
    if ids.ndim not in (1, 2):
        raise ValueError(f"{what} must be 1-D [seq] or 2-D [batch, seq], got {ids.ndim}-D shape {ids.shape}")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{what} holds token id {bad}, outside the vocabulary [0, {vocab_size})")
    was_1d = ids.ndim == 1
    return np.ascontiguousarray(ids.reshape(1, -1) if was_1d else ids, dtype=np.int32), was_1d


def as_mask(attention_mask, shape):
    """uint8 [batch, seq] of 0/1 with the shape of the ids, or None."""
    if attention_mask is None:
        return None
    mask = np.asarray(attention_mask)
    if mask.dtype != np.bool_ and mask.dtype.kind not in "iu":
        raise TypeError(f"attention_mask must hold 0/1 integers or booleans, got dtype {mask.dtype}")
    if mask.ndim == 1:
        mask = mask.reshape(1, -1)
    if mask.shape != shape:
        raise ValueError(f"attention_mask has shape {mask.shape}, expected {shape} like input_ids")
    if mask.size and (mask.min() < 0 or mask.max() > 1):
        raise ValueError("attention_mask must hold only 0 and 1")
    return np.ascontiguousarray(mask, dtype=np.uint8)
