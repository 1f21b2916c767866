"""Scoring against transformers on random LLaMA models (float32): logits_to_keep, hidden states,
the KV cache as an object (copy, repeat, shared prefixes), model.loglikelihood over many random
requests, loglikelihood_rolling against lm-eval's own window functions, scoring.perplexity, and
bad input."""
import math

import numpy as np
import pytest
import torch

import pyllm
from pyllm import scoring
import bloom_reference
from llama_reference import make_config, make_pair

REL = 1e-4
VOCAB = 160

_pairs = {}


def pair(name):
    """LLaMA with plain multi-head attention, LLaMA with grouped-query attention and a tied head,
    and BLOOM (ALiBi: cached keys carry their positions, which copies and repeats must keep)."""
    if name not in _pairs:
        if name == "bloom":
            _pairs[name] = bloom_reference.make_pair(bloom_reference.make_config(), seed=11)
        else:
            overrides = {"mha": {}, "gqa": {"num_key_value_heads": 2, "tie_word_embeddings": True}}[name]
            _pairs[name] = make_pair(make_config(**overrides), seed=11)
    return _pairs[name]


def reference_loglikelihood(hf, context, continuation):
    """lm-eval's hf computation: log_softmax over the logits of (context + continuation)[:-1]."""
    ids = torch.as_tensor([context + continuation])
    with torch.no_grad():
        logprobs = torch.log_softmax(hf(ids[:, :-1]).logits.float(), dim=-1)[0, len(context) - 1:]
    target = torch.as_tensor(continuation)
    picked = logprobs[torch.arange(len(continuation)), target]
    return float(picked.sum()), bool((logprobs.argmax(-1) == target).all())


def close(a, b):
    """Within REL relative. A log-likelihood near 0 (a near-certain continuation) is a difference
    of f32 numbers of size ~|logit|, which transformers' own f32 log_softmax rounds at ~1e-7
    absolute; below that floor relative error says nothing, so 1e-6 absolute also passes."""
    return abs(a - b) <= max(REL * max(abs(a), abs(b)), 1e-6)


# ---- logits_to_keep and hidden states ------------------------------------------------------

@pytest.mark.parametrize("name", ["mha", "gqa"])
def test_logits_to_keep_equals_the_tail_of_the_full_logits(name):
    hf, model = pair(name)
    rng = np.random.default_rng(1)
    for batch, seq in ((1, 1), (1, 17), (3, 40), (2, 200)):
        ids = rng.integers(0, VOCAB, size=(batch, seq))
        full = model(ids)
        with torch.no_grad():
            ref = hf(torch.as_tensor(ids), logits_to_keep=5).logits.numpy()
        for keep in (1, 5, seq, seq + 3):
            part = model(ids, logits_to_keep=keep)
            assert part.shape == (batch, min(keep, seq), VOCAB)
            np.testing.assert_allclose(part, full[:, seq - min(keep, seq):], rtol=0, atol=1e-5)
        assert float(np.abs(model(ids, logits_to_keep=5) - ref).max()) <= 1e-4
    assert model(ids[0], logits_to_keep=2).shape == (2, VOCAB)
    np.testing.assert_array_equal(model(ids, logits_to_keep=0), full)


