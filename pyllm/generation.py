"""Token choice for generation, exposed for users and tests.

The C core owns the sampler (greedy argmax, or temperature -> top-k -> top-p then a draw,
the order transformers applies its warpers in) and its seeded xoshiro256** stream; this
module is its Python face.
"""
from . import _core
from .limits import MAX_BATCH as MAX_SAMPLES, check_count as _limits_check_count


def sample_logits(logits, *, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, seed=0, num_samples=1):
    """Draw ``num_samples`` token ids (``np.int64``) from one row of logits.

    ``logits`` is a 1-D floating-point array (cast to float32); ``-inf`` marks a banned
    token, NaN and ``+inf`` are refused. ``do_sample=False`` or ``temperature=0`` gives the
    argmax (the first one on ties) every time. Otherwise the logits are divided by
    ``temperature``, cut to the ``top_k`` best (0: off; ties at the cut are kept) and to the
    smallest prefix holding ``top_p`` of the probability mass (1: off), then sampled. All
    draws come from one random stream seeded once with ``seed``, so a seed fixes the result.
    """
    num_samples = _limits_check_count("num_samples", num_samples, MAX_SAMPLES)
    from . import memory
    memory.check_fits(8 * num_samples, f"sample_logits with num_samples={num_samples:,}")
    return _core.sample_logits(logits, do_sample=do_sample, temperature=temperature, top_k=top_k,
                               top_p=top_p, seed=seed, num_samples=num_samples)


# ---- GenerationConfig ----------------------------------------------------------------------------

import copy as _copy
import json as _json
import math as _math
import os as _os

import numpy as _np

from . import limits as _limits

# Every option with its default: Hugging Face's names and defaults (transformers' GenerationConfig),
# except max_new_tokens (20 new tokens when neither it nor max_length is set) and pyllm's own
# options after the blank line.
_DEFAULTS = {
    "max_new_tokens": None,
    "max_length": None,
    "min_new_tokens": 0,
    "do_sample": False,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "min_p": None,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "eos_token_id": None,
    "pad_token_id": None,
    "bos_token_id": None,
    "num_return_sequences": 1,
    "num_beams": 1,
    "length_penalty": 1.0,
    "early_stopping": False,
    "return_dict_in_generate": False,
    "output_scores": False,
    "output_logits": False,
    "stop_strings": None,
    "prompt_lookup_num_tokens": None,
    "max_matching_ngram_size": None,
    "num_assistant_tokens": 20,

    "seed": None,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "logit_bias": None,
    "output_logprobs": False,
    "top_logprobs": 0,
    "logprobs_processed": False,
    "speculative": "auto",
    "regex": None,
    "json_schema": None,
    "grammar": None,
}
_DEFAULT_MAX_NEW_TOKENS = 20


def _is_int(v):
    return isinstance(v, (int, _np.integer)) and not isinstance(v, (bool, _np.bool_))


def _is_number(v):
    return isinstance(v, (int, float, _np.integer, _np.floating)) and not isinstance(v, (bool, _np.bool_))


def _bad(name, value, expected):
    return ValueError(f"generation option {name} must be {expected}, got {value!r}")


def _check_int(name, v, low, allow_none=False, high=None):
    """v as an int in [low, high] (high: the option's limit, pyllm.limits); ValueError naming the
    option, the value and the limit otherwise (never an OverflowError from the C core)."""
    if v is None and allow_none:
        return None
    if not _is_int(v) or v < low:
        raise _bad(name, v, f"an integer >= {low}" + (" or None" if allow_none else ""))
    if high is not None and v > high:
        raise ValueError(f"generation option {name} is {v}, above pyllm's limit of {high}")
    return int(v)


def _check_float(name, v, test, expected, allow_none=False):
    if v is None and allow_none:
        return None
    if not _is_number(v) or not test(float(v)):
        raise _bad(name, v, expected)
    return float(v)


def _check_bool(name, v):
    if not isinstance(v, (bool, _np.bool_)):
        raise _bad(name, v, "True or False")
    return bool(v)


def _is_token(t):
    return _is_int(t) and 0 <= t < _limits.MAX_VOCAB


