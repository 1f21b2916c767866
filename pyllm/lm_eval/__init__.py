"""An lm-evaluation-harness backend running on pyllm: ``--model pyllm``.

lm-eval discovers no plugins, so the backend is registered by importing this module::

    import pyllm.lm_eval, lm_eval
    lm_eval.simple_evaluate(model="pyllm", model_args="pretrained=DIR,n_threads=2", tasks=[...])

or from the command line, lm-eval's own CLI with the backend registered::

    python -m pyllm.lm_eval run --model pyllm --model_args pretrained=DIR --tasks ...

It follows the ``hf`` backend's conventions so the two agree on the same model: BOS (else EOS) as
the prefix token, ``max_length`` from the config (``n_positions``, ``max_position_embeddings``,
``n_ctx``), then the tokenizer's ``model_max_length``, then 2048; contexts left-truncated
(``max_length + 1`` tokens for scoring, ``max_length - max_gen_toks`` for generation); stop
strings and EOS handled as lm-eval's ``handle_stop_sequences`` / ``postprocess_generated_text``;
generations decoded with ``skip_special_tokens=True``.

Neither torch nor transformers is imported: everything computes in pyllm's C core.
"""
import json
import logging
import os

import numpy as np

try:
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
    from lm_eval.models.utils import handle_stop_sequences, has_bos_prefix, normalize_gen_kwargs, \
        postprocess_generated_text
except ImportError as e:
    # Only lm-eval itself missing gets the install hint; a broken install shows its own error.
    if (e.name or "").split(".")[0] != "lm_eval":
        raise
    raise ImportError('pyllm.lm_eval is the backend for lm-evaluation-harness, which is not installed: '
                      'pip install "pyllm[eval]" (or pip install lm-eval)', name=e.name) from e

import pyllm
from pyllm import hub, scoring, text_pairs
from pyllm.prefix_cache import prefix_cache_argument

__all__ = ["PyllmLM"]

log = logging.getLogger(__name__)

_DEFAULT_MAX_LENGTH = 2048           # lm-eval's fallback when nothing names a length
_TOKENIZER_INFINITY = 1000000000000000019884624838656  # transformers' "no limit"
_SEQLEN_KEYS = ("n_positions", "max_position_embeddings", "n_ctx")


def _read_json(path):
    if not os.path.exists(path):
        return {}
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def _resolve_max_length(config, tokenizer_config):
    """The hf backend's resolve_max_length over config.json and tokenizer_config.json dicts."""
    config = config.get("text_config") or config
    for key in _SEQLEN_KEYS:
        if config.get(key) is not None:
            return int(config[key])
    limit = tokenizer_config.get("model_max_length")
    if limit is not None and int(limit) != _TOKENIZER_INFINITY:
        return int(limit)
    return _DEFAULT_MAX_LENGTH


def _optional_bool(name, value):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"{name} must be true or false, got {value!r}")


def _positive_int(name, value, allow_none=True):
    if value is None and allow_none:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if number < 1 or isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


