"""Bad configs, bad weights and bad inputs raise clear Python exceptions (never crash); the
accepted input forms all give the same logits; calls from several threads are serialised."""
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import pyllm
import bloom_reference
from conftest import child_environment
from llama_reference import make_config, make_pair, reference_model, state_arrays

TOL = 1e-4


@pytest.fixture(scope="module")
def small():
    config = make_config(num_key_value_heads=2, max_position_embeddings=64)
    hf, model = make_pair(config, seed=2)
    return config, state_arrays(hf), model


@pytest.fixture(scope="module")
def small_bloom():
    """A BLOOM of the same vocabulary (160), so every case below means the same for both."""
    config = bloom_reference.make_config(n_layer=1, num_attention_heads=3, seq_length=64)
    hf, model = bloom_reference.make_pair(config, seed=2)
    return config, bloom_reference.state_arrays(hf), model


def test_integer_dtypes_lists_and_noncontiguous_inputs_agree(small):
    _, _, model = small
    ids = np.random.default_rng(0).integers(0, 160, size=(2, 16))
    expected = model(ids)
    for form in (ids.astype(np.int32), ids.astype(np.uint8), ids.astype(np.int16), ids.astype(np.uint64),
                 ids.tolist(), np.asfortranarray(ids), np.repeat(ids, 2, axis=1)[:, ::2]):
        np.testing.assert_array_equal(model(form), expected)
    mask = np.ones((2, 16), dtype=bool)
    np.testing.assert_array_equal(model(ids, attention_mask=mask), expected)
    np.testing.assert_array_equal(model(ids, attention_mask=mask.astype(np.int64).tolist()), expected)


@pytest.mark.parametrize("bad, exc, match", [
    (np.array([[1.0, 2.0]]), TypeError, "integers"),
    ([[0.5, 1]], TypeError, "integers"),
    (np.array([[True, False]]), TypeError, "integers"),
    (np.zeros((1, 2, 3), dtype=np.int64), ValueError, "1-D"),
    (np.int64(5), ValueError, "1-D"),
    ([], ValueError, "empty"),
    (np.zeros((2, 0), dtype=np.int64), ValueError, "empty"),
    ([[1, 2], [3]], ValueError, "rectangular"),
    ([[1, -1]], ValueError, "-1"),
    ([[1, 160]], ValueError, "160"),
    ([[1, 2 ** 40]], ValueError, "vocabulary"),
    ("hello", TypeError, "integers"),
])
@pytest.mark.parametrize("arch", ["llama", "bloom"])
def test_bad_input_ids(small, small_bloom, arch, bad, exc, match):
    """Input checks are the architecture's shared front door: both must give the same errors."""
    _, _, model = small if arch == "llama" else small_bloom
    with pytest.raises(exc, match=match):
        model(bad)
    with pytest.raises(exc, match=match):
        model.generate(bad, max_new_tokens=2)


def test_bad_attention_masks(small):
    _, _, model = small
    ids = [[1, 2, 3]]
    with pytest.raises(ValueError, match="shape"):
        model(ids, attention_mask=[[1, 1]])
    with pytest.raises(ValueError, match="0 and 1"):
        model(ids, attention_mask=[[1, 2, 1]])
    with pytest.raises(TypeError, match="attention_mask"):
        model(ids, attention_mask=[[1.0, 1.0, 1.0]])


def test_context_length(small):
    config, weights, model = small
    assert model.n_ctx == 64
    model(np.zeros((1, 64), dtype=np.int64))
    with pytest.raises(ValueError, match="n_ctx"):
        model(np.zeros((1, 65), dtype=np.int64))
    with pytest.raises(ValueError, match="n_ctx"):
        model.generate(np.zeros((1, 60), dtype=np.int64), max_new_tokens=5)
    cache = model.new_cache()
    model(np.zeros((1, 60), dtype=np.int64), cache=cache)
    with pytest.raises(ValueError, match="n_ctx"):
        model(np.zeros((1, 5), dtype=np.int64), cache=cache)
    model(np.zeros((1, 4), dtype=np.int64), cache=cache)  # the failed call left the cache intact
    assert cache.used == 64
    # n_ctx may exceed the training length; positions past it still match transformers.
    long = pyllm.Model.from_arrays(config, weights, n_ctx=100)
    ids = np.random.default_rng(3).integers(0, 160, size=(1, 100))
    import torch
    with torch.no_grad():
        ref = reference_model(config, seed=2)(torch.as_tensor(ids)).logits.numpy()
    assert float(np.abs(long(ids) - ref).max()) <= TOL


