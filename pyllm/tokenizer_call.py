"""``tokenizer(texts, ...)`` with transformers' arguments: truncation, padding, tensors.

Every argument a transformers user passes to a tokenizer call is either done as transformers
does it (fast tokenizers: the text is truncated first, leaving room for the special tokens the
template adds, then rows are padded) or refused with a message naming the argument and what
pyllm accepts; none is ignored. Two defaults differ on purpose, each named in the message of the
case it concerns: rows are padded with ``pad_token_id`` else ``eos_token_id`` else 0 (transformers
refuses to pad without a pad token), and ``truncation=True`` without ``max_length`` or a
``model_max_length`` is refused (transformers warns and does not truncate).
"""
import numpy as np

from . import limits

__all__ = ["BatchEncoding", "encode_call", "check_return_tensors"]

# model_max_length values transformers writes for "no limit" (1e30) are above this.
NO_LIMIT = 10**18

_PADDINGS = {True: "longest", "longest": "longest", "max_length": "max_length", False: None, "do_not_pad": None}
_TRUNCATIONS = {True: True, "longest_first": True, "only_first": True, False: False, "do_not_truncate": False,
                None: None}

# Arguments of transformers' tokenizer call that pyllm does not implement, with the value that
# means "not used" and why it is refused otherwise.
_REFUSED = {
    "text_pair": (None, "sentence pairs are not supported: join the texts yourself"),
    "text_target": (None, "targets are not supported: tokenize them with a call of their own"),
    "text_pair_target": (None, "targets are not supported: tokenize them with a call of their own"),
    "stride": (0, "overflowing windows are not supported"),
    "is_split_into_words": (False, "pre-split words are not supported: pass the text"),
    "return_overflowing_tokens": (False, "overflowing windows are not supported"),
    "return_special_tokens_mask": (False, "special-token masks are not returned"),
    "return_offsets_mapping": (False, "offsets are not returned"),
    "return_token_type_ids": (False, "LLaMA and BLOOM tokenizers have no token type ids"),
    "tokenizer_kwargs": (None, "pass the options as arguments of the call"),
    "split_special_tokens": (False, "special-token strings in the text always become their ids"),
}
ACCEPTED = ("text", "add_special_tokens", "padding", "truncation", "max_length", "pad_to_multiple_of",
            "padding_side", "return_tensors", "return_attention_mask", "return_length", "verbose")


