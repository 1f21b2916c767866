"""pyllm on a Ray cluster: batch generation and scoring over a Ray Dataset.

``generate``, ``loglikelihood`` and ``loglikelihood_rolling`` run a callable class in
``Dataset.map_batches`` on an actor pool (``ActorPoolStrategy(size=concurrency)``): each actor loads
``pyllm.LLM(model, dtype=, n_threads=, n_ctx=, batch_invariant=)`` once and serves many batches.
The result is a lazy Ray Dataset (Ray Data's own progress bar covers the whole job when it runs)
holding the input columns, an ``id`` (the user's, else the row's position in the input), the
outputs and an ``error`` column: a bad row (an empty prompt, one longer than the context, a value
of the wrong type) gets its message there and the other rows complete.

Determinism: a generated row samples from ``row_seed(seed, id)``, the documented hash below, in a
call of its own, so its output equals ``LLM.generate(prompt, seed=row_seed(seed, id), ...)`` run
locally, whatever the actor count, the batch size or the order batches run in. Greedy and beam
rows do not sample and run batched (left-padded, as ``LLM.generate`` runs a list): with
``batch_invariant=True`` they are the same bits as the row alone.

Faults are Ray's to handle: Ray Data runs pool actors with ``max_restarts=-1`` and
``max_task_retries=-1``, so a killed actor process is restarted and its batch retried; a model that does not load on a node
fails the job with an error naming the model path and the node.
"""
import hashlib
import math
import os
import socket

try:
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy
except ImportError as e:
    if (e.name or "").split(".")[0] != "ray":
        raise
    raise ImportError('pyllm.ray needs Ray Data, which is not installed: pip install "pyllm[ray]" '
                      '(or pip install "ray[data]")', name=e.name) from e

import numpy as np
import pyarrow as pa

from . import _checks, generation
from .dtypes import dtype_argument
from .llm import LLM
from .model import _check_loader_options
from .stop_strings import check_stop_strings, cut_at_stop

__all__ = ["generate", "loglikelihood", "loglikelihood_rolling", "row_seed"]

# Seconds the pool's actors may take to start and load the model before the job fails.
ACTOR_START_TIMEOUT = 600


# -- the per-row seed -----------------------------------------------------------------------------

def _row_key(row_id):
    if isinstance(row_id, (bool, np.bool_)):
        raise TypeError(f"row_id must be an int or a str, got {row_id!r}")
    if isinstance(row_id, (int, np.integer)):
        return b"i" + str(int(row_id)).encode("ascii")
    if isinstance(row_id, str):
        return b"s" + row_id.encode("utf-8")
    raise TypeError(f"row_id (a row's id) must be an int or a str, got {type(row_id).__name__} {row_id!r}")


def row_seed(seed, row_id):
    """The sampling seed of the row named ``row_id`` (its ``id``, else its position) under the
    global ``seed``: the first 8 bytes, little-endian, of BLAKE2b (digest_size=8) keyed by
    ``seed`` as 8 little-endian bytes (taken modulo 2**64) over ``b"i" + decimal digits`` for an
    integer id or ``b"s" + UTF-8 bytes`` for a string id. ``LLM.generate(prompt, seed=row_seed(seed,
    id), **options)`` reproduces the row locally."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    key = (int(seed) % (1 << 64)).to_bytes(8, "little")
    return int.from_bytes(hashlib.blake2b(_row_key(row_id), digest_size=8, key=key).digest(), "little")


# -- inputs --------------------------------------------------------------------------------------

def _read_paths(paths, name):
    suffixes = {os.path.splitext(p[:-3] if p.endswith(".gz") else p)[1].lower() for p in paths}
    if suffixes <= {".jsonl", ".json"}:
        return ray.data.read_json(paths)
    if suffixes == {".parquet"}:
        return ray.data.read_parquet(paths)
    raise ValueError(f"{name} paths must all be JSONL (.jsonl, .json) or all Parquet (.parquet) files, got {paths!r}")


def _dataset(data, name, row_of, columns):
    """A Ray Dataset of the input with an ``id`` column (the input position where it has none)."""
    if isinstance(data, ray.data.Dataset):
        ds = data
    elif isinstance(data, (str, os.PathLike)):
        ds = _read_paths([_checks.path_argument(name, data)], name)
    elif isinstance(data, (list, tuple)) and data and all(isinstance(p, os.PathLike) for p in data):
        ds = _read_paths([os.fspath(p) for p in data], name)
    elif isinstance(data, (list, tuple)):
        if not data:
            raise ValueError(f"{name} is empty: give at least one row")
        rows = [dict(item) if isinstance(item, dict) else row_of(item) for item in data]
        if not any("id" in row for row in rows):
            for position, row in enumerate(rows):
                row["id"] = position
        ds = ray.data.from_items(rows)
    else:
        raise TypeError(f"{name} must be a Ray Dataset, a list of rows, or a JSONL/Parquet path or list of "
                        f"pathlib paths, got {type(data).__name__}")
    have = ds.columns() or []
    missing = [c for c in columns if c not in have]
    if missing:
        raise ValueError(f"{name} needs the column(s) {missing}; it has {have}")
    if "id" not in have:
        # zip pairs rows by position: each row's id is its index in the input, computed in Ray.
        ds = ds.zip(ray.data.range(ds.count()))
    return ds


def _pool_options(concurrency, num_cpus, n_threads, batch_size, resources):
    """The actor pool's options, checked before Ray is touched."""
    concurrency = _checks_positive("concurrency", concurrency)
    batch_size = _checks_positive("batch_size", batch_size)
    if num_cpus is None:
        num_cpus = n_threads
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or not num_cpus > 0:
        raise ValueError(f"num_cpus must be a positive number of CPUs per actor, got {num_cpus!r}")
    if resources is not None and (not isinstance(resources, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for k, v in resources.items())):
        raise TypeError(f"resources must be a dict of Ray custom resource names to amounts per actor, got {resources!r}")
    return dict(concurrency=concurrency, num_cpus=num_cpus, batch_size=batch_size, resources=resources)