def test_cache_batch_mismatch(small):
    _, _, model = small
    cache = model.new_cache(batch_size=2)
    with pytest.raises(ValueError, match="rows"):
        model([[1, 2, 3]], cache=cache)
    with pytest.raises(TypeError, match="new_cache"):
        model([[1, 2, 3]], cache={"not": "a cache"})
    config, weights, _ = small
    other = pyllm.Model.from_arrays(config, weights)
    with pytest.raises(ValueError, match="another model"):
        model([[1, 2, 3]], cache=other.new_cache())
    with pytest.raises(ValueError):
        model.new_cache(batch_size=0)
    with pytest.raises(ValueError):
        model.new_cache(capacity=65)


@pytest.mark.parametrize("change, exc, match", [
    (lambda c: c.pop("hidden_size"), ValueError, "hidden_size"),
    (lambda c: c.pop("vocab_size"), ValueError, "vocab_size"),
    (lambda c: c.update(model_type="bloom"), ValueError, "LLaMA"),
    (lambda c: c.update(architectures=["MistralForCausalLM"]), ValueError, "LLaMA"),
    (lambda c: c.update(num_key_value_heads=3), ValueError, "num_key_value_heads"),
    (lambda c: c.update(num_hidden_layers=0), ValueError, "num_hidden_layers"),
    (lambda c: c.update(hidden_size=2.5), ValueError, "hidden_size"),
    (lambda c: c.update(rope_scaling={"type": "yarn", "factor": 2.0}), ValueError, "rope type"),
    (lambda c: c.update(rope_scaling={"type": "linear"}), ValueError, "factor"),
    (lambda c: c.update(rope_parameters={"rope_type": "llama3", "factor": 8.0}), ValueError, "low_freq_factor"),
    (lambda c: c.update(rope_theta=-1.0), ValueError, "rope_theta"),
])
def test_bad_configs(small, change, exc, match):
    config, weights, _ = small
    config = dict(config)
    change(config)
    with pytest.raises(exc, match=match):
        pyllm.Model.from_arrays(config, weights)


