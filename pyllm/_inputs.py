"""Token ids and attention masks as the C core takes them, with every check the API promises;
shared by the model and the generation driver."""
import numpy as np


def _holds_text(value):
    """True for a str/bytes, or a list/tuple whose first leaf is one (a prompt given as text)."""
    while isinstance(value, (list, tuple)) and value:
        value = value[0]
    return isinstance(value, (str, bytes))


def _text_error(what, value):
    kind = type(value).__name__ if isinstance(value, (str, bytes)) else "list of str"
    return TypeError(f"{what} must be token ids (integers), got a {kind}: encode text with the tokenizer first, "
                     f"e.g. ids = tok.encode(text) or tok(texts, padding=True, return_tensors='np'), or use "
                     f"pyllm.LLM(model_dir).generate(text) for text in, text out")


def _ragged_error(what, rows):
    lengths = [len(row) for row in rows]
    shown = ", ".join(str(n) for n in lengths[:8]) + (", ..." if len(lengths) > 8 else "")
    return ValueError(f"{what} rows have different lengths ({shown}): a batch must be rectangular. Left-pad the "
                      f"shorter rows and mark the padding with attention_mask=0, e.g. input_ids=[[0, 0, 5, 6], "
                      f"[1, 2, 3, 4]], attention_mask=[[0, 0, 1, 1], [1, 1, 1, 1]] (tok(texts, padding=True, "
                      f"return_tensors='np') builds both), or pass the rows one at a time")


def as_ids(input_ids, vocab_size, what="input_ids"):
    """(int32 [batch, seq] C-contiguous array, was_1d) with every check the API promises."""
    if _holds_text(input_ids):
        raise _text_error(what, input_ids)
    if isinstance(input_ids, np.ndarray):
        ids = input_ids
    else:
        rows = input_ids if isinstance(input_ids, (list, tuple)) else None
        nested = [isinstance(row, (list, tuple, np.ndarray)) for row in rows] if rows else []
        if any(nested) and not all(nested):
            raise ValueError(f"{what} mixes token ids and lists: give a flat list [seq] or a list of rows "
                             f"[batch, seq], e.g. [5, 6, 7] or [[5, 6, 7], [8, 9, 10]]")
        if any(nested) and len({len(row) for row in rows}) > 1:
            raise _ragged_error(what, rows)
        try:
            ids = np.asarray(input_ids)
        except ValueError as e:
            raise ValueError(f"{what} must be a rectangular list or array of token ids: {e}") from None
    if ids.dtype.kind in "USO" and ids.size and _holds_text(ids.reshape(-1)[0]):
        raise _text_error(what, ids.reshape(-1).tolist())
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
    if isinstance(attention_mask, (list, tuple)) and attention_mask and \
            all(isinstance(row, (list, tuple, np.ndarray)) for row in attention_mask) and \
            len({len(row) for row in attention_mask}) > 1:
        raise _ragged_error("attention_mask", attention_mask)
    try:
        mask = np.asarray(attention_mask)
    except ValueError as e:
        raise ValueError(f"attention_mask must be a rectangular list or array of 0/1 like input_ids: {e}") from None
    if mask.dtype != np.bool_ and mask.dtype.kind not in "iu":
        raise TypeError(f"attention_mask must hold 0/1 integers or booleans, got dtype {mask.dtype}")
    if mask.ndim == 1:
        mask = mask.reshape(1, -1)
    if mask.shape != shape:
        raise ValueError(f"attention_mask has shape {mask.shape}, expected {shape} like input_ids")
    if mask.size and (mask.min() < 0 or mask.max() > 1):
        raise ValueError("attention_mask must hold only 0 and 1")
    return np.ascontiguousarray(mask, dtype=np.uint8)
