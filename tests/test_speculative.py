"""Speculative decoding in generate (prompt_lookup_num_tokens=, assistant_model=).

- Greedy: with batch_invariant=True the sequences, the raw logits of every step and the
  log-probabilities are the same bits as plain greedy decoding (LLaMA and BLOOM, bfloat16 and
  float32, both drafters, a left-padded batch whose rows end early); each case also shows drafts
  were both kept and rejected (so the KV rollback ran). Without the mode, equal up to the first
  step where plain decoding had a near-tie.
- Sampling: the joint distribution of four new tokens (vocabulary of 5, repetition penalty,
  temperature and top-k on) against the exact one computed from the model's logits through the
  C processors and warpers, by a chi-square test over thousands of rows (each its own random
  stream), for both drafters.
- Automatic mode: the decision follows the pinned costs and the acceptance rate, and a seed
  gives the same tokens on every call.
- Refusals by name.
"""
import itertools
import os

import numpy as np
import pytest

import pyllm
from pyllm import _testing
from test_batch_invariance import VOCAB, _random
from test_sampling import ALPHA, chi_square_p_value


STORIES = "stories260K/stories260K.gguf"


def _model(family, dtype, invariant=True, data_dir=None):
    """stories260K (a real tiny LLaMA, which repeats itself as small models do: prompt lookup
    hits) or a random LLaMA / BLOOM."""
    if family == "stories":
        return pyllm.Model.from_gguf(os.path.join(data_dir, STORIES), dtype=dtype, batch_invariant=invariant,
                                     n_threads=1)
    config, weights = _random(family)
    return pyllm.Model.from_arrays(config, weights, dtype=dtype, batch_invariant=invariant, n_threads=1)


def _draft(family, data_dir):
    """A draft model that mostly agrees with its target: stories260K in int4, or the random
    model's weights with 30% relative noise in int8."""
    if family == "stories":
        return _model(family, "int4", False, data_dir)
    config, weights = _random(family)
    rng = np.random.default_rng(9)
    noisy = {k: (v * (1 + 0.3 * rng.standard_normal(v.shape))).astype(np.float32) for k, v in weights.items()}
    return pyllm.Model.from_arrays(config, noisy, dtype="int8", n_threads=1)


