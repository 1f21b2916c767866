"""The KV cache's element type: f32 for float32 models, f16 for the others (kv_dtype= overrides).

- Which type each dtype gets, the kv_dtype argument, and the bytes a cache reserves.
- Accuracy: logits through a 16-bit cache against transformers and against the same model with an
  f32 cache, on random LLaMA (RoPE, grouped-query) and BLOOM (ALiBi) models, prefill and decode,
  on every instruction set (AVX-512, AVX2, plain C: each in its own process); on stories260K,
  perplexity and the 200-step greedy story.
- The cache's operations on a 16-bit cache: copy, repeat, rows dropped as they end (keep_rows)
  and a left-padded batch give each row what it gets alone.
"""
import os

import numpy as np
import pytest

import pyllm
from conftest import child_environment, run_isolated
from pyllm import memory
from pyllm.architectures import spec_from_hf

EXPECTED_KV = {"float32": "float32", "bfloat16": "float16", "int8": "float16", "int4": "float16",
               "q4_1": "float16"}


def _random_llama():
    from llama_reference import make_config, reference_model, state_arrays
    config = make_config(vocab_size=300, hidden_size=128, intermediate_size=344, num_key_value_heads=2)
    hf = reference_model(config, seed=5)
    return config, state_arrays(hf), hf


def _random_bloom():
    from bloom_reference import make_config, reference_model, state_arrays
    config = make_config(vocab_size=300)
    hf = reference_model(config, seed=5)
    return config, state_arrays(hf), hf


def _relative_error(ours, ref):
    return float(np.sqrt(((ours - ref) ** 2).mean()) / ref.std())