def _map(ds, worker, args, *, concurrency, num_cpus, batch_size, resources):
    # The input (prompts or texts, small beside the work) is read before the actors start: the read
    # tasks need CPUs that a pool sized to the cluster would otherwise hold, and would wait forever.
    # An actor task takes a whole block, so blocks of batch_size rows spread the rows over the
    # actors (and make a killed actor's retry one batch).
    ds = ds.materialize()
    ds = ds.repartition(max(1, math.ceil(ds.count() / batch_size))).materialize()
    # Ray Data starts pool actors with max_restarts=-1 and max_task_retries=-1: a killed actor is
    # restarted and its batch resubmitted, and the output holds each row once.
    out = ds.map_batches(worker, fn_constructor_args=args, batch_size=batch_size, batch_format="pyarrow",
                         compute=ActorPoolStrategy(size=concurrency), num_cpus=num_cpus, resources=resources)
    # Batches start once the whole pool has loaded the model, so the first actor up does not take
    # every batch; a cluster without room for the pool fails after this wait instead of hanging.
    out.context.wait_for_min_actors_s = ACTOR_START_TIMEOUT
    return out


def _checks_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _load(model, dtype, n_threads, n_ctx, batch_invariant):
    """The model path and LLM's load options, checked here so that a bad one fails before any actor."""
    model = _checks.path_argument("model", model)
    n_threads = _checks_positive("n_threads", n_threads)
    if n_ctx is not None:
        n_ctx = _checks_positive("n_ctx", n_ctx)
    dtype = dtype_argument(dtype, None)
    _check_loader_options(dtype, n_threads, batch_invariant, None)
    return model, {"dtype": dtype, "n_threads": n_threads, "n_ctx": n_ctx, "batch_invariant": bool(batch_invariant)}


def _scoring_options(score_batch_size, max_length):
    score_batch_size = _checks_positive("score_batch_size", score_batch_size)
    if max_length is not None:
        max_length = _checks_positive("max_length", max_length)
    return score_batch_size, max_length


# -- the actors ------------------------------------------------------------------------------------

def _node():
    """This worker's node id, address and host name, for error messages."""
    context = ray.get_runtime_context()
    return f"node {context.get_node_id()} ({ray.util.get_node_ip_address()}, host {socket.gethostname()})"


def _error(e):
    return f"{type(e).__name__}: {e}"


class _Worker:
    """One LLM per actor, loaded once."""

    def __init__(self, model, load):
        try:
            self.llm = LLM(model, progress=False, **load)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"model path {model!r} does not exist on {_node()}: {e}") from None
        except Exception as e:
            raise RuntimeError(f"model {model!r} failed to load on {_node()}: {_error(e)}") from e

    @staticmethod
    def _table(batch, outputs, types):
        """The input batch with the output columns (replacing same-named input columns)."""
        keep = [name for name in batch.column_names if name not in outputs]
        table = batch.select(keep)
        for name, values in outputs.items():
            table = table.append_column(pa.field(name, types[name]), pa.array(values, type=types[name]))
        return table