def _prompts(model, seed):
    """Three left-padded rows of different lengths, each a random phrase, the model's own greedy
    continuation of it, then the phrase again (repetition for prompt lookup to find)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in (4, 6, 3):
        phrase = rng.integers(3, model.vocab_size, n)
        continuation = model.generate(phrase, max_new_tokens=10, eos_token_id=[])[n:]
        rows.append(np.concatenate([phrase, continuation, phrase]))
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = r
        mask[i, width - len(r):] = 1
    return ids, mask


def _same_bits(a, b):
    a, b = np.ascontiguousarray(a, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


GREEDY = dict(max_new_tokens=48, return_dict_in_generate=True, output_logits=True, output_scores=True)
GREEDY_CASES = [("stories", "bfloat16", "prompt_lookup"), ("stories", "float32", "prompt_lookup"),
                ("stories", "bfloat16", "assistant"), ("bloom", "bfloat16", "prompt_lookup"),
                ("bloom", "bfloat16", "assistant"), ("llama", "bfloat16", "assistant")]


@pytest.mark.parametrize("family,dtype,drafter", GREEDY_CASES, ids=["-".join(c) for c in GREEDY_CASES])
def test_greedy_is_plain_greedy_bit_for_bit(family, dtype, drafter, data_dir):
    model = _model(family, dtype, True, data_dir)
    ids, mask = _prompts(model, 1)
    plain_out = model.generate(ids, attention_mask=mask, eos_token_id=[], **GREEDY)
    # An end token the plain run emits late in row 0, so rows end at different steps.
    eos = int(plain_out.sequences[0, ids.shape[1] + 40])
    plain = model.generate(ids, attention_mask=mask, eos_token_id=eos, **GREEDY)
    if drafter == "assistant":
        extra = dict(assistant_model=_draft(family, data_dir), num_assistant_tokens=4)
    else:
        extra = dict(prompt_lookup_num_tokens=5, max_matching_ngram_size=3)
    spec = model.generate(ids, attention_mask=mask, eos_token_id=eos, speculative="always", **extra, **GREEDY)
    assert np.array_equal(spec.sequences, plain.sequences)
    assert np.array_equal(spec.num_new_tokens, plain.num_new_tokens)
    assert len(set(plain.num_new_tokens.tolist())) > 1  # rows did end apart
    assert _same_bits(spec.logits, plain.logits)
    assert _same_bits(spec.scores, plain.scores)
    assert _same_bits(spec.logprobs, plain.logprobs)
    drafted, accepted = spec.num_draft_tokens, spec.num_accepted_tokens
    assert accepted.sum() > 0 and (accepted < drafted).any(), (drafted, accepted)  # kept and rolled back
    assert spec.acceptance_rate == accepted.sum() / drafted.sum()
    assert (spec.speculation_stopped_at == -1).all()


def test_greedy_without_batch_invariance_matches_up_to_a_near_tie(data_dir):
    """bfloat16 without the mode: a multi-token call's GEMM rounds differently from one-token
    GEMVs, so a near-tie may flip; up to the first differing step the tokens agree, and there
    the plain run's two best logits are close."""
    model = _model("stories", "bfloat16", False, data_dir)
    agreed = rows = accepted = 0
    for seed in range(3):
        ids, mask = _prompts(model, seed)
        plain = model.generate(ids, attention_mask=mask, eos_token_id=[], **GREEDY)
        spec = model.generate(ids, attention_mask=mask, eos_token_id=[], prompt_lookup_num_tokens=5,
                              speculative="always", **GREEDY)
        new_plain, new_spec = plain.sequences[:, ids.shape[1]:], spec.sequences[:, ids.shape[1]:]
        for row in range(ids.shape[0]):
            rows += 1
            differ = np.flatnonzero(new_plain[row] != new_spec[row])
            if differ.size == 0:
                agreed += 1
                continue
            step = differ[0]
            top2 = np.sort(plain.logits[step, row])[-2:]
            assert top2[1] - top2[0] < 0.05, (seed, row, step, top2)
        accepted += int(spec.num_accepted_tokens.sum())
    assert accepted > 0 and agreed >= rows // 2


# ---- sampling: the target's distribution, exactly ----------------------------------------------

SMALL_VOCAB = 5
SAMPLING = dict(do_sample=True, temperature=0.9, top_k=4, repetition_penalty=1.3)
NEW = 4
PROMPT = [0, 1, 2, 3, 0, 1]  # "0 1" recurs: prompt lookup drafts "2 3 0 1"


def _tiny(seed):
    """A one-layer LLaMA with a vocabulary of 5, weights large enough for uneven distributions."""
    rng = np.random.default_rng(seed)
    d, ff = 16, 32
    config = {"model_type": "llama", "vocab_size": SMALL_VOCAB, "hidden_size": d, "intermediate_size": ff,
              "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
              "max_position_embeddings": 64, "rms_norm_eps": 1e-5}
    shapes = {"model.embed_tokens.weight": (SMALL_VOCAB, d), "model.norm.weight": (d,),
              "lm_head.weight": (SMALL_VOCAB, d)}
    p = "model.layers.0."
    shapes.update({p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (d, d),
                   p + "self_attn.v_proj.weight": (d, d), p + "self_attn.o_proj.weight": (d, d),
                   p + "mlp.gate_proj.weight": (ff, d), p + "mlp.up_proj.weight": (ff, d),
                   p + "mlp.down_proj.weight": (d, ff), p + "input_layernorm.weight": (d,),
                   p + "post_attention_layernorm.weight": (d,)})
    weights = {}
    for name, shape in shapes.items():
        noise = rng.standard_normal(shape).astype(np.float32)
        weights[name] = 1.0 + 0.1 * noise if name.endswith("norm.weight") else noise * np.float32(
            2.0 / shape[-1] ** 0.5)
    return pyllm.Model.from_arrays(config, weights, dtype="float32", n_threads=1)


