"""The worker pool of the forward pass (csrc/core/pool.h).

Its results never depend on which thread computed what (test_thread_counts.py holds them bit for
bit against one thread); here: that the workers really take part, that a forked child (as
multiprocessing's fork start method makes) gets a pool of its own instead of hanging on the
parent's threads, and that concurrent callers (one owns the workers, the others run alone) each
get their own results."""
import multiprocessing
import threading
import time

import numpy as np
import pytest

import pyllm
from pyllm import _core
from pyllm._testing import pool_stats, set_pool_sizing

# Big enough (6.5M multiply-adds a token) for a decode to run on more than one thread at all
# (csrc/models/decoder.c, threads_for).
CONFIG = {"model_type": "llama", "vocab_size": 2048, "hidden_size": 512, "intermediate_size": 1376,
          "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
          "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
          "tie_word_embeddings": False}


def weights(seed):
    rng = np.random.default_rng(seed)
    d, ff, v = CONFIG["hidden_size"], CONFIG["intermediate_size"], CONFIG["vocab_size"]
    kv = CONFIG["num_key_value_heads"] * d // CONFIG["num_attention_heads"]

    def matrix(rows, cols):
        return rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(1.5 / cols ** 0.5)

    w = {"model.embed_tokens.weight": matrix(v, d) * 10, "model.norm.weight": np.ones(d, np.float32),
         "lm_head.weight": matrix(v, d)}
    for i in range(CONFIG["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w.update({p + "self_attn.q_proj.weight": matrix(d, d), p + "self_attn.k_proj.weight": matrix(kv, d),
                  p + "self_attn.v_proj.weight": matrix(kv, d), p + "self_attn.o_proj.weight": matrix(d, d),
                  p + "mlp.gate_proj.weight": matrix(ff, d), p + "mlp.up_proj.weight": matrix(ff, d),
                  p + "mlp.down_proj.weight": matrix(d, ff),
                  p + "input_layernorm.weight": np.ones(d, np.float32),
                  p + "post_attention_layernorm.weight": np.ones(d, np.float32)})
    return w


PROMPT = np.array([1, 17, 300, 42, 9, 250, 3, 77], np.int64)


def greedy(model, new=24):
    return np.asarray(model.generate(PROMPT, max_new_tokens=new, eos_token_id=[]))


@pytest.fixture
def threads_restored():
    """Also turns the busy-neighbour sizing off: on a loaded host it would rightly run the jobs
    without workers for a while, and the counts below would then depend on the load."""
    before = _core.get_num_threads()
    set_pool_sizing(False)
    yield
    set_pool_sizing(True)
    _core.set_num_threads(before)


def test_workers_take_part_in_a_two_thread_decode(threads_restored):
    model = pyllm.Model.from_arrays(CONFIG, weights(0), n_threads=2)
    before = pool_stats()
    greedy(model)
    after = pool_stats()
    assert after["workers"] >= 1
    jobs, entries = after["jobs"] - before["jobs"], after["entries"] - before["entries"]
    # Every step publishes several jobs (the products, attention); a worker that never came would
    # leave the caller doing all the work with the same results, which only these counters show.
    assert jobs >= 24, after
    assert entries > 0, after


def test_one_thread_publishes_nothing(threads_restored):
    model = pyllm.Model.from_arrays(CONFIG, weights(0), n_threads=1)
    before = pool_stats()
    greedy(model, new=8)
    assert pool_stats()["jobs"] == before["jobs"]


def test_workers_left_out_sleep_on(threads_restored):
    """After a 5-thread call, 2-thread calls use worker 1 only: workers 2-4 must sleep through
    their jobs, not be woken for each (on 2 cores they would take the time of the two that work)."""
    model = pyllm.Model.from_arrays(CONFIG, weights(0), n_threads=5)
    want = greedy(model)
    assert pool_stats()["workers"] >= 4
    deadline = time.monotonic() + 10
    before = pool_stats()
    while time.monotonic() < deadline:  # the workers go to sleep within about 50 us of the call
        time.sleep(0.05)
        now = pool_stats()
        if now["wakeups"] == before["wakeups"]:
            break
        before = now
    model.n_threads = 2
    assert np.array_equal(greedy(model), want)
    after = pool_stats()
    assert after["jobs"] - before["jobs"] >= 24
    assert after["wakeups"][1:4] == before["wakeups"][1:4], (before, after)


def _child_decode(queue):
    set_pool_sizing(False)  # the child's own pool
    model = pyllm.Model.from_arrays(CONFIG, weights(0), n_threads=2)
    before = pool_stats()
    tokens = greedy(model)
    queue.put((tokens.tolist(), pool_stats()["entries"] - before["entries"]))


def test_forked_child_gets_its_own_pool(threads_restored):
    """The parent's workers do not exist in a fork: the child must start its own, not wait for
    the parent's (which would hang it) nor run on the parent's state."""
    model = pyllm.Model.from_arrays(CONFIG, weights(0), n_threads=2)
    want = greedy(model)  # the parent's pool is up and has run jobs
    assert pool_stats()["workers"] >= 1
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_decode, args=(queue,))
    child.start()
    got, entries = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert got == want.tolist()
    assert entries > 0  # the child's own workers took part
    assert np.array_equal(greedy(model), want)  # and the parent's pool still serves the parent


def test_concurrent_callers_each_get_their_results(threads_restored):
    """Four Python threads decode at once with two threads each: one call owns the workers at a
    time and the others run their jobs alone; every result is the one a lone call gives."""
    models = [pyllm.Model.from_arrays(CONFIG, weights(seed), n_threads=2) for seed in range(4)]
    want = [greedy(m) for m in models]
    got = [None] * len(models)
    errors = []

    def run(i):
        try:
            for _ in range(3):
                out = greedy(models[i])
                if got[i] is not None and not np.array_equal(out, got[i]):
                    raise AssertionError(f"model {i}: results changed between calls")
                got[i] = out
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(len(models))]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in workers)
    assert errors == []
    for i in range(len(models)):
        assert np.array_equal(got[i], want[i]), f"model {i}"
