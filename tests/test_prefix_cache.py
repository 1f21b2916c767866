"""The prefix cache (pyllm/prefix_cache.py) and KVCache.take: continuing from cached KV gives the
uncached results (bit for bit with batch_invariant=True, to float rounding otherwise), the radix
tree finds the longest cached prefix, the byte bound and LRU eviction hold, keys keep models and
extra keys apart, the off switch, batches where only some requests hit, and failures that leave
the cache consistent. Random LLaMA (grouped-query) and BLOOM (ALiBi) models, one thread."""
import numpy as np
import pytest

import pyllm
from pyllm import _testing, scoring
from pyllm.prefix_cache import PrefixCache
import bloom_reference
from llama_reference import make_config, make_pair
from llm_models import write_llama

VOCAB = 160
# Measured without batch_invariant: the largest relative difference of a log-likelihood between a
# run that starts from cached KV and one that does not was 3.6e-7 (LLaMA) and 5.1e-7 (BLOOM) in
# these tests (float32 sums split at another place); 1e-5 leaves room for other CPUs' kernels.
REL = 1e-5

_models = {}


def model(name, invariant=True):
    key = (name, invariant)
    if key not in _models:
        if name == "bloom":
            _, _models[key] = bloom_reference.make_pair(bloom_reference.make_config(), seed=5, n_threads=1,
                                                        batch_invariant=invariant)
        else:
            seed = {"llama": 5, "other": 6}[name]
            _, _models[key] = make_pair(make_config(num_key_value_heads=2), seed=seed, n_threads=1,
                                        batch_invariant=invariant)
    return _models[key]


def same_bits(a, b):
    a, b = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def tokens(rng, n):
    return rng.integers(3, VOCAB, n).tolist()


# ---- KVCache.take ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["llama", "bloom"])
def test_take_continues_a_left_padded_row_bit_for_bit(name):
    m = model(name)
    rng = np.random.default_rng(0)
    a, b = tokens(rng, 30), tokens(rng, 12)
    full = m([a + b])[0]
    ids = np.zeros((3, 37), np.int64)
    mask = np.zeros((3, 37), np.int64)
    ids[0], mask[0] = tokens(rng, 37), 1
    ids[1, 7:], mask[1, 7:] = a, 1
    ids[2, 20:], mask[2, 20:] = tokens(rng, 17), 1
    cache = m.new_cache(3, 37)
    m(ids, attention_mask=mask, cache=cache)
    for k in (1, 13, 30):
        taken = cache.take(k, row=1, capacity=60)
        assert (taken.batch_size, taken.lengths, taken.used, taken.capacity) == (1, [k], k, 60)
        assert same_bits(m([(a + b)[k:]], cache=taken)[0], full[k:]), k
    assert cache.lengths == [37, 30, 17]  # the source is untouched
    exact = cache.take(5, row=2)
    assert exact.capacity == 5 and exact.nbytes < cache.nbytes
    with pytest.raises(ValueError, match="tokens must be between 1 and the row's 17"):
        cache.take(18, row=2)
    with pytest.raises(ValueError, match="capacity must be between tokens"):
        cache.take(5, row=2, capacity=4)


# ---- the radix tree ---------------------------------------------------------------------------

def longest_common(seq, stored):
    best = 0
    for other in stored:
        n = 0
        while n < min(len(seq), len(other)) and seq[n] == other[n]:
            n += 1
        best = max(best, n)
    return best


def test_the_tree_finds_the_longest_cached_prefix_and_its_kv_is_right():
    """Random sequences over few tokens (many shared prefixes, edges split at every depth): each
    match is the longest common prefix with anything inserted (no eviction here), and the KV it
    hands out continues to the same logits as the whole sequence run at once."""
    m = model("llama")
    rng = np.random.default_rng(1)
    pc = PrefixCache()
    inserted = []
    for step in range(60):
        seq = rng.integers(3, 6, rng.integers(1, 14)).tolist()
        expect = longest_common(seq, inserted)
        assert pc._cached_length(m, seq) == expect
        done, cache = pc._match(m, seq, len(seq) + 2)
        assert done == expect
        if done:
            assert cache.lengths == [done] and cache.capacity == len(seq) + 2
            if done < len(seq):
                assert same_bits(m([seq[done:]], cache=cache)[0], m([seq])[0, done:]), seq
        else:
            assert cache is None
        if rng.random() < 0.7:
            full = m.new_cache(1, len(seq))
            m([seq], cache=full)
            pc._insert(m, seq, full)
            inserted.append(seq)
        pc._check()
    assert pc.hits > 10 and pc.misses > 0
    # A sequence that extends a stored one replaces it (the shorter is redundant).
    assert len(pc) < len(inserted)


