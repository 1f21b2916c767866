"""Nothing lost: a failure at any point of loading, forward passes, generate, stream and scoring
raises a clean MemoryError and leaves every object it touched usable and unchanged.

The fault switch (pyllm._core._testing.fail_after) makes the n-th allocation of the C core or
the n-th oneDNN call from now fail as if memory had run out. Each sweep counts the calls N of a
clean run, then, for every n in 1..N (no stride: the models here are tiny), runs the operation
again with call n failing and checks: a MemoryError (never another exception, a crash or a
hang); and afterwards the very same objects (model, tokenizer, KV cache, the generation state a
seed fixes) give results bitwise equal to the clean run. A KV cache given to a failed call is
left unchanged: the retry on it continues from where the failed call started.

Models: stories260K (a trained LLaMA, from the llama2.c checkpoint, its GGUF and a Hugging Face
directory converted from it) at every dtype, and a small random BLOOM with a tokenizer.json."""
import math
import os

import numpy as np
import pytest

import pyllm
from pyllm import _testing
from pyllm.llama2c import convert_llama2c, load_llama2c

KINDS = ("alloc", "dnnl")
DTYPES = ("float32", "bfloat16", "int8", "int4")
TEXTS = ["Once upon a time", "Lily saw a big dog. The dog was happy", "Zürich 東京 42 <s> end"]

# Prompts of a batch of two, left-padded: 10 tokens (past the 8 rows where prefill leaves the
# GEMV kernels for oneDNN's GEMM) and 6.
IDS = np.array([[1, 403, 261, 397, 282, 350, 410, 297, 271, 302],
                [0, 0, 0, 0, 1, 403, 261, 282, 331, 290]])
MASK = np.array([[1] * 10, [0] * 4 + [1] * 6])


