"""pyllm.generation.sample_logits: reproducible, greedy = argmax, and its draws follow the
distribution transformers' own warpers define (chi-square goodness of fit)."""
import math

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

from pyllm.generation import sample_logits

# Goodness of fit: N draws per case; the fit is rejected when p < ALPHA. Seeds are fixed,
# so the outcome is deterministic; ALPHA only sets how strong a deviation must be to fail.
N = 20_000
ALPHA = 1e-3


def reference_probs(logits, temperature=1.0, top_k=0, top_p=1.0):
    """transformers' warpers in generate()'s order, then softmax, in float32 like generate."""
    scores = torch.from_numpy(np.asarray(logits, dtype=np.float32)).clone()[None, :]
    input_ids = torch.zeros((1, 1), dtype=torch.long)
    if temperature != 1.0:
        scores = TemperatureLogitsWarper(temperature)(input_ids, scores)
    if top_k:
        scores = TopKLogitsWarper(top_k)(input_ids, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(input_ids, scores)
    return torch.softmax(scores, dim=-1)[0].double().numpy()


def chi_square_p_value(counts, probs, n):
    """Pearson's statistic over the tokens the reference keeps, bins with an expected count
    under 5 pooled into one, and its p-value from the chi-square survival function
    (regularised upper incomplete gamma: torch.special.gammaincc)."""
    expected = probs * n
    keep = probs > 0
    big = keep & (expected >= 5)
    obs = list(counts[big])
    exp = list(expected[big])
    small = keep & ~big
    if small.any():
        obs.append(counts[small].sum())
        exp.append(expected[small].sum())
    obs, exp = np.array(obs, dtype=np.float64), np.array(exp, dtype=np.float64)
    stat = float(((obs - exp) ** 2 / exp).sum())
    dof = len(obs) - 1
    if dof == 0:
        return stat, 1.0
    p = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                      torch.tensor(stat / 2, dtype=torch.float64)))
    return stat, p


def random_logits(seed, vocab, scale=2.0, ties=False, banned=0):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(vocab) * scale).astype(np.float32)
    if ties:  # round to a coarse grid so many scores are equal, top-k cuts inside a tie
        logits = (np.round(logits * 2) / 2).astype(np.float32)
    if banned:
        logits[rng.choice(vocab, banned, replace=False)] = -np.inf
    return logits


def top_p_cut_is_clear(logits, temperature, top_k, top_p):
    """Whether the top-p cut is well defined: it must not sit on a rounding boundary (within
    1e-4 of a token's cumulative mass), nor split a group of equal scores, whose order
    transformers leaves to an unstable sort."""
    scaled = logits.astype(np.float64) / temperature
    if top_k:
        kth = np.sort(scaled)[::-1][min(top_k, len(scaled)) - 1]
        scaled = np.where(scaled >= kth, scaled, -np.inf)
    order = np.argsort(-scaled, kind="stable")
    values = scaled[order]
    p = np.exp(values - values.max())
    p /= p.sum()
    above = np.concatenate([[0.0], np.cumsum(p)[:-1]])
    live = p > 0
    if np.abs(above[live] - top_p).min() <= 1e-4:
        return False
    kept = above < top_p
    kept[0] = True
    return all(len(set(kept[live & (values == v)])) == 1 for v in np.unique(values[live]))


# (vocab, logits seed, options, extra logits features)
CASES = [
    (7, 0, dict(temperature=1.0), {}),
    (50, 1, dict(temperature=0.6), {}),
    (300, 2, dict(temperature=1.7), {}),
    (50, 3, dict(top_k=5), {}),
    (300, 4, dict(top_k=40), {}),
    (60, 6, dict(top_k=7), dict(ties=True)),  # 10 tokens tie at or above the 7th score
    (50, 6, dict(top_p=0.8), {}),
    (300, 7, dict(top_p=0.5), {}),
    (7, 8, dict(top_p=0.95), {}),
    (50, 9, dict(temperature=0.8, top_k=20, top_p=0.9), {}),
    (300, 10, dict(temperature=1.3, top_k=100, top_p=0.7), dict(banned=30)),
    (80, 13, dict(temperature=0.9, top_k=12, top_p=0.85), dict(ties=True, banned=5)),
]


@pytest.mark.parametrize("vocab,seed,options,features", CASES,
                         ids=[f"V{c[0]}-" + "-".join(f"{k}{v}" for k, v in c[2].items()) for c in CASES])