@register_model("pyllm")
class PyllmLM(TemplateLM):
    """lm-eval's TemplateLM over a pyllm.Model and pyllm.Tokenizer loaded from one directory."""

    def __init__(self, pretrained, dtype="float32", n_threads=None, n_ctx=None, max_length=None,
                 tokenizer=None, add_bos_token=None, prefix_token_id=None, seed=1234,
                 batch_size=1, max_batch_size=64, device=None, batch_invariant=False, revision=None,
                 prefix_cache=True, ray_actors=None, **kwargs):
        super().__init__()
        if kwargs:
            raise ValueError(f"unknown model_args for the pyllm backend: {', '.join(sorted(kwargs))}")
        ray_actors = _positive_int("ray_actors", ray_actors)
        # The arguments each Ray actor builds its own single-process backend from (the model path as
        # given: a Hub id is resolved on each node); 1 thread per actor unless n_threads says.
        worker_args = dict(pretrained=pretrained, dtype=dtype, n_threads=_positive_int("n_threads", n_threads) or 1,
                           n_ctx=n_ctx, max_length=max_length, tokenizer=tokenizer, add_bos_token=add_bos_token,
                           prefix_token_id=prefix_token_id, seed=seed, batch_size=batch_size,
                           max_batch_size=max_batch_size, batch_invariant=batch_invariant, revision=revision,
                           prefix_cache=prefix_cache)
        # prefix_cache=false turns it off, a number of bytes bounds it (pyllm.PrefixCache).
        self.prefix_cache = prefix_cache_argument(prefix_cache)
        self._prefix_key = None  # what else changes the KV (interventions), as pyllm.LLM's
        # A local directory, or a Hub id fetched (only the files pyllm reads) into huggingface_hub's
        # cache, as Model.from_pretrained resolves it; revision= as for lm-eval's hf backend.
        name = pretrained
        pretrained = hub.resolve(pretrained, "llm", revision=revision)
        if not os.path.isdir(pretrained):
            raise FileNotFoundError(f"pretrained must be a model directory or a Hub id, got {name!r} (a file)")
        # lm-eval passes device=None from simple_evaluate; its CLI's "cuda:0" default is replaced by
        # "cpu" in `python -m pyllm.lm_eval` unless --device is given: a device here was asked for.
        if device is not None and not str(device).startswith("cpu"):
            log.warning("pyllm runs on the CPU; ignoring device=%r", device)
        self._batch_size = self._parse_batch_size(batch_size, max_batch_size)
        self._max_length = _positive_int("max_length", max_length)
        config = _read_json(os.path.join(pretrained, "config.json"))
        tokenizer_dir = hub.resolve(tokenizer, "tokenizer") if tokenizer is not None else pretrained
        tokenizer_config = _read_json(os.path.join(tokenizer_dir, "tokenizer_config.json"))
        if self._max_length is None:
            self._max_length = _resolve_max_length(config, tokenizer_config)
        if n_ctx is None:
            n_ctx = self._max_length
        if dtype in (None, "auto"):
            dtype = "float32"
        self._actors = None
        if ray_actors is not None:
            # Requests are spread over actors that each load the model; this process only tokenizes.
            from .ray_actors import ActorPool
            self.model = None
            self._actors = ActorPool(ray_actors, worker_args)
        else:
            self._load_model(pretrained, dtype, n_threads, n_ctx, batch_invariant)
        self.tok = pyllm.Tokenizer.from_pretrained(tokenizer_dir)
        self.add_bos_token = _optional_bool("add_bos_token", add_bos_token)
        self.custom_prefix_token_id = None
        if prefix_token_id is not None:
            self.custom_prefix_token_id = _positive_int("prefix_token_id", int(prefix_token_id) + 1) - 1
        self.seed = int(seed)
        self.pretrained = os.fspath(name)  # as given: a Hub id names the model in results

    def _load_model(self, pretrained, dtype, n_threads, n_ctx, batch_invariant):
        # batch_invariant=true: scores that do not move with batch_size (pyllm.Model.from_arrays).
        self.model = pyllm.Model.from_pretrained(pretrained, dtype=dtype, n_threads=_positive_int("n_threads", n_threads),
                                                 n_ctx=_positive_int("n_ctx", n_ctx),
                                                 batch_invariant=bool(_optional_bool("batch_invariant", batch_invariant)))
        if self.model.n_ctx < self._max_length:
            raise ValueError(f"max_length={self._max_length} exceeds the model's n_ctx={self.model.n_ctx}")

    @staticmethod
    def _parse_batch_size(batch_size, max_batch_size):
        """lm-eval passes an int, a numeric string or 'auto[:N]'; pyllm has no memory probe, so
        'auto' means max_batch_size."""
        if isinstance(batch_size, str) and batch_size.startswith("auto"):
            return _positive_int("max_batch_size", max_batch_size if max_batch_size is not None else 64)
        return _positive_int("batch_size", batch_size if batch_size is not None else 1)

    # -- what lm-eval asks of every backend -------------------------------------------------

    @property
    def eot_token_id(self):
        return self.tok.eos_token_id

    @property
    def prefix_token_id(self):
        if self.custom_prefix_token_id is not None:
            return self.custom_prefix_token_id
        if self.tok.bos_token_id is not None:
            return self.tok.bos_token_id
        return self.tok.eos_token_id

    @property
    def max_length(self):
        return self._max_length

    @property
    def max_gen_toks(self):
        return 256

    @property
    def batch_size(self):
        return self._batch_size

    @property
    def device(self):
        return "cpu"

    @property
    def tokenizer_name(self):
        return os.path.basename(os.path.normpath(self.pretrained))

    def get_model_info(self):
        return {"model_name": self.pretrained, "model_backend": "pyllm", "pyllm_version": pyllm.__version__}

    def tok_encode(self, string, add_special_tokens=None, left_truncate_len=None, **kwargs):
        """As the hf backend: the tokenizer's own BOS rule unless told, no second BOS when the
        text already starts with it (pyllm.text_pairs.encode_text, shared with pyllm.LLM)."""
        if add_special_tokens is None:
            ids = text_pairs.encode_text(self.tok, string, self.prefix_token_id, self.add_bos_token)
        else:
            ids = self.tok.encode(string, add_special_tokens=add_special_tokens)
        if left_truncate_len:
            ids = ids[-left_truncate_len:]
        return ids

    def tok_decode(self, tokens, skip_special_tokens=True):
        if isinstance(tokens, (int, np.integer)):
            tokens = [int(tokens)]
        return self.tok.decode(list(tokens), skip_special_tokens=skip_special_tokens)

    # -- scoring ------------------------------------------------------------------------------

    def _reuse(self):
        return scoring.Reuse(self.prefix_cache, self._prefix_key) if self.prefix_cache is not None else None

    def loglikelihood(self, requests, disable_tqdm=False):
        """(context, continuation) strings to ids by pyllm.text_pairs (lm-eval's _encode_pair and
        empty-context rule, the same function pyllm.LLM.loglikelihood uses), then scored."""
        new_requests = []
        for context, continuation in (req.args for req in requests):
            context_ids, continuation_ids = text_pairs.encode_pair(self.tok, context, continuation, self.prefix_token_id,
                                                                   self.add_bos_token)
            new_requests.append(((context, continuation), context_ids, continuation_ids))
        return self._loglikelihood_tokens(new_requests, disable_tqdm=disable_tqdm)

    def _loglikelihood_tokens(self, requests, disable_tqdm=False, override_bs=None):
        pairs = [(context, continuation) for _, context, continuation in requests]
        if not pairs:
            return []
        results = self._score(pairs, override_bs or self.batch_size, False if disable_tqdm else None)
        for (request, _, _), answer in zip(requests, results):
            if request is not None:
                self.cache_hook.add_partial("loglikelihood", request, answer)
        return results

    def _score(self, pairs, batch_size, progress):
        """scoring.loglikelihood of token pairs, here or spread over the Ray actors (in order)."""
        if self._actors is not None:
            return self._actors.map("score", pairs, (batch_size, self.max_length), "loglikelihood", progress)
        return scoring._loglikelihood(self.model, pairs, batch_size=batch_size, max_length=self.max_length,
                                      progress=progress, reuse=self._reuse())

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        windows, counts = [], []
        for (string,) in (req.args for req in requests):
            own = text_pairs.rolling_pairs(self.tok, string, self.prefix_token_id, self.max_length, self.add_bos_token)
            windows.extend(own)
            counts.append(len(own))
        scores = self._score(windows, self.batch_size, False if disable_tqdm else None) if windows else []
        totals, start = [], 0
        for req, count in zip(requests, counts):
            total = sum(score for score, _ in scores[start:start + count])
            start += count
            totals.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # -- generation ---------------------------------------------------------------------------

    def _eos_ids(self):
        eos = self.model.generation_config.get("eos_token_id", self.model.config.get("eos_token_id"))
        if eos is None:
            eos = self.eot_token_id
        return set(eos if isinstance(eos, list) else [eos])

    def _greedy(self, context, max_gen_toks, until, eos_ids):
        """Greedy tokens one step at a time over a KV cache, stopping at EOS, at a stop string in
        the decoded text (lm-eval cuts the text there anyway), or after max_gen_toks. The context
        starts after the longest prefix of it the prefix cache holds, and is kept there."""
        model = self.model
        capacity = len(context) + max_gen_toks
        reuse = self._reuse()
        done, cache = reuse.match(model, context, capacity, limit=len(context) - 1) if reuse else (0, None)
        if cache is None:
            cache = model.new_cache(1, capacity)
        logits = model([context[done:]], cache=cache, logits_to_keep=1)[:, -1]
        if reuse is not None:
            reuse.insert(model, context, cache)
        generated = []
        for step in range(max_gen_toks):
            token = int(np.argmax(logits[0]))
            generated.append(token)
            if token in eos_ids:
                break
            text = self.tok_decode(generated)
            if any(stop and stop in text for stop in until):
                break
            if step + 1 < max_gen_toks:
                logits = model([[token]], cache=cache, logits_to_keep=1)[:, -1]
        return generated

    def _sampled(self, context, max_gen_toks, temperature, top_k, top_p, seed, eos_ids):
        out = self.model.generate(np.asarray(context), max_new_tokens=max_gen_toks, do_sample=True,
                                  temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                                  eos_token_id=sorted(eos_ids))
        generated = []
        for token in out[len(context):].tolist():
            generated.append(token)
            if token in eos_ids:
                break
        return generated

    def _generate_tokens(self, ids, max_gen_toks, until, kwargs, seed):
        """The generated tokens of one request, greedy or sampled as its kwargs say (the sampling
        defaults from this model's generation_config.json)."""
        eos_ids = self._eos_ids()
        if kwargs.get("do_sample"):
            generation_config = self.model.generation_config
            top_k = kwargs.get("top_k", generation_config.get("top_k", 50))
            top_p = kwargs.get("top_p", generation_config.get("top_p", 1.0))
            return self._sampled(ids, max_gen_toks, float(kwargs.get("temperature", 1.0)), int(top_k or 0),
                                 float(top_p), seed, eos_ids)
        return self._greedy(ids, max_gen_toks, until, eos_ids)

    def generate_until(self, requests, disable_tqdm=False):
        eos_text = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        jobs = []
        for index, (context, gen_kwargs) in enumerate(req.args for req in requests):
            if not isinstance(gen_kwargs, dict):
                raise TypeError(f"generation kwargs must be a dict, got {type(gen_kwargs).__name__}")
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos_text)
            max_gen_toks = int(kwargs.pop("max_gen_toks"))
            max_ctx_len = self.max_length - max_gen_toks
            if max_ctx_len <= 0:
                raise ValueError(f"max_gen_toks={max_gen_toks} must be less than max_length={self.max_length}")
            add_special = False if has_bos_prefix(context, self.tok_decode([self.prefix_token_id], False)) \
                else (True if self.add_bos_token is None else self.add_bos_token)
            ids = self.tok.encode(context, add_special_tokens=add_special)[-max_ctx_len:]
            if not ids:
                ids = [self.prefix_token_id]
            jobs.append((ids, max_gen_toks, until, kwargs, self.seed + index))
        progress = False if disable_tqdm else None
        if self._actors is not None:
            generated = self._actors.map("generate", jobs, (), "generate_until", progress)
        else:
            bar = scoring._progress_bar(len(jobs), "generate_until", progress)
            generated = []
            try:
                for job in jobs:
                    generated.append(self._generate_tokens(*job))
                    bar.update(1)
            finally:
                bar.close()
        results = []
        for (context, gen_kwargs), tokens, job in zip((req.args for req in requests), generated, jobs):
            text = postprocess_generated_text(self.tok_decode(tokens, skip_special_tokens=True), job[2], None)
            results.append(text)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
        return results