def _check_token_list(name, v):
    if v is None:
        return None
    if _is_int(v):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(_is_token(t) for t in v):
        raise _bad(name, v, f"a token id (below pyllm's limit of {_limits.MAX_VOCAB}), a list of token ids, or None")
    if len(v) > _limits.MAX_VOCAB:
        raise ValueError(f"generation option {name} holds {len(v)} ids, above pyllm's limit of {_limits.MAX_VOCAB}")
    return [int(t) for t in v]


def _check_bad_words(v):
    if v is None:
        return None
    if not isinstance(v, (list, tuple)) or not v or not all(
            isinstance(w, (list, tuple)) and w and all(_is_token(t) for t in w) for w in v):
        raise _bad("bad_words_ids", v, f"a non-empty list of non-empty lists of token ids (below pyllm's limit "
                                       f"of {_limits.MAX_VOCAB})")
    total = sum(len(w) for w in v)
    if total > _limits.MAX_BAD_WORDS_TOKENS:
        raise ValueError(f"generation option bad_words_ids holds {total} tokens, above pyllm's limit of "
                         f"{_limits.MAX_BAD_WORDS_TOKENS}")
    return [[int(t) for t in w] for w in v]


def _check_logit_bias(v):
    if v is None:
        return None
    if not isinstance(v, dict):
        raise _bad("logit_bias", v, "a dict of token id -> bias")
    out = {}
    for k, b in v.items():
        key = int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k  # JSON keys are strings
        if not _is_token(key):
            raise _bad("logit_bias", v, f"a dict whose keys are token ids (below pyllm's limit of {_limits.MAX_VOCAB})")
        if not _is_number(b) or _math.isnan(b) or b == _math.inf:
            raise _bad("logit_bias", v, "a dict whose values are numbers (or -inf)")
        out[int(key)] = float(b)
    return out


def _check_seed(v):
    if not _is_int(v):
        raise _bad("seed", v, "an integer or None")
    return int(v) & ((1 << 64) - 1)


def _check_early_stopping(v):
    if isinstance(v, (bool, _np.bool_)):
        return bool(v)
    if v == "never":
        return v
    raise _bad("early_stopping", v, 'True, False or "never"')


def _check_speculative(v):
    if v not in ("auto", "always"):
        raise _bad("speculative", v, '"auto" or "always"')
    return v


def _value_error(check, v):
    """check(v), for an option checked by another module's function: a wrong type there is a
    TypeError, which a generation option reports as a bad value (ValueError), as every other
    option does (a generation_config.json with "stop_strings": 5 is a bad file, not a bad call)."""
    try:
        return check(v)
    except TypeError as e:
        raise ValueError(str(e)) from None


def _check_constraint(name, v):
    from . import constrained  # llguidance is imported only when a constraint is given
    return _value_error(getattr(constrained, f"check_{name}"), v)


def _check_stop_strings(v):
    from .stop_strings import check_stop_strings
    return _value_error(check_stop_strings, v)