def test_distribution_matches_transformers_warpers(vocab, seed, options, features):
    logits = random_logits(seed, vocab, **features)
    temperature, top_k, top_p = options.get("temperature", 1.0), options.get("top_k", 0), options.get("top_p", 1.0)
    if top_p < 1.0:
        assert top_p_cut_is_clear(logits, temperature, top_k, top_p)
    probs = reference_probs(logits, temperature, top_k, top_p)
    kept = int((probs > 0).sum())
    assert 1 < kept <= vocab

    tokens = sample_logits(logits, seed=1000 + seed, num_samples=N, **options)
    assert tokens.dtype == np.int64 and tokens.shape == (N,)
    assert tokens.min() >= 0 and tokens.max() < vocab
    counts = np.bincount(tokens, minlength=vocab)
    removed = probs == 0
    assert counts[removed].sum() == 0, f"drew tokens the warpers remove: {np.flatnonzero(counts * removed)}"
    stat, p = chi_square_p_value(counts, probs, N)
    assert p >= ALPHA, f"chi2={stat:.1f}, p={p:.2e} over {kept} kept tokens"

    # The same test rejects a sampler that is slightly off: the draws against the reference
    # distribution at a 10% different temperature.
    wrong = reference_probs(logits, temperature * 1.1, top_k, top_p)
    wrong_p = chi_square_p_value(counts, np.where(wrong > 0, wrong, 0.0), N)[1] if (wrong[counts > 0] > 0).all() else 0.0
    assert wrong_p < ALPHA, f"the fit cannot tell a wrong distribution apart (p={wrong_p:.2e})"


def test_p_value_helper_against_known_quantiles():
    # The chi-square survival function at textbook critical values.
    for dof, x, p in [(1, 3.841458820694124, 0.05), (10, 18.307038053275146, 0.05), (4, 13.276704135987622, 0.01)]:
        got = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                            torch.tensor(x / 2, dtype=torch.float64)))
        assert math.isclose(got, p, rel_tol=1e-9)


def test_same_seed_same_tokens_different_seed_different():
    logits = random_logits(20, 100)
    a = sample_logits(logits, seed=7, num_samples=500, temperature=1.2)
    b = sample_logits(logits, seed=7, num_samples=500, temperature=1.2)
    c = sample_logits(logits, seed=8, num_samples=500, temperature=1.2)
    assert np.array_equal(a, b)
    assert (a != c).mean() > 0.5
    # One stream seeded once: a shorter draw is a prefix of a longer one.
    assert np.array_equal(sample_logits(logits, seed=7, num_samples=100, temperature=1.2), a[:100])
    # Seeds span 64 bits and each one is its own stream.
    big = [sample_logits(logits, seed=s, num_samples=50) for s in (2**64 - 1, 2**63, 2**32, 0)]
    assert all(not np.array_equal(big[i], big[j]) for i in range(4) for j in range(i + 1, 4))


