"""``pyllm.LLM``: a model and its tokenizer behind one object, text in and text out.

Generation runs in the C loop of ``Model.generate``; this layer encodes prompts (a list becomes
one left-padded batch), turns stop strings into a per-row stopping criterion, decodes only the
new tokens (special tokens skipped) and cuts each text before its first stop string. ``stream``
runs the same generation in a worker thread that feeds a queue from the streamer hook.
"""
import math
import queue
import threading

import numpy as np

from . import _checks, checkpoint, generation, hub, lora, scoring, templates, text_pairs
from .prefix_cache import prefix_cache_argument
from ._args import check_bool
from .dtypes import dtype_argument
from .default_model import default_model_path
from .model import Model
from .stop_strings import StopStringCriteria, check_stop_strings, cut_at_stop, held_back_length
from .tokenizer import Tokenizer

__all__ = ["LLM"]

_DONE = object()  # end-of-stream marker on a stream's queue


class LLM:
    """A tokenizer and a model loaded from one Hugging Face model directory.

    ``LLM(model_dir=None, dtype=None, n_threads=None, n_ctx=None, batch_invariant=False)``: model_dir a
    Hugging Face directory or a GGUF file (None: the default model, pyllm.default_model_path()), or a
    Hub id fetched through huggingface_hub (``revision``, ``filename``, ``local_files_only`` and
    ``torch_dtype`` as in Model.from_pretrained);
    dtype None is float32 for a directory and the file's own precision for a GGUF (see
    Model.from_pretrained); progress: a bar while the weights are packed (None: for loads over
    1 GB); batch_invariant (True: each
    prompt's output the same bits whatever the prompts batched with it, see ``Model.from_arrays``);
    usable as a context manager,
    ``close()`` frees the weights (later calls raise RuntimeError). Generation options are those
    of :class:`pyllm.GenerationConfig` (Hugging Face names), by name or as ``generation_config=``;
    what neither sets comes from the model's generation_config.json. Also accepted:
    ``stop_strings`` (a string or list), ``logits_processor`` and ``stopping_criteria`` hooks, and
    ``regex``, ``json_schema`` or ``grammar`` (constrained output, pyllm.constrained).
    Calls from several threads are served one generation step at a time by the model's lock.
    ``adapters``: PEFT LoRA adapter directories merged at load (see Model.from_pretrained); the
    tokenizer then comes from the last adapter directory that holds one (docs/lora.md).

    prefix_cache: the computed KV of recent prompts and contexts is kept, and a later call that
    starts with the same tokens computes only the rest (pyllm.PrefixCache, docs/prefix-cache.md):
    True (default: up to pyllm.prefix_cache.DEFAULT_MAX_BYTES), a number of bytes, a PrefixCache
    to share between LLMs and lm-eval backends, or False / None (off). Results equal the uncached
    ones bit for bit with batch_invariant=True, else to float rounding."""

    def __init__(self, model_dir=None, dtype=None, n_threads=None, n_ctx=None, batch_invariant=False, progress=None,
                 torch_dtype=None, revision=None, filename=None, local_files_only=False, adapters=None,
                 prefix_cache=True):
        self._model = None
        # Checked first: a bad value fails before the weights load.
        self.prefix_cache = prefix_cache_argument(prefix_cache)
        # What else changes the KV than the model (interventions): part of every prefix-cache key.
        self._prefix_key = None
        if model_dir is None:
            model_dir = default_model_path()
        model_dir = _checks.path_argument("model_dir", model_dir)
        dtype = dtype_argument(dtype, torch_dtype)
        _checks.optional_str("filename", filename, "a file name inside the repo or directory")
        adapters = lora.adapter_paths(adapters)
        # A Hub id is fetched once for both loaders (tokenizer and model files in one snapshot).
        path = hub.resolve(model_dir, "llm", revision, filename, local_files_only)
        if adapters:
            # The model first: the adapters say whether the vocabulary, and so the tokenizer, changed.
            self._model = Model.from_pretrained(path, dtype=dtype, n_threads=n_threads, n_ctx=n_ctx,
                                                batch_invariant=batch_invariant, progress=progress, adapters=adapters)
            try:
                resized = self._model.config["vocab_size"] != checkpoint.load_config(path)["vocab_size"]
                self.tokenizer = Tokenizer.from_pretrained(lora.tokenizer_dir(path, adapters, resized))
            except BaseException:
                self.close()
                raise
        else:
            self.tokenizer = Tokenizer.from_pretrained(path)
            self._model = Model.from_pretrained(path, dtype=dtype, n_threads=n_threads, n_ctx=n_ctx,
                                                batch_invariant=batch_invariant, progress=progress)
        self.model_dir = model_dir

    # -- life cycle -----------------------------------------------------------------------

    @property
    def model(self):
        if self._model is None:
            raise RuntimeError("this LLM is closed: its weights were freed by close(); create a new LLM")
        return self._model

    def close(self):
        """Free the weights (a generation under way in another thread finishes first, then frees
        them; see Model.close)."""
        model, self._model = self._model, None
        if model is not None:
            if self.prefix_cache is not None:
                self.prefix_cache._drop_model(model)
            model.close()

    @property
    def closed(self):
        return self._model is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        state = "closed" if self.closed else f"n_ctx={self._model.n_ctx}"
        return f"LLM({self.model_dir!r}, {state})"

    def _reuse(self):
        """The prefix cache with this LLM's key, for scoring.* (None when off)."""
        return scoring.Reuse(self.prefix_cache, self._prefix_key) if self.prefix_cache is not None else None

    # -- shared preparation ------------------------------------------------------------------

    def _encode_prompts(self, prompts):
        """(ids int64 [rows, width], attention mask, prompt lengths) of a left-padded batch."""
        model = self.model
        rows = []
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise TypeError(f"prompts[{i}] must be a str, got {type(prompt).__name__}")
        for i, ids in enumerate(self.tokenizer.encode_batch(list(prompts))):
            if not ids:
                raise ValueError(f"prompt {i} is empty and this tokenizer adds no BOS: nothing to continue")
            if len(ids) > model.n_ctx:
                raise ValueError(f"prompt {i} has {len(ids)} tokens, more than the context n_ctx={model.n_ctx}")
            rows.append(ids)
        width = max(len(ids) for ids in rows)
        pad = next((t for t in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id) if t is not None), 0)
        pad = pad if pad < model.vocab_size else 0
        ids = np.full((len(rows), width), pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, row in enumerate(rows):
            ids[r, width - len(row):] = row
            mask[r, width - len(row):] = 1
        return ids, mask

    def _prepare(self, options):
        """Check every option before any work, resolving them once: (config, stop strings, hooks, eos)."""
        options = dict(options)
        stops = options.pop("stop_strings", None)
        hooks = {k: options.pop(k) for k in ("logits_processor", "stopping_criteria", "assistant_model")
                 if k in options}
        cfg_arg = options.pop("generation_config", None)
        cfg = generation.resolve(self.model, cfg_arg, options)  # TypeError / ValueError on bad options, once
        # Stop strings given by name win over a config's (the model's generation_config.json or cfg_arg).
        stops = check_stop_strings(stops) if stops is not None else (cfg.stop_strings or [])
        eos = cfg.eos_token_id
        return cfg, stops, hooks, eos

    def _run(self, ids, mask, cfg, stops, hooks, eos, streamer=None, cancelled=None):
        model = self.model
        rows = ids.shape[0] * cfg.num_return_sequences
        criteria = generation.callables(hooks.get("stopping_criteria"), "stopping_criteria")
        if stops or cancelled is not None:
            criteria.append(StopStringCriteria(self.tokenizer, stops, rows, eos, cancelled))
        cfg = cfg.copy().update(return_dict_in_generate=True)
        return model.generate_with(ids, cfg, attention_mask=mask, logits_processor=hooks.get("logits_processor"),
                                   stopping_criteria=criteria or None, streamer=streamer,
                                   stop_strings=[],  # stops are handled above
                                   assistant_model=hooks.get("assistant_model"),
                                   tokenizer=self.tokenizer,  # for regex= / json_schema= / grammar=
                                   cache=self._prompt_cache(ids, cfg, hooks.get("assistant_model")))

    def _prompt_cache(self, ids, cfg, assistant_model=None):
        """For one prompt (no beams, one sequence): a cache holding all but its last token, from
        the longest prefix the prefix cache holds plus the rest computed here (and then kept), so
        a prompt that repeats an earlier one's start (a chat's history, a few-shot context) is
        computed once. None when there is no prefix cache, generation runs several rows, or
        speculative decoding runs (it makes caches of its own)."""
        reuse = self._reuse()
        prompt = ids[0].tolist()
        if reuse is None or ids.shape[0] != 1 or cfg.num_beams > 1 or cfg.num_return_sequences > 1 or len(prompt) < 2:
            return None
        if assistant_model is not None or cfg.prompt_lookup_num_tokens:
            return None
        model = self.model
        head = prompt[:-1]
        done, cache = reuse.match(model, head, len(head))
        if done < len(head):
            if cache is None:
                cache = model.new_cache(1, len(head))
            model([head[done:]], cache=cache, logits_to_keep=1)
            reuse.insert(model, head, cache)
        return cache

    def _texts(self, out, width, stops):
        texts = []
        for row, count in zip(out.sequences, out.num_new_tokens):
            text = self.tokenizer.decode(row[width:width + int(count)], skip_special_tokens=True)
            texts.append(cut_at_stop(text, stops)[0])
        return texts

    # -- text in, text out -----------------------------------------------------------------------

    def generate(self, prompts, **options):
        """The new text for a prompt (a str), or a list of texts for a list of prompts (run as
        one left-padded batch, each row ending on its own). With num_return_sequences=n > 1 each
        prompt gives a list of n texts. Texts are decoded with skip_special_tokens=True and cut
        before the first stop string."""
        single = isinstance(prompts, str)
        if single:
            prompts = [prompts]
        elif not isinstance(prompts, (list, tuple)):
            raise TypeError(f"prompts must be a str or a list of str, got {type(prompts).__name__}")
        if not prompts:
            raise ValueError("prompts is empty: give at least one prompt")
        cfg, stops, hooks, eos = self._prepare(options)
        ids, mask = self._encode_prompts(prompts)
        out = self._run(ids, mask, cfg, stops, hooks, eos)
        texts = self._texts(out, ids.shape[1], stops)
        n = cfg.num_return_sequences
        if n > 1:
            texts = [texts[i * n:(i + 1) * n] for i in range(len(prompts))]
        return texts[0] if single else texts

    def stream(self, prompt, **options):
        """An iterator over the new text of ``prompt`` as it is generated: pieces that never split
        a character, whose concatenation equals ``generate(prompt, same options)``; text that may
        still turn into a stop string is held back until it cannot. Closing the iterator (or
        leaving a for loop early, or Ctrl-C) stops the generation."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str (stream takes one prompt), got {type(prompt).__name__}")
        cfg, stops, hooks, eos = self._prepare(options)
        if cfg.num_return_sequences != 1:
            raise ValueError(f"stream gives one text: num_return_sequences must be 1, got {cfg.num_return_sequences}")
        ids, mask = self._encode_prompts([prompt])
        return self._stream(ids, mask, cfg, stops, hooks, eos)

    def _stream(self, ids, mask, cfg, stops, hooks, eos):
        tokens = queue.Queue()
        cancel = threading.Event()

        class Streamer:
            first = True

            def put(self, value):
                if self.first:  # the prompt comes first, as in transformers
                    self.first = False
                    return
                tokens.put(int(np.asarray(value).reshape(-1)[0]))

            def end(self):
                pass

        def work():
            try:
                self._run(ids, mask, cfg, stops, hooks, eos, Streamer(), cancel.is_set)
                tokens.put(_DONE)
            except BaseException as e:  # handed to the consumer, which re-raises it
                tokens.put(e)

        worker = threading.Thread(target=work, name="pyllm-stream", daemon=True)
        worker.start()
        decoder = self.tokenizer.stream_decoder(skip_special_tokens=True)
        pending = ""  # decoded text not yet shown (it may be the start of a stop string)
        ended = False
        try:
            while True:
                try:
                    item = tokens.get(timeout=0.05)  # a timeout keeps Ctrl-C responsive
                except queue.Empty:
                    continue
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                if ended or item in eos:
                    ended = True
                    continue
                pending += decoder.push(item)
                text, hit = cut_at_stop(pending, stops)
                if hit:
                    pending, ended = text, True
                    continue
                show = len(pending) - held_back_length(pending, stops)
                if show > 0:
                    piece, pending = pending[:show], pending[show:]
                    yield piece
            if not ended:
                pending += decoder.flush()
            pending = cut_at_stop(pending, stops)[0]
            if pending:
                yield pending
        finally:
            cancel.set()
            worker.join()

    # -- chat -------------------------------------------------------------------------------------

    def chat_prompt(self, messages, template=None, add_generation_prompt=True):
        """The prompt text ``chat`` generates from: messages through the model's chat template
        (tokenizer_config.json) or ``template`` (a Jinja string, "alpaca", "vicuna" or a callable)."""
        templates.check_messages(messages)
        check_bool("add_generation_prompt", add_generation_prompt)
        template = template if template is not None else self.tokenizer.chat_template
        if template is None:
            raise ValueError("this model has no chat_template in tokenizer_config.json: pass template= (a Jinja "
                             "string, 'alpaca', 'vicuna', pyllm.templates.ALPACA / VICUNA, or a callable)")
        return templates.render(template, messages, add_generation_prompt=add_generation_prompt,
                                **self.tokenizer.special_tokens())

    def chat(self, messages, template=None, **options):
        """The assistant's reply to ``messages`` (dicts with ``role`` and ``content``), generated
        from the rendered chat prompt. The template writes the special tokens, so the prompt is
        encoded without adding BOS again."""
        prompt = self.chat_prompt(messages, template)
        cfg, stops, hooks, eos = self._prepare(options)
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        if not ids:
            raise ValueError("the chat template rendered an empty prompt")
        if len(ids) > self.model.n_ctx:
            raise ValueError(f"the chat prompt has {len(ids)} tokens, more than the context n_ctx={self.model.n_ctx}")
        ids = np.array([ids], dtype=np.int64)
        out = self._run(ids, np.ones_like(ids), cfg, stops, hooks, eos)
        texts = self._texts(out, ids.shape[1], stops)
        return texts if cfg.num_return_sequences > 1 else texts[0]

    def chat_stream(self, messages, template=None, **options):
        """``chat`` as an iterator over the reply's text as it is generated (see ``stream``)."""
        prompt = self.chat_prompt(messages, template)
        cfg, stops, hooks, eos = self._prepare(options)
        if cfg.num_return_sequences != 1:
            raise ValueError(f"chat_stream gives one reply: num_return_sequences must be 1, "
                             f"got {cfg.num_return_sequences}")
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)  # the template wrote the specials
        if not ids:
            raise ValueError("the chat template rendered an empty prompt")
        if len(ids) > self.model.n_ctx:
            raise ValueError(f"the chat prompt has {len(ids)} tokens, more than the context n_ctx={self.model.n_ctx}")
        ids = np.array([ids], dtype=np.int64)
        return self._stream(ids, np.ones_like(ids), cfg, stops, hooks, eos)

    # -- scoring ------------------------------------------------------------------------------------

    def loglikelihood(self, requests, batch_size=8, max_length=None, progress=None):
        """[(sum of log p(continuation | context), is_greedy)] for a list of (context, continuation)
        pairs of strings, in order, tokenized as lm-evaluation-harness's hf backend does
        (pyllm.text_pairs): trailing spaces of the context go to the continuation, the continuation's
        tokens are those of context + continuation after the context's, and an empty context scores
        after BOS (else EOS). The scores equal lm-eval's on the same model. max_length (default: n_ctx)
        truncates long contexts from the left. A single pair must still be wrapped in a list."""
        requests = text_pairs.check_pairs(requests)
        prefix = text_pairs.prefix_token_id(self.tokenizer)
        pairs = text_pairs.encode_pairs(self.tokenizer, requests, prefix)
        return scoring._loglikelihood(self.model, pairs, batch_size=batch_size, max_length=max_length,
                                      progress=progress, reuse=self._reuse())

    def loglikelihood_rolling(self, texts, batch_size=8, max_length=None, progress=None):
        """The total log-likelihood of every token of each text (a list of str gives a list of
        floats, one str one float), over disjoint windows of max_length tokens (default: n_ctx), the
        first conditioned on BOS (else EOS), as lm-evaluation-harness's hf backend scores them: the
        text is encoded with the tokenizer's own special tokens (BOS for LLaMA, then scored too)."""
        single = isinstance(texts, str)
        if single:
            texts = [texts]
        elif isinstance(texts, bytes) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
        if not texts:
            raise ValueError("texts is empty: give at least one text")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] must be a str, got {type(text).__name__}")
        max_length = scoring._max_length(self.model, max_length)
        prefix = text_pairs.prefix_token_id(self.tokenizer)
        windows, counts = [], []
        for text in texts:
            own = text_pairs.rolling_pairs(self.tokenizer, text, prefix, max_length)
            windows.extend(own)
            counts.append(len(own))
        scores = scoring._loglikelihood(self.model, windows, batch_size=batch_size, max_length=max_length,
                                        progress=progress, reuse=self._reuse()) if windows else []
        totals, start = [], 0
        for count in counts:
            totals.append(math.fsum(score for score, _ in scores[start:start + count]))
            start += count
        return totals[0] if single else totals

    def perplexity(self, texts, max_length=None, batch_size=8, progress=None):
        """Token-level perplexity of a text or texts (see pyllm.scoring.perplexity)."""
        return scoring.perplexity(self.model, self.tokenizer, texts, max_length=max_length,
                                  batch_size=batch_size, progress=progress)
