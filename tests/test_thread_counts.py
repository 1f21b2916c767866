"""Decode products give the same bits whatever the thread count.

The decode products share their weight rows out as the threads go (csrc/core/row_claims.h): each
thread takes its own share from the front, a chunk at a time, and a thread that is done takes
chunks from the back of the others'. Here a claim is 4 rows (_testing.set_claim_rows) and there
are more threads than cores (up to 7 on 2), so threads lose their core mid-product and the
stealing runs all the time; every row must still be computed once, by whichever thread, with the
same arithmetic: the result must equal the one-thread result bit for bit. Row counts that are not
a multiple of the kernels' unit (4), and a k that is not a multiple of 32 (padded blocks), are
included. An output row no thread computed would hold what the buffer held before: a NaN-filled
array of the same size is freed just before each call, so that it shows."""
import numpy as np
import pytest

import pyllm
from pyllm import _core
from pyllm._testing import linear, set_claim_rows

TYPES = ["float32", "bfloat16", "q8_0", "q4_0", "q4_1"]


@pytest.fixture
def restore_threads():
    before = _core.get_num_threads()
    set_claim_rows(4)
    yield
    set_claim_rows(0)
    _core.set_num_threads(before)


def product(w, name, x, bias):
    poison = np.full((x.shape[0], w.shape[0]), np.nan, np.float32)
    del poison  # its block is what the next array of this size is likely to get
    return np.asarray(linear(w, name, x, bias))


@pytest.mark.parametrize("n,k", [(3001, 2048), (1037, 1000), (130, 4096)])
@pytest.mark.parametrize("m", [1, 3, 8])
def test_products_equal_across_thread_counts(restore_threads, n, k, m):
    rng = np.random.default_rng(n * 31 + k + m)
    w = rng.standard_normal((n, k), dtype=np.float32) * np.float32(0.05)
    x = rng.standard_normal((m, k), dtype=np.float32)
    bias = rng.standard_normal(n, dtype=np.float32)
    for name in TYPES:
        _core.set_num_threads(1)
        ref = product(w, name, x, bias)
        assert ref.shape == (m, n) and np.all(np.isfinite(ref))
        for threads in (2, 3, 5, 7):
            _core.set_num_threads(threads)
            for _ in range(3):  # a different interleaving each time
                got = product(w, name, x, bias)
                assert np.array_equal(got, ref), f"{name}, {threads} threads: differs from one thread"


def test_model_decode_equal_across_thread_counts(restore_threads):
    """A whole decode, whose fused q/k/v and gate/up products share one claim of rows laid end to
    end: the same tokens and last logits with 1, 2 and 5 threads. Prompts of 4 tokens, so that the
    prefill (2 x 4 rows) runs on the decode kernels too: longer ones go to oneDNN's GEMM, whose f32
    results on an AVX2 host change with the thread count (bit for bit only with batch_invariant)."""
    config = {"model_type": "llama", "vocab_size": 512, "hidden_size": 256, "intermediate_size": 688,
              "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
              "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "tie_word_embeddings": False}
    rng = np.random.default_rng(5)
    d, ff, v, kv = 256, 688, 512, 64
    weights = {"model.embed_tokens.weight": rng.standard_normal((v, d), dtype=np.float32) * 0.05,
               "model.norm.weight": np.ones(d, np.float32),
               "lm_head.weight": rng.standard_normal((v, d), dtype=np.float32) * 0.05}
    for i in range(2):
        p = f"model.layers.{i}."
        shapes = {"self_attn.q_proj": (d, d), "self_attn.k_proj": (kv, d), "self_attn.v_proj": (kv, d),
                  "self_attn.o_proj": (d, d), "mlp.gate_proj": (ff, d), "mlp.up_proj": (ff, d),
                  "mlp.down_proj": (d, ff)}
        for name, shape in shapes.items():
            weights[p + name + ".weight"] = rng.standard_normal(shape, dtype=np.float32) * 0.05
        weights[p + "input_layernorm.weight"] = np.ones(d, np.float32)
        weights[p + "post_attention_layernorm.weight"] = np.ones(d, np.float32)
    ids = rng.integers(0, v, size=(2, 4))
    for dtype in ("float32", "bfloat16", "int8", "int4"):
        results = []
        for threads in (1, 2, 5):
            model = pyllm.Model.from_arrays(config, weights, dtype=dtype, n_threads=threads)
            out = model.generate(ids, max_new_tokens=12, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True)
            results.append((np.asarray(out.sequences), np.asarray(out.scores[-1])))
            model.close()
        for seq, last in results[1:]:
            assert np.array_equal(seq, results[0][0]), dtype
            assert np.array_equal(last, results[0][1]), dtype