# ---- the type and its bytes ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", list(EXPECTED_KV))
def test_cache_type_follows_the_dtype_and_reserves_its_bytes(dtype):
    config, weights, _ = _random_llama()
    model = pyllm.Model.from_arrays(config, weights, dtype=dtype, n_ctx=4096)
    assert model.kv_dtype == EXPECTED_KV[dtype]
    element = 4 if EXPECTED_KV[dtype] == "float32" else 2
    plain = spec_from_hf(config, None)  # no kv_type: element_bytes says it
    for batch, capacity in [(1, 1), (2, 300), (5, 4096)]:
        cache = model.new_cache(batch, capacity)
        assert cache.dtype == model.kv_dtype
        assert cache.nbytes == memory.kv_cache_bytes(model.spec, batch, capacity)
        assert cache.nbytes == memory.kv_cache_bytes(plain, batch, capacity, element_bytes=element)
        # 2 layers x 2 KV heads x head_dim 32 per slot, keys and values, plus 5 bytes a slot and 8 a row
        if batch * capacity * 2 * 64 * element < (1 << 21):  # under 2 MB: 64-byte aligned, not rounded
            kv = -(-batch * capacity * 2 * 64 * element // 64) * 64
            assert cache.nbytes == 2 * kv + batch * capacity * 5 + batch * 8, (batch, capacity)
        assert cache.copy().nbytes == cache.nbytes


def test_kv_dtype_argument():
    config, weights, _ = _random_llama()
    for kv in ("float32", "bfloat16", "float16"):
        for dtype in ("float32", "int8"):
            model = pyllm.Model.from_arrays(config, weights, dtype=dtype, kv_dtype=kv)
            assert model.kv_dtype == kv and model.new_cache().dtype == kv
    assert pyllm.Model.from_arrays(config, weights, kv_dtype=np.float32).kv_dtype == "float32"
    for bad in ("float64", "int8", "", 2, "f16"):
        with pytest.raises(ValueError, match="kv_dtype must be one of"):
            pyllm.Model.from_arrays(config, weights, kv_dtype=bad)


def test_from_pretrained_takes_kv_dtype(tmp_path):
    config, _, hf = _random_llama()
    hf.save_pretrained(tmp_path)
    assert pyllm.Model.from_pretrained(tmp_path).kv_dtype == "float32"
    assert pyllm.Model.from_pretrained(tmp_path, dtype="int8").kv_dtype == "float16"
    model = pyllm.Model.from_pretrained(tmp_path, dtype="int8", kv_dtype="bfloat16")
    assert model.kv_dtype == "bfloat16"
    with pytest.raises(ValueError, match="kv_dtype must be one of"):
        pyllm.Model.from_pretrained(tmp_path, kv_dtype="float64")


def test_memory_check_counts_the_16_bit_cache():
    # 2 layers x 2 KV heads x head_dim 32: 1,024 bytes a position in f32 and 512 in f16, + 5 bytes:
    # 700,000 positions need 722 MB in f32 and 362 MB in f16; under a 600 MiB cap (less what the
    # child already holds) only f16 fits.
    config = dict(vocab_size=300, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    results = {}
    for dtype in ("float32", "int8"):
        results[dtype] = run_isolated(f"""
            import numpy as np, pyllm
            from pyllm import memory
            from pyllm.architectures import canonical_shapes, spec_from_hf
            config = {config!r}
            rng = np.random.default_rng(0)
            weights = {{name: (0.05 * rng.standard_normal(shape)).astype(np.float32)
                       for name, shape in canonical_shapes(spec_from_hf(config, None)).items()}}
            model = pyllm.Model.from_arrays(config, weights, dtype={dtype!r}, n_ctx=700_000)
            cache = model.new_cache()
            model([1, 2, 3], cache=cache)
            assert cache.nbytes == memory.kv_cache_bytes(model.spec, 1, 700_000)
        """, env={"PYLLM_MEMORY_LIMIT": "600M"})
    need = {e: memory.kv_cache_bytes(spec_from_hf(config, None), 1, 700_000, element_bytes=e) for e in (2, 4)}
    assert need[4] > 600 * 2**20 > need[2] + 200e6  # the case is what it claims to be
    kind, message = results["float32"]
    assert kind == "MemoryError" and f"700,000 positions needs {memory.format_bytes(need[4])} " in message, message
    assert results["int8"] == (None, ""), results["int8"]


# ---- accuracy on random models, every instruction set ------------------------------------------

# RMS logit error relative to the logits' std, of a float32 model's logits through each cache type
# against transformers (f32 cache: the parity tests' exactness) and against the same model with an
# f32 cache. A 16-bit key or value is off by up to 2^-12 of itself in f16 and 2^-9 in bf16; the
# deliberately sharp random models (gain 1.5) amplify that. Measured on AVX-512: LLaMA f16 6.5e-4,
# bf16 5.9e-3; BLOOM f16 1.4e-4, bf16 1.1e-3. The limits allow about 3x; the floor (1/50 of them)
# proves the cache really is 16-bit.
CACHE_LIMIT = {"float16": 0.002, "bfloat16": 0.02}
F32_CACHE_LIMIT = 2e-6  # the f32 cache against transformers: rounding only


def _cache_errors():
    """{family/kv/path: error} of the float32 model with each cache type against its f32-cache self;
    and the f32 cache against transformers."""
    from llama_reference import reference_logits as llama_logits
    from bloom_reference import reference_logits as bloom_logits
    errors = {}
    ids = np.random.default_rng(1).integers(0, 300, size=(2, 40))
    for family, build, reference in (("llama", _random_llama, llama_logits), ("bloom", _random_bloom, bloom_logits)):
        config, weights, hf = build()
        ref = reference(hf, ids)
        exact = None
        for kv in ("float32", "float16", "bfloat16"):
            model = pyllm.Model.from_arrays(config, weights, kv_dtype=kv)
            cache = model.new_cache(batch_size=2)
            prefill = model(ids, cache=cache)
            cache = model.new_cache(batch_size=2)
            decode = np.concatenate([model(ids[:, :30], cache=cache)] +
                                    [model(ids[:, i:i + 1], cache=cache) for i in range(30, 40)], axis=1)
            if kv == "float32":
                exact = prefill
                errors[f"{family}/float32/transformers"] = _relative_error(prefill, ref)
                errors[f"{family}/float32/decode"] = _relative_error(decode, ref)
                continue
            errors[f"{family}/{kv}/prefill"] = _relative_error(prefill, exact)
            errors[f"{family}/{kv}/decode"] = _relative_error(decode, exact)
    return errors


def _check_cache_errors(errors):
    for key, err in errors.items():
        family, kv, path = key.split("/")
        if kv == "float32":
            assert err <= F32_CACHE_LIMIT, f"{key}: {err:.3g}"
            continue
        limit = CACHE_LIMIT[kv]
        assert limit / 50 <= err <= limit, f"{key}: logit error {err:.3g} x std (limit {limit})"


@pytest.mark.parametrize("isa", ["native", "avx2", "generic"])
def test_16_bit_cache_logits_close_to_f32_cache_on_every_isa(isa):
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    path = child_environment().get("PYTHONPATH", "")  # made absolute: the child runs elsewhere
    env = {"PYTHONPATH": os.pathsep.join(p for p in [tests_dir, path] if p)}
    if isa != "native":
        env["PYLLM_ISA"] = isa
    kind, message = run_isolated(
        "import json, test_kv_cache_dtype as t, pyllm\n"
        f"assert {isa!r} == 'native' or pyllm._core.kernel_isa() in ({isa!r}, 'generic')\n"
        "errors = t._cache_errors()\n"
        "print(json.dumps(errors))\n"
        "t._check_cache_errors(errors)", env=env)
    assert kind is None, f"{kind}: {message}"


# ---- a trained model ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def stories(data_dir):
    from pyllm.llama2c import load_llama2c
    config, weights = load_llama2c(os.path.join(data_dir, "stories260K", "stories260K.bin"))
    tok = pyllm.Tokenizer.from_llama2c(os.path.join(data_dir, "stories260K", "tok512.bin"), 512)
    return config, weights, tok


@pytest.mark.parametrize("kv_dtype", [None, "bfloat16"])
def test_stories_greedy_story_unchanged_in_bfloat16_with_a_16_bit_cache(stories, data_dir, kv_dtype):
    config, weights, tok = stories
    with open(os.path.join(data_dir, "stories260K", "expected_greedy_200steps.txt"), encoding="utf-8") as f:
        expected = f.read()
    model = pyllm.Model.from_arrays(config, weights, dtype="bfloat16", kv_dtype=kv_dtype)
    assert model.kv_dtype == (kv_dtype or "float16")
    out = model.generate(np.array([1]), max_new_tokens=200, eos_token_id=1)
    assert tok.decode(out, skip_special_tokens=True) == expected


# Perplexity of the held text through a 16-bit cache against an f32 cache, same bfloat16 model.
# Measured: f16 -0.03% (prefill) / +0.01% (decode), bf16 +0.04% / +0.15%; the limits allow about 3x
# (bf16's is half the 1% the issue allows bfloat16 as a whole).
PERPLEXITY_DRIFT = {"float16": 0.001, "bfloat16": 0.005}


@pytest.mark.parametrize("kv_dtype", ["float16", "bfloat16"])
def test_stories_perplexity_through_a_16_bit_cache(stories, kv_dtype):
    from test_dtypes import HELD_TEXT, _perplexities
    config, weights, tok = stories
    ids = tok.encode(HELD_TEXT)
    exact = _perplexities(pyllm.Model.from_arrays(config, weights, dtype="bfloat16", kv_dtype="float32"), ids)
    ours = _perplexities(pyllm.Model.from_arrays(config, weights, dtype="bfloat16", kv_dtype=kv_dtype), ids)
    for path, a, b in zip(("prefill", "decode"), ours, exact):
        assert abs(a / b - 1) <= PERPLEXITY_DRIFT[kv_dtype], f"{kv_dtype} {path}: perplexity {a:.5f} vs f32 cache {b:.5f}"
    assert ours != exact  # the cache really is 16-bit


# ---- the cache's operations on a 16-bit cache ----------------------------------------------------

def _model(family, dtype, kv_dtype):
    config, weights, _ = _random_llama() if family == "llama" else _random_bloom()
    model = pyllm.Model.from_arrays(config, weights, dtype=dtype, kv_dtype=kv_dtype)
    assert model.new_cache().dtype == (kv_dtype or "float16")
    return model


@pytest.mark.parametrize("kv_dtype", [None, "bfloat16"])
@pytest.mark.parametrize("family", ["llama", "bloom"])
def test_copy_and_repeat_continue_as_a_fresh_cache(family, kv_dtype):
    model = _model(family, "int8", kv_dtype)
    rng = np.random.default_rng(4)
    prefix, cont = rng.integers(0, 300, size=(1, 13)), rng.integers(0, 300, size=(3, 5))

    def steps(ids, cache):
        """Logits of ids [rows, n] fed a token at a time (decode's GEMV at any row count up to 8:
        a longer call would take the prefill GEMM, whose rounding differs)."""
        return np.concatenate([model(ids[:, i:i + 1], cache=cache) for i in range(ids.shape[1])], axis=1)

    def alone(row):
        cache = model.new_cache()
        model(prefix, cache=cache)
        return steps(cont[row:row + 1], cache)[0]

    cache = model.new_cache()
    model(prefix, cache=cache)
    branch = cache.copy()
    first = steps(cont[0:1], cache)[0]
    second = steps(cont[1:2], branch)[0]  # the copy does not see the original's new tokens
    assert np.array_equal(first, alone(0)) and np.array_equal(second, alone(1))
    assert branch.dtype == cache.dtype and list(branch.lengths) == [18]

    one = model.new_cache()
    model(prefix, cache=one)
    rows = one.repeat(3)
    assert rows.dtype == one.dtype and rows.nbytes == model.new_cache(3).nbytes
    together = steps(cont, rows)
    for row in range(3):
        assert np.array_equal(together[row], alone(row)), row


# A float32 model with a 16-bit cache: its products round the same whatever the row count, so a row
# differs from its run alone only if the cache does (an int8 model's prompt of under 9 tokens
# alone takes the decode GEMV, in the batch the prefill GEMM: another rounding).
@pytest.mark.parametrize("kv_dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("family", ["llama", "bloom"])
def test_left_padded_batch_with_rows_ending_equals_rows_alone(family, kv_dtype):
    from llama_reference import left_padded
    from test_generate_batch import assert_row_equals_single, single_run
    model = _model(family, "float32", kv_dtype)
    lengths = [11, 3, 17, 6]
    ids, mask = left_padded(np.random.default_rng(3), lengths, 300, pad=0)
    prompts = [ids[r][mask[r] == 1] for r in range(len(lengths))]
    free = [single_run(model, p, 24, eos_token_id=[])[0] for p in prompts]
    # End tokens each row meets at a different step: the batch's cache drops rows as they end.
    eos = sorted({int(free[0][3]), int(free[2][10])})
    out = model.generate(ids, attention_mask=mask, max_new_tokens=24, eos_token_id=eos, pad_token_id=7,
                         return_dict_in_generate=True)
    new = out.sequences[:, ids.shape[1]:]
    ended_early = 0
    for r, prompt in enumerate(prompts):
        single_new, top2 = single_run(model, prompt, 24, eos_token_id=eos, pad_token_id=7)
        if assert_row_equals_single(new[r], single_new, top2):
            ended_early += len(single_new) < new.shape[1]
    assert ended_early >= 1, "a row must end early for this test to prove anything"