def test_byte_bound_and_least_recently_used_eviction():
    m = model("llama")
    rng = np.random.default_rng(2)
    seqs = [tokens(rng, 20) for _ in range(4)]
    caches = []
    for seq in seqs:
        c = m.new_cache(1, 20)
        m([seq], cache=c)
        caches.append(c)
    one = caches[0].take(20).nbytes
    pc = PrefixCache(max_bytes=2 * one + one // 2)  # room for two
    pc._insert(m, seqs[0], caches[0])
    pc._insert(m, seqs[1], caches[1])
    assert len(pc) == 2 and pc.nbytes == 2 * one
    assert pc._match(m, seqs[0], 20)[0] == 20  # seqs[0] is now the most recent
    pc._insert(m, seqs[2], caches[2])        # evicts seqs[1], the least recently used
    pc._check()
    assert [pc._cached_length(m, s) for s in seqs[:3]] == [20, 0, 20]
    assert pc.nbytes <= pc.max_bytes
    # Too big alone: not kept, nothing else evicted.
    tiny = PrefixCache(max_bytes=one - 1)
    tiny._insert(m, seqs[3], caches[3])
    assert len(tiny) == 0 and tiny.nbytes == 0
    pc.clear()
    assert len(pc) == 0 and pc.nbytes == 0
    pc._check()
    # A stored sequence that a new one extends is dropped (its tokens are in the new one); one the
    # cache already holds whole is not stored again.
    pc._insert(m, seqs[0][:10], caches[0])
    pc._insert(m, seqs[0], caches[0])
    pc._insert(m, seqs[0][:15], caches[0])
    assert len(pc) == 1 and pc.nbytes == one
    pc._check()


def test_keys_keep_models_and_extra_keys_apart():
    llama, other, bloom = model("llama"), model("other"), model("bloom")
    seq = list(range(3, 23))
    pc = PrefixCache()
    c = llama.new_cache(1, 20)
    llama([seq], cache=c)
    pc._insert(llama, seq, c)
    assert pc._cached_length(llama, seq) == 20
    assert pc._cached_length(other, seq) == 0   # same shapes, other weights
    assert pc._cached_length(bloom, seq) == 0
    assert pc._cached_length(model("llama", invariant=False), seq) == 0
    assert pc._cached_length(llama, seq, extra_key=("steer", 3)) == 0  # e.g. an intervention's key
    pc._insert(llama, seq, c, extra_key=("steer", 3))
    assert pc._cached_length(llama, seq, extra_key=("steer", 3)) == 20
    assert pc._cached_length(llama, seq, extra_key=("steer", 4)) == 0
    assert len(pc) == 2


# ---- scoring through the cache ---------------------------------------------------------------

def few_shot_requests(rng, questions=5, choices=4, shots=40):
    """lm-eval's shape: a shared few-shot context, then a question, then each choice."""
    shared = [1] + tokens(rng, shots)
    requests = []
    for _ in range(questions):
        context = shared + tokens(rng, int(rng.integers(3, 9)))
        requests.extend((context, tokens(rng, int(rng.integers(1, 4)))) for _ in range(choices))
    return requests


def distinct_requests(rng, count, prefix=None):
    """Requests whose contexts are all different; those built on prefix share it."""
    out = []
    for i in range(count):
        head = prefix if prefix is not None and i % 2 == 0 else [1]
        out.append((head + tokens(rng, int(rng.integers(2, 12))), tokens(rng, int(rng.integers(1, 4)))))
    return out


@pytest.mark.parametrize("name", ["llama", "bloom"])
def test_cached_scores_equal_uncached_bit_for_bit_with_batch_invariant(name):
    m = model(name)
    rng = np.random.default_rng(3)
    pc = PrefixCache()
    reuse = scoring.Reuse(pc)
    shots = few_shot_requests(rng)
    prefix = shots[0][0][:30]
    mixed = distinct_requests(rng, 9, prefix=prefix)
    for requests in (shots, shots, mixed, few_shot_requests(rng)):
        assert scoring._loglikelihood(m, requests, batch_size=4, reuse=reuse) == \
            scoring.loglikelihood(m, requests, batch_size=4)  # the floats themselves, bit for bit
        pc._check()
    assert pc.hits > 0 and pc.tokens_reused > 0
    # Called again, every context[:-1] comes from the cache: only what follows it runs.
    before = _testing.decoder_tokens_run()
    scoring._loglikelihood(m, shots, batch_size=4, reuse=reuse)
    warm = _testing.decoder_tokens_run() - before
    before = _testing.decoder_tokens_run()
    scoring.loglikelihood(m, shots, batch_size=4)
    cold = _testing.decoder_tokens_run() - before
    assert cold - warm == sum(len(ctx) - 1 for ctx in {tuple(ctx) for ctx, _ in shots})


def test_batches_with_mixed_hits_compute_only_what_is_not_cached():
    """Distinct contexts in one batch: those starting with a cached prefix of >= Reuse.MIN_SINGLE
    tokens run alone from it, the rest as one batch; the scores are the uncached ones."""
    m = model("llama")
    rng = np.random.default_rng(4)
    prefix = [1] + tokens(rng, 40)
    pc = PrefixCache()
    reuse = scoring.Reuse(pc)
    c = m.new_cache(1, len(prefix))
    m([prefix], cache=c)
    pc._insert(m, prefix, c)
    requests = distinct_requests(rng, 10, prefix=prefix)
    cold = scoring.loglikelihood(m, requests, batch_size=8)
    before = _testing.decoder_tokens_run()
    assert scoring._loglikelihood(m, requests, batch_size=8, reuse=reuse) == cold
    computed = _testing.decoder_tokens_run() - before
    hits = [r for r in requests if r[0][:len(prefix)] == prefix]
    misses = [r for r in requests if r[0][:len(prefix)] != prefix]
    assert len(hits) == 5 and len(misses) == 5
    width = max(len(ctx) + len(cont) - 1 for ctx, cont in misses)  # one left-padded batch
    expect = sum(len(ctx) + len(cont) - 1 - len(prefix) for ctx, cont in hits) + len(misses) * width
    assert computed == expect
    pc._check()
    # Every request's tokens are now cached: a second call only feeds each last context token on.
    assert all(pc._cached_length(m, (ctx + cont)[:-1]) == len(ctx) + len(cont) - 1 for ctx, cont in requests)


@pytest.mark.parametrize("name", ["llama", "bloom"])
def test_cached_scores_without_batch_invariant_within_the_stated_tolerance(name):
    m = model(name, invariant=False)
    rng = np.random.default_rng(5)
    reuse = scoring.Reuse(PrefixCache())
    worst = 0.0
    for requests in (few_shot_requests(rng), few_shot_requests(rng), distinct_requests(rng, 8, [1] + tokens(rng, 30))):
        scoring._loglikelihood(m, requests, batch_size=4, reuse=reuse)
        cold = scoring.loglikelihood(m, requests, batch_size=4)
        warm = scoring._loglikelihood(m, requests, batch_size=4, reuse=reuse)
        for (a, ga), (b, gb) in zip(cold, warm):
            worst = max(worst, abs(a - b) / max(abs(a), 1e-6))
            assert ga == gb
    assert worst <= REL, worst


def test_a_failure_leaves_the_cache_consistent(monkeypatch):
    """A forward call that fails (here the 3rd) and a copy that runs out of memory: the cache is
    consistent afterwards and the next call gives the uncached scores."""
    m = model("llama")
    rng = np.random.default_rng(6)
    pc = PrefixCache()
    reuse = scoring.Reuse(pc)
    requests = few_shot_requests(rng)
    cold = scoring.loglikelihood(m, requests, batch_size=4)
    calls = {"n": 0}
    real_call = type(m).__call__

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected")
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(type(m), "__call__", failing)
    with pytest.raises(RuntimeError, match="injected"):
        scoring._loglikelihood(m, requests, batch_size=4, reuse=reuse)
    monkeypatch.undo()
    pc._check()
    assert 0 < len(pc)
    stored = len(pc)
    # Out of memory while a prefix is copied into the cache.
    seq = tokens(rng, 25)
    c = m.new_cache(1, 25)
    m([seq], cache=c)
    _testing.fail_after("alloc", 1)
    try:
        with pytest.raises(MemoryError):
            pc._insert(m, seq, c)
    finally:
        _testing.clear_faults()
    pc._check()
    assert len(pc) == stored and pc._cached_length(m, seq) == 0
    assert scoring._loglikelihood(m, requests, batch_size=4, reuse=reuse) == cold
    pc._check()


# ---- LLM and the lm-eval backend ---------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, data_dir):
    return write_llama(tmp_path_factory.mktemp("prefix_llm"), data_dir)


CONTEXT = ("Question: what is two plus two? Answer: four. Question: what colour is the sky? Answer: blue. "
           "Question: what do cows drink? Answer: water. Question: where is Paris? Answer:")
PAIRS = [(CONTEXT, " in France"), (CONTEXT, " in Spain"), (CONTEXT + " in France. Question: and Rome?", " Italy"),
         ("Another context entirely", " here")]


def test_llm_prefix_cache_on_off_and_shared(llama_dir):
    off = pyllm.LLM(llama_dir, n_threads=1, batch_invariant=True, prefix_cache=False)
    assert off.prefix_cache is None
    shared = PrefixCache(max_bytes=64 << 20)
    on = pyllm.LLM(llama_dir, n_threads=1, batch_invariant=True, prefix_cache=shared)
    assert on.prefix_cache is shared
    assert pyllm.LLM(llama_dir, n_threads=1, prefix_cache=12345).prefix_cache.max_bytes == 12345
    default = pyllm.LLM(llama_dir, n_threads=1)
    assert default.prefix_cache.max_bytes == pyllm.prefix_cache.DEFAULT_MAX_BYTES
    expect = off.loglikelihood(PAIRS)
    runs = []
    for llm in (off, off, on, on):
        before = _testing.decoder_tokens_run()
        assert llm.loglikelihood(PAIRS) == expect
        runs.append(_testing.decoder_tokens_run() - before)
    assert runs[0] == runs[1] == runs[2]  # off computes everything every time; on, the first time too
    assert runs[3] < runs[2] // 4
    assert on.loglikelihood_rolling([CONTEXT, "Another"]) == off.loglikelihood_rolling([CONTEXT, "Another"])
    assert len(shared) > 0
    on.close()
    assert len(shared) == 0  # a closed model's prefixes are dropped from a shared cache
    shared._check()
    for llm in (off, default):
        llm.close()


def test_lm_eval_backend_prefix_cache_argument_and_greedy_generation(llama_dir):
    from lm_eval.api.instance import Instance
    import pyllm.lm_eval

    def backend(**kw):
        return pyllm.lm_eval.PyllmLM(llama_dir, n_threads=1, max_length=256, batch_invariant=True, **kw)

    assert backend(prefix_cache="false").prefix_cache is None
    assert backend(prefix_cache="1000000").prefix_cache.max_bytes == 1000000
    with pytest.raises(ValueError, match="prefix_cache must be True, False, None, a positive number of bytes"):
        backend(prefix_cache="maybe")
    on, off = backend(), backend(prefix_cache=False)
    gen = [Instance("generate_until", None, (CONTEXT + q, {"until": ["\n"], "max_gen_toks": 6}), i)
           for i, q in enumerate(["", " and", " or"])]
    pairs = [Instance("loglikelihood", None, pair, i) for i, pair in enumerate(PAIRS)]
    expect_gen = off.generate_until(gen, disable_tqdm=True)
    expect_ll = off.loglikelihood(pairs, disable_tqdm=True)
    before = _testing.decoder_tokens_run()
    assert on.generate_until(gen, disable_tqdm=True) == expect_gen
    assert on.loglikelihood(pairs, disable_tqdm=True) == expect_ll
    warm = _testing.decoder_tokens_run() - before
    before = _testing.decoder_tokens_run()
    off.generate_until(gen, disable_tqdm=True)
    off.loglikelihood(pairs, disable_tqdm=True)
    cold = _testing.decoder_tokens_run() - before
    assert warm < cold * 2 // 3, (warm, cold)
    on.prefix_cache._check()


def test_generate_starts_from_the_cached_prompt(llama_dir):
    """LLM.generate / chat reuse the cached start of a prompt (bit for bit with batch_invariant):
    the same texts and log-probabilities as with the cache off, fewer tokens computed the second
    time; batches and beams run without it; a cache that does not fit is refused by name."""
    on = pyllm.LLM(llama_dir, n_threads=1, batch_invariant=True)
    off = pyllm.LLM(llama_dir, n_threads=1, batch_invariant=True, prefix_cache=False)
    options = {"max_new_tokens": 8, "do_sample": False, "output_logprobs": True}
    prompts = [CONTEXT, CONTEXT + " Answer: Rome.", CONTEXT]
    computed = []
    for prompt in prompts:
        ids, mask = on._encode_prompts([prompt])
        cfg, stops, hooks, eos = on._prepare(options)
        before = _testing.decoder_tokens_run()
        ours = on._run(ids, mask, cfg, stops, hooks, eos)
        computed.append(_testing.decoder_tokens_run() - before)
        theirs = off._run(ids, mask, *off._prepare(options))
        assert np.array_equal(ours.sequences, theirs.sequences)
        assert same_bits(ours.logprobs, theirs.logprobs)
    length = len(on.tokenizer.encode(CONTEXT))
    assert computed[2] < computed[0] - (length - 3)  # the whole prompt but its last token was cached
    assert on.generate(CONTEXT, max_new_tokens=5, do_sample=True, seed=3) == \
        off.generate(CONTEXT, max_new_tokens=5, do_sample=True, seed=3)
    assert on.generate([CONTEXT, "Other"], max_new_tokens=4) == off.generate([CONTEXT, "Other"], max_new_tokens=4)
    assert on.generate(CONTEXT, max_new_tokens=4, num_beams=2) == off.generate(CONTEXT, max_new_tokens=4, num_beams=2)
    model = on.model
    ids = np.array(on.tokenizer.encode(CONTEXT))
    cfg = pyllm.generation.resolve(model, None, {"max_new_tokens": 2})
    full = model.new_cache(1, len(ids))
    model([ids], cache=full)
    with pytest.raises(ValueError, match="cache must be one row holding fewer tokens than the prompt"):
        model.generate_with(ids, cfg, cache=full)
    with pytest.raises(ValueError, match="cache must belong to this model"):
        model.generate_with(ids, cfg, cache=off.model.new_cache(1, 4))
    on.prefix_cache._check()
    on.close()
    off.close()


def test_every_failing_call_leaves_the_cached_path_consistent(llama_dir):
    """tests/test_fault_injection.py's sweep over the cached path: each allocation or oneDNN call
    of a generate and a loglikelihood made to fail in turn (from an empty cache) raises
    MemoryError, leaves the cache consistent, and the same call then gives the clean results
    bit for bit (batch_invariant), whatever the failed run left cached."""
    from test_fault_injection import sweep
    with pyllm.LLM(llama_dir, n_threads=1, batch_invariant=True) as llm:
        def action(_):
            out = (llm.generate(CONTEXT, max_new_tokens=4), llm.loglikelihood(PAIRS, batch_size=2))
            llm.prefix_cache._check()
            return out

        calls = sweep("any", llm.prefix_cache.clear, action, stride=7)
        assert calls > 20
        assert len(llm.prefix_cache) > 0