def _exact_joint(model):
    """P(new tokens = s) for every s in vocab^NEW: each step's logits through the C processors
    and warpers generate() applies, then softmax."""
    probs = {(): 1.0}
    for _ in range(NEW):
        nxt = {}
        for prefix, p in probs.items():
            ids = np.array([PROMPT + list(prefix)], dtype=np.int64)
            logits = model(ids)[0, -1:].astype(np.float32)
            scores = _testing.apply_processors(ids, logits, prompt_length=len(PROMPT),
                                               repetition_penalty=SAMPLING["repetition_penalty"])
            scores = _testing.apply_warpers(scores, temperature=SAMPLING["temperature"], top_k=SAMPLING["top_k"])
            q = np.exp(scores[0].astype(np.float64) - scores[0].max())
            q /= q.sum()
            for t in range(SMALL_VOCAB):
                nxt[prefix + (t,)] = p * q[t]
        probs = nxt
    return probs


@pytest.mark.parametrize("drafter", ["prompt_lookup", "assistant"])
def test_sampled_tokens_follow_the_target_distribution(drafter):
    model = _tiny(0)
    exact = _exact_joint(model)
    cells = list(itertools.product(range(SMALL_VOCAB), repeat=NEW))
    probs = np.array([exact[c] for c in cells])
    if drafter == "assistant":
        extra = dict(assistant_model=_tiny(1), num_assistant_tokens=3)  # another model: q != p
    else:
        extra = dict(prompt_lookup_num_tokens=3)
    rows = 12_000
    counts = np.zeros(len(cells))
    index = {c: i for i, c in enumerate(cells)}
    drafted = accepted = 0
    for seed in (11, 12):  # two calls, each row its own stream
        out = model.generate([PROMPT], max_new_tokens=NEW, num_return_sequences=rows // 2, seed=seed,
                             eos_token_id=[], speculative="always", return_dict_in_generate=True, **extra,
                             **SAMPLING)
        for row in out.sequences[:, len(PROMPT):]:
            counts[index[tuple(row.tolist())]] += 1
        drafted += int(out.num_draft_tokens.sum())
        accepted += int(out.num_accepted_tokens.sum())
    assert 0 < accepted < drafted  # drafts were kept and rejected
    stat, p = chi_square_p_value(counts, probs, rows)
    assert p >= ALPHA, f"chi2={stat:.1f}, p={p:.2e}"


# ---- automatic mode -------------------------------------------------------------------------------

def _lookup(history, max_ngram, count):
    """transformers' prompt lookup: the continuation of the earliest earlier occurrence of the
    last n tokens, n from max_ngram down to 1."""
    for n in range(min(max_ngram, len(history) - 1), 0, -1):
        tail = history[-n:]
        for start in range(len(history) - n):
            if history[start:start + n] == tail:
                return history[start + n:start + n + count]
    return []


def _pays(costs, k, alpha):
    tokens = sum(alpha ** i for i in range(k + 1))
    fixed, per = costs["verify_fixed"], costs["verify_per_token"]
    return fixed + (k + 1) * per < tokens * (fixed + per)


def _replay(prompt, new, k, max_ngram, costs):
    """Automatic prompt lookup replayed on a greedy row: (drafted, accepted, stopped_at). A row
    stops speculating once it drafted 2k tokens and its acceptance rate so far (kept drafts over
    kept drafts plus rejections) makes a round of k dearer per token than a plain step."""
    generated, drafted, accepted, rejections = 1, 0, 0, 0
    speculating = _pays(costs, k, 1.0)
    stopped = -1 if speculating else 0
    while generated < len(new):
        room = min(k, len(new) - generated - 1)
        drafts = _lookup(prompt + new[:generated], max_ngram, room) if speculating and room > 0 else []
        kept = 0
        while kept < len(drafts) and drafts[kept] == new[generated + kept]:
            kept += 1
        drafted, accepted, rejections = drafted + len(drafts), accepted + kept, rejections + (kept < len(drafts))
        generated += kept + 1
        if speculating and drafted >= 2 * k and not _pays(costs, k, accepted / (accepted + rejections)):
            speculating, stopped = False, generated
    return drafted, accepted, stopped


