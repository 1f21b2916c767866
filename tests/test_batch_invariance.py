"""Batch invariance (``batch_invariant=True`` at load): a sequence's logits, log-likelihoods and
greedy text are the same bits whatever the batch it runs in, the other rows, its left padding,
whether its prefix came from the KV cache, and the thread count.

Every comparison is exact: ``np.array_equal`` on the float32 bits (log-likelihoods: the Python
floats). Each test also shows that without the mode at least one of its comparisons differs, so
that it can fail:
- bfloat16: natively (at up to 8 rows the decode GEMV kernels run, above them oneDNN's bf16 GEMM,
  whose sums round differently);
- float32: on this CPU oneDNN 3.2's AVX-512 f32 matmul (weights packed once for M=1) happens to
  give every row the same bits for every M we tried, so the default is invariant natively; its
  AVX2 kernels are not (measured: k=120, n=360 differs from m=2 on);
- int8 on AVX-512: invariant by design even without the mode, since prefill runs the decode
  kernels (ops/gemv.h, pyllm_gemv_tiled), whose result for a row never depends on the others; on
  AVX2 prefill dequantizes for oneDNN's f32 GEMM and differs.
So float32 and (on AVX-512) int8 check the mode here, then run the whole check again in a child
process with ``ONEDNN_MAX_CPU_ISA=AVX2`` and ``PYLLM_ISA=avx2`` (the mode on our AVX2 kernels),
where the default differs and the mode must not.
The mode is also checked on every instruction set of our kernels (AVX-512, AVX2, plain C), each in
its own process: results agree within one instruction set, not across them.
"""
import functools
import os

import numpy as np
import pytest

import pyllm
import pyllm._testing  # the C core's test-only entry points
from conftest import run_isolated

FAMILIES = ("llama", "bloom")
DTYPES = ("float32", "bfloat16", "int8")
VOCAB = 300
# float32 runs where oneDNN's f32 default is not invariant (see the module's docstring).
AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "PYLLM_ISA": "avx2"}


def _fill(rng, name, shape):
    """Random weights scaled as tests/llama_reference.py's (well above transformers' init, so
    attention is sharp and greedy text varied), drawn with NumPy: child processes skip torch."""
    noise = rng.standard_normal(shape).astype(np.float32)
    if name.endswith("norm.weight") or name.endswith("ln_f.weight"):
        return 1.0 + 0.3 * noise
    if name.endswith(".bias"):
        return 0.3 * noise
    if "embed" in name:
        return 0.3 * noise
    return noise * np.float32(1.5 / shape[1] ** 0.5)


@functools.lru_cache(maxsize=None)
def _random(family):
    """(config, weights) of a random model: LLaMA with GQA and an MLP of 344 (not a multiple of
    32: int8 pads its blocks), BLOOM with hidden 120 (ALiBi, LayerNorm, biases, tied lm_head)."""
    if family == "llama":
        d, ff, kv = 128, 344, 64
        config = {"model_type": "llama", "vocab_size": VOCAB, "hidden_size": d, "intermediate_size": ff,
                  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "eos_token_id": 2}
        shapes = {"model.embed_tokens.weight": (VOCAB, d), "model.norm.weight": (d,), "lm_head.weight": (VOCAB, d)}
        for i in range(2):
            p = f"model.layers.{i}."
            shapes.update({p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (kv, d),
                           p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, d),
                           p + "mlp.gate_proj.weight": (ff, d), p + "mlp.up_proj.weight": (ff, d),
                           p + "mlp.down_proj.weight": (d, ff), p + "input_layernorm.weight": (d,),
                           p + "post_attention_layernorm.weight": (d,)})
    else:
        d = 120
        config = {"model_type": "bloom", "vocab_size": VOCAB, "n_embed": d, "n_layer": 2, "num_attention_heads": 8,
                  "layer_norm_epsilon": 1e-5, "apply_residual_connection_post_layernorm": False,
                  "eos_token_id": 2, "pad_token_id": 3}
        shapes = {"transformer.word_embeddings.weight": (VOCAB, d)}
        for norm in ("transformer.word_embeddings_layernorm", "transformer.ln_f"):
            shapes.update({norm + ".weight": (d,), norm + ".bias": (d,)})
        for i in range(2):
            p = f"transformer.h.{i}."
            for name, (rows, cols) in {"self_attention.query_key_value": (3 * d, d), "self_attention.dense": (d, d),
                                       "mlp.dense_h_to_4h": (4 * d, d), "mlp.dense_4h_to_h": (d, 4 * d)}.items():
                shapes.update({p + name + ".weight": (rows, cols), p + name + ".bias": (rows,)})
            for norm in ("input_layernorm", "post_attention_layernorm"):
                shapes.update({p + norm + ".weight": (d,), p + norm + ".bias": (d,)})
    rng = np.random.default_rng(7)
    return config, {name: _fill(rng, name, shape) for name, shape in shapes.items()}


