"""Scoring token sequences for evaluation: log-likelihoods of continuations, rolling
log-likelihoods of long texts, perplexity.

The conventions are lm-evaluation-harness's (its ``hf`` backend), so the numbers agree with it:

- a (context, continuation) pair is scored by feeding ``(context + continuation)[:-1]``, truncated
  from the left to ``max_length`` tokens, and summing ``log_softmax`` of the logits at the
  continuation's positions; ``is_greedy`` says every continuation token is the arg-max;
- a long text is scored over disjoint windows of ``max_length`` tokens, the first conditioned on
  a prefix token (BOS, else EOS), each following one on the ``max_length`` tokens before it
  (``lm_eval.utils.get_rolling_token_windows`` with ``context_len=1`` + ``make_disjoint_window``).

Requests are grouped and sorted by length internally; several continuations of one context
share its KV cache (computed once, repeated per row). The log-softmax runs in C
(``_core.score_tokens``: float32 logits, double accumulation).
"""
import math

import numpy as np

from . import _core
from ._args import check_progress
from ._progress import progress_bar

__all__ = ["loglikelihood", "loglikelihood_rolling", "rolling_windows", "perplexity"]

# Work items above which a progress bar is shown when the caller does not say.
_PROGRESS_THRESHOLD = 64

# Most logits (floats) one forward call may return: 64 Mi floats = 256 MB. A 2,048-token
# BLOOM window would otherwise need 2 GB of logits; longer continuations are scored in pieces
# over the KV cache instead, and batches hold fewer rows.
LOGITS_BUDGET = 64 * 1024 * 1024


def _progress_bar(total, desc, progress):
    """A tqdm bar when asked for (progress=True) or when the work is long (progress=None);
    tqdm is optional: without it there is no bar."""
    if progress is None:
        progress = total >= _PROGRESS_THRESHOLD
    return progress_bar(total, desc, progress)


