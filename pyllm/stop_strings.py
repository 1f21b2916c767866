"""Text-level stop strings: a stopping criterion that decodes each row's new tokens as they come
and ends the row on the token that completes a stop string (across token boundaries, as
transformers' StopStringCriteria does), plus the helpers that cut a stop string from text.
"""
import numpy as np

from .limits import MAX_STOP_STRING_CHARS, MAX_STOP_STRINGS

__all__ = ["check_stop_strings", "StopStringCriteria", "cut_at_stop", "held_back_length"]


def check_stop_strings(stop_strings):
    """A list of non-empty strings (one string is accepted as a list of one), or [] for None."""
    if stop_strings is None:
        return []
    if isinstance(stop_strings, str):
        stop_strings = [stop_strings]
    if not isinstance(stop_strings, (list, tuple)):
        raise TypeError(f"stop_strings must be a string or a list of strings, got {type(stop_strings).__name__}")
    out = []
    for s in stop_strings:
        if not isinstance(s, str):
            raise TypeError(f"stop_strings must hold strings, got {type(s).__name__} ({s!r})")
        if s == "":
            raise ValueError("stop_strings holds an empty string, which would stop before any text: "
                             "give non-empty strings")
        if len(s) > MAX_STOP_STRING_CHARS:
            raise ValueError(f"stop_strings holds a string of {len(s)} characters, above pyllm's limit of "
                             f"{MAX_STOP_STRING_CHARS}")
        out.append(s)
        if len(out) > MAX_STOP_STRINGS:  # counted as they come: a huge iterable stops here
            raise ValueError(f"stop_strings holds more than {MAX_STOP_STRINGS} strings, pyllm's limit")
    return out


def cut_at_stop(text, stop_strings):
    """(text before the earliest stop string, True) or (text, False) when none occurs."""
    cut = -1
    for s in stop_strings:
        at = text.find(s)
        if at >= 0 and (cut < 0 or at < cut):
            cut = at
    return (text, False) if cut < 0 else (text[:cut], True)


def held_back_length(text, stop_strings):
    """Length of the longest end of text that is the start of a stop string (it may still
    become one, so a stream must not show it yet)."""
    best = 0
    for s in stop_strings:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


class StopStringCriteria:
    """``fn(input_ids, scores) -> bool[rows]`` for ``Model.generate(stopping_criteria=...)``.

    Each call sees the token just chosen in the last column of input_ids; it is decoded
    incrementally per row (skip_special_tokens=True, UTF-8 safe) and the row ends when its
    generated text comes to hold a stop string. A row that produced an end token is no longer
    followed (later columns hold padding)."""

    def __init__(self, tokenizer, stop_strings, batch, eos_token_ids=(), cancelled=None):
        self._stops = check_stop_strings(stop_strings)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._decoders = [tokenizer.stream_decoder(skip_special_tokens=True) for _ in range(batch)]
        self._texts = [""] * batch
        self._eos = set(int(e) for e in eos_token_ids)
        self._ended = np.zeros(batch, dtype=bool)
        self.matched = np.zeros(batch, dtype=bool)
        self._cancelled = cancelled

    def __call__(self, input_ids, scores):
        if self._cancelled is not None and self._cancelled():
            return np.ones(len(self._texts), dtype=bool)
        last = input_ids[:, -1]
        for row, token in enumerate(last.tolist()):
            if self._ended[row]:
                continue
            if token in self._eos:
                self._ended[row] = True
                continue
            piece = self._decoders[row].push(token)
            if not piece or not self._stops:
                continue
            text = self._texts[row]
            start = max(0, len(text) - self._longest + 1)
            text += piece
            # Keep only the tail a later match could still use.
            self._texts[row] = text[-self._longest:] if len(text) > self._longest else text
            window = text[start:]
            if any(s in window for s in self._stops):
                self.matched[row] = True
                self._ended[row] = True
        return self.matched.copy()