class _Generate(_Worker):
    def __init__(self, model, load, options, seed):
        super().__init__(model, load)
        self.cfg, self.stops, self.hooks, self.eos = self.llm._prepare(options)
        self.seed = seed
        self.logprobs = self.cfg.output_logprobs or self.cfg.top_logprobs > 0

    def _check(self, prompt, row_id):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        if prompt == "":
            raise ValueError("prompt is empty: nothing to continue")
        try:
            self.llm._encode_prompts([prompt])  # too long for the context, or empty after encoding
        except ValueError as e:
            raise ValueError(str(e).replace("prompt 0 ", "the prompt ", 1)) from None
        return row_seed(self.seed, row_id)

    def _run(self, prompts, seed):
        """Generate for prompts in one call: rows of (text, new token ids, finish reason, log-probs)."""
        ids, mask = self.llm._encode_prompts(prompts)
        cfg = self.cfg.copy().update(seed=seed)
        out = self.llm._run(ids, mask, cfg, self.stops, self.hooks, self.eos)
        width = ids.shape[1]
        rows = []
        for r, text in enumerate(self.llm._texts(out, width, self.stops)):
            count = int(out.num_new_tokens[r])
            tokens = [int(t) for t in out.sequences[r][width:width + count]]
            decoded = self.llm.tokenizer.decode(tokens, skip_special_tokens=True)
            stopped = (tokens and tokens[-1] in self.eos) or cut_at_stop(decoded, self.stops)[1]
            reason = "length" if count >= cfg.max_new_tokens and not stopped else "stop"
            logprobs = [float(x) for x in out.logprobs[r][:count]] if self.logprobs else None
            rows.append((text, tokens, reason, logprobs))
        return rows

    def __call__(self, batch):
        prompts = batch.column("prompt").to_pylist()
        ids = batch.column("id").to_pylist()
        results = [None] * len(prompts)
        errors = [None] * len(prompts)
        seeds = {}
        for i, (prompt, row_id) in enumerate(zip(prompts, ids)):
            try:
                seeds[i] = self._check(prompt, row_id)
            except Exception as e:
                errors[i] = _error(e)
        good = sorted(seeds)
        if not self.cfg.do_sample and len(good) > 1:
            # No sampling: the seed plays no part, so the rows share one call.
            try:
                for i, row in zip(good, self._run([prompts[i] for i in good], 0)):
                    results[i] = row
                good = []
            except Exception:
                pass  # one row's failure must not fail the others: run them alone below
        for i in good:
            try:
                results[i] = self._run([prompts[i]], seeds[i])[0]
            except Exception as e:
                errors[i] = _error(e)
        empty = (None, [], None, None)
        rows = [r if r is not None else empty for r in results]
        outputs = {"text": [r[0] for r in rows], "token_ids": [r[1] for r in rows],
                   "finish_reason": [r[2] for r in rows]}
        types = {"text": pa.string(), "token_ids": pa.list_(pa.int64()), "finish_reason": pa.string(),
                 "logprobs": pa.list_(pa.float32()), "error": pa.string()}
        if self.logprobs:
            outputs["logprobs"] = [r[3] for r in rows]
        outputs["error"] = errors
        return self._table(batch, outputs, types)


class _Score(_Worker):
    """loglikelihood (context, continuation) or loglikelihood_rolling (text) rows."""

    def __init__(self, model, load, rolling, score_batch_size, max_length):
        super().__init__(model, load)
        self.rolling = rolling
        self.options = {"batch_size": score_batch_size, "max_length": max_length, "progress": False}

    def _score(self, items):
        if self.rolling:
            return [(value, None) for value in self.llm.loglikelihood_rolling(items, **self.options)]
        return self.llm.loglikelihood(items, **self.options)

    def _item(self, row):
        if self.rolling:
            if not isinstance(row[0], str):
                raise TypeError(f"text must be a str, got {type(row[0]).__name__}")
            if row[0] == "":
                raise ValueError("text is empty: nothing to score")
            return row[0]
        for name, part in zip(("context", "continuation"), row):
            if not isinstance(part, str):
                raise TypeError(f"{name} must be a str, got {type(part).__name__}")
        return tuple(row)

    def __call__(self, batch):
        names = ("text",) if self.rolling else ("context", "continuation")
        columns = [batch.column(name).to_pylist() for name in names]
        scores = [None] * batch.num_rows
        greedy = [None] * batch.num_rows
        errors = [None] * batch.num_rows
        items = {}
        for i, row in enumerate(zip(*columns)):
            try:
                items[i] = self._item(row)
            except Exception as e:
                errors[i] = _error(e)
        good = sorted(items)
        results = {}
        try:
            if good:
                results = dict(zip(good, self._score([items[i] for i in good])))
        except Exception:
            for i in good:  # one row's failure must not fail the others: find it alone
                try:
                    results[i] = self._score([items[i]])[0]
                except Exception as e:
                    errors[i] = _error(e)
        for i, (value, is_greedy) in results.items():
            scores[i], greedy[i] = float(value), is_greedy
        outputs = {"loglikelihood": scores}
        types = {"loglikelihood": pa.float64(), "is_greedy": pa.bool_(), "error": pa.string()}
        if not self.rolling:
            outputs["is_greedy"] = greedy
        outputs["error"] = errors
        return self._table(batch, outputs, types)