def test_bad_weights_name_the_tensor(small):
    config, weights, _ = small
    missing = dict(weights)
    del missing["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
        pyllm.Model.from_arrays(config, missing)
    shaped = dict(weights, **{"model.layers.0.self_attn.k_proj.weight": np.zeros((64, 64), np.float32)})
    with pytest.raises(ValueError, match=r"k_proj\.weight.*\(32, 64\)"):
        pyllm.Model.from_arrays(config, shaped)
    typed = dict(weights, **{"model.norm.weight": np.ones(64, dtype=np.int32)})
    with pytest.raises(TypeError, match=r"model\.norm\.weight.*int32"):
        pyllm.Model.from_arrays(config, typed)
    no_bias = dict(config, attention_bias=True)
    with pytest.raises(ValueError, match=r"q_proj\.bias"):
        pyllm.Model.from_arrays(no_bias, weights)
    untied = dict(weights)
    del untied["lm_head.weight"]
    with pytest.raises(ValueError, match="lm_head"):
        pyllm.Model.from_arrays(config, untied)
    with pytest.raises(ValueError, match="dtype"):
        pyllm.Model.from_arrays(config, weights, dtype="int3")
    with pytest.raises(ValueError, match="n_threads"):
        pyllm.Model.from_arrays(config, weights, n_threads=0)


def test_config_defaults_match_transformers(small):
    """Optional keys left out (num_key_value_heads, head_dim, rope_theta, rms_norm_eps, ...) take
    transformers' defaults."""
    config = {"vocab_size": 160, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
              "num_attention_heads": 4}
    hf = reference_model(config, seed=4)
    model = pyllm.Model.from_arrays(config, state_arrays(hf))
    assert model.n_ctx == hf.config.max_position_embeddings
    ids = np.random.default_rng(1).integers(0, 160, size=(1, 40))
    import torch
    with torch.no_grad():
        ref = hf(torch.as_tensor(ids)).logits.numpy()
    assert float(np.abs(model(ids) - ref).max()) <= TOL


def test_threads_share_one_model_safely(small):
    _, _, model = small
    rng = np.random.default_rng(6)
    inputs = [rng.integers(0, 160, size=(1, 48)) for _ in range(4)]
    expected = [model(ids) for ids in inputs]
    gens = [model.generate(ids[:, :8], max_new_tokens=16, eos_token_id=[]) for ids in inputs]
    failures = []

    def work(i):
        for _ in range(5):
            if not np.array_equal(model(inputs[i]), expected[i]):
                failures.append(("forward", i))
            if not np.array_equal(model.generate(inputs[i][:, :8], max_new_tokens=16, eos_token_id=[]), gens[i]):
                failures.append(("generate", i))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_thread_count_setting(small):
    config, weights, model = small
    one = pyllm.Model.from_arrays(config, weights, n_threads=1)
    assert one.n_threads == 1
    ids = np.random.default_rng(2).integers(0, 160, size=(2, 30))
    assert float(np.abs(one(ids) - model(ids)).max()) <= TOL
    with pytest.raises(ValueError):
        one.n_threads = 0


def test_crash_prone_inputs_in_a_fresh_process(tmp_path):
    """Malformed arrays straight into the C binding raise instead of crashing (run in a child
    interpreter so that a crash fails this test rather than the whole run)."""
    code = textwrap.dedent("""
        import numpy as np, pyllm
        c = {"vocab_size": 10, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
             "num_attention_heads": 2}
        shapes = pyllm.architectures.canonical_shapes(pyllm.architectures.spec_from_hf(c, None))
        m = pyllm.Model.from_arrays(c, {k: np.ones(s, np.float32) for k, s in shapes.items()})
        d = m._decoder
        cache = m.new_cache()
        def expect(exc, fn, *args):
            try:
                fn(*args)
            except exc as e:
                print("ok", type(e).__name__, e)
            else:
                raise AssertionError(f"no {exc.__name__} from {args!r}")
        expect(ValueError, d.forward, cache, np.array([[1, 99]], dtype=np.int32))
        expect(TypeError, d.forward, cache, np.array([[1.5]]))
        expect(ValueError, d.forward, cache, np.zeros((1, 0), dtype=np.int32))
        expect(ValueError, d.forward, cache, [[1, 2]], [[1, 1, 1]])
        expect(ValueError, d.forward, cache, np.zeros((1, 2, 2), dtype=np.int32))
        weights = {k: np.ones(s, np.float32) for k, s in shapes.items()}
        weights["model.norm.weight"] = np.ones(3, np.float32)
        expect(ValueError, pyllm._core.Decoder, pyllm.architectures.spec_from_hf(c, None), weights)
        weights["model.norm.weight"] = np.ones((8, 1), np.float64)
        expect(TypeError, pyllm._core.Decoder, pyllm.architectures.spec_from_hf(c, None), weights)
        del weights["model.norm.weight"]
        expect(KeyError, pyllm._core.Decoder, pyllm.architectures.spec_from_hf(c, None), weights)
        print("done")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=child_environment(), cwd=tmp_path)
    assert proc.returncode == 0, f"child failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip().endswith("done")


def test_bad_n_ctx(small):
    config, weights, _ = small
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="n_ctx"):
            pyllm.Model.from_arrays(config, weights, n_ctx=bad)