@pytest.mark.parametrize("name", ["mha", "gqa"])
def test_hidden_states_match_transformers(name):
    """num_hidden_layers + 1 arrays: embeddings, each layer's output, the last after the norm."""
    hf, model = pair(name)
    rng = np.random.default_rng(2)
    ids, mask = rng.integers(0, VOCAB, size=(2, 33)), np.ones((2, 33), dtype=np.int64)
    mask[1, :7] = 0
    positions = np.clip(mask.cumsum(-1) - 1, 0, None)
    with torch.no_grad():
        ref = hf(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask),
                 position_ids=torch.as_tensor(positions), output_hidden_states=True)
    logits, states = model(ids, attention_mask=mask, output_hidden_states=True)
    assert isinstance(states, tuple) and len(states) == len(ref.hidden_states) == model.config["num_hidden_layers"] + 1
    for i, (ours, theirs) in enumerate(zip(states, ref.hidden_states)):
        theirs = theirs.numpy()
        assert ours.shape == theirs.shape == (2, 33, 64) and ours.dtype == np.float32
        real = mask.astype(bool)  # padded positions are not defined the same way
        err = float(np.abs(ours[real] - theirs[real]).max())
        assert err <= 1e-4 * max(1.0, float(np.abs(theirs).max())), f"hidden state {i}: {err:.3g}"
    assert float(np.abs(logits[mask.astype(bool)] - ref.logits.numpy()[mask.astype(bool)]).max()) <= 1e-4
    # The last state is what the lm_head reads: logits_to_keep does not change it.
    _, again = model(ids, attention_mask=mask, output_hidden_states=True, logits_to_keep=1)
    np.testing.assert_array_equal(again[-1], states[-1])
    one_logits, one_states = model(ids[0], output_hidden_states=True)
    assert one_logits.shape == (33, VOCAB) and one_states[0].shape == (33, 64)


# ---- the KV cache as an object -------------------------------------------------------------

@pytest.mark.parametrize("name", ["gqa", "bloom"])
def test_cache_copy_continues_a_shared_prefix_without_recomputing_it(name):
    hf, model = pair(name)
    rng = np.random.default_rng(3)
    prefix = rng.integers(0, VOCAB, size=25)
    endings = [rng.integers(0, VOCAB, size=n) for n in (1, 6, 13)]
    cache = model.new_cache()
    model(prefix, cache=cache)
    assert cache.used == 25 and cache.lengths == [25]
    for ending in endings:
        branch = cache.copy()
        out = model(ending, cache=branch)  # only the new tokens run: one row of logits per new token
        assert out.shape == (len(ending), VOCAB)
        assert branch.used == 25 + len(ending) and cache.used == 25
        full = model(np.concatenate([prefix, ending]))
        assert float(np.abs(out - full[25:]).max()) <= 1e-4
    # repeat: one prefix continued by several rows at once
    rows = cache.repeat(3)
    assert rows.batch_size == 3 and rows.used == 25 and rows.lengths == [25, 25, 25]
    batch = np.stack([e[:1] for e in endings])
    out = model(batch, cache=rows)
    for row, ending in enumerate(endings):
        full = model(np.concatenate([prefix, ending[:1]]))
        assert float(np.abs(out[row, 0] - full[-1]).max()) <= 1e-4
    with pytest.raises(ValueError, match="one-row cache"):
        rows.repeat(2)
    with pytest.raises(ValueError, match="batch_size"):
        cache.repeat(0)


# ---- loglikelihood -------------------------------------------------------------------------

def random_requests(rng, count, max_context=60, max_continuation=8, share=0.5):
    requests, context = [], None
    for _ in range(count):
        if context is None or rng.random() > share:
            context = rng.integers(0, VOCAB, size=int(rng.integers(1, max_context))).tolist()
        requests.append((context, rng.integers(0, VOCAB, size=int(rng.integers(1, max_continuation))).tolist()))
    return requests


@pytest.mark.parametrize("name", ["mha", "gqa", "bloom"])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_loglikelihood_matches_transformers(name, batch_size):
    hf, model = pair(name)
    rng = np.random.default_rng(100 + batch_size)
    requests = random_requests(rng, 30)
    # Greedy continuations make is_greedy true for some requests.
    for _ in range(3):
        context = rng.integers(0, VOCAB, size=int(rng.integers(2, 30))).tolist()
        greedy = model.generate(np.asarray(context), max_new_tokens=3, eos_token_id=[])[len(context):].tolist()
        requests.append((context, greedy))
    results = model.loglikelihood(requests, batch_size=batch_size)
    assert len(results) == len(requests)
    greedy_seen = 0
    for (context, continuation), (logprob, is_greedy) in zip(requests, results):
        ref_logprob, ref_greedy = reference_loglikelihood(hf, context, continuation)
        assert isinstance(logprob, float) and isinstance(is_greedy, bool)
        assert close(logprob, ref_logprob), (len(context), len(continuation), logprob, ref_logprob)
        assert is_greedy == ref_greedy
        greedy_seen += is_greedy
    assert greedy_seen >= 3


