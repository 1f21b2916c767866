"""Checks every architecture must pass against its transformers reference, shared by the LLaMA
and BLOOM parity tests: left padding, incremental decoding through the KV cache, and cache copies.

Each takes the transformers model, the pyllm model, the architecture's reference_logits (LLaMA
passes explicit position ids, BLOOM derives ALiBi positions from the mask), the vocabulary size and
the padding id."""
import numpy as np

from llama_reference import left_padded

TOL = 1e-4


def check_left_padded_batch(hf, model, reference_logits, vocab, pad, name):
    ids, mask = left_padded(np.random.default_rng(7), [83, 40, 9, 1], vocab, pad=pad)
    ref = reference_logits(hf, ids, mask)
    ours = model(ids, attention_mask=mask)
    real = mask.astype(bool)
    err = float(np.abs(ours[real] - ref[real]).max())
    assert err <= TOL, f"{name}: max |dlogit| {err:.3g} under left padding"
    # Each row equals that prompt alone, unpadded: positions come from the mask, not the slot.
    for row in range(4):
        alone = model(ids[row][real[row]])
        assert float(np.abs(alone - ours[row][real[row]]).max()) <= TOL


def check_incremental_equals_full_pass(hf, model, reference_logits, tokens, name):
    """Through the KV cache, a chunk then single tokens give the full pass's logits."""
    ids = tokens[:, :120]
    full = reference_logits(hf, ids)
    cache = model.new_cache()
    pieces = [model(ids[:, :50], cache=cache), model(ids[:, 50:57], cache=cache)]
    pieces += [model(ids[:, i:i + 1], cache=cache) for i in range(57, 120)]
    ours = np.concatenate(pieces, axis=1)
    err = float(np.abs(ours - full).max())
    assert err <= TOL, f"{name}: incremental max |dlogit| {err:.3g}"
    assert cache.used == 120 and cache.lengths == [120]


def check_incremental_left_padded_batch(hf, model, reference_logits, vocab, pad):
    rng = np.random.default_rng(11)
    ids, mask = left_padded(rng, [30, 12, 25], vocab, pad=pad)
    steps = rng.integers(0, vocab, size=(3, 10))
    all_ids = np.concatenate([ids, steps], axis=1)
    all_mask = np.concatenate([mask, np.ones_like(steps)], axis=1)
    ref = reference_logits(hf, all_ids, all_mask)
    cache = model.new_cache(batch_size=3)
    pieces = [model(ids, attention_mask=mask, cache=cache)]
    for i in range(steps.shape[1]):
        # transformers-style full mask (cached + new) is accepted as well as the new part alone.
        m = all_mask[:, :ids.shape[1] + i + 1] if i % 2 else None
        pieces.append(model(steps[:, i:i + 1], attention_mask=m, cache=cache))
    ours = np.concatenate(pieces, axis=1)
    real = all_mask.astype(bool)
    assert float(np.abs(ours[real] - ref[real]).max()) <= TOL
    assert cache.lengths == [40, 22, 35]


def check_cache_copy_branches_independently(model, tokens):
    cache = model.new_cache()
    model(tokens[:, :30], cache=cache)
    branch = cache.copy()
    a = model(tokens[:, 30:31], cache=cache)
    b = model(tokens[:, 31:32], cache=branch)
    full_a = model(tokens[:, :31])[:, -1]
    full_b = model(np.concatenate([tokens[:, :30], tokens[:, 31:32]], axis=1))[:, -1]
    assert float(np.abs(a[:, 0] - full_a).max()) <= TOL
    assert float(np.abs(b[:, 0] - full_b).max()) <= TOL


def check_full_pass(hf, model, reference_logits, tokens, lengths, name):
    """Full passes over every length agree with the reference, as float32 [batch, n, vocab]."""
    for n in lengths:
        ids = tokens[:, :n]
        ref = reference_logits(hf, ids)
        ours = model(ids)
        assert ours.shape == ref.shape == (ids.shape[0], n, model.vocab_size) and ours.dtype == np.float32
        err = float(np.abs(ours - ref).max())
        assert err <= TOL, f"{name}, {n} tokens: max |dlogit| {err:.3g}"


def check_variant_changes_the_reference(plain_hf, hf, reference_logits, tokens, name):
    """A variant's reference logits differ from the plain model's by >= 100x the tolerance, or
    its parity test would prove nothing."""
    ids = tokens[:, :300]
    diff = float(np.abs(reference_logits(hf, ids) - reference_logits(plain_hf, ids)).max())
    assert diff >= 100 * TOL, f"variant {name} barely changes the logits ({diff:.3g})"
