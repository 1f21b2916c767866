"""The public model class: configuration checks, weight checks and input normalisation in
Python, everything that computes in the C core (pyllm._core.Decoder).

A model is built from a Hugging Face ``config.json`` dict and a dict of NumPy arrays named as in
its Hugging Face state dict: the architecture registry (pyllm.architectures) turns them into one
DecoderSpec and canonically named tensors; ``Model.from_pretrained`` reads a model directory
through ``pyllm.checkpoint`` and hands the same to ``from_arrays``.
"""

import os
import re

import numpy as np

from . import (_checks, _core, architectures, checkpoint, constrained, file_kinds, generation, gguf_model, hub,
               limits, lora, memory, scoring, speculative)
from ._args import check_bool
from ._inputs import as_ids, as_mask
from ._progress import progress_bar
from .dtypes import (DTYPES, DTYPE_NAMES, FLOAT32_DEFAULT, KV_DTYPES, dtype_argument, resolve_dtype,
                     resolve_kv_dtype, resolve_lm_head_dtype)
from .generation import GenerationConfig
from .interventions import compile_interventions
from .model_summary import model_repr, parameter_count


# Loads of more bytes than this show a progress bar unless the caller says otherwise.
_PROGRESS_BYTES = 1 << 30
_LAYER_OF_NAME = re.compile(r"(?:^|\.)(?:layers|h|blk)\.(\d+)\.")


def _build_decoder(parsed, arrays, n_threads, source, progress):
    """Pack the checked arrays into a C decoder, one layer after another. After each layer the
    source's mapped pages of that layer are released (a checkpoint.Weights), so loading holds the
    packed weights plus about one layer of the file; a bar shows progress on long loads."""
    layers = parsed["num_hidden_layers"]
    if progress is None:
        progress = sum(a.nbytes for a in arrays.values()) >= _PROGRESS_BYTES
    names_of_layer = {}
    release = getattr(source, "release", None)
    if release is not None:
        for name in source:
            match = _LAYER_OF_NAME.search(name)
            if match:
                names_of_layer.setdefault(int(match.group(1)), []).append(name)
    bar = progress_bar(layers, f"packing {layers} layers ({DTYPE_NAMES[parsed['weight_type']]})", progress,
                       text_fallback=True)

    def on_layer(layer):
        if release is not None:
            release(names_of_layer.get(layer, ()))
        bar.update(1)

    try:
        decoder = _core.Decoder(parsed, arrays, int(n_threads), on_layer)
    finally:
        bar.close()
        if release is not None:
            release(list(source))
    return decoder


def _check_run_options(n_threads, generation_config, batch_invariant):
    """The thread count (None: the core's default) after checking the run options, so a bad one
    fails before any weight is read."""
    if n_threads is None:
        n_threads = _core.get_num_threads()
    n_threads = limits.check_count("n_threads", n_threads, limits.MAX_THREADS)
    if generation_config is not None and not isinstance(generation_config, (dict, GenerationConfig)):
        raise TypeError(f"generation_config must be a dict, a GenerationConfig or None, "
                        f"got {type(generation_config).__name__}")
    if not isinstance(batch_invariant, (bool, np.bool_)):
        raise TypeError(f"batch_invariant must be True or False, got {batch_invariant!r}")
    return n_threads


def _check_loader_options(dtype, n_threads, batch_invariant, kv_dtype):
    """A loader's options that can be checked before any file is read or fetched."""
    _check_run_options(n_threads, None, batch_invariant)
    if dtype not in (None, "auto"):
        resolve_kv_dtype(kv_dtype, resolve_dtype(dtype))


