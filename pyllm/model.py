"""The public model class: configuration checks, weight checks and input normalisation in
Python, everything that computes in the C core (pyllm._core.Decoder).

A LLaMA or a BLOOM is built from a Hugging Face ``config.json`` dict and a dict of NumPy arrays
named as in the Hugging Face state dict (BLOOM's own reader is pyllm/bloom.py);
``Model.from_pretrained`` reads a model directory through ``pyllm.checkpoint`` and hands the
same to ``from_arrays``.
"""

import re

import numpy as np

from . import _core, bloom, checkpoint, generation, memory
from ._checks import LIMITS, bounded_int, check_n_ctx, float32_weight, matrix_weight, positive_int as _positive_int
from ._progress import progress_bar
from .dtypes import DTYPES, DTYPE_NAMES, KV_DTYPES, resolve_dtype, resolve_kv_dtype, resolve_lm_head_dtype
from .generation import GenerationConfig

_ROPE_TYPES = ("default", "linear", "dynamic", "llama3")

def _require(config, key):
    if key not in config or config[key] is None:
        raise ValueError(f"LLaMA config lacks the required key '{key}'")
    return config[key]


def _rope_settings(config, max_position_embeddings):
    """Normalise either config form into one dict of rope settings for the C core.

    Newer configs carry ``rope_parameters`` (with ``rope_type`` and ``rope_theta`` inside);
    older ones a top-level ``rope_theta`` and an optional ``rope_scaling`` whose kind is under
    ``type`` or ``rope_type``."""
    params = config.get("rope_parameters")
    if params is None:
        params = config.get("rope_scaling") or {}
    if not isinstance(params, dict):
        raise ValueError(f"rope_scaling / rope_parameters must be a dict or null, got {params!r}")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in _ROPE_TYPES:
        raise ValueError(f"rope type must be one of {', '.join(_ROPE_TYPES)}, got {rope_type!r}")
    theta = params.get("rope_theta", config.get("rope_theta", 10000.0))
    if theta is None:
        theta = 10000.0
    if not isinstance(theta, (int, float)) or isinstance(theta, bool) or not theta > 0:
        raise ValueError(f"rope_theta must be a positive number, got {theta!r}")
    settings = {
        "rope_type": rope_type,
        "rope_theta": float(theta),
        "rope_factor": 1.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": max_position_embeddings,
    }
    if rope_type != "default":
        factor = params.get("factor")
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not factor > 0:
            raise ValueError(f"rope scaling '{rope_type}' needs a positive 'factor', got {factor!r}")
        settings["rope_factor"] = float(factor)
    if rope_type == "llama3":
        for key in ("low_freq_factor", "high_freq_factor"):
            value = params.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"rope scaling 'llama3' needs a positive '{key}', got {value!r}")
            settings[key] = float(value)
        if settings["low_freq_factor"] == settings["high_freq_factor"]:
            raise ValueError("rope scaling 'llama3' needs low_freq_factor != high_freq_factor")
        original = params.get("original_max_position_embeddings", max_position_embeddings)
        settings["original_max_position_embeddings"] = bounded_int("original_max_position_embeddings", original,
                                                                   LIMITS["context"])
    return settings


_SUPPORTED = "pyllm runs LLaMA (LlamaForCausalLM) and BLOOM (BloomForCausalLM)"


def _architecture(config):
    """'llama' or 'bloom', from model_type and architectures (a LLaMA when neither is given)."""
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    if not isinstance(architectures, (list, tuple)):
        raise ValueError(f"config 'architectures' must be a list, got {architectures!r}")
    # model_type -> the classes whose checkpoints run as a causal LM (a BloomModel's embeddings
    # are its tied lm_head).
    known = {"llama": ("LlamaForCausalLM",), "bloom": ("BloomForCausalLM", "BloomModel")}
    for arch, classes in known.items():
        listed = any(name in architectures for name in classes)
        if model_type == arch or (model_type is None and listed):
            if architectures and not listed:
                raise ValueError(f"config has model_type={model_type!r} but architectures={list(architectures)!r}, "
                                 f"which lacks {classes[0]}; {_SUPPORTED}")
            return arch
    if model_type is None and not architectures:
        return "llama"
    raise ValueError(f"unsupported architecture: model_type={model_type!r}, architectures="
                     f"{list(architectures)!r}; {_SUPPORTED}")