def identical(a, b):
    """Bitwise equality of nested results (arrays, lists, tuples, dicts, numbers, strings)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def needs_no_onednn(dtype):
    """int8 and int4 on AVX-512 run pyllm's own kernels at every row count, prefill included
    (pyllm._testing.prefill_compute says "int8"): an operation on them may call oneDNN not at all.
    .ci/run's AVX2 step sweeps generate and scoring on their oneDNN path (prefill dequantized for its
    f32 GEMM)."""
    name = {"int8": "q8_0", "int4": "q4_0"}.get(dtype)
    return name is not None and _testing.prefill_compute(name) == "int8"


def sweep(kind, setup, action, observe=lambda state, result: result, stride=1, none_ok=False):
    """Run action(state) with call n of `kind` failing, for every n of a clean run's N calls
    (every stride-th one and the last), each on a fresh setup(); after each failure the same
    state must give the clean run's observe(state, action(state)). Returns N.
    none_ok: an operation that makes no such call is shown to need none (every call set to fail,
    it still gives the clean result) instead of failing the sweep as one that proves nothing."""
    action(setup())  # warm: primitives a first call creates are then cached, as in every run below
    state = setup()
    _testing.fail_after(kind, 0)
    try:
        result = action(state)
    finally:
        _testing.clear_faults()
    calls = _testing.fault_count(kind)
    expected = observe(state, result)
    if calls == 0 and none_ok:
        state = setup()
        _testing.fail_after(kind, 1)
        try:
            result = action(state)
            injected = _testing.faults_injected()
        finally:
            _testing.clear_faults()
        assert injected == 0 and identical(observe(state, result), expected)
        return 0
    assert calls > 0, f"the operation makes no {kind} call: the sweep would prove nothing"
    problems = []
    for n in sorted(set(range(1, calls + 1, stride)) | {calls}):
        state = setup()
        _testing.fail_after(kind, n)
        try:
            action(state)
            raised = None
        except BaseException as e:  # anything but MemoryError is a finding
            raised = e
        finally:
            injected = _testing.faults_injected()
            _testing.clear_faults()
        if injected != 1:
            problems.append(f"call {n}: never made (the clean run made {calls})")
        elif raised is None:
            problems.append(f"call {n}: its failure was swallowed")
        elif not isinstance(raised, MemoryError):
            problems.append(f"call {n}: {type(raised).__name__}: {raised}")
        elif "internal error" in str(raised) or not str(raised):
            problems.append(f"call {n}: a MemoryError without its message: {raised!r}")
        if not identical(observe(state, action(state)), expected):
            problems.append(f"call {n}: afterwards the results differ from the clean run's")
    assert not problems, f"{kind}, {calls} calls:\n" + "\n".join(problems[:20])
    return calls


@pytest.fixture(autouse=True)
def no_fault_left_pending():
    yield
    _testing.clear_faults()


@pytest.fixture(scope="module")
def stories(data_dir):
    return load_llama2c(os.path.join(data_dir, "stories260K", "stories260K.bin"))


@pytest.fixture(scope="module")
def gguf_path(data_dir):
    return os.path.join(data_dir, "stories260K", "stories260K.gguf")


@pytest.fixture(scope="module")
def models(stories):
    config, weights = stories
    return {dtype: pyllm.Model.from_arrays(config, weights, dtype=dtype) for dtype in DTYPES}


@pytest.fixture(scope="module")
def llm(gguf_path):
    # Without the prefix cache: with it a repeated call skips the cached prompt, so the runs of a
    # sweep would not make the same calls (tests/test_prefix_cache.py sweeps the cached path).
    with pyllm.LLM(gguf_path, prefix_cache=False) as llm:
        yield llm


@pytest.fixture(scope="module")
def bloom_dir(tmp_path_factory):
    from llm_models import write_bloom
    return write_bloom(tmp_path_factory.mktemp("bloom"))


# 8 rows: every product of the fingerprint runs on pyllm's own kernels (decode's, up to 8 rows),
# which give the same bits in every fresh model. oneDNN's f32 GEMM on AVX2 does not: under
# ASan on an AVX2 host, two fresh float32 models' logits of the 2 x 10 batch differed in the last
# bits with no fault injected.
FINGERPRINT_IDS = np.array([[1, 403, 261, 397], [0, 0, 1, 403]])
FINGERPRINT_MASK = np.array([[1, 1, 1, 1], [0, 0, 1, 1]])


def fingerprint(model):
    """What a model computes from every weight it packed: a left-padded batch's logits and a
    greedy continuation."""
    return (model(FINGERPRINT_IDS, attention_mask=FINGERPRINT_MASK),
            model.generate(FINGERPRINT_IDS[0], max_new_tokens=12))


# ---- loading ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_from_arrays(stories, dtype, kind):
    config, weights = stories
    copies = {name: np.array(w) for name, w in weights.items()}
    sweep(kind, lambda: None, lambda _: pyllm.Model.from_arrays(config, weights, dtype=dtype),
          lambda _, model: fingerprint(model))
    assert all(identical(np.asarray(weights[name]), copies[name]) for name in weights)  # sources untouched


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("source, dtype", [("gguf", None), ("gguf", "int4"), ("hf", "bfloat16"), ("bloom", "int8")])
def test_from_pretrained(gguf_path, bloom_dir, tmp_path_factory, data_dir, source, dtype, kind):
    if source == "gguf":
        path = gguf_path
    elif source == "hf":
        path = convert_llama2c(os.path.join(data_dir, "stories260K", "stories260K.bin"),
                               tmp_path_factory.mktemp("stories_hf"))
    else:
        path = bloom_dir
    sweep(kind, lambda: None, lambda _: pyllm.Model.from_pretrained(path, dtype=dtype),
          lambda _, model: fingerprint(model))


def tokenizer_results(tok):
    ids = [tok.encode(text) for text in TEXTS]
    return ids, [tok.decode(i) for i in ids], [tok.decode(i, skip_special_tokens=True) for i in ids]


@pytest.mark.parametrize("source", ["sentencepiece", "tokenizer.json", "gguf-spm", "gguf-bpe", "llama2c"])
def test_tokenizer_loading(data_dir, bloom_dir, gguf_path, source):
    load = {
        "sentencepiece": lambda: pyllm.Tokenizer.from_file(os.path.join(data_dir, "llama", "tokenizer.model")),
        "tokenizer.json": lambda: pyllm.Tokenizer.from_pretrained(bloom_dir),
        "gguf-spm": lambda: pyllm.Tokenizer.from_gguf(gguf_path),
        "gguf-bpe": lambda: pyllm.Tokenizer.from_gguf(os.path.join(data_dir, "llamacpp", "ggml-vocab-gpt-2.gguf")),
        "llama2c": lambda: pyllm.Tokenizer.from_llama2c(os.path.join(data_dir, "stories260K", "tok512.bin"), 512),
    }[source]
    # GPT-2's 50,000 merges take 192 allocations and 80 ms a load: every 4th call is enough there
    sweep("alloc", lambda: None, lambda _: load(), lambda _, tok: tokenizer_results(tok),
          stride=4 if source == "gguf-bpe" else 1)


@pytest.mark.parametrize("source", ["sentencepiece", "tokenizer.json"])
def test_tokenizer_calls(data_dir, bloom_dir, source):
    """encode, encode_batch, decode and stream decoding that fail leave the tokenizer as it was."""
    tok = (pyllm.Tokenizer.from_file(os.path.join(data_dir, "llama", "tokenizer.model")) if source == "sentencepiece"
           else pyllm.Tokenizer.from_pretrained(bloom_dir))
    ids = tok.encode(TEXTS[1] * 3)

    def stream_decode(_):
        decoder = tok.stream_decoder()
        return [decoder.push(i) for i in ids] + [decoder.flush()]

    sweep("alloc", lambda: None, lambda _: tok.encode(TEXTS[1] * 3))
    sweep("alloc", lambda: None, lambda _: tok.encode_batch(TEXTS))
    sweep("alloc", lambda: None, lambda _: tok.decode(ids))
    sweep("alloc", lambda: None, stream_decode)


# ---- forward passes and the KV cache --------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_without_cache(stories, models, dtype, kind):
    """A fresh model's first pass (primitives created) and a warm model's both fail cleanly."""
    config, weights = stories
    forward = lambda model: model(IDS, attention_mask=MASK)  # noqa: E731
    none_ok = kind == "dnnl" and needs_no_onednn(dtype)
    sweep(kind, lambda: pyllm.Model.from_arrays(config, weights, dtype=dtype), forward, none_ok=none_ok)
    sweep(kind, lambda: models[dtype], forward, none_ok=none_ok)
    sweep(kind, lambda: models[dtype], lambda model: model(IDS, attention_mask=MASK, output_hidden_states=True,
                                                            logits_to_keep=2), none_ok=none_ok)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float32", "int4"])
def test_forward_with_cache(stories, dtype, kind):
    """A failed call leaves the cache as it was (used, lengths, and what the retry computes) on a
    fresh model, whose workspace and primitives grow for the call."""
    config, weights = stories
    step = IDS[:, :9] + 7

    def setup():
        model = pyllm.Model.from_arrays(config, weights, dtype=dtype)
        cache = model.new_cache(batch_size=2, capacity=40)
        model(IDS[:, 4:7], cache=cache)
        return model, cache

    def observe(state, logits):
        model, cache = state
        return logits, cache.used, cache.lengths, model(step[:, :1], cache=cache)

    sweep(kind, setup, lambda state: state[0](step, cache=state[1]), observe,
          none_ok=kind == "dnnl" and needs_no_onednn(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_token_loop_makes_no_call(models, dtype):
    """generate makes as many allocations and oneDNN calls for 24 new tokens as for 4: the token
    loop itself cannot fail for want of memory (so there is nothing in it to sweep)."""
    model = models[dtype]
    counts = []
    for new in (24, 4, 24):  # the first grows the workspace to the larger cache
        _testing.fail_after("any", 0)
        out = model.generate(IDS, attention_mask=MASK, max_new_tokens=new, eos_token_id=[])
        counts.append((_testing.fault_count("alloc"), _testing.fault_count("dnnl")))
        assert out.shape == (2, 10 + new)
    assert counts[1] == counts[2] and counts[1][0] > 0, counts


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_cache_creation(models, dtype):
    model = models[dtype]
    prompt = model.new_cache(batch_size=1, capacity=32)
    model(IDS[:1], cache=prompt)
    more = IDS[:, :3] + 11

    def use(cache):
        return cache.used, cache.lengths, cache.capacity, model(more[:cache.batch_size], cache=cache)

    sweep("alloc", lambda: None, lambda _: model.new_cache(batch_size=2, capacity=24), lambda _, c: use(c))
    sweep("alloc", lambda: None, lambda _: prompt.copy(), lambda _, c: use(c))
    sweep("alloc", lambda: None, lambda _: prompt.repeat(2), lambda _, c: use(c))
    assert prompt.used == 10 and prompt.lengths == [10]


# ---- generation ----------------------------------------------------------------------------------------------

GENERATE = {
    "greedy": dict(input_ids=IDS[0], max_new_tokens=16),
    "sampled": dict(input_ids=IDS[0], max_new_tokens=16, do_sample=True, temperature=0.8, top_k=40, top_p=0.9,
                    seed=1234),
    "batch": dict(input_ids=IDS, attention_mask=MASK, max_new_tokens=12, do_sample=True, seed=5,
                  repetition_penalty=1.3, return_dict_in_generate=True, top_logprobs=3),
    "batch-eos": dict(input_ids=np.concatenate([IDS, IDS[::-1]]), attention_mask=np.concatenate([MASK, MASK[::-1]]),
                      max_new_tokens=24, do_sample=True, seed=11, eos_token_id=[2, 297, 282],
                      no_repeat_ngram_size=2, logit_bias={290: -2.0}, bad_words_ids=[[331, 290]]),
}


def generated(out):
    if isinstance(out, pyllm.generation.GenerateOutput):
        return out.sequences, out.num_new_tokens, out.logprobs, out.top_logprob_ids, out.top_logprobs
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", list(GENERATE))
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_generate(models, dtype, variant, kind):
    model = models[dtype]
    options = GENERATE[variant]
    none_ok = kind == "dnnl" and needs_no_onednn(dtype)
    calls = sweep(kind, lambda: model, lambda m: generated(m.generate(**options)), none_ok=none_ok)
    assert calls > 0 or none_ok


@pytest.mark.parametrize("kind", KINDS)
def test_generate_with_stop_strings_and_streamer(llm, kind):
    """Python hooks in the loop (stop strings, a streamer): the failure still comes out as a
    MemoryError, and the streamer is told the stream ended."""
    model, tok = llm.model, llm.tokenizer
    prompt = np.array(tok.encode(TEXTS[1]))  # past 8 tokens: prefill through oneDNN

    class Streamer:
        """Keeps each stream (put calls from the prompt to end()) apart."""
        def __init__(self):
            self.streams, self.current = [], None

        def put(self, value):
            if self.current is None:
                self.current = []
            self.current.append(np.array(value))

        def end(self):
            self.streams.append(self.current)
            self.current = None

    def run(streamer):
        return model.generate(prompt, max_new_tokens=40, stop_strings=["park", "."], tokenizer=tok, streamer=streamer)

    def observe(streamer, out):
        # the retry's stream alone: a failed call must have ended its own
        return out, streamer.streams[-1], streamer.current is None

    calls = sweep(kind, Streamer, run, observe)
    assert calls > 0


@pytest.mark.parametrize("kind", KINDS)
def test_stream(llm, kind):
    sweep(kind, lambda: None, lambda _: list(llm.stream(TEXTS[1], max_new_tokens=30, stop_strings=["park"])))


@pytest.mark.parametrize("kind", KINDS)
def test_llm_generate_and_chat(llm, kind):
    sweep(kind, lambda: None, lambda _: llm.generate(TEXTS, max_new_tokens=16, do_sample=True, seed=3,
                                                     stop_strings=["dog"]))
    sweep(kind, lambda: None, lambda _: llm.chat([{"role": "user", "content": "Tell me a story about a dog"}],
                                                 template="alpaca", max_new_tokens=12))


@pytest.mark.parametrize("kind", KINDS)
def test_bloom_llm(bloom_dir, kind):
    with pyllm.LLM(bloom_dir, dtype="bfloat16", prefix_cache=False) as bloom:
        sweep(kind, lambda: None, lambda _: bloom.generate(["Hello world", "The cat sat"], max_new_tokens=10))
        sweep(kind, lambda: None, lambda _: list(bloom.stream("The cat sat on", max_new_tokens=10)))


# ---- scoring -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float32", "int4"])
def test_scoring(models, llm, dtype, kind):
    model = models[dtype]
    context = [1, 403, 261, 397, 282, 350, 410, 297, 271, 302]
    requests = [(context, [290, 331]), (context, [282]), (context, [297, 271, 302]),  # one shared context
                ([1, 282, 350], [410, 297]), ([1], [403, 261, 397])]
    none_ok = kind == "dnnl" and needs_no_onednn(dtype)
    sweep(kind, lambda: model, lambda m: m.loglikelihood(requests, batch_size=2), none_ok=none_ok)
    sweep(kind, lambda: model, lambda m: m.loglikelihood_rolling(context * 3, max_length=12, batch_size=2),
          none_ok=none_ok)
    sweep(kind, lambda: None, lambda _: llm.perplexity(TEXTS[:2], max_length=8))


def test_sample_logits():
    logits = np.linspace(-3.0, 3.0, 300, dtype=np.float32)
    sweep("alloc", lambda: None, lambda _: pyllm.generation.sample_logits(logits, temperature=0.7, top_k=50, top_p=0.9,
                                                                       seed=99, num_samples=8))