def _token_list(value, vocab_size, what):
    """A list of Python ints in [0, vocab_size) from a list, tuple or 1-D integer array."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of token ids, got {type(value).__name__}: encode it with the "
                        f"tokenizer, or score strings with pyllm.LLM.loglikelihood / loglikelihood_rolling")
    try:
        array = np.asarray(value)
    except ValueError as e:
        raise ValueError(f"{what} must be a flat sequence of token ids: {e}") from None
    if array.ndim == 1 and array.size == 0:
        return []
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {array.shape}")
    if array.dtype == np.bool_ or array.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integer token ids, got dtype {array.dtype}")
    lo, hi = int(array.min()), int(array.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"{what} holds token id {lo if lo < 0 else hi}, outside the vocabulary [0, {vocab_size})")
    return [int(t) for t in array]


def _check_model(model):
    from .model import Model
    if not isinstance(model, Model):
        raise TypeError(f"model must be a pyllm.Model, got {type(model).__name__}")
    return model


def _max_length(model, max_length):
    if max_length is None:
        return model.n_ctx
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 1:
        raise ValueError(f"max_length must be a positive integer or None, got {max_length!r}")
    if max_length > model.n_ctx:
        raise ValueError(f"max_length={max_length} exceeds the model's context n_ctx={model.n_ctx}")
    return int(max_length)


def _batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _score(logits, continuation):
    """(sum of log-probabilities, all greedy) of continuation under logits [len, vocab]."""
    logprobs, greedy = _core.score_tokens(logits, np.asarray(continuation, dtype=np.int32))
    return float(logprobs.sum()), bool(greedy.all())


def _score_shared_context(model, context, continuations, batch_size, vocab, reuse=None):
    """Scores of several continuations of one context: context[:-1] runs once (after the longest
    prefix of it the prefix cache holds, which then keeps it), its KV cache is repeated for a
    batch of continuations, each fed [context[-1]] + continuation[:-1] (right-padded, the
    padding masked)."""
    prefix = context[:-1]
    longest = max(len(c) for c in continuations)
    shared = None
    if prefix:
        capacity = len(prefix) + longest
        done, shared = reuse.match(model, prefix, capacity) if reuse is not None else (0, None)
        if shared is None:
            shared = model.new_cache(1, capacity)
        if done < len(prefix):
            model([prefix[done:]], cache=shared, logits_to_keep=1)
            if reuse is not None:
                reuse.insert(model, prefix, shared)
    scores = []
    rows = max(1, min(batch_size, LOGITS_BUDGET // (longest * vocab)))
    for start in range(0, len(continuations), rows):
        chunk = continuations[start:start + rows]
        width = max(len(c) for c in chunk)
        ids = np.zeros((len(chunk), width), dtype=np.int32)
        mask = np.zeros((len(chunk), width), dtype=np.uint8)
        for row, cont in enumerate(chunk):
            fed = [context[-1]] + cont[:-1]
            ids[row, :len(fed)] = fed
            mask[row, :len(fed)] = 1
        cache = shared.repeat(len(chunk)) if shared is not None else model.new_cache(len(chunk), longest)
        logits = model(ids, attention_mask=mask, cache=cache)
        scores.extend(_score(logits[row, :len(cont)], cont) for row, cont in enumerate(chunk))
    return scores


def _score_after_cached(model, context, continuation, reuse):
    """One pair whose context starts with a prefix the prefix cache holds: only the rest of
    (context + continuation)[:-1] runs, then all of it is kept for later requests."""
    fed = (context + continuation)[:-1]
    done, cache = reuse.match(model, fed, len(fed), limit=len(context) - 1)
    if cache is None:  # evicted since it was looked up (by another thread)
        cache = model.new_cache(1, len(fed))
    logits = model([fed[done:]], cache=cache, logits_to_keep=len(continuation))
    reuse.insert(model, fed, cache)
    return _score(logits[0], continuation)


def _score_in_pieces(model, vocab, context, continuation):
    """One pair whose logits would exceed LOGITS_BUDGET: context[:-1] once, then the tokens that
    predict the continuation in pieces that fit, each continuing the same KV cache."""
    fed = [context[-1]] + continuation[:-1]
    cache = model.new_cache(1, len(context) - 1 + len(fed))
    if len(context) > 1:
        model([context[:-1]], cache=cache, logits_to_keep=1)
    step = max(1, LOGITS_BUDGET // vocab)
    total, greedy = 0.0, True
    for start in range(0, len(fed), step):
        logits = model([fed[start:start + step]], cache=cache)
        piece_total, piece_greedy = _score(logits[0], continuation[start:start + step])
        total += piece_total
        greedy = greedy and piece_greedy
    return total, greedy


def _score_batch(model, pairs, reuse=None):
    """Scores of (context, continuation) pairs with distinct contexts in one left-padded batch;
    the lm_head runs only for the last (longest continuation) positions. With a prefix cache,
    every row's tokens are kept for later requests."""
    inputs = [(ctx + cont)[:-1] for ctx, cont in pairs]
    width = max(len(x) for x in inputs)
    keep = max(len(cont) for _, cont in pairs)
    ids = np.zeros((len(pairs), width), dtype=np.int32)
    mask = np.zeros((len(pairs), width), dtype=np.uint8)
    for row, fed in enumerate(inputs):
        ids[row, width - len(fed):] = fed
        mask[row, width - len(fed):] = 1
    cache = model.new_cache(len(pairs), width)
    logits = model(ids, attention_mask=None if mask.all() else mask, cache=cache, logits_to_keep=keep)
    scores = [_score(logits[row, keep - len(cont):], cont) for row, (_, cont) in enumerate(pairs)]
    if reuse is not None:
        for row, fed in enumerate(inputs):
            reuse.insert(model, fed, cache, row)
    return scores


class Reuse:
    """A prefix cache (pyllm.prefix_cache.PrefixCache) with the extra key of the calls using it
    (what else changes the KV, e.g. interventions)."""

    # A pair of the distinct-context batch leaves the batch for a run of its own only when the
    # cache holds at least this many of its tokens: a shared BOS alone is not worth it.
    MIN_SINGLE = 16

    def __init__(self, prefix_cache, extra_key=None):
        self.prefix_cache, self.extra_key = prefix_cache, extra_key

    def match(self, model, tokens, capacity, limit=None, minimum=1):
        return self.prefix_cache._match(model, tokens, capacity, limit=limit, extra_key=self.extra_key,
                                        minimum=minimum)

    def cached_length(self, model, tokens, limit=None):
        return self.prefix_cache._cached_length(model, tokens, limit=limit, extra_key=self.extra_key)

    def insert(self, model, tokens, cache, row=0):
        self.prefix_cache._insert(model, tokens, cache, row=row, extra_key=self.extra_key)


