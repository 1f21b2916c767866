"""Speculative decoding for ``generate``: the options' checks, the costs automatic mode weighs,
and the C loop's arguments (csrc/generate/speculative.c runs the drafting and verification).

Two drafters, under transformers' names: ``prompt_lookup_num_tokens=k`` (the continuation of the
earliest earlier occurrence of the last ``max_matching_ngram_size``..1 tokens) and
``assistant_model=`` (a smaller pyllm Model with the same vocabulary, ``num_assistant_tokens``
drafts per round). Greedy output is the target's greedy output; sampled output follows the
target's distribution exactly (rejection sampling).
"""
import math

_MEASURED_TOKENS = 9  # a verify call of this many tokens is timed with a one-token call


def requested(cfg, assistant_model):
    """Whether this generate() call speculates."""
    return assistant_model is not None or cfg.prompt_lookup_num_tokens is not None


def check_call(cfg, model, assistant_model, logits_processor, stopping_criteria, streamer, stop_strings):
    """ValueError / TypeError naming what speculative decoding does not take."""
    from .model import Model
    if assistant_model is not None:
        inner = getattr(assistant_model, "model", None)  # an LLM's model
        if not isinstance(assistant_model, Model) and isinstance(inner, Model):
            assistant_model = inner
        if not isinstance(assistant_model, Model):
            raise TypeError(f"assistant_model must be a pyllm.Model (or pyllm.LLM) with the model's vocabulary, got "
                            f"{type(assistant_model).__name__}")
        if assistant_model.vocab_size != model.vocab_size:
            raise ValueError(f"assistant_model has a vocabulary of {assistant_model.vocab_size} tokens, the model "
                             f"{model.vocab_size}: a draft model must share the model's tokenizer")
    refused = [name for name, value in (("logits_processor", logits_processor),
                                        ("stopping_criteria", stopping_criteria), ("streamer", streamer),
                                        ("stop_strings", stop_strings or None)) if value is not None]
    if cfg.num_beams > 1:
        refused.append(f"num_beams={cfg.num_beams}")
    if refused:
        what = "assistant_model" if assistant_model is not None else \
            f"prompt_lookup_num_tokens={cfg.prompt_lookup_num_tokens}"
        raise ValueError(f"speculative decoding ({what}) does not run with {', '.join(refused)}: pass them without "
                         "speculation (the built-in processors and warpers, logprobs and scores do apply)")
    return assistant_model


def costs(model):
    """The model's measured call costs in seconds, once per model (see Model.speculation_costs)."""
    measured = getattr(model, "_speculation_costs", None)
    if measured is None:
        decoder = model._decoder
        n = min(_MEASURED_TOKENS, model.n_ctx - 1)
        one = decoder.measure_call(1)
        many = decoder.measure_call(n) if n > 1 else one
        per_token = max((many - one) / max(n - 1, 1), 0.0)
        measured = {"step": one, "verify_fixed": max(one - per_token, 0.0), "verify_per_token": per_token}
        model._speculation_costs = measured
    return measured


def check_costs(value):
    """A user's pinned costs: a dict of the three non-negative finite seconds."""
    keys = ("step", "verify_fixed", "verify_per_token")
    if not isinstance(value, dict) or sorted(value) != sorted(keys) or not all(
            isinstance(value[k], (int, float)) and not isinstance(value[k], bool) and math.isfinite(value[k])
            and value[k] >= 0 for k in keys):
        raise ValueError(f"speculation_costs must be a dict of {', '.join(keys)} (seconds, finite, >= 0), "
                         f"got {value!r}")
    return {k: float(value[k]) for k in keys}


def core_options(cfg, model, assistant_model):
    """The C loop's speculation arguments (pyllm._core.Decoder.generate)."""
    automatic = None
    if cfg.speculative == "auto":
        target = costs(model)
        draft = costs(assistant_model)["step"] if assistant_model is not None else 0.0
        automatic = (target["verify_fixed"], target["verify_per_token"], draft)
    return dict(prompt_lookup_num_tokens=cfg.prompt_lookup_num_tokens or 0,
                max_matching_ngram_size=cfg.max_matching_ngram_size or 2,
                assistant=assistant_model._decoder if assistant_model is not None else None,
                num_assistant_tokens=cfg.num_assistant_tokens, speculative_costs=automatic)