class Model:
    """A LLaMA- or BLOOM-family causal language model running on pyllm's C core.

    One model may be shared by threads: its calls take turns (docs/threads.md). A KV cache takes
    one call at a time that appends to it; another call on it meanwhile raises RuntimeError."""

    def __init__(self, decoder, config, spec, generation_config):
        if not isinstance(decoder, _core.Decoder):
            raise TypeError(f"decoder must be pyllm's C decoder, got {type(decoder).__name__}: build a Model with "
                            "Model.from_pretrained, Model.from_gguf or Model.from_arrays")
        self._decoder = decoder
        self.config = config
        self.spec = spec  # the pyllm.architectures.DecoderSpec the C core runs, with the run settings
        self.generation_config = generation_config
        self.adapters = ()  # the PEFT adapter directories merged at load (from_pretrained's adapters=)

    @classmethod
    def from_arrays(cls, config, weights, dtype=FLOAT32_DEFAULT, n_threads=None, n_ctx=None, generation_config=None,
                    lm_head_dtype=None, progress=None, batch_invariant=False, kv_dtype=None, torch_dtype=None):
        """Build a model from a config.json dict and Hugging Face-named arrays (float32/float16).

        dtype is the type the linear layers (the lm_head included) compute with:
        "float32" (default; equal to transformers), "bfloat16" (bf16 weights and activations
        into the products, f32 accumulation, norms, softmax and residual stream), "int8" (ggml's
        Q8_0: an f16 scale per 32 input channels), "int4" (Q4_0: 4-bit, an f16 scale per 32),
        "q4_1" (4-bit with a scale and a minimum per 32), or "auto" (the checkpoint's
        torch_dtype: float32, or bfloat16 for bf16 and f16 checkpoints).
        torch_dtype= is accepted for dtype= (transformers' name; torch.float32 and torch.bfloat16
        as well as the names), one or the other. Below float32 the
        embedding table is kept in bf16. At decode (up to 8 rows) int8/int4 products quantize
        the activations to 8 bits per block of 32 (ggml's Q8 scheme) and run on integer dot
        products; longer inputs dequantize the weights to bf16 tiles for oneDNN's bf16 GEMM.

        kv_dtype is the KV cache's element type: None (default) keeps float32 for float32 models
        and float16 for the others (half the cache's memory and of the bytes attention reads;
        saturated at ±65504); "float32", "bfloat16" or "float16" ask for one (see
        pyllm.dtypes.KV_DEFAULT_16BIT for why f16). Scores, softmax and sums stay f32.

        n_ctx is the KV-cache capacity (default: LLaMA's max_position_embeddings, BLOOM's
        seq_length or 2048; it may exceed them).
        generation_config is the generation_config.json dict, used for generate()'s defaults.

        batch_invariant=True: a sequence's logits (and so its log-likelihoods and greedy text) are
        the same bits whatever the batch it runs in, the other rows, its left padding, and whether
        its prefix came from the KV cache or the same call. Every linear layer then computes each
        row alone in one fixed summation order for any number of rows: float32 weights are kept
        plain for pyllm's own kernel instead of oneDNN's GEMM (whose kernels and blocking change
        with the row count), and the other dtypes use the decode kernels for prefill as well
        (int8/int4 activations quantized to 8 bits per block of 32, as at decode). Attention,
        norms and activations already compute each row and query alone. Prefill is slower (see
        benchmarks/bench_batch_invariant.py); results do not depend on n_threads either, but do
        on the CPU's instruction set (PYLLM_ISA)."""
        dtype = resolve_dtype(dtype_argument(dtype, torch_dtype), config)
        _check_run_options(n_threads, generation_config, batch_invariant)
        spec = architectures.spec_from_hf(config, n_ctx)
        # Before any weight is checked, converted or packed: a model that cannot fit is refused
        # here rather than by the OOM killer halfway through.
        memory.check_weights(spec, dtype, lm_head_dtype)
        arrays = architectures.weights_from_hf(spec, weights)
        return cls._from_spec(spec, dict(config), arrays, weights, dtype, n_threads, generation_config, lm_head_dtype,
                              progress, batch_invariant, kv_dtype)

    @classmethod
    def _from_spec(cls, spec, config, arrays, source, dtype, n_threads, generation_config, lm_head_dtype, progress,
                   batch_invariant, kv_dtype):
        """The model of a spec and its checked canonical arrays (source: what they were read from,
        whose pages are released layer by layer when it can), with the run settings."""
        n_threads = _check_run_options(n_threads, generation_config, batch_invariant)
        generation_config = GenerationConfig.from_dict(generation_config or {})
        spec["weight_type"] = DTYPES[dtype]
        spec["lm_head_type"] = DTYPES[resolve_lm_head_dtype(lm_head_dtype, dtype)]
        spec["batch_invariant"] = bool(batch_invariant)
        spec["kv_type"] = KV_DTYPES[resolve_kv_dtype(kv_dtype, dtype)]
        decoder = _build_decoder(spec, arrays, n_threads, source, progress)
        del arrays
        return cls(decoder, config, spec, generation_config)

    @classmethod
    def from_pretrained(cls, model_dir, dtype=None, n_threads=None, n_ctx=None, lm_head_dtype=None,
                        progress=None, batch_invariant=False, kv_dtype=None, torch_dtype=None, revision=None,
                        filename=None, local_files_only=False, adapters=None):
        """Load a Hugging Face model directory: config.json, generation_config.json (optional)
        and model.safetensors or its sharded index, weights stored as f32, f16 or bf16, packed
        as dtype (None: float32), the KV cache in kv_dtype (see from_arrays) — or a GGUF file
        (see from_gguf; dtype None or "auto" there: the file's own), or a llama2.c checkpoint.
        A file is told by its content; another kind raises ValueError naming what it is.

        The safetensors are memory-mapped and each matrix is converted (bf16 and f16 without a
        float32 copy) and packed once into the C core's layout, layer by layer, the file's pages
        of a packed layer released at once: loading needs about the packed size plus one layer.
        progress: show a bar (None: when the weights pass 1 GB). batch_invariant: see from_arrays.
        torch_dtype: transformers' name for dtype (see from_arrays).

        model_dir may be a Hugging Face Hub id ("org/name") when it is not an existing path:
        huggingface_hub (``pip install "pyllm[hub]"``) fetches the files read here into its
        cache, at ``revision`` (a branch, tag or commit; None: the default branch), from the cache
        alone with ``local_files_only=True`` or HF_HUB_OFFLINE=1 (see pyllm.hub). ``filename``
        picks a GGUF file in a repo (or a directory) that holds several.

        adapters: a PEFT LoRA adapter directory or a list of them (adapter_config.json +
        adapter_model.safetensors), merged in order into the float32 weights before they are
        packed as dtype, equal to peft's merge_and_unload() (see pyllm.lora and docs/lora.md);
        a Hugging Face directory only. ``model.adapters`` lists the paths merged."""
        model_dir = _checks.path_argument("model_dir", model_dir)
        adapter_paths = lora.adapter_paths(adapters)
        dtype = dtype_argument(dtype, torch_dtype)
        _checks.optional_str("filename", filename, "a file name inside the repo or directory")
        _check_loader_options(dtype, n_threads, batch_invariant, kv_dtype)  # before anything is fetched
        model_dir = hub.resolve(model_dir, "model", revision, filename, local_files_only)
        if adapter_paths and (os.path.isfile(model_dir) or gguf_model.is_gguf(model_dir)):
            raise ValueError(f"adapters= needs a Hugging Face model directory (config.json + safetensors) to merge "
                             f"into, got the file {model_dir!r}: merge the adapter into the Hugging Face model, then "
                             "convert that (pyllm convert)")
        if os.path.isfile(model_dir) and file_kinds.expect(
                model_dir, {file_kinds.GGUF, file_kinds.LLAMA2C_CHECKPOINT},
                "a model directory, GGUF file or llama2.c checkpoint") == file_kinds.LLAMA2C_CHECKPOINT:
            return cls._from_llama2c(model_dir, dtype, n_threads, n_ctx, lm_head_dtype, progress, batch_invariant,
                                     kv_dtype)
        if gguf_model.is_gguf(model_dir):
            return cls.from_gguf(model_dir, dtype=dtype, n_threads=n_threads, n_ctx=n_ctx,
                                 lm_head_dtype=lm_head_dtype, progress=progress, batch_invariant=batch_invariant,
                                 kv_dtype=kv_dtype)
        if dtype is None:
            dtype = "float32"
        config = checkpoint.load_config(model_dir)
        config_path = os.path.join(os.fspath(model_dir), checkpoint.CONFIG_NAME)
        adapters = [lora.read(path) for path in adapter_paths]  # every adapter checked before the base is read
        tied = architectures.spec_from_hf(config, n_ctx, source=config_path)["tie_word_embeddings"]
        config = lora.merged_config(config, adapters, tied)
        # Checked before the weights are mapped: every key the loaders read (errors name the file
        # and the key), the run options, the memory the weights need, generation_config.json.
        spec = architectures.spec_from_hf(config, n_ctx, source=config_path)
        dtype = resolve_dtype(dtype, config)
        _check_run_options(n_threads, None, batch_invariant)
        memory.check_weights(spec, dtype, lm_head_dtype, lora.merged_bytes(adapters))
        resolve_kv_dtype(kv_dtype, dtype)  # a bad kv_dtype fails before the weights are mapped
        generation_config = checkpoint.load_generation_config(model_dir)
        try:
            GenerationConfig.from_dict(generation_config)
        except (TypeError, ValueError) as e:
            path = os.path.join(os.fspath(model_dir), checkpoint.GENERATION_CONFIG_NAME)
            raise ValueError(f"{path}: {e}") from None
        weights = checkpoint.load_weights(model_dir, bf16="bits")
        if adapters:
            weights = lora.merge(weights, adapters, tied)
        model = cls.from_arrays(config, weights, dtype=dtype, n_threads=n_threads, n_ctx=n_ctx,
                                generation_config=generation_config, lm_head_dtype=lm_head_dtype,
                                progress=progress, batch_invariant=batch_invariant, kv_dtype=kv_dtype)
        model.adapters = tuple(adapter_paths)
        return model

    @classmethod
    def _from_llama2c(cls, path, dtype, n_threads, n_ctx, lm_head_dtype, progress, batch_invariant, kv_dtype):
        """A llama2.c checkpoint (float32, mapped), with the generation defaults convert_llama2c
        writes beside it (its BOS and EOS)."""
        from .llama2c import load_llama2c
        config, weights = load_llama2c(path)
        generation_config = {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}
        return cls.from_arrays(config, weights, dtype="float32" if dtype is None else dtype, n_threads=n_threads,
                               n_ctx=n_ctx, generation_config=generation_config, lm_head_dtype=lm_head_dtype,
                               progress=progress, batch_invariant=batch_invariant, kv_dtype=kv_dtype)

    @classmethod
    def from_gguf(cls, path, dtype=None, n_threads=None, n_ctx=None, lm_head_dtype=None, progress=None,
                  batch_invariant=False, kv_dtype=None, torch_dtype=None, revision=None, filename=None,
                  local_files_only=False):
        """Load a GGUF file (llama.cpp's format, v2/v3; architectures llama and bloom), mapped.

        dtype None or "auto" runs the file at its own precision where a kernel takes it as it is
        (Q8_0 -> int8, Q4_0 -> int4, Q4_1 -> q4_1: the blocks unchanged) and converts the rest at
        load (see pyllm.gguf_model for the table: K-quants and Q5_x become int8); any other dtype
        converts every tensor to it. The config (model.config) and the generation defaults come
        from the metadata; other options as from_arrays. A damaged or unsupported file raises
        pyllm.gguf.GGUFError (a ValueError) naming the file and the problem.

        path may be a Hub id: ``filename`` then names the .gguf file in the repo (needed when it
        holds several); revision and local_files_only as in from_pretrained. torch_dtype:
        transformers' name for dtype."""
        path = _checks.path_argument("path", path)
        dtype = dtype_argument(dtype, torch_dtype)
        _checks.optional_str("filename", filename, "a GGUF file name inside the repo or directory")
        _check_loader_options(dtype, n_threads, batch_invariant, kv_dtype)
        path = hub.resolve(path, "gguf", revision, filename, local_files_only)
        file_kinds.expect(path, {file_kinds.GGUF}, "a GGUF file")
        _check_run_options(n_threads, None, batch_invariant)
        f, config, spec, generation_config = gguf_model.read(path, n_ctx)
        dtype = gguf_model.default_dtype(f) if dtype in (None, "auto") else resolve_dtype(dtype)
        head_dtype = resolve_lm_head_dtype(lm_head_dtype, dtype)
        memory.check_weights(spec, dtype, lm_head_dtype, gguf_model.conversion_bytes(f, dtype, head_dtype))
        resolve_kv_dtype(kv_dtype, dtype)
        weights = gguf_model.weights(f, spec)
        return cls._from_spec(spec, config, weights, f, dtype, n_threads, generation_config, lm_head_dtype,
                              progress, batch_invariant, kv_dtype)

    def num_parameters(self):
        """Parameters of the model (every weight and bias once, tied embeddings once), as
        transformers' ``model.num_parameters()`` counts them."""
        return parameter_count(self.spec)

    def __repr__(self):
        return model_repr(self)

    @property
    def dtype(self):
        """The linear layers' weight type: float32, bfloat16, int8, int4 or q4_1."""
        return {"q8_0": "int8", "q4_0": "int4"}.get(self._decoder.weight_type, self._decoder.weight_type)

    @property
    def batch_invariant(self):
        """Whether a sequence's results are the same bits in any batch (see from_arrays)."""
        return self._decoder.batch_invariant

    @property
    def kv_dtype(self):
        """The KV cache's element type: float32, bfloat16 or float16."""
        return self._decoder.kv_type

    @property
    def weight_bytes(self):
        """Bytes the packed weights take in memory."""
        return self._decoder.weight_bytes

    @property
    def vocab_size(self):
        return self.spec["vocab_size"]

    @property
    def n_ctx(self):
        return self._decoder.n_ctx

    @property
    def n_threads(self):
        return self._decoder.n_threads

    @n_threads.setter
    def n_threads(self, value):
        self._decoder.n_threads = value

    @property
    def speculation_costs(self):
        """Seconds of this model's calls, as automatic speculative decoding weighs them: ``step``
        (one token), ``verify_fixed`` + n * ``verify_per_token`` (n tokens at once). Measured
        once, before the first call that needs them (never during one), so a seed gives the same
        tokens on every call; set a dict of the three to pin them (reproducible across loads)."""
        return dict(speculative.costs(self))

    @speculation_costs.setter
    def speculation_costs(self, value):
        self._speculation_costs = speculative.check_costs(value)

    def close(self):
        """Free the packed weights. Later calls raise RuntimeError; calls already running (on
        other threads, or the one whose hook calls close) finish normally, and the last of them to
        end frees the weights. Closing twice is allowed."""
        self._decoder.close()

    @property
    def closed(self):
        return self._decoder.closed

    def new_cache(self, batch_size=1, capacity=None):
        """An empty KV cache for incremental evaluation: ``model(ids, cache=cache)`` appends the
        tokens and returns only their logits. ``cache.copy()`` branches a computed prefix (a chat,
        a shared prompt) without recomputing it; ``cache.repeat(n)`` turns a one-row cache into
        n rows that continue it differently."""
        return self._decoder.new_cache(batch_size, self.n_ctx if capacity is None else capacity)

    def __call__(self, input_ids, attention_mask=None, cache=None, logits_to_keep=0, output_hidden_states=False,
                 output_attentions=False, interventions=None):
        """float32 logits [batch, seq, vocab] ([seq, vocab] for 1-D input_ids).

        attention_mask (1 = token, 0 = left padding) gives positions cumsum(mask) - 1. With a
        cache, the tokens continue the cached rows and the mask covers the new tokens (or the
        cached ones followed by the new ones, as transformers passes it).

        logits_to_keep=k > 0 returns only the last k positions' logits ([batch, k, vocab]); the
        lm_head runs only for those. output_hidden_states=True returns (logits, hidden_states),
        hidden_states a tuple of num_hidden_layers + 1 float32 arrays [batch, seq, hidden] as
        transformers gives them: the embeddings, each layer's output, the last after the final norm.

        output_attentions=True adds attentions, a tuple of num_hidden_layers float32 arrays
        [batch, heads, seq, k_len] of attention probabilities as transformers' eager attention
        gives them; k_len = the cached tokens (padding slots included) + seq. A padding slot gets
        0; a padding query that sees no real token gets 1 / k_len everywhere (as transformers).
        The result is then (logits, attentions),
        or (logits, hidden_states, attentions) with output_hidden_states=True.

        interventions: a pyllm.Intervention or a list of them (see pyllm.interventions), applied
        in order to this call's tokens; with a cache, positions continue the cached rows."""
        output_hidden_states = check_bool("output_hidden_states", output_hidden_states)
        output_attentions = check_bool("output_attentions", output_attentions)
        if cache is not None and not isinstance(cache, _core.KVCache):
            raise TypeError(f"cache must come from model.new_cache(), got {type(cache).__name__}")
        if not limits.is_int(logits_to_keep) or logits_to_keep < 0:
            raise ValueError(f"logits_to_keep must be an integer >= 0 (0 = every position), got {logits_to_keep!r}")
        logits_to_keep = min(int(logits_to_keep), limits.MAX_CONTEXT)  # more than the tokens given keeps them all
        if cache is not None and not isinstance(cache, _core.KVCache):
            raise TypeError(f"cache must be a KVCache from model.new_cache() holding the prompt's first tokens, or "
                            f"None, got {type(cache).__name__}")
        ids, was_1d = as_ids(input_ids, self.vocab_size)
        batch, seq = ids.shape
        if attention_mask is not None and cache is not None:
            full = np.asarray(attention_mask)
            if full.ndim == 2 and full.shape[1] == cache.used + seq and cache.used:
                attention_mask = full[:, cache.used:]
            elif full.ndim == 1 and full.shape[0] == cache.used + seq and cache.used:
                attention_mask = full[cache.used:]
        mask = as_mask(attention_mask, ids.shape)
        if cache is not None and cache.batch_size != batch:
            raise ValueError(f"input_ids has {batch} rows but the cache holds {cache.batch_size}")
        if cache is None and seq > self.n_ctx:
            raise ValueError(f"input of {seq} tokens is longer than the context n_ctx={self.n_ctx}")
        if cache is None or cache.used + seq <= cache.capacity:  # else the C core says it is full
            keep = seq if logits_to_keep == 0 else min(int(logits_to_keep), seq)
            memory.check_call(self.spec, batch, seq, seq if cache is None else cache.capacity,
                              memory.forward_output_bytes(self.spec, batch, seq, keep, output_hidden_states),
                              f"a forward call of {batch:,} x {seq:,} tokens", new_cache=cache is None,
                              threads=self.n_threads)
        reach = int(seq + (0 if cache is None else max(cache.lengths)))
        compiled = compile_interventions(interventions, self.spec, reach)
        if output_attentions and (cache is None or cache.used + seq <= cache.capacity):
            used = 0 if cache is None else cache.used
            memory.check_call(self.spec, batch, seq, seq if cache is None else cache.capacity,
                              4 * self.spec["num_hidden_layers"] * batch * self.spec["num_attention_heads"] * seq
                              * (used + seq), f"the attentions of {batch:,} x {seq:,} tokens",
                              new_cache=cache is None, threads=self.n_threads)
        if cache is None:
            cache = self._decoder.new_cache(batch, seq)
        out = self._decoder.forward(cache, ids, mask, True, int(logits_to_keep), bool(output_hidden_states),
                                    bool(output_attentions), compiled)
        if not (output_hidden_states or output_attentions):
            return out[0] if was_1d else out
        logits, states, attentions = out
        row = (lambda a: a[0]) if was_1d else (lambda a: a)
        result = [row(logits)]
        if output_hidden_states:
            result.append(tuple(row(state) for state in states))
        if output_attentions:
            result.append(tuple(row(layer) for layer in attentions))
        return tuple(result)

    def unembed(self, hidden):
        """Logits of hidden states: the final norm then the lm_head, as transformers'
        ``lm_head(model.norm(h))`` (BLOOM: ``lm_head(ln_f(h))``). hidden: float array
        [..., hidden_size]; returns float32 [..., vocab]. With output_hidden_states=True this is
        the logit lens: ``model.unembed(hidden_states[i])`` reads layer i's residual stream as
        next-token logits."""
        try:
            array = np.asarray(hidden)
        except (TypeError, ValueError):
            array = np.asarray(None)
        if array.dtype.kind not in "fiu":
            raise TypeError(f"hidden must be a float array [..., hidden_size], got dtype {array.dtype}")
        width = self.spec["hidden_size"]
        if array.ndim == 0 or array.shape[-1] != width:
            raise ValueError(f"hidden must have hidden_size={width} values in its last axis, got shape {array.shape}")
        lead = array.shape[:-1]
        rows = int(np.prod(lead, dtype=np.int64))
        if rows == 0:
            return np.zeros(lead + (self.vocab_size,), np.float32)
        flat = np.ascontiguousarray(array.reshape(rows, width), dtype=np.float32)
        return self._decoder.unembed(flat).reshape(lead + (self.vocab_size,))

    def loglikelihood(self, requests, batch_size=8, max_length=None, progress=None):
        """[(sum log p(continuation | context), is_greedy)] for (context_ids, continuation_ids)
        pairs, in the caller's order; contexts are left-truncated to max_length (default n_ctx)
        tokens with their continuation. See pyllm.scoring.loglikelihood."""
        return scoring.loglikelihood(self, requests, batch_size=batch_size, max_length=max_length,
                                     progress=progress)

    def loglikelihood_rolling(self, ids, max_length=None, prefix_token_id=None, batch_size=8, progress=None):
        """Total log-likelihood of ids over disjoint windows of max_length tokens (default n_ctx),
        as lm-evaluation-harness computes it; see pyllm.scoring.loglikelihood_rolling."""
        return scoring.loglikelihood_rolling(self, ids, max_length=max_length, prefix_token_id=prefix_token_id,
                                             batch_size=batch_size, progress=progress)

    def generate(self, input_ids, generation_config=None, attention_mask=None, logits_processor=None,
                 stopping_criteria=None, streamer=None, stop_strings=None, tokenizer=None, assistant_model=None,
                 interventions=None,
                 **options):
        """Prompt + generated token ids (int64), Hugging Face style: [rows, prompt + new] for 2-D
        input, 1-D for 1-D input (one row). Rows of a left-padded batch (attention_mask) run as one
        batch and end on their own (an end token, a stopping criterion, the length); ended rows
        are filled with pad_token_id and cost no compute; output stops at the step where every
        row has ended.

        Options are those of :class:`pyllm.GenerationConfig` (Hugging Face names), passed by name
        or as ``generation_config``; the model's generation_config.json supplies what neither
        sets (an option given as None counts as unset), else greedy decoding of 20 tokens.
        An unknown option name raises TypeError, a bad value ValueError.

        Hooks, called from the C loop with the GIL taken only when given:

        - ``logits_processor``: a callable or list, ``fn(input_ids, scores) -> scores`` with
          input_ids int64 [rows, length so far] (the prompt as given, padding included) and scores
          float32 [rows, vocab]; it runs after the built-in processors and before the sampling
          warpers and must return float32 of the same shape (ValueError otherwise). Rows that
          have ended get zeros, and what is returned for them is ignored.
        - ``stopping_criteria``: a callable or list, ``fn(input_ids, scores) -> bool [rows]``
          (or one bool), True ending that row after the token just chosen.
        - ``streamer``: an object with transformers' streamer interface: ``put(prompt ids
          [rows, prompt])`` once, then ``put(tokens int64 [rows])`` after every step (padding
          for ended rows), then ``end()``.

        - ``stop_strings`` (with ``tokenizer=``): a string or list of strings; a row ends on the
          token that completes one in its decoded new text (across token boundaries, as
          transformers' StopStringCriteria); the returned ids include that token.
        - ``regex``, ``json_schema`` or ``grammar`` (with ``tokenizer=``; pyllm.constrained, on
          llguidance): each row's new text matches the constraint; see GenerationConfig.

        An exception raised by a hook propagates; KeyboardInterrupt (Ctrl-C) stops within one
        step; a MemoryError (memory ran out) leaves the model as it was. The model stays usable
        either way, and a streamer is ended (``end()``) either way. A hook may use the model itself.

        With ``return_dict_in_generate``, ``output_logprobs`` or ``top_logprobs`` set, returns a
        :class:`pyllm.generation.GenerateOutput` instead of the array (``output_scores`` and
        ``output_logits`` add transformers' ``scores`` and ``logits`` to it).

        Beam search (``num_beams > 1``, with ``length_penalty``, ``early_stopping`` and
        ``num_return_sequences <= num_beams``) follows transformers 5.x: rows are each prompt's
        ``num_return_sequences`` best hypotheses, best first, padded with pad_token_id past their
        end; the GenerateOutput adds ``beam_indices`` and, with ``output_scores``,
        ``sequences_scores``. Every beam of every prompt runs in one decoder call per step, the KV
        cache rows following the beams. It takes no ``do_sample``, hooks, streamer, stop_strings,
        log-probabilities or interventions (ValueError).

        Speculative decoding (``prompt_lookup_num_tokens``, or ``assistant_model``: a smaller
        Model with this vocabulary; see docs/speculative.md) gives the same greedy tokens and the
        same sampling distribution; it takes no hooks, streamer, stop_strings, beams or
        interventions, and adds its draft and acceptance counts to the GenerateOutput.

        ``interventions``: a pyllm.Intervention or a list of them (pyllm.interventions), applied
        to the prompt and to every generated token at their positions (positions run on from the
        prompt's real tokens: the first new token of a row with n real prompt tokens is at n)."""
        config = generation.resolve(self, generation_config, options)
        return self.generate_with(input_ids, config, attention_mask, logits_processor, stopping_criteria, streamer,
                                  stop_strings, tokenizer, assistant_model, interventions)

    def generate_with(self, input_ids, config, attention_mask=None, logits_processor=None, stopping_criteria=None,
                      streamer=None, stop_strings=None, tokenizer=None, assistant_model=None, interventions=None,
                      cache=None):
        """generate() with a config already resolved by :func:`pyllm.generation.resolve` (the
        model's defaults, a generation_config and options merged once, end and pad tokens filled
        in): nothing is merged again. Same hooks and return values as generate().

        cache: a one-row KVCache of this model already holding the prompt's first tokens (fewer
        than the prompt, no padding; e.g. from pyllm.PrefixCache), for one prompt without beams
        or num_return_sequences: those tokens are not computed again (the cache is only read).
        That it holds this prompt's tokens is the caller's promise, as transformers' past_key_values."""
        from .stop_strings import StopStringCriteria, check_stop_strings

        if not isinstance(config, generation.GenerationConfig):
            raise TypeError(f"config must be a pyllm.GenerationConfig resolved by pyllm.generation.resolve, got "
                            f"{type(config).__name__}; generate() takes options by name")
        cfg = config
        stop_strings = check_stop_strings(stop_strings) if stop_strings is not None else (cfg.stop_strings or [])
        if stop_strings and tokenizer is None:
            raise ValueError("stop_strings needs the tokenizer to decode the new tokens: pass tokenizer=")
        # (option, value) of regex= / json_schema= / grammar=, or None; refused with speculation
        constraint = constrained.requested(cfg, assistant_model)
        if constraint is not None and tokenizer is None:
            raise ValueError(f"generation option {constraint[0]} needs the tokenizer (the bytes each token stands "
                             "for): pass tokenizer=")
        speculating = speculative.requested(cfg, assistant_model)
        if speculating:
            assistant_model = speculative.check_call(cfg, self, assistant_model, logits_processor, stopping_criteria,
                                                     streamer, stop_strings)
        ids, was_1d = as_ids(input_ids, self.vocab_size)
        mask = as_mask(attention_mask, ids.shape)
        max_new = generation.max_new_tokens(cfg, ids.shape[1])
        beams = cfg.num_beams > 1
        n = cfg.num_return_sequences
        if beams and (logits_processor is not None or stopping_criteria is not None or streamer is not None
                      or stop_strings):
            raise ValueError(f"num_beams={cfg.num_beams}: beam search takes no logits_processor, stopping_criteria, "
                             "streamer or stop_strings (pass num_beams=1 to use them)")
        # a listed position past the last token generation can reach is refused
        compiled = compile_interventions(interventions, self.spec, int(ids.shape[1] + max_new))
        if beams and compiled is not None:
            raise ValueError(f"num_beams={cfg.num_beams}: beam search takes no interventions (pass num_beams=1 to "
                             "use them)")
        if speculating and compiled is not None:
            raise ValueError("interventions are not supported with speculative decoding (prompt_lookup_num_tokens, "
                             "assistant_model): pass one or the other")
        # after the option checks (a tokenizer matters only to stop strings, which are checked first)
        if tokenizer is not None and not (callable(getattr(tokenizer, "decode", None))
                                          and callable(getattr(tokenizer, "stream_decoder", None))):
            raise TypeError(f"tokenizer must be a pyllm.Tokenizer (it decodes new tokens for stop_strings and "
                            f"constraints) or None, got {type(tokenizer).__name__}")
        # A GenerateOutput always carries the chosen tokens' log-probabilities (one log-softmax per row
        # and step, small next to the forward pass), except for beam search.
        want_logprobs = not beams and (cfg.output_logprobs or cfg.top_logprobs > 0 or cfg.return_dict_in_generate)
        # Rows the decoder runs: every beam of every prompt, or every sampled copy of it.
        rows, prompt = ids.shape[0] * (cfg.num_beams if beams else n), ids.shape[1]
        limits.check_count("generate's rows (input rows x num_beams or num_return_sequences)", rows,
                           limits.MAX_BATCH)
        if prompt + max_new <= self.n_ctx:  # else the C core names the context it exceeds
            outputs = memory.generate_output_bytes(rows, prompt, max_new, cfg.top_logprobs, want_logprobs)
            if cfg.return_dict_in_generate:  # scores and logits: [max_new, rows, vocab] float32 each
                outputs += 4 * max_new * rows * self.vocab_size * (cfg.output_scores + cfg.output_logits)
            memory.check_call(self.spec, rows, prompt, prompt + max(max_new - 1, 0), outputs + 5 * rows * prompt,
                              f"generating {max_new:,} tokens for {rows:,} row{'s' if rows > 1 else ''}",
                              threads=self.n_threads)
        if n > 1 and not beams:
            ids = np.repeat(ids, n, axis=0)
            mask = None if mask is None else np.repeat(mask, n, axis=0)
        seed = cfg.seed if cfg.seed is not None else int.from_bytes(os.urandom(8), "little")
        batch = ids.shape[0]

        processors = generation.callables(logits_processor, "logits_processor")
        criteria = generation.callables(stopping_criteria, "stopping_criteria")
        if stop_strings:
            criteria.append(StopStringCriteria(tokenizer, stop_strings, batch, cfg.eos_token_id))
        if constraint is not None:  # its mask last (nothing after it can allow a banned token)
            constraint = constrained.Constraint(*constraint, tokenizer, self.vocab_size, batch, cfg.eos_token_id)
            processors.append(constraint.process)
            criteria.insert(0, constraint.stop)
        if streamer is not None and not (callable(getattr(streamer, "put", None))
                                         and callable(getattr(streamer, "end", None))):
            raise TypeError(f"streamer must have put() and end() methods, got {type(streamer).__name__}")
        if streamer is not None:  # as transformers does: the prompt first, then each step's tokens
            streamer.put(ids.astype(np.int64))
        spec_options = speculative.core_options(cfg, self, assistant_model) if speculating else {}
        try:
            (sequences, counts, logprobs, top_ids, top_values, scores, logits, sequences_scores,
             beam_indices, speculation) = self._decoder.generate(
                ids, attention_mask=mask, max_new_tokens=int(max_new), seed=seed,
                logits_processor=generation.processor_hook(processors) if processors else None,
                stopping_criteria=(generation.stopping_hook(criteria, batch, constraint and constraint.ended)
                                   if criteria else None),
                on_tokens=streamer.put if streamer is not None else None, output_logprobs=want_logprobs,
                interventions=compiled, cache=cache, **generation.core_options(cfg), **spec_options)
        finally:
            if streamer is not None:  # ended on failure too: a consumer waiting for more must not hang
                streamer.end()

        if not (want_logprobs or cfg.return_dict_in_generate):
            return sequences[0] if was_1d and n == 1 else sequences
        out = generation.GenerateOutput(sequences, counts, logprobs, top_ids, top_values, scores, logits,
                                        sequences_scores if cfg.output_scores else None, beam_indices, speculation)
        if was_1d and n == 1:
            for name in ("sequences", "num_new_tokens", "logprobs", "top_logprob_ids", "top_logprobs",
                         "sequences_scores", "beam_indices", "num_draft_tokens", "num_accepted_tokens",
                         "speculation_stopped_at"):
                value = getattr(out, name)
                setattr(out, name, None if value is None else value[0])
        return out