def test_loglikelihood_order_and_sharing_do_not_change_results():
    _, model = pair("mha")
    rng = np.random.default_rng(7)
    requests = random_requests(rng, 20, share=0.8)
    together = model.loglikelihood(requests, batch_size=4)
    alone = [model.loglikelihood([r])[0] for r in requests]
    for a, b in zip(together, alone):
        assert close(a[0], b[0]) and a[1] == b[1]
    shuffled = rng.permutation(len(requests))
    again = model.loglikelihood([requests[i] for i in shuffled], batch_size=4)
    for position, index in enumerate(shuffled):
        assert close(again[position][0], together[index][0])


def test_logits_budget_splits_work_without_changing_results(monkeypatch):
    """Under a tiny logits budget, batches shrink and long continuations are scored in pieces
    over the KV cache (as a 2,048-token BLOOM window must be): same numbers as transformers."""
    hf, model = pair("gqa")
    rng = np.random.default_rng(13)
    requests = random_requests(rng, 12, max_continuation=30, share=0.6)
    requests.append(([5], rng.integers(0, VOCAB, size=50).tolist()))
    monkeypatch.setattr(scoring, "LOGITS_BUDGET", VOCAB * 7)
    results = model.loglikelihood(requests, batch_size=4)
    for (context, continuation), (logprob, is_greedy) in zip(requests, results):
        ref_logprob, ref_greedy = reference_loglikelihood(hf, context, continuation)
        assert close(logprob, ref_logprob) and is_greedy == ref_greedy
    assert sum(len(c) > 7 for _, c in requests) >= 3  # the piecewise path ran


def test_loglikelihood_truncates_long_contexts_from_the_left_like_lm_eval():
    hf, model = pair("mha")
    rng = np.random.default_rng(8)
    context = rng.integers(0, VOCAB, size=100).tolist()
    continuation = rng.integers(0, VOCAB, size=5).tolist()
    (logprob, _), = model.loglikelihood([(context, continuation)], max_length=40)
    kept = (context + continuation)[-41:]
    ref, _ = reference_loglikelihood(hf, kept[:-5], continuation)
    assert close(logprob, ref)
    # Beyond the model's own context window too (n_ctx = 512 here).
    long_context = rng.integers(0, VOCAB, size=600).tolist()
    (logprob, _), = model.loglikelihood([(long_context, continuation)])
    kept = (long_context + continuation)[-(model.n_ctx + 1):]
    ref, _ = reference_loglikelihood(hf, kept[:-5], continuation)
    assert close(logprob, ref)


# ---- rolling log-likelihood and perplexity -------------------------------------------------

def test_rolling_windows_equal_lm_eval():
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
    rng = np.random.default_rng(9)
    for length in (1, 5, 63, 64, 65, 128, 129, 300):
        ids = rng.integers(0, VOCAB, size=length).tolist()
        for max_length in (1, 2, 16, 64, 200):
            theirs = [make_disjoint_window(w) for w in get_rolling_token_windows(ids, 1, max_length, 1)]
            ours = scoring.rolling_windows(ids, 1, max_length)
            assert [(list(a), list(b)) for a, b in theirs] == ours
    assert scoring.rolling_windows([], 1, 8) == []


@pytest.mark.parametrize("max_length", [16, 100, None])
def test_loglikelihood_rolling_matches_transformers(max_length):
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
    hf, model = pair("gqa")
    rng = np.random.default_rng(10)
    ids = rng.integers(0, VOCAB, size=700 if max_length is None else 230).tolist()
    total = model.loglikelihood_rolling(ids, max_length=max_length)
    windows = [make_disjoint_window(w) for w in
               get_rolling_token_windows(ids, 1, max_length or model.n_ctx, 1)]
    assert len(windows) >= 2
    ref = math.fsum(reference_loglikelihood(hf, c, t)[0] for c, t in windows)
    assert close(total, ref), (total, ref)
    assert model.loglikelihood_rolling([]) == 0.0
    assert close(model.loglikelihood_rolling(ids[:10], prefix_token_id=2),
                 reference_loglikelihood(hf, [2], ids[:10])[0])