def test_greedy_is_first_argmax():
    rng = np.random.default_rng(0)
    for vocab in (1, 2, 5, 64, 1000, 32000):
        for trial in range(5):
            logits = (rng.standard_normal(vocab) * 3).astype(np.float32)
            if trial >= 2 and vocab > 3:
                logits = np.round(logits).astype(np.float32)  # many ties
            if trial == 4 and vocab > 3:
                logits[rng.choice(vocab, vocab // 3, replace=False)] = -np.inf
                logits[np.argmax(logits)] = -np.inf if (logits > -np.inf).sum() > 1 else logits.max()
            want = int(np.argmax(logits))
            assert sample_logits(logits, do_sample=False, num_samples=3).tolist() == [want] * 3
            assert sample_logits(logits, temperature=0.0).tolist() == [want]
            assert int(torch.argmax(torch.from_numpy(logits))) == want
    ties = np.array([1.0, 3.0, -2.0, 3.0, 3.0], dtype=np.float32)
    assert sample_logits(ties, do_sample=False)[0] == 1


def test_degenerate_cuts_are_greedy():
    logits = random_logits(30, 200)
    best = int(np.argmax(logits))
    assert (sample_logits(logits, top_k=1, num_samples=200, seed=1) == best).all()
    assert (sample_logits(logits, top_p=1e-6, num_samples=200, seed=1) == best).all()
    # top_k at or beyond the vocabulary, and top_p = 1, are off: the same draws as without.
    plain = sample_logits(logits, num_samples=300, seed=4)
    assert np.array_equal(sample_logits(logits, top_k=200, num_samples=300, seed=4), plain)
    assert np.array_equal(sample_logits(logits, top_k=10**30, num_samples=300, seed=4), plain)
    assert np.array_equal(sample_logits(logits, top_p=1.0, num_samples=300, seed=4), plain)
    # A single finite logit among banned ones is always chosen.
    one = np.full(10, -np.inf, dtype=np.float32)
    one[6] = -3.0
    assert (sample_logits(one, num_samples=50, temperature=2.0, top_p=0.5) == 6).all()
    assert sample_logits(np.array([0.5], dtype=np.float32), num_samples=5).tolist() == [0] * 5


def test_accepted_inputs():
    logits64 = random_logits(40, 30).astype(np.float64)
    base = sample_logits(logits64.astype(np.float32), seed=3, num_samples=50)
    assert np.array_equal(sample_logits(logits64, seed=3, num_samples=50), base)
    assert np.array_equal(sample_logits(list(logits64), seed=3, num_samples=50), base)
    strided = np.repeat(logits64.astype(np.float32), 2)[::2]
    assert not strided.flags.c_contiguous
    assert np.array_equal(sample_logits(strided, seed=3, num_samples=50), base)


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(temperature=-0.5), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=-0.1), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_p=1.0 + 1e-9), "top_p"),
    (dict(top_p=float("nan")), "top_p"),
    (dict(top_k=-1), "top_k"),
    (dict(num_samples=0), "num_samples"),
    (dict(seed=-1), "seed"),
])
def test_invalid_options_raise_value_error(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        sample_logits(random_logits(0, 10), **kwargs)


@pytest.mark.parametrize("logits,error,fragment", [
    (np.array([0.1, np.nan, 0.3], dtype=np.float32), ValueError, "NaN"),
    (np.array([0.1, np.inf], dtype=np.float32), ValueError, r"\+inf"),
    (np.full(4, -np.inf, dtype=np.float32), ValueError, "finite"),
    (np.zeros(0, dtype=np.float32), ValueError, "empty"),
    (np.zeros((2, 3), dtype=np.float32), ValueError, "1-D"),
    (np.float32(1.0), ValueError, "1-D"),
    (np.arange(5), TypeError, "floating-point"),
    (np.array([True, False]), TypeError, "floating-point"),
    ("abc", TypeError, "floating-point"),
])
def test_invalid_logits_raise(logits, error, fragment):
    for do_sample in (True, False):
        with pytest.raises(error, match=fragment):
            sample_logits(logits, do_sample=do_sample)


def test_wrong_option_types_raise_type_error():
    logits = random_logits(0, 10)
    for kwargs, fragment in [(dict(temperature="hot"), "temperature"), (dict(top_p=None), "top_p"),
                             (dict(top_k=2.5), "top_k"), (dict(seed=1.5), "seed")]:
        with pytest.raises(TypeError, match=fragment):
            sample_logits(logits, **kwargs)


def test_top_k_keeps_exactly_what_transformers_keeps():
    """At a huge temperature the kept tokens are nearly equally likely, so a few thousand draws
    show the kept set exactly: it must be transformers' set, ties at the k-th score included."""
    rng = np.random.default_rng(99)
    for trial in range(60):
        vocab = int(rng.integers(2, 400))
        logits = np.round(rng.standard_normal(vocab) * rng.choice([0.5, 2, 8])).astype(np.float32)
        if trial % 3 == 0:
            logits[rng.random(vocab) < 0.3] = -np.inf
            logits[int(rng.integers(vocab))] = 1.0
        top_k = int(rng.integers(1, min(vocab, 25) + 1))
        kept = np.flatnonzero(reference_probs(logits, 1e6, top_k) > 0)
        if len(kept) > 40:
            continue
        drawn = np.unique(sample_logits(logits, temperature=1e6, top_k=top_k, seed=trial, num_samples=3000))
        assert drawn.tolist() == kept.tolist(), (trial, vocab, top_k)


def test_overflowing_temperature_raises():
    logits = np.array([3e38, 1.0, -2.0], dtype=np.float32)
    with pytest.raises(ValueError, match="temperature"):
        sample_logits(logits, temperature=0.5)
    assert sample_logits(logits, temperature=0.0)[0] == 0  # greedy never divides
    assert sample_logits(logits, temperature=1.0, num_samples=20).tolist() == [0] * 20


def test_top_p_keeps_exactly_what_transformers_keeps():
    """Random rows, temperatures, top-k and top-p: every token drawn is one the warpers keep,
    and every kept token likely enough to show up in 5000 draws does."""
    rng = np.random.default_rng(123)
    checked = 0
    for trial in range(80):
        vocab = int(rng.integers(2, 1200))
        logits = (rng.standard_normal(vocab) * rng.choice([0.5, 1.5, 4])).astype(np.float32)
        temperature = float(rng.choice([0.5, 1.0, 1.7]))
        top_k = int(rng.choice([0, 5, 40]))
        top_p = float(rng.uniform(0.05, 0.98))
        if not top_p_cut_is_clear(logits, temperature, top_k, top_p):
            continue
        checked += 1
        probs = reference_probs(logits, temperature, top_k, top_p)
        drawn = np.bincount(sample_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                                          seed=trial, num_samples=5000), minlength=vocab)
        assert drawn[probs == 0].sum() == 0, trial
        assert (drawn[probs > 2e-3] > 0).all(), trial
    assert checked >= 60