def loglikelihood(model, requests, batch_size=8, max_length=None, progress=None):
    """[(sum log p(continuation | context), is_greedy)] for (context_ids, continuation_ids)
    pairs, in the caller's order.

    A context longer than max_length (default: the model's n_ctx) together with its
    continuation is truncated from the left, as lm-evaluation-harness's hf backend does; the
    context must hold at least one token (lm-eval gives BOS/EOS for an empty one) and the
    continuation at least one and at most max_length."""
    return _loglikelihood(model, requests, batch_size, max_length, progress)


def _loglikelihood(model, requests, batch_size=8, max_length=None, progress=None, reuse=None):
    """loglikelihood, reusing and filling the prefix cache of ``reuse`` (a Reuse) when given."""
    _check_model(model)
    if isinstance(requests, (str, bytes)) or not hasattr(requests, "__len__"):
        raise TypeError(f"requests must be a list of (context_ids, continuation_ids) pairs, got "
                        f"{type(requests).__name__}")
    if len(requests) == 0:
        raise ValueError("requests is empty: give at least one (context_ids, continuation_ids) pair")
    batch_size = _batch_size(batch_size)
    max_length = _max_length(model, max_length)
    vocab = model.vocab_size
    check_progress(progress)

    groups = {}  # truncated context -> [(request index, continuation)]
    for index, request in enumerate(requests):
        if not isinstance(request, (tuple, list)) or len(request) != 2:
            raise ValueError(f"requests[{index}] must be a (context_ids, continuation_ids) pair, got {request!r}")
        context = _token_list(request[0], vocab, f"requests[{index}] context")
        continuation = _token_list(request[1], vocab, f"requests[{index}] continuation")
        if not context:
            raise ValueError(f"requests[{index}] has an empty context: it must hold at least one token "
                             "(lm-evaluation-harness uses BOS or EOS)")
        if not continuation:
            raise ValueError(f"requests[{index}] has an empty continuation: it must hold at least one token")
        if len(continuation) > max_length:
            raise ValueError(f"requests[{index}]: a continuation of {len(continuation)} tokens does not fit "
                             f"max_length={max_length}")
        whole = (context + continuation)[-(max_length + 1):]
        groups.setdefault(tuple(whole[:len(whole) - len(continuation)]), []).append((index, continuation))

    # Longest first (as lm-eval: a batch that does not fit shows up at once).
    ordered = sorted(groups.items(), key=lambda item: -(len(item[0]) + max(len(c) for _, c in item[1])))
    results = [None] * len(requests)
    bar = _progress_bar(len(requests), "loglikelihood", progress)
    try:
        singles = []  # (context, (index, continuation)), their logits within the budget together

        def flush():
            scores = _score_batch(model, [(ctx, cont) for ctx, (_, cont) in singles], reuse)
            for (_, (index, _)), score in zip(singles, scores):
                results[index] = score
            bar.update(len(singles))
            singles.clear()

        def fits(extra):
            rows = singles + [extra]
            return len(rows) <= batch_size and len(rows) * max(len(c) for _, (_, c) in rows) * vocab <= LOGITS_BUDGET

        for context, members in ordered:
            context = list(context)
            large = [(index, c) for index, c in members if len(c) * vocab > LOGITS_BUDGET]
            for index, continuation in large:
                results[index] = _score_in_pieces(model, vocab, context, continuation)
                bar.update(1)
            members = [m for m in members if len(m[1]) * vocab <= LOGITS_BUDGET]
            if len(members) == 1 and reuse is not None and \
                    reuse.cached_length(model, context, limit=len(context) - 1) >= Reuse.MIN_SINGLE:
                index, continuation = members[0]
                results[index] = _score_after_cached(model, context, continuation, reuse)
                bar.update(1)
            elif len(members) == 1:
                if singles and not fits((context, members[0])):
                    flush()
                singles.append((context, members[0]))
            elif members:
                scores = _score_shared_context(model, context, [c for _, c in members], batch_size, vocab, reuse)
                for (index, _), score in zip(members, scores):
                    results[index] = score
                bar.update(len(members))
        if singles:
            flush()
    finally:
        bar.close()
    return results