class BatchEncoding(dict):
    """The dict a tokenizer call returns (``input_ids``, ``attention_mask``), whose keys read as
    attributes too (``enc.input_ids``), as transformers' BatchEncoding; ``model.generate(**enc)``
    takes it."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"this BatchEncoding has no {name!r}; it holds {sorted(self)}") from None


def check_return_tensors(return_tensors):
    """None or "np" (NumPy int64 arrays); the torch / TensorFlow / JAX names refused with the fix."""
    value = getattr(return_tensors, "value", return_tensors)  # transformers' TensorType enum
    if value is None or value == "np":
        return value
    if value in ("pt", "tf", "jax", "mlx"):
        raise ValueError(f"return_tensors={value!r}: pyllm returns NumPy arrays, use return_tensors='np' "
                         "(pyllm's models take them; torch.from_numpy converts them without a copy)")
    raise ValueError(f"return_tensors must be 'np' or None, got {return_tensors!r}")


def _length(name, value):
    if value is None:
        return None
    if not limits.is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


def refuse_unsupported(where, options):
    """TypeError / ValueError for transformers arguments pyllm does not implement."""
    for name, value in options.items():
        if name not in _REFUSED:
            raise TypeError(f"{where} got an unexpected keyword argument {name!r}; pyllm accepts "
                            f"{', '.join(ACCEPTED)}")
        unused, why = _REFUSED[name]
        if value is not unused and value != unused and value is not None:
            raise ValueError(f"{name}={value!r} is not supported by pyllm: {why}")


def _lookup(table, value, message):
    try:
        return table[value]
    except (KeyError, TypeError):  # TypeError: an unhashable value
        raise ValueError(message) from None


def _texts(text):
    if isinstance(text, str):
        return [text], True
    if isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
        return list(text), False
    if isinstance(text, (list, tuple)) and all(isinstance(t, (list, tuple)) for t in text):
        raise TypeError("text must be a string or a list of strings; pairs (text, text_pair) and pre-split words "
                        "are not supported")
    raise TypeError(f"text must be a string or a list of strings, got {type(text).__name__}")


def encode_call(tok, text, add_special_tokens=True, padding=False, truncation=None, max_length=None,
                pad_to_multiple_of=None, padding_side=None, return_tensors=None, return_attention_mask=None,
                return_length=False, verbose=True, **unsupported):
    """The body of ``Tokenizer.__call__``; see there."""
    refuse_unsupported("the tokenizer call", unsupported)
    texts, single = _texts(text)
    # transformers' PaddingStrategy / TruncationStrategy enums are str subclasses: they look up as their values
    pad_mode = _lookup(_PADDINGS, padding, "padding must be True, False, 'longest', 'max_length' or 'do_not_pad', "
                       f"got {padding!r}")
    truncate = _lookup(_TRUNCATIONS, truncation, "truncation must be True, False, 'longest_first', 'only_first' or "
                       f"'do_not_truncate', got {truncation!r}" +
                       (" (sentence pairs are not supported)" if truncation == "only_second" else ""))
    max_length = _length("max_length", max_length)
    pad_to_multiple_of = _length("pad_to_multiple_of", pad_to_multiple_of)
    padding_side = tok.padding_side if padding_side is None else padding_side
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    return_tensors = check_return_tensors(return_tensors)
    if return_attention_mask not in (None, True, False):
        raise ValueError(f"return_attention_mask must be True, False or None, got {return_attention_mask!r}")

    if max_length is not None and padding is False and truncate is None:
        truncate = True  # transformers: max_length alone turns truncation on
    if max_length is not None and not truncate and pad_mode != "max_length":
        raise ValueError(f"max_length={max_length} would be ignored with padding={padding!r} and "
                         f"truncation={truncation!r} (transformers ignores it): pass truncation=True to cut rows to "
                         "max_length, or padding='max_length' to pad them to it")
    if max_length is None and (truncate or pad_mode == "max_length"):
        known = tok.model_max_length is not None and tok.model_max_length < NO_LIMIT
        if not known:
            what = "truncation=True" if truncate else "padding='max_length'"
            raise ValueError(f"{what} needs max_length=: this tokenizer has no model_max_length "
                             "(tokenizer_config.json gives none)")
        max_length = int(tok.model_max_length)
    if truncate and pad_mode is not None and pad_to_multiple_of and max_length % pad_to_multiple_of:
        raise ValueError(f"max_length={max_length} must be a multiple of pad_to_multiple_of={pad_to_multiple_of} "
                         "when both truncation and padding are on")

    batch = tok.encode_batch(texts, add_special_tokens=False) if texts else []
    if truncate:
        room = max_length - (tok.num_special_tokens_to_add() if add_special_tokens else 0)
        if room < 0:
            raise ValueError(f"max_length={max_length} leaves no room for the {max_length - room} special tokens "
                             "added to every row: raise it or pass add_special_tokens=False")
        keep_end = tok.truncation_side == "left"
        batch = [ids[len(ids) - room:] if keep_end and len(ids) > room else ids[:room] for ids in batch]
    if add_special_tokens:
        batch = [tok._with_specials(ids) for ids in batch]
    masks = [[1] * len(ids) for ids in batch]

    if pad_mode is not None and batch:
        width = max(len(ids) for ids in batch) if pad_mode == "longest" else max_length
        if pad_to_multiple_of and width % pad_to_multiple_of:
            width += pad_to_multiple_of - width % pad_to_multiple_of
        pad = next((t for t in (tok.pad_token_id, tok.eos_token_id) if t is not None), 0)
        for ids, mask in zip(batch, masks):
            fill = max(0, width - len(ids))
            if padding_side == "left":
                ids[:0] = [pad] * fill
                mask[:0] = [0] * fill
            else:
                ids.extend([pad] * fill)
                mask.extend([0] * fill)

    out = BatchEncoding()
    fields = [("input_ids", batch)]
    if return_attention_mask is not False:
        fields.append(("attention_mask", masks))
    for key, rows in fields:
        if return_tensors == "np":
            if len({len(r) for r in rows}) > 1:
                raise ValueError("texts encode to different lengths: pass padding=True (or padding='max_length') "
                                 "to get arrays")
            width = len(rows[0]) if rows else 0
            out[key] = np.array(rows, dtype=np.int64).reshape(len(rows), width)
        else:
            out[key] = rows[0] if single else rows
    if return_length:
        lengths = [len(ids) for ids in batch]
        out["length"] = (np.array(lengths, dtype=np.int64) if return_tensors == "np"
                         else lengths[0] if single else lengths)
    return out