# -- the public calls ------------------------------------------------------------------------------

def generate(data, model, *, concurrency=1, num_cpus=None, seed=0, batch_size=8, dtype=None, n_threads=1,
             n_ctx=None, batch_invariant=False, resources=None, **generation_options):
    """Generate for every row of ``data`` (a Ray Dataset or JSONL/Parquet path(s) with a ``prompt``
    column and optionally ``id``, or a list of prompts) on ``concurrency`` actors of ``num_cpus``
    CPUs each (default ``n_threads``), each loading ``LLM(model, dtype=, n_threads=, n_ctx=,
    batch_invariant=)`` once. ``generation_options`` are those of ``LLM.generate`` (checked here,
    before any actor starts); ``num_return_sequences`` must be 1. ``batch_size`` rows go to an actor
    at a time; ``resources`` are Ray custom resources each actor needs (to place them on nodes).

    Returns a lazy Ray Dataset: the input columns plus ``id``, ``text``, ``token_ids`` (the new
    tokens), ``finish_reason`` ("stop" or "length"), ``logprobs`` with ``output_logprobs=True``, and
    ``error`` (None, or the message of a bad row). Row order is Ray Data's: sort by ``id``."""
    model, load = _load(model, dtype, n_threads, n_ctx, batch_invariant)
    pool = _pool_options(concurrency, num_cpus, load["n_threads"], batch_size, resources)
    row_seed(seed, 0)  # a bad seed fails here, not in every actor
    options = dict(generation_options)
    if "assistant_model" in options:
        raise ValueError("assistant_model must not be given to pyllm.ray.generate: a loaded Model cannot be sent to "
                         "the actors; prompt_lookup_num_tokens= speculates without one")
    if options.get("stop_strings") is not None:
        check_stop_strings(options["stop_strings"])
    # Every option checked before any actor starts (the actors resolve them against the model again).
    generation.GenerationConfig(**{k: v for k, v in options.items()
                                   if k not in ("stop_strings", "logits_processor", "stopping_criteria",
                                                "generation_config")})
    if options.get("num_return_sequences", 1) != 1:
        raise ValueError(f"pyllm.ray.generate gives one output row per input row: num_return_sequences must be 1, "
                         f"got {options['num_return_sequences']!r}")
    ds = _dataset(data, "data", lambda p: {"prompt": p}, ["prompt"])
    return _map(ds, _Generate, (model, load, options, seed), **pool)


def loglikelihood(data, model, *, concurrency=1, num_cpus=None, batch_size=32, score_batch_size=8,
                  max_length=None, dtype=None, n_threads=1, n_ctx=None, batch_invariant=False, resources=None):
    """``LLM.loglikelihood`` over the ``context`` and ``continuation`` columns of ``data`` (a Ray
    Dataset, JSONL/Parquet path(s), or a list of (context, continuation) pairs): a lazy Dataset with
    the input columns, ``id``, ``loglikelihood`` (float64), ``is_greedy`` and ``error``. The actors
    and ``batch_size`` are as for :func:`generate`; ``score_batch_size`` and ``max_length`` are
    LLM.loglikelihood's."""
    model, load = _load(model, dtype, n_threads, n_ctx, batch_invariant)
    pool = _pool_options(concurrency, num_cpus, load["n_threads"], batch_size, resources)
    score_batch_size, max_length = _scoring_options(score_batch_size, max_length)
    ds = _dataset(data, "data", lambda pair: dict(zip(("context", "continuation"), _pair(pair))),
                  ["context", "continuation"])
    return _map(ds, _Score, (model, load, False, score_batch_size, max_length), **pool)


def loglikelihood_rolling(data, model, *, concurrency=1, num_cpus=None, batch_size=32, score_batch_size=8,
                          max_length=None, dtype=None, n_threads=1, n_ctx=None, batch_invariant=False,
                          resources=None):
    """``LLM.loglikelihood_rolling`` over the ``text`` column of ``data`` (a Ray Dataset,
    JSONL/Parquet path(s), or a list of texts): a lazy Dataset with the input columns, ``id``,
    ``loglikelihood`` (float64) and ``error``; otherwise as :func:`loglikelihood`."""
    model, load = _load(model, dtype, n_threads, n_ctx, batch_invariant)
    pool = _pool_options(concurrency, num_cpus, load["n_threads"], batch_size, resources)
    score_batch_size, max_length = _scoring_options(score_batch_size, max_length)
    ds = _dataset(data, "data", lambda text: {"text": text}, ["text"])
    return _map(ds, _Score, (model, load, True, score_batch_size, max_length), **pool)


def _pair(pair):
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"data rows must be (context, continuation) pairs or dicts, got {pair!r}")
    return pair