def rolling_windows(ids, prefix_token_id, max_length):
    """The (context, continuation) pairs that score ids over disjoint windows of max_length
    tokens: lm-eval's get_rolling_token_windows(context_len=1) after make_disjoint_window."""
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 1:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    if isinstance(prefix_token_id, bool) or not isinstance(prefix_token_id, (int, np.integer)) or prefix_token_id < 0:
        raise ValueError(f"prefix_token_id must be a token id (an integer >= 0), got {prefix_token_id!r}")
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple, np.ndarray)):
        raise TypeError(f"ids must be a list of token ids, got {type(ids).__name__}")
    ids = list(ids)
    windows = []
    if not ids:
        return windows
    first = min(max_length, len(ids))
    windows.append(([prefix_token_id], ids[:first]))
    scored = first
    while scored < len(ids):
        end = min(len(ids), scored + max_length)
        # Each later window sees the max_length tokens before its last one.
        windows.append((ids[max(0, end - max_length - 1):scored], ids[scored:end]))
        scored = end
    return windows


def _prefix_token(model, prefix_token_id):
    if prefix_token_id is None:
        prefix_token_id = model.config.get("bos_token_id")
        if prefix_token_id is None:
            prefix_token_id = model.config.get("eos_token_id")
        if isinstance(prefix_token_id, list):
            prefix_token_id = prefix_token_id[0] if prefix_token_id else None
        if prefix_token_id is None:
            raise ValueError("the model config names no bos_token_id or eos_token_id: give prefix_token_id")
    if isinstance(prefix_token_id, bool) or not isinstance(prefix_token_id, (int, np.integer)) \
            or not 0 <= prefix_token_id < model.vocab_size:
        raise ValueError(f"prefix_token_id must be a token id in [0, {model.vocab_size}), got {prefix_token_id!r}")
    return int(prefix_token_id)


def loglikelihood_rolling(model, ids, max_length=None, prefix_token_id=None, batch_size=8, progress=None):
    """Total log-likelihood (float) of every token of ids, over disjoint windows of max_length
    tokens (default: n_ctx), the first conditioned on prefix_token_id (default: the config's
    BOS, else EOS). Empty ids score 0.0, as in lm-evaluation-harness."""
    _check_model(model)
    _batch_size(batch_size)
    check_progress(progress)
    max_length = _max_length(model, max_length)
    prefix = _prefix_token(model, prefix_token_id)
    tokens = _token_list(ids, model.vocab_size, "ids")
    windows = rolling_windows(tokens, prefix, max_length)
    if not windows:
        return 0.0
    scores = loglikelihood(model, windows, batch_size=batch_size, max_length=max_length, progress=progress)
    return math.fsum(score for score, _ in scores)


def perplexity(model, tokenizer, texts, max_length=None, batch_size=8, progress=None):
    """Token-level perplexity exp(-sum log p / tokens) of a text or a list of texts, each scored
    with loglikelihood_rolling from BOS (tokens encoded without special tokens)."""
    _check_model(model)
    if not callable(getattr(tokenizer, "encode", None)):  # duck-typed: anything that encodes
        raise TypeError(f"tokenizer must be a pyllm.Tokenizer (something with encode()), got {type(tokenizer).__name__}")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: give at least one text")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] must be a str, got {type(text).__name__}")
    _batch_size(batch_size)
    _max_length(model, max_length)
    check_progress(progress)
    total, count = 0.0, 0
    bar = _progress_bar(len(texts), "perplexity", progress if progress is not None else len(texts) > 8)
    try:
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"texts must be strings, got {type(text).__name__}")
            ids = tokenizer.encode(text, add_special_tokens=False)
            prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
            total += loglikelihood_rolling(model, ids, max_length=max_length, prefix_token_id=prefix,
                                           batch_size=batch_size, progress=False)
            count += len(ids)
            bar.update(1)
    finally:
        bar.close()
    if count == 0:
        raise ValueError("the texts hold no tokens: perplexity is undefined")
    return math.exp(-total / count)