def _model(family, dtype, invariant, **kwargs):
    config, weights = _random(family)
    return pyllm.Model.from_arrays(config, weights, dtype=dtype, batch_invariant=invariant, **kwargs)


def _same_bits(a, b):
    a, b = np.ascontiguousarray(a, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def _batch_around(rng, seq, size, row, pad):
    """ids, mask of `size` rows with seq at `row`, left-padded by `pad` slots; the other rows are
    random tokens of random lengths (some longer, some shorter)."""
    width = len(seq) + pad
    lengths = rng.integers(3, width + 1, size)
    lengths[row] = len(seq)
    lengths[(row + 1) % size] = width  # the widest row sets the padding of seq
    ids = np.zeros((size, width), dtype=np.int64)
    mask = np.zeros((size, width), dtype=np.int64)
    for r, n in enumerate(lengths):
        ids[r, width - n:] = seq if r == row else rng.integers(0, VOCAB, n)
        mask[r, width - n:] = 1
    return ids, mask


def logits_differences(family, dtype, invariant):
    """Names of the settings in which a sequence's logits differ from its logits alone, in one
    pass: inside batches (with and without padding), behind a cached prefix, one token at a time."""
    model = _model(family, dtype, invariant)
    rng = np.random.default_rng(3)
    seq = rng.integers(0, VOCAB, 24)
    alone = model(seq)
    runs = {}
    for size, pad in ((2, 0), (3, 5), (8, 9), (8, 0)):
        row = size // 2
        ids, mask = _batch_around(rng, seq, size, row, pad)
        runs[f"row {row} of a batch of {size}, {pad} padding slots"] = model(ids, attention_mask=mask)[row, pad:]
    padded = np.concatenate([np.zeros(6, dtype=np.int64), seq])
    runs["alone, 6 padding slots"] = model(padded, attention_mask=(np.arange(30) >= 6).astype(np.int64))[6:]
    for split in (1, 7, 16, 23):
        cache = model.new_cache()
        runs[f"cached prefix of {split}"] = np.concatenate([model(seq[:split], cache=cache),
                                                            model(seq[split:], cache=cache)])
    cache = model.new_cache()
    runs["one token at a time"] = np.concatenate([model(seq[i:i + 1], cache=cache) for i in range(len(seq))])
    ids, mask = _batch_around(rng, seq, 3, 0, 4)
    cache = model.new_cache(batch_size=3)
    first = model(ids[:, :14], attention_mask=mask[:, :14], cache=cache)
    rest = model(ids[:, 14:], attention_mask=mask, cache=cache)
    runs["cached prefix of 10 in a padded batch of 3"] = np.concatenate([first[0, 4:], rest[0]])
    return sorted(name for name, logits in runs.items() if not _same_bits(logits, alone))


def _requests(rng):
    """(context, continuation) pairs: short ones (a few rows: the GEMV path alone, the GEMM in a
    batch), long ones, and several continuations of one context (scored over a shared cache)."""
    pairs = [(list(rng.integers(0, VOCAB, c)), list(rng.integers(0, VOCAB, n)))
             for c, n in ((1, 1), (2, 2), (3, 1), (5, 3), (9, 2), (14, 4), (20, 1), (33, 6), (4, 4), (12, 3))]
    shared = list(rng.integers(0, VOCAB, 11))
    pairs += [(shared, list(rng.integers(0, VOCAB, n))) for n in (1, 3, 2)]
    return pairs


def loglikelihood_differences(family, dtype, invariant):
    """Batch sizes whose log-likelihoods differ from batch_size=1's."""
    model = _model(family, dtype, invariant)
    requests = _requests(np.random.default_rng(4))
    one = model.loglikelihood(requests, batch_size=1)
    return [size for size in (3, 8) if model.loglikelihood(requests, batch_size=size) != one]


def generate_differences(family, dtype, invariant):
    """Rows whose greedy tokens or their log-probabilities differ between generating alone and in
    a left-padded batch (prompts of 3, 6 and 11 tokens: alone, the first two take the few-row
    kernels of the low-precision dtypes)."""
    model = _model(family, dtype, invariant)
    rng = np.random.default_rng(5)
    prompts = [rng.integers(0, VOCAB, n) for n in (3, 6, 11)]
    width = max(len(p) for p in prompts)
    ids = np.zeros((len(prompts), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = p
        mask[r, width - len(p):] = 1
    options = dict(max_new_tokens=10, do_sample=False, eos_token_id=None, output_logprobs=True)
    batch = model.generate(ids, attention_mask=mask, **options)
    differing = []
    for r, p in enumerate(prompts):
        alone = model.generate(p, **options)
        n = int(alone.num_new_tokens)  # a row may end early (an end token), the batch go on
        same = (int(batch.num_new_tokens[r]) == n
                and np.array_equal(alone.sequences[len(p):], batch.sequences[r, width:width + n])
                and _same_bits(alone.logprobs[:n], batch.logprobs[r, :n]))
        if not same:
            differing.append(r)
    return differing


CHECKS = {"logits": logits_differences, "loglikelihood": loglikelihood_differences,
          "generate": generate_differences}


def check(what, family, dtype):
    """The mode shows no difference; the default shows at least one (the test can fail)."""
    with_mode = CHECKS[what](family, dtype, True)
    assert with_mode == [], f"{family} {dtype} batch_invariant=True: {what} differ in {with_mode}"
    without = CHECKS[what](family, dtype, False)
    assert without, f"{family} {dtype}: without the mode {what} were already the same bits everywhere"


def _natively_invariant(dtype):
    """Whether the default is already invariant on this CPU (see the module's docstring)."""
    return dtype == "float32" or (dtype == "int8" and pyllm._testing.prefill_compute("q8_0") == "int8")


def _run(what, family, dtype):
    if not _natively_invariant(dtype):
        check(what, family, dtype)
        return
    with_mode = CHECKS[what](family, dtype, True)
    assert with_mode == [], f"{family} {dtype} batch_invariant=True: {what} differ in {with_mode}"
    kind, message = run_isolated(f"import test_batch_invariance as t; t.check({what!r}, {family!r}, {dtype!r})",
                                 env=_child_env(AVX2_ENV))
    assert kind is None, f"{kind}: {message}"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_logits_same_bits_in_any_batch_padding_or_cache_split(family, dtype):
    _run("logits", family, dtype)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_loglikelihood_same_at_every_batch_size(family, dtype):
    _run("loglikelihood", family, dtype)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("dtype", ("float32", "bfloat16"))
def test_greedy_generation_same_alone_and_batched(family, dtype):
    _run("generate", family, dtype)


def _check_every_dtype_and_family():
    for family in FAMILIES:
        for dtype in DTYPES:
            differing = logits_differences(family, dtype, True)
            assert differing == [], f"{family} {dtype}: logits differ in {differing}"


@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_mode_invariant_on_every_isa(isa):
    """Each kernel family (AVX2, plain C) keeps the mode invariant (AVX-512: the tests above)."""
    env = {"PYLLM_ISA": isa, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    kind, message = run_isolated("import test_batch_invariance as t, pyllm\n"
                                 f"assert pyllm._core.kernel_isa() in ({isa!r}, 'generic')\n"
                                 "t._check_every_dtype_and_family()", env=_child_env(env))
    assert kind is None, f"{kind}: {message}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_mode_does_not_depend_on_thread_count(dtype):
    model = _model("llama", dtype, True, n_threads=2)
    ids = np.random.default_rng(6).integers(0, VOCAB, (3, 40))  # enough work to run on 2 threads
    two = model(ids)
    model.n_threads = 1
    assert _same_bits(model(ids), two)


@pytest.mark.parametrize("name", ["float32", "bfloat16", "q8_0", "q4_0", "q4_1"])
def test_linear_rows_computed_alone(name):
    """The products themselves: any slice of rows equals the same rows of the whole (weight row
    counts and k that leave remainders in every tile), and stays close to NumPy's product."""
    rng = np.random.default_rng(8)
    for n, k in ((130, 200), (37, 96), (9, 1000), (64, 33)):
        w = rng.standard_normal((n, k)).astype(np.float32)
        x = rng.standard_normal((80, k)).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        whole = pyllm._testing.linear(w, name, x, bias, 1, True)
        for start, rows in ((0, 1), (5, 3), (9, 8), (1, 9), (3, 70)):
            part = pyllm._testing.linear(w, name, x[start:start + rows], bias, 1, True)
            assert _same_bits(part, whole[start:start + rows]), f"{name} n={n} k={k} rows {start}+{rows}"
        ref = x @ w.T + bias
        err = float(np.abs(whole - ref).max() / np.abs(ref).max())
        assert err < {"float32": 1e-5, "bfloat16": 0.02, "q8_0": 0.03}.get(name, 0.3), f"{name}: error {err:.3g}"


def test_flag_reaches_the_model_and_is_checked(tmp_path):
    from llama_reference import make_config, reference_model
    config = make_config(vocab_size=VOCAB, hidden_size=64)
    reference_model(config, seed=1).save_pretrained(tmp_path)
    assert pyllm.Model.from_pretrained(tmp_path, batch_invariant=True).batch_invariant is True
    assert pyllm.Model.from_pretrained(tmp_path).batch_invariant is False
    with pytest.raises(TypeError, match="batch_invariant"):
        _model("llama", "float32", "yes")


def _child_env(extra):
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in [tests_dir, path] if p), **extra}