_CHECKS = {
    "max_new_tokens": lambda v: _check_int("max_new_tokens", v, 0, True, _limits.MAX_TOKENS),
    "max_length": lambda v: _check_int("max_length", v, 1, True, _limits.MAX_TOKENS),
    "min_new_tokens": lambda v: _check_int("min_new_tokens", 0 if v is None else v, 0, high=_limits.MAX_TOKENS),
    "do_sample": lambda v: _check_bool("do_sample", v),
    "temperature": lambda v: _check_float("temperature", 1.0 if v is None else v,
                                          lambda x: x >= 0 and _math.isfinite(x), "a finite number >= 0"),
    "top_k": lambda v: _check_int("top_k", 0 if v is None else v, 0, high=_limits.MAX_INT64),
    "top_p": lambda v: _check_float("top_p", 1.0 if v is None else v, lambda x: 0 < x <= 1, "in (0, 1]"),
    "min_p": lambda v: _check_float("min_p", v, lambda x: 0 <= x <= 1, "in [0, 1] or None", True),
    "typical_p": lambda v: _check_float("typical_p", 1.0 if v is None else v, lambda x: 0 < x <= 1, "in (0, 1]"),
    "repetition_penalty": lambda v: _check_float("repetition_penalty", 1.0 if v is None else v,
                                                 lambda x: x > 0 and _math.isfinite(x), "a finite number > 0"),
    "no_repeat_ngram_size": lambda v: _check_int("no_repeat_ngram_size", 0 if v is None else v, 0,
                                                 high=_limits.MAX_TOKENS),
    "bad_words_ids": _check_bad_words,
    "eos_token_id": lambda v: _check_token_list("eos_token_id", v),
    "pad_token_id": lambda v: _check_int("pad_token_id", v, 0, True, _limits.MAX_VOCAB - 1),
    "bos_token_id": lambda v: _check_int("bos_token_id", v, 0, True, _limits.MAX_VOCAB - 1),
    "num_return_sequences": lambda v: _check_int("num_return_sequences", 1 if v is None else v, 1,
                                                 high=_limits.MAX_BATCH),
    "num_beams": lambda v: _check_int("num_beams", 1 if v is None else v, 1, high=_limits.MAX_BATCH),
    "length_penalty": lambda v: _check_float("length_penalty", 1.0 if v is None else v, _math.isfinite,
                                             "a finite number"),
    "early_stopping": _check_early_stopping,
    "return_dict_in_generate": lambda v: _check_bool("return_dict_in_generate", v),
    "output_scores": lambda v: _check_bool("output_scores", v),
    "output_logits": lambda v: _check_bool("output_logits", v),
    "stop_strings": lambda v: _check_stop_strings(v) or None,
    "prompt_lookup_num_tokens": lambda v: _check_int("prompt_lookup_num_tokens", v, 1, True, 256),
    "max_matching_ngram_size": lambda v: _check_int("max_matching_ngram_size", v, 1, True, _limits.MAX_TOKENS),
    "num_assistant_tokens": lambda v: _check_int("num_assistant_tokens", 20 if v is None else v, 1, high=256),
    "speculative": lambda v: _check_speculative(v),
    "seed": lambda v: _check_seed(v),
    "frequency_penalty": lambda v: _check_float("frequency_penalty", 0.0 if v is None else v, _math.isfinite,
                                                "a finite number"),
    "presence_penalty": lambda v: _check_float("presence_penalty", 0.0 if v is None else v, _math.isfinite,
                                               "a finite number"),
    "logit_bias": _check_logit_bias,
    "output_logprobs": lambda v: _check_bool("output_logprobs", v),
    "top_logprobs": lambda v: _check_int("top_logprobs", 0 if v is None else v, 0, high=_limits.MAX_VOCAB),
    "logprobs_processed": lambda v: _check_bool("logprobs_processed", v),
    "regex": lambda v: _check_constraint("regex", v),
    "json_schema": lambda v: _check_constraint("json_schema", v),
    "grammar": lambda v: _check_constraint("grammar", v),
}