def test_automatic_mode_follows_the_costs_and_the_acceptance_rate(data_dir):
    model = _model("stories", "float32", False, data_dir)
    ids, mask = _prompts(model, 2)
    options = dict(attention_mask=mask, max_new_tokens=40, eos_token_id=[], return_dict_in_generate=True)
    plain = model.generate(ids, **options)
    stops = set()
    for fixed, per in ((0.0, 1.0), (1.0, 0.0), (0.5, 0.5), (0.7, 0.3), (0.9, 0.1)):
        costs = {"step": fixed + per, "verify_fixed": fixed, "verify_per_token": per}
        model.speculation_costs = costs
        out = model.generate(ids, prompt_lookup_num_tokens=4, max_matching_ngram_size=2, **options)
        assert np.array_equal(out.sequences, plain.sequences)
        for row in range(ids.shape[0]):
            prompt = ids[row][mask[row] == 1].tolist()
            expected = _replay(prompt, plain.sequences[row, ids.shape[1]:].tolist(), 4, 2, costs)
            got = (out.num_draft_tokens[row], out.num_accepted_tokens[row], out.speculation_stopped_at[row])
            assert got == expected, (fixed, per, row)
            stops.add(expected[2] if expected[2] <= 0 else "mid-way")
    assert stops == {-1, 0, "mid-way"}  # never, at once, and after some rounds all happened


def test_automatic_mode_same_seed_same_tokens():
    """Sampled tokens depend on when speculation stops (it uses the random stream differently);
    the decision reads no clock, so two calls with the measured costs agree token for token."""
    model = _tiny(0)
    draft = _tiny(1)
    costs = model.speculation_costs  # measured once, kept
    assert set(costs) == {"step", "verify_fixed", "verify_per_token"} and costs["step"] > 0
    runs = [model.generate([PROMPT], max_new_tokens=24, num_return_sequences=40, seed=5, eos_token_id=[],
                           assistant_model=draft, num_assistant_tokens=3, return_dict_in_generate=True,
                           **SAMPLING) for _ in range(3)]
    for out in runs[1:]:
        assert np.array_equal(out.sequences, runs[0].sequences)
        assert np.array_equal(out.speculation_stopped_at, runs[0].speculation_stopped_at)
    assert model.speculation_costs == costs


# ---- refusals ---------------------------------------------------------------------------------------

def test_refusals_name_the_argument():
    model = _model("llama", "float32")
    ids = [[5, 6, 7, 5, 6]]
    with pytest.raises(ValueError, match="logits_processor"):
        model.generate(ids, prompt_lookup_num_tokens=2, logits_processor=lambda i, s: s)
    with pytest.raises(ValueError, match="num_beams=2"):
        model.generate(ids, prompt_lookup_num_tokens=2, num_beams=2)
    with pytest.raises(ValueError, match="streamer"):
        model.generate(ids, prompt_lookup_num_tokens=2, streamer=type("S", (), {"put": id, "end": id})())
    with pytest.raises(TypeError, match="assistant_model must be a pyllm.Model"):
        model.generate(ids, assistant_model="small")
    with pytest.raises(ValueError, match="assistant_model has a vocabulary of 5 tokens"):
        model.generate(ids, assistant_model=_tiny(0))
    with pytest.raises(ValueError, match='speculative must be "auto" or "always"'):
        model.generate(ids, prompt_lookup_num_tokens=2, speculative="never")
    with pytest.raises(ValueError, match="speculation_costs must be a dict"):
        model.speculation_costs = {"step": -1.0}


def test_llm_generate_speculates_and_gives_the_plain_text(tmp_path, data_dir):
    """LLM.generate passes the options and assistant_model= (a Model or an LLM) through; greedy
    text equals plain (the model is float32, whose multi-token calls give one-token bits here:
    compared on text with batch_invariant=True to be safe)."""
    from llm_models import write_llama
    llm = pyllm.LLM(write_llama(tmp_path, data_dir), n_threads=1, batch_invariant=True)
    prompts = ["the cat sat on the mat, the cat sat on the", "one two three one two three one two"]
    plain = llm.generate(prompts, max_new_tokens=24)
    assert llm.generate(prompts, max_new_tokens=24, prompt_lookup_num_tokens=4, speculative="always") == plain
    assert llm.generate(prompts, max_new_tokens=24, assistant_model=llm, num_assistant_tokens=3,
                        speculative="always") == plain
    with pytest.raises(ValueError, match="streamer"):
        list(llm.stream(prompts[0], max_new_tokens=4, prompt_lookup_num_tokens=4))
    llm.close()