def _parse_config(config, n_ctx):
    """The C core's view of a config.json dict, with transformers' defaults filled in."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict (config.json), got {type(config).__name__}")
    if _architecture(config) == "bloom":
        return bloom.parse_config(config, n_ctx)
    c = {"architecture": "llama"}
    c.update({key: bounded_int(key, _require(config, key))
         for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads")})
    kv = config.get("num_key_value_heads")
    c["num_key_value_heads"] = bounded_int("num_key_value_heads", c["num_attention_heads"] if kv is None else kv)
    head_dim = config.get("head_dim")
    if head_dim is None:
        if c["hidden_size"] % c["num_attention_heads"]:
            raise ValueError(f"hidden_size ({c['hidden_size']}) is not a multiple of num_attention_heads "
                             f"({c['num_attention_heads']}) and the config gives no head_dim")
        head_dim = c["hidden_size"] // c["num_attention_heads"]
    c["head_dim"] = bounded_int("head_dim", head_dim)
    if c["num_attention_heads"] % c["num_key_value_heads"]:
        raise ValueError(f"num_attention_heads ({c['num_attention_heads']}) must be a multiple of "
                         f"num_key_value_heads ({c['num_key_value_heads']})")
    if c["head_dim"] % 2:
        raise ValueError(f"head_dim must be even for rotary embeddings, got {c['head_dim']}")
    eps = config.get("rms_norm_eps", 1e-6)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"rms_norm_eps must be a number >= 0, got {eps!r}")
    c["rms_norm_eps"] = float(eps)
    c["max_position_embeddings"] = bounded_int("max_position_embeddings",
                                               config.get("max_position_embeddings", 2048), LIMITS["context"])
    c.update(_rope_settings(config, c["max_position_embeddings"]))
    if c["rope_type"] == "dynamic" and c["head_dim"] <= 2:
        raise ValueError(f"dynamic rope scaling needs head_dim > 2, got {c['head_dim']}")
    c["n_ctx"] = check_n_ctx(c["max_position_embeddings"] if n_ctx is None else n_ctx)
    c["attention_bias"] = bool(config.get("attention_bias", False))
    c["mlp_bias"] = bool(config.get("mlp_bias", False))
    c["tie_word_embeddings"] = bool(config.get("tie_word_embeddings", False))
    return c



def _expected_shapes(c):
    """Name -> shape of every tensor a LLaMA needs."""
    d, ff, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    qw = c["num_attention_heads"] * c["head_dim"]
    kvw = c["num_key_value_heads"] * c["head_dim"]
    shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
    if not c["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, d)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for name, (rows, cols) in {"q_proj": (qw, d), "k_proj": (kvw, d), "v_proj": (kvw, d),
                                   "o_proj": (d, qw)}.items():
            shapes[p + f"self_attn.{name}.weight"] = (rows, cols)
            if c["attention_bias"]:
                shapes[p + f"self_attn.{name}.bias"] = (rows,)
        for name, (rows, cols) in {"gate_proj": (ff, d), "up_proj": (ff, d), "down_proj": (d, ff)}.items():
            shapes[p + f"mlp.{name}.weight"] = (rows, cols)
            if c["mlp_bias"]:
                shapes[p + f"mlp.{name}.bias"] = (rows,)
        shapes[p + "input_layernorm.weight"] = (d,)
        shapes[p + "post_attention_layernorm.weight"] = (d,)
    return shapes


def _checked_weights(c, weights):
    """The needed tensors checked one by one, under the names the C core reads: matrices in their
    own type (float32, float16, bfloat16 bits), converted by the C core as it packs them; vectors
    as float32."""
    if not isinstance(weights, dict):
        raise TypeError(f"weights must be a dict of arrays, got {type(weights).__name__}")
    if c["architecture"] == "bloom":
        return bloom.checked_weights(c, weights)
    out = {}
    for name, shape in _expected_shapes(c).items():
        if name not in weights:
            raise ValueError(f"weights lack the tensor '{name}' (expected shape {shape})")
        check = matrix_weight if len(shape) == 2 else float32_weight
        out[name] = check(name, weights[name], shape)
    if c["tie_word_embeddings"]:
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return out


# Loads of more bytes than this show a progress bar unless the caller says otherwise.
_PROGRESS_BYTES = 1 << 30
_LAYER_OF_NAME = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)\.")


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


def _as_ids(input_ids, vocab_size, what="input_ids"):
    """(int32 [batch, seq] C-contiguous array, was_1d) with every check the API promises."""
    if isinstance(input_ids, np.ndarray):
        ids = input_ids
    else:
        try:
            ids = np.asarray(input_ids)
        except ValueError as e:
            raise ValueError(f"{what} must be a rectangular list or array of token ids: {e}") from None
    if ids.size == 0:
        raise ValueError(f"{what} is empty: need at least one token")
    if ids.dtype == np.bool_ or ids.dtype.kind not in "iu":
        raise TypeError(f"{what} must hold integers, got dtype {ids.dtype}")
    if ids.ndim not in (1, 2):
        raise ValueError(f"{what} must be 1-D [seq] or 2-D [batch, seq], got {ids.ndim}-D shape {ids.shape}")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{what} holds token id {bad}, outside the vocabulary [0, {vocab_size})")
    was_1d = ids.ndim == 1
    return np.ascontiguousarray(ids.reshape(1, -1) if was_1d else ids, dtype=np.int32), was_1d


def _as_mask(attention_mask, shape):
    """uint8 [batch, seq] of 0/1 with the shape of the ids, or None."""
    if attention_mask is None:
        return None
    mask = np.asarray(attention_mask)
    if mask.dtype != np.bool_ and mask.dtype.kind not in "iu":
        raise TypeError(f"attention_mask must hold 0/1 integers or booleans, got dtype {mask.dtype}")
    if mask.ndim == 1:
        mask = mask.reshape(1, -1)
    if mask.shape != shape:
        raise ValueError(f"attention_mask has shape {mask.shape}, expected {shape} like input_ids")
    if mask.size and (mask.min() < 0 or mask.max() > 1):
        raise ValueError("attention_mask must hold only 0 and 1")
    return np.ascontiguousarray(mask, dtype=np.uint8)


class Model:
    """A LLaMA- or BLOOM-family causal language model running on pyllm's C core."""

    def __init__(self, decoder, config, parsed, generation_config):
        self._decoder = decoder
        self.config = config
        self._parsed = parsed
        self.generation_config = generation_config

    @classmethod
    def from_arrays(cls, config, weights, dtype="float32", n_threads=None, n_ctx=None, generation_config=None,
                    lm_head_dtype=None, progress=None, batch_invariant=False, kv_dtype=None):
        """Build a model from a config.json dict and Hugging Face-named arrays (float32/float16).

        dtype is the type the linear layers (the lm_head included) compute with:
        "float32" (default; equal to transformers), "bfloat16" (bf16 weights and activations
        into the products, f32 accumulation, norms, softmax and residual stream), "int8" (ggml's
        Q8_0: an f16 scale per 32 input channels), "int4" (Q4_0: 4-bit, an f16 scale per 32),
        "q4_1" (4-bit with a scale and a minimum per 32), or "auto" (the checkpoint's
        torch_dtype: float32, or bfloat16 for bf16 and f16 checkpoints). Below float32 the
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
        dtype = resolve_dtype(dtype, config)
        if n_threads is None:
            n_threads = _core.get_num_threads()
        if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
            raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
        if generation_config is not None and not isinstance(generation_config, (dict, GenerationConfig)):
            raise TypeError(f"generation_config must be a dict, a GenerationConfig or None, "
                            f"got {type(generation_config).__name__}")
        generation_config = GenerationConfig.from_dict(generation_config or {})
        parsed = _parse_config(config, n_ctx)
        parsed["weight_type"] = DTYPES[dtype]
        parsed["lm_head_type"] = DTYPES[resolve_lm_head_dtype(lm_head_dtype, dtype)]
        if not isinstance(batch_invariant, (bool, np.bool_)):
            raise TypeError(f"batch_invariant must be True or False, got {batch_invariant!r}")
        parsed["batch_invariant"] = bool(batch_invariant)
        parsed["kv_type"] = KV_DTYPES[resolve_kv_dtype(kv_dtype, dtype)]
        # Before any weight is checked, converted or packed: a model that cannot fit is refused
        # here rather than by the OOM killer halfway through.
        memory.check_weights(parsed, dtype, lm_head_dtype)
        arrays = _checked_weights(parsed, weights)
        decoder = _build_decoder(parsed, arrays, n_threads, weights, progress)
        del arrays
        return cls(decoder, dict(config), parsed, generation_config)

    @classmethod
    def from_pretrained(cls, model_dir, dtype="float32", n_threads=None, n_ctx=None, lm_head_dtype=None,
                        progress=None, batch_invariant=False, kv_dtype=None):
        """Load a Hugging Face model directory: config.json, generation_config.json (optional)
        and model.safetensors or its sharded index, weights stored as f32, f16 or bf16, packed
        as dtype, the KV cache in kv_dtype (see from_arrays).

        The safetensors are memory-mapped and each matrix is converted (bf16 and f16 without a
        float32 copy) and packed once into the C core's layout, layer by layer, the file's pages
        of a packed layer released at once: loading needs about the packed size plus one layer.
        progress: show a bar (None: when the weights pass 1 GB). batch_invariant: see from_arrays."""
        config = checkpoint.load_config(model_dir)
        # Checked before the weights are mapped.
        dtype = resolve_dtype(dtype, config)
        memory.check_weights(_parse_config(config, n_ctx), dtype, lm_head_dtype)
        resolve_kv_dtype(kv_dtype, dtype)  # a bad kv_dtype fails before the weights are mapped
        weights = checkpoint.load_weights(model_dir, bf16="bits")
        generation_config = checkpoint.load_generation_config(model_dir)
        return cls.from_arrays(config, weights, dtype=dtype, n_threads=n_threads, n_ctx=n_ctx,
                               generation_config=generation_config, lm_head_dtype=lm_head_dtype,
                               progress=progress, batch_invariant=batch_invariant, kv_dtype=kv_dtype)

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
        return self._parsed["vocab_size"]

    @property
    def n_ctx(self):
        return self._decoder.n_ctx

    @property
    def n_threads(self):
        return self._decoder.n_threads

    @n_threads.setter
    def n_threads(self, value):
        self._decoder.n_threads = value

    def new_cache(self, batch_size=1, capacity=None):
        """An empty KV cache for incremental evaluation: ``model(ids, cache=cache)`` appends the
        tokens and returns only their logits. ``cache.copy()`` branches a computed prefix (a chat,
        a shared prompt) without recomputing it; ``cache.repeat(n)`` turns a one-row cache into
        n rows that continue it differently."""
        return self._decoder.new_cache(batch_size, self.n_ctx if capacity is None else capacity)

    def __call__(self, input_ids, attention_mask=None, cache=None, logits_to_keep=0, output_hidden_states=False):
        """float32 logits [batch, seq, vocab] ([seq, vocab] for 1-D input_ids).

        attention_mask (1 = token, 0 = left padding) gives positions cumsum(mask) - 1. With a
        cache, the tokens continue the cached rows and the mask covers the new tokens (or the
        cached ones followed by the new ones, as transformers passes it).

        logits_to_keep=k > 0 returns only the last k positions' logits ([batch, k, vocab]); the
        lm_head runs only for those. output_hidden_states=True returns (logits, hidden_states),
        hidden_states a tuple of num_hidden_layers + 1 float32 arrays [batch, seq, hidden] as
        transformers gives them: the embeddings, each layer's output, the last after the final norm."""
        if cache is not None and not isinstance(cache, _core.KVCache):
            raise TypeError(f"cache must come from model.new_cache(), got {type(cache).__name__}")
        if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, (int, np.integer)) \
                or logits_to_keep < 0:
            raise ValueError(f"logits_to_keep must be an integer >= 0 (0 = every position), got {logits_to_keep!r}")
        ids, was_1d = _as_ids(input_ids, self.vocab_size)
        batch, seq = ids.shape
        if attention_mask is not None and cache is not None:
            full = np.asarray(attention_mask)
            if full.ndim == 2 and full.shape[1] == cache.used + seq and cache.used:
                attention_mask = full[:, cache.used:]
            elif full.ndim == 1 and full.shape[0] == cache.used + seq and cache.used:
                attention_mask = full[cache.used:]
        mask = _as_mask(attention_mask, ids.shape)
        if cache is None:
            if seq > self.n_ctx:
                raise ValueError(f"input of {seq} tokens is longer than the context n_ctx={self.n_ctx}")
            cache = self._decoder.new_cache(batch, seq)
        elif cache.batch_size != batch:
            raise ValueError(f"input_ids has {batch} rows but the cache holds {cache.batch_size}")
        out = self._decoder.forward(cache, ids, mask, True, int(logits_to_keep), bool(output_hidden_states))
        if not output_hidden_states:
            return out[0] if was_1d else out
        logits, states = out
        if was_1d:
            return logits[0], tuple(state[0] for state in states)
        return logits, tuple(states)

    def loglikelihood(self, requests, batch_size=8, max_length=None, progress=None):
        """[(sum log p(continuation | context), is_greedy)] for (context_ids, continuation_ids)
        pairs, in the caller's order; contexts are left-truncated to max_length (default n_ctx)
        tokens with their continuation. See pyllm.scoring.loglikelihood."""
        from . import scoring
        return scoring.loglikelihood(self, requests, batch_size=batch_size, max_length=max_length,
                                     progress=progress)

    def loglikelihood_rolling(self, ids, max_length=None, prefix_token_id=None, batch_size=8, progress=None):
        """Total log-likelihood of ids over disjoint windows of max_length tokens (default n_ctx),
        as lm-evaluation-harness computes it; see pyllm.scoring.loglikelihood_rolling."""
        from . import scoring
        return scoring.loglikelihood_rolling(self, ids, max_length=max_length, prefix_token_id=prefix_token_id,
                                             batch_size=batch_size, progress=progress)

    def generate(self, input_ids, generation_config=None, attention_mask=None, logits_processor=None,
                 stopping_criteria=None, streamer=None, stop_strings=None, tokenizer=None, **options):
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

        An exception raised by a hook propagates; KeyboardInterrupt (Ctrl-C) stops within one
        step. The model stays usable either way. A hook may use the model itself.

        With ``return_dict_in_generate``, ``output_logprobs`` or ``top_logprobs`` set, returns a
        :class:`pyllm.generation.GenerateOutput` instead of the array."""
        return generation.generate(self, input_ids, generation_config, attention_mask, logits_processor,
                                   stopping_criteria, streamer, stop_strings, tokenizer, **options)