class GenerationConfig:
    """Every option of ``Model.generate``, with Hugging Face's names, meanings and defaults.

    Options (transformers' meaning unless said otherwise):

    - ``max_new_tokens`` (None: ``max_length`` minus the prompt if that is set, else 20),
      ``max_length`` (prompt + new, None), ``min_new_tokens`` (0: end tokens are banned until
      that many tokens were generated);
    - ``do_sample`` (False), ``temperature`` (1.0; 0 means greedy), ``top_k`` (50; 0 off),
      ``top_p`` (1.0), ``min_p`` (None), ``typical_p`` (1.0) — the sampling warpers, applied in
      that order only when sampling;
    - ``repetition_penalty`` (1.0), ``no_repeat_ngram_size`` (0), ``bad_words_ids`` (None: a list
      of token-id lists; a one-token list equal to an end token is ignored, as transformers does);
    - ``eos_token_id`` (int or list; [] for none), ``pad_token_id``, ``bos_token_id``;
    - ``num_return_sequences`` (1; sampling: each prompt row repeated; beam search: the best
      ``num_return_sequences <= num_beams`` hypotheses of each prompt, best first);
    - ``num_beams`` (1: no beam search), ``length_penalty`` (1.0), ``early_stopping`` (False,
      True or "never"): beam search as transformers 5.x runs it, deterministic (``do_sample=True``
      with ``num_beams > 1`` is refused); a finished hypothesis scores its summed log-probabilities
      divided by ``generated_length ** length_penalty`` (the prompt does not count). True stops a
      prompt once ``num_beams`` hypotheses finished; False once the best running beam, at its
      current length, cannot beat the worst finished one; "never" assumes, with a positive
      length_penalty, that it could run to ``max_new_tokens``. Processors apply to the
      log-probabilities, as transformers does. The beams run in one batch in the C loop, their KV
      cache rows reordered after each step;
    - ``stop_strings`` (None: a string or list of non-empty strings; generate needs tokenizer= to
      use them, and a row ends on the token that completes one);
    - ``return_dict_in_generate`` (False: a plain array of ids; True: a :class:`GenerateOutput`);
      with it, ``output_scores`` (False) adds ``scores`` (the processed scores each token was
      chosen from; for beams the processed log-probabilities, and ``sequences_scores``) and
      ``output_logits`` (False) adds ``logits`` (raw), as transformers names them.

    pyllm's own:

    - ``seed`` (None: fresh entropy): row ``b`` of a call samples from a stream seeded by
      ``(seed, b)`` alone, so a seed reproduces a call exactly;
    - ``frequency_penalty``, ``presence_penalty`` (0.0): OpenAI's formula
      ``logit -= count * frequency_penalty + (count > 0) * presence_penalty`` where ``count`` is
      how often the token occurs among the row's *generated* tokens (the prompt does not count),
      applied after ``repetition_penalty`` and before temperature;
    - ``logit_bias`` (None): ``{token_id: bias}`` added to the raw logits before anything else
      (-inf bans a token);
    - ``output_logprobs`` (False), ``top_logprobs`` (0): per-token log-probabilities of the chosen
      tokens and of the ``top_logprobs`` best alternatives (either implies a GenerateOutput, and a
      GenerateOutput always has the chosen tokens' log-probabilities);
    - ``logprobs_processed`` (False): those log-probabilities are ``log_softmax`` of the raw model
      logits by default; True takes them from the scores the token was chosen from (after every
      processor, the user's ``logits_processor`` and, when sampling, the warpers);
    - ``regex``, ``json_schema``, ``grammar`` (None; one at a time, needs ``tokenizer=`` and
      ``pip install "pyllm[constrained]"``): each row's new text must match the regular
      expression whole, be an instance of the JSON schema (a dict or its JSON text; written
      without free whitespace unless the schema's ``"x-guidance"`` says otherwise), or derive
      from the Lark or GBNF grammar. llguidance masks every step's scores to the tokens that keep
      the text on track (after every other processor, before the warpers); an end token is
      allowed wherever the text could end, and a row ends as soon as its text can take nothing
      more.
      Not with beam search or speculative decoding. See docs/constrained.md.

    - ``prompt_lookup_num_tokens`` (None: off), ``max_matching_ngram_size`` (None: 2): speculative
      decoding drafting from the text so far (transformers' prompt lookup); with
      ``assistant_model=`` given to generate, ``num_assistant_tokens`` (20) drafts per round from
      that model; ``speculative`` ("auto": a row stops speculating when its acceptance rate so
      far makes it slower than plain decoding, from costs measured once per model; "always").
      See docs/speculative.md.

    Penalties and n-gram / bad-word matching see each row's own tokens: its prompt without the
    padding, then what it generated.
    """

    def __init__(self, **kwargs):
        self._values = dict(_DEFAULTS)
        self._set = set()
        self.extra = {}
        self.update(**kwargs)

    @classmethod
    def from_dict(cls, values):
        """A config from a dict such as generation_config.json's; keys pyllm does not use
        (``transformers_version``, ``use_cache``, ...) are kept in ``.extra`` and otherwise ignored."""
        if isinstance(values, GenerationConfig):
            return values.copy()
        if not isinstance(values, dict):
            raise TypeError(f"values (a generation config) must be a dict, got {type(values).__name__}")
        config = cls()
        # Some published configs carry pad_token_id = -1 for "none": kept aside, not an error.
        unusable = {k for k in ("pad_token_id", "bos_token_id") if _is_int(values.get(k)) and values[k] < 0}
        known = {k: v for k, v in values.items() if k in _DEFAULTS and k not in unusable}
        config.extra = {k: v for k, v in values.items() if k not in known}
        config.update(**known)
        return config

    @classmethod
    def from_pretrained(cls, model_dir, config_file_name="generation_config.json"):
        """Read ``generation_config.json`` from a model directory (FileNotFoundError if absent)."""
        from ._checks import path_argument
        path = _os.path.join(path_argument("model_dir", model_dir), path_argument("config_file_name", config_file_name))
        if not _os.path.isfile(path):
            raise FileNotFoundError(f"no {config_file_name} in {model_dir}")
        with open(path, encoding="utf-8") as f:
            try:
                values = _json.load(f)
            except ValueError as e:
                raise ValueError(f"{path} is not valid JSON: {e}") from None
        return cls.from_dict(values)

    def update(self, **kwargs):
        """Set options by name: an unknown name raises TypeError, a bad value ValueError. Returns self."""
        unknown = sorted(k for k in kwargs if k not in _DEFAULTS)
        if unknown:
            raise TypeError(f"unknown generation option(s): {', '.join(unknown)}; accepted options: "
                            f"{', '.join(sorted(_DEFAULTS))}")
        # None means "not set": the option falls back to its default (or to a config merged under it).
        checked = {name: None if value is None else _CHECKS[name](value) for name, value in kwargs.items()}
        for name, value in checked.items():
            self._values[name] = _DEFAULTS[name] if value is None else value
            if value is None:
                self._set.discard(name)
            else:
                self._set.add(name)
        return self

    def copy(self):
        return _copy.deepcopy(self)

    def merged(self, other):
        """A copy of self with the options other set explicitly."""
        if not isinstance(other, GenerationConfig):
            raise TypeError(f"other must be a pyllm.GenerationConfig, got {type(other).__name__}")
        out = self.copy()
        out.update(**{k: other._values[k] for k in other._set})
        return out

    def is_set(self, name):
        """Whether option ``name`` was set explicitly (not left to its default)."""
        if name not in _DEFAULTS:
            raise ValueError(f"name must be a generation option (one of {', '.join(sorted(_DEFAULTS))}), "
                             f"got {name!r}")
        return name in self._set

    def to_dict(self):
        return dict(self._values)

    def get(self, name, default=None):
        """Dict-style read: the option's value, or default when it is unset / None."""
        if name in self._values:
            return default if self._values[name] is None else self._values[name]
        return self.extra.get(name, default)

    def __getattr__(self, name):
        values = self.__dict__.get("_values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(f"GenerationConfig has no option {name!r}")

    def __setattr__(self, name, value):
        if name in ("_values", "_set", "extra"):
            object.__setattr__(self, name, value)
        else:
            self.update(**{name: value})

    def __eq__(self, other):
        return isinstance(other, GenerationConfig) and self._values == other._values

    def __repr__(self):
        shown = ", ".join(f"{k}={self._values[k]!r}" for k in _DEFAULTS if k in self._set)
        return f"GenerationConfig({shown})"


class GenerateOutput:
    """What ``generate(..., return_dict_in_generate=True)`` (or ``output_logprobs`` /
    ``top_logprobs``) returns; arrays are NumPy, rows are the output rows.

    - ``sequences``: int64 [rows, prompt + steps], as the plain return value;
    - ``num_new_tokens``: int64 [rows], tokens each row generated, its end token included;
    - ``logprobs``: float32 [rows, steps], log-probability of each chosen token (0 after the row
      ended); ``top_logprob_ids`` int64 / ``top_logprobs`` float32 [rows, steps, top_logprobs], the
      best alternatives, best first (-1 / 0 after the row ended; [rows, steps, 0] when
      top_logprobs is 0). None for beam search.

    Named as transformers names them (None unless asked for):

    - ``scores`` (``output_scores=True``): float32 [steps, rows, vocab], ``scores[i]`` the
      processed scores of step i (after every processor and, when sampling, the warpers), as
      transformers' tuple of per-step arrays; for beam search the processed log-probabilities
      of the [prompts * num_beams] running beams. Rows that had ended hold zeros (transformers
      keeps computing them; pyllm does not).
    - ``logits`` (``output_logits=True``): the raw logits, shaped as ``scores``.
    - ``sequences_scores`` (beam search with ``output_scores=True``): float32 [rows], each
      returned hypothesis's score (summed log-probabilities over its length ** length_penalty).
    - ``beam_indices`` (beam search): int64 [rows, steps], the running beam (prompt * num_beams +
      beam) each step extended, -1 past the hypothesis's end.

    Speculative decoding (``prompt_lookup_num_tokens`` or ``assistant_model``) adds, per row (int64):
    ``num_draft_tokens`` (tokens drafted), ``num_accepted_tokens`` (drafts the model kept),
    ``speculation_stopped_at`` (new tokens when automatic mode turned speculation off, -1 never),
    and ``acceptance_rate`` (all rows' accepted / drafted; NaN when nothing was drafted).

    For 1-D input the row axis is dropped, as for the plain return value (``scores`` and
    ``logits`` keep theirs)."""

    def __init__(self, sequences, num_new_tokens, logprobs=None, top_logprob_ids=None, top_logprobs=None,
                 scores=None, logits=None, sequences_scores=None, beam_indices=None, speculation=None):
        self.sequences = sequences
        self.num_new_tokens = num_new_tokens
        self.logprobs = logprobs
        self.top_logprob_ids = top_logprob_ids
        self.top_logprobs = top_logprobs
        self.scores = scores
        self.logits = logits
        self.sequences_scores = sequences_scores
        self.beam_indices = beam_indices
        drafted, accepted, stopped = speculation if speculation is not None else (None, None, None)
        self.num_draft_tokens = drafted
        self.num_accepted_tokens = accepted
        self.speculation_stopped_at = stopped

    @property
    def acceptance_rate(self):
        """Accepted / drafted tokens over all rows (None without speculation, NaN if none drafted)."""
        if self.num_draft_tokens is None:
            return None
        drafted = int(_np.sum(self.num_draft_tokens))
        return float(_np.sum(self.num_accepted_tokens)) / drafted if drafted else float("nan")

    def __getitem__(self, key):
        return getattr(self, key)

    def __repr__(self):
        return f"GenerateOutput(sequences={self.sequences!r}, logprobs={self.logprobs!r})"


# ---- the generate() driver ---------------------------------------------------------------------------

def callables(value, what):
    """value (None, a callable, or a list of them) as a list; TypeError otherwise."""
    if value is None:
        return []
    fns = list(value) if isinstance(value, (list, tuple)) else [value]
    for fn in fns:
        if not callable(fn):
            raise TypeError(f"{what} must be a callable or a list of callables, got {type(fn).__name__}")
    return fns


def processor_hook(fns):
    """One callable for the C loop running the user's logits processors in order, each result checked."""
    def process(input_ids, scores):
        for fn in fns:
            out = fn(input_ids, scores)
            if not isinstance(out, _np.ndarray) or out.dtype != _np.float32 or out.shape != scores.shape:
                got = (f"{type(out).__name__}" if not isinstance(out, _np.ndarray)
                       else f"{out.dtype} array of shape {out.shape}")
                raise ValueError(f"logits_processor {getattr(fn, '__name__', fn)!s} must return a float32 array "
                                 f"of shape {scores.shape} (like its scores argument), got {got}")
            scores = out
        return scores
    return process


def stopping_hook(fns, batch, on_done=None):
    """One callable for the C loop: a row stops when any of the user's criteria says so.
    on_done(input_ids, done) then hears the rows the criteria ended at this step."""
    def stop(input_ids, scores):
        done = _np.zeros(batch, dtype=bool)
        for fn in fns:
            out = _np.asarray(fn(input_ids, scores))
            if out.dtype != _np.bool_ or out.shape not in ((), (batch,)):
                raise ValueError(f"stopping_criteria {getattr(fn, '__name__', fn)!s} must return a bool or a bool "
                                 f"array of shape ({batch},), got {out.dtype} of shape {out.shape}")
            done |= out
        if on_done is not None:
            on_done(input_ids, done)
        return done
    return stop


def resolve(model, generation_config=None, options=None):
    """The options of one generate() call, resolved once: the model's generation_config.json,
    then ``generation_config`` (a GenerationConfig or dict), then ``options`` by name (None means
    unset); end tokens (a list) and the pad token filled in from the model's config.json when
    still unset. TypeError for an unknown option name, ValueError for a bad value."""
    options = options or {}
    unknown = sorted(k for k in options if k not in _DEFAULTS)
    if unknown:
        raise TypeError(f"generate() got unknown generation option(s): {', '.join(unknown)}; accepted options: "
                        f"{', '.join(sorted(_DEFAULTS))}")
    cfg = model.generation_config
    if generation_config is not None:
        if isinstance(generation_config, dict):
            generation_config = GenerationConfig.from_dict(generation_config)
        if not isinstance(generation_config, GenerationConfig):
            raise TypeError(f"generation_config must be a GenerationConfig or a dict, "
                            f"got {type(generation_config).__name__}")
        cfg = cfg.merged(generation_config)
    cfg = cfg.copy().update(**{k: v for k, v in options.items() if v is not None})
    eos = cfg.eos_token_id
    if eos is None:
        eos = _check_token_list("eos_token_id", model.config.get("eos_token_id")) or []
    for e in eos:  # before pad falls back on it, so the message names the option given
        if not e < model.vocab_size:
            raise ValueError(f"eos_token_id holds {e}, outside the vocabulary [0, {model.vocab_size})")
    pad = cfg.pad_token_id
    if pad is None:
        pad = model.config.get("pad_token_id")
    if pad is None:
        pad = eos[0] if eos else 0
    if not _is_int(pad) or not 0 <= pad < model.vocab_size:
        raise ValueError(f"pad_token_id must be a token id in [0, {model.vocab_size}), got {pad!r}")
    if cfg.num_beams > 1:
        if cfg.do_sample:
            raise ValueError(f"generation option num_beams={cfg.num_beams} needs do_sample=False: pyllm runs "
                             "deterministic beam search only (no beam sampling); pass num_beams=1 to sample")
        if cfg.num_return_sequences > cfg.num_beams:
            raise ValueError(f"generation option num_return_sequences={cfg.num_return_sequences} must be <= "
                             f"num_beams={cfg.num_beams}: beam search returns the best of its num_beams hypotheses")
        if cfg.output_logprobs or cfg.top_logprobs > 0:
            raise ValueError("generation options output_logprobs and top_logprobs are not available with "
                             f"num_beams={cfg.num_beams}: use output_scores=True with return_dict_in_generate=True")
    elif cfg.num_return_sequences > 1 and not cfg.do_sample:
        raise ValueError(f"generation option num_return_sequences={cfg.num_return_sequences} needs do_sample=True "
                         "or num_beams >= num_return_sequences: greedy decoding would return identical rows")
    if any(cfg.get(name) is not None for name in ("regex", "json_schema", "grammar")):
        from . import constrained
        constrained.requested(cfg)  # one constraint at a time, and not with beam search
    return cfg.update(eos_token_id=eos, pad_token_id=int(pad))


def max_new_tokens(cfg, prompt_length):
    """New tokens to generate: max_new_tokens, else max_length minus the prompt, else 20."""
    if cfg.max_new_tokens is not None:
        return cfg.max_new_tokens
    if cfg.max_length is not None:
        return max(0, cfg.max_length - prompt_length)
    return _DEFAULT_MAX_NEW_TOKENS


def core_options(cfg):
    """The C loop's keyword arguments (pyllm._core.Decoder.generate) of a resolved config."""
    eos = cfg.eos_token_id
    bad_words = cfg.bad_words_ids
    if bad_words is not None:  # transformers drops one-token entries that are end tokens
        bad_words = [w for w in bad_words if not (len(w) == 1 and w[0] in eos)]
    early = {False: 0, True: 1, "never": 2}[cfg.early_stopping]
    return dict(
        num_beams=cfg.num_beams, num_return_sequences=cfg.num_return_sequences if cfg.num_beams > 1 else 1,
        length_penalty=cfg.length_penalty, early_stopping=early,
        output_scores=cfg.return_dict_in_generate and cfg.output_scores,
        output_logits=cfg.return_dict_in_generate and cfg.output_logits,
        do_sample=cfg.do_sample, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
        min_p=0.0 if cfg.min_p is None else cfg.min_p, typical_p=cfg.typical_p,
        repetition_penalty=cfg.repetition_penalty, frequency_penalty=cfg.frequency_penalty,
        presence_penalty=cfg.presence_penalty, no_repeat_ngram_size=cfg.no_repeat_ngram_size,
        min_new_tokens=cfg.min_new_tokens, bad_words_ids=bad_words or None, logit_bias=cfg.logit_bias,
        eos_token_ids=eos, pad_token_id=cfg.pad_token_id, top_logprobs=cfg.top_logprobs,
        logprobs_processed=cfg.logprobs_processed)
