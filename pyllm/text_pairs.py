"""Strings to the token ids lm-evaluation-harness 0.4's ``hf`` backend scores, in one place: used by
``LLM.loglikelihood`` / ``LLM.loglikelihood_rolling`` and by the lm-eval backend
(``pyllm.lm_eval``), so that both score exactly the tokens lm-eval would.

- ``encode_text``: the tokenizer's own special tokens (BOS for LLaMA) unless ``add_bos_token``
  says otherwise, and none when the text already starts with the prefix token's text;
- ``encode_pair``: trailing whitespace of the context moves to the continuation (``"... is "`` +
  ``"Paris"`` scores ``" Paris"``), and the continuation's ids are
  ``encode(context + continuation)[len(encode(context)):]``, the tokens the model would see;
- an empty context: the continuation (no special tokens) conditioned on the prefix token (BOS,
  else EOS), or on its own first token when that already is the prefix token;
- ``rolling_pairs``: a text's tokens over disjoint windows (``scoring.rolling_windows``).
"""
from . import scoring

__all__ = ["prefix_token_id", "encode_text", "encode_pair", "encode_pairs", "rolling_pairs", "check_pairs"]


def prefix_token_id(tokenizer):
    """The token an empty context and the first rolling window are conditioned on: BOS, else EOS."""
    for token in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token is not None:
            return token
    raise ValueError("the tokenizer has neither a BOS nor an EOS token: nothing to condition an empty context on")


def encode_text(tokenizer, text, prefix_token, add_bos_token=None):
    """The ids of text with the special tokens lm-eval's tok_encode adds: the tokenizer's default
    (add_bos_token=None) or add_bos_token's choice, and none when the text starts with the prefix
    token's own text (a prompt that already holds BOS gets no second one)."""
    add_special_tokens = True if add_bos_token is None else bool(add_bos_token)
    if text.startswith(tokenizer.decode([prefix_token], skip_special_tokens=False)):
        add_special_tokens = False
    return tokenizer.encode(text, add_special_tokens=add_special_tokens)


def encode_pair(tokenizer, context, continuation, prefix_token, add_bos_token=None):
    """(context ids, continuation ids) of one (context, continuation) pair of strings."""
    if context == "":
        ids = tokenizer.encode(continuation, add_special_tokens=False)
        if ids and ids[0] == prefix_token:
            return ids[:1], ids[1:]
        return [prefix_token], ids
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = encode_text(tokenizer, context + continuation, prefix_token, add_bos_token)
    context_ids = encode_text(tokenizer, context, prefix_token, add_bos_token)
    return context_ids, whole[len(context_ids):]


def check_pairs(requests, what="requests"):
    """requests as a list of (context, continuation) string pairs; a lone pair is refused with a
    TypeError saying to wrap it (two strings would otherwise read as two requests)."""
    if isinstance(requests, (str, bytes)) or not hasattr(requests, "__len__") or isinstance(requests, dict):
        raise TypeError(f"{what} must be a list of (context, continuation) pairs of str, got "
                        f"{type(requests).__name__}")
    requests = list(requests)
    if len(requests) == 2 and all(isinstance(part, str) for part in requests):
        raise TypeError(f"{what} must be a list of (context, continuation) pairs; got a single pair "
                        f"{tuple(requests)!r}: wrap it in a list, [(context, continuation)]")
    if not requests:
        raise ValueError(f"{what} is empty: give at least one (context, continuation) pair")
    for index, request in enumerate(requests):
        if not isinstance(request, (tuple, list)) or len(request) != 2:
            raise TypeError(f"{what}[{index}] must be a (context, continuation) pair of str, got {request!r}")
        for name, part in zip(("context", "continuation"), request):
            if not isinstance(part, str):
                raise TypeError(f"{what}[{index}]'s {name} must be a str, got {type(part).__name__}")
        if request[1] == "":
            raise ValueError(f"{what}[{index}] has an empty continuation: it must hold text to score")
    return requests


def encode_pairs(tokenizer, requests, prefix_token, add_bos_token=None):
    """[(context ids, continuation ids)] of checked (context, continuation) string pairs."""
    return [encode_pair(tokenizer, context, continuation, prefix_token, add_bos_token)
            for context, continuation in requests]


def rolling_pairs(tokenizer, text, prefix_token, max_length, add_bos_token=None):
    """The (context ids, continuation ids) windows that score every token of text."""
    return scoring.rolling_windows(encode_text(tokenizer, text, prefix_token, add_bos_token), prefix_token,
                                   max_length)