class _FakeTokenizer:
    """Text -> ids on the model's 160-token vocabulary (a byte per token), BOS 1."""
    bos_token_id, eos_token_id = 1, 2

    def encode(self, text, add_special_tokens=True):
        ids = [3 + b % (VOCAB - 3) for b in text.encode()]
        return ([1] if add_special_tokens else []) + ids


def test_perplexity_matches_transformers():
    hf, model = pair("mha")
    texts = ["hello world, this is a test of perplexity " * 4, "short", "another text\nwith lines " * 30]
    tok = _FakeTokenizer()
    ppl = scoring.perplexity(model, tok, texts, max_length=128)
    total, count = 0.0, 0
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False)
        for c, t in (make_disjoint_window(w) for w in get_rolling_token_windows(ids, 1, 128, 1)):
            total += reference_loglikelihood(hf, c, t)[0]
        count += len(ids)
    assert close(ppl, math.exp(-total / count))
    assert close(scoring.perplexity(model, tok, "short", max_length=128),
                 math.exp(-reference_loglikelihood(hf, [1], tok.encode("short", False))[0] / 5))


def test_progress_bar_is_optional(monkeypatch):
    """progress=True shows a tqdm bar; without tqdm importable there is none and no error."""
    import builtins
    _, model = pair("mha")
    requests = random_requests(np.random.default_rng(12), 4)
    expected = model.loglikelihood(requests)
    assert model.loglikelihood(requests, progress=True) == expected
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError("no tqdm here")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    assert model.loglikelihood(requests, progress=True) == expected


# ---- bad input -----------------------------------------------------------------------------

def test_bad_input_raises_clear_errors():
    _, model = pair("mha")
    with pytest.raises(ValueError, match="requests is empty"):
        model.loglikelihood([])
    with pytest.raises(TypeError, match="requests must be a list"):
        model.loglikelihood("abc")
    with pytest.raises(ValueError, match="empty continuation"):
        model.loglikelihood([([1, 2], [])])
    with pytest.raises(ValueError, match="empty context"):
        model.loglikelihood([([], [3])])
    with pytest.raises(ValueError, match=r"token id 160, outside the vocabulary \[0, 160\)"):
        model.loglikelihood([([1, 2], [160])])
    with pytest.raises(ValueError, match="token id -1"):
        model.loglikelihood([([-1, 2], [5])])
    with pytest.raises(TypeError, match="integer token ids"):
        model.loglikelihood([([1.5, 2], [5])])
    with pytest.raises(ValueError, match=r"requests\[1\] must be a \(context_ids, continuation_ids\) pair"):
        model.loglikelihood([([1], [2]), ([1], [2], [3])])
    with pytest.raises(ValueError, match="does not fit max_length=4"):
        model.loglikelihood([([1], [2, 3, 4, 5, 6])], max_length=4)
    with pytest.raises(ValueError, match="exceeds the model's context"):
        model.loglikelihood([([1], [2])], max_length=model.n_ctx + 1)
    with pytest.raises(ValueError, match="batch_size"):
        model.loglikelihood([([1], [2])], batch_size=0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.loglikelihood_rolling([1, 2, 999])
    with pytest.raises(ValueError, match="prefix_token_id"):
        model.loglikelihood_rolling([1, 2], prefix_token_id=500)
    with pytest.raises(ValueError, match="logits_to_keep"):
        model([1, 2, 3], logits_to_keep=-1)
    with pytest.raises(ValueError, match="texts is empty"):
        scoring.perplexity(model, _FakeTokenizer(), [])
    with pytest.raises(ValueError, match="one target per logits row"):
        pyllm._core.score_tokens(np.zeros((2, 4), np.float32), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="out of range"):
        pyllm._core.score_tokens(np.zeros((1, 4), np.float32), np.array([4], np.int32))
    # The model still works afterwards.
    assert len(model.loglikelihood([([1, 2], [3])])) == 1
