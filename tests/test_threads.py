"""Thread safety (docs/threads.md): eight threads encode, decode, stream-decode, generate, score and
stream text on shared tokenizers, models and KV caches while other threads add tokens to the shared
tokenizers, close models that are in use, and the main thread's own generations are interrupted by
SIGINT. Every result must equal the single-threaded one, or be the documented RuntimeError of a
closed model or of a KV cache already in use. The same file runs under the ASan/UBSan build in
.ci/sanitize.sh, where a use-after-free or a leak would end the run.

Work is bounded by counts (iterations, calls seen on a model before it is closed), never by time."""
import json
import os
import random
import signal
import threading

import numpy as np
import pytest

import pyllm
from pyllm import _testing

HIDDEN, LAYERS, HEADS, KV_HEADS, FF, VOCAB = 64, 2, 4, 2, 128, 32000

TEXTS = [
    "Hello world",
    "The cat sat on the mat because it was warm.",
    "Once upon a time, in a land far away, there lived 3 kings and 12 dragons.",
    "Zürich 東京 42 — naïve café, ½ months; emoji 🦙🦙 and tabs\tand\nnewlines",
    "   leading spaces and trailing   ",
    "def f(x):\n    return x ** 2  # code\n" * 3,
    "ÀÉÎÕÜ " * 20 + "x" * 300,
    "a <|thread_extra_ b <| c <|thread_extra__x d <|thread_extra___" * 8,  # prefixes of the added tokens
]


def added(j):
    """The j-th token added while encoding runs: each a new length (the special-token matcher
    regrows, freeing its old tables, on every one), none whole in the texts above."""
    return "<|thread_extra" + "_" * j + "|>"


WORKERS = 8
ROUNDS = 6  # jobs per worker


def llama_arrays(seed=5):
    """A small LLaMA over the 32,000-token SentencePiece vocabulary, in Hugging Face names, with
    weights scaled up so that greedy output is varied."""
    rng = np.random.default_rng(seed)

    def mat(rows, cols, gain=2.0):
        return (rng.standard_normal((rows, cols)) * (gain / cols ** 0.5)).astype(np.float32)

    w = {"model.embed_tokens.weight": (0.3 * rng.standard_normal((VOCAB, HIDDEN))).astype(np.float32),
         "model.norm.weight": np.ones(HIDDEN, np.float32), "lm_head.weight": mat(VOCAB, HIDDEN)}
    head = HIDDEN // HEADS
    for layer in range(LAYERS):
        p = f"model.layers.{layer}."
        w[p + "self_attn.q_proj.weight"] = mat(HEADS * head, HIDDEN)
        w[p + "self_attn.k_proj.weight"] = mat(KV_HEADS * head, HIDDEN)
        w[p + "self_attn.v_proj.weight"] = mat(KV_HEADS * head, HIDDEN)
        w[p + "self_attn.o_proj.weight"] = mat(HIDDEN, HEADS * head)
        w[p + "mlp.gate_proj.weight"] = mat(FF, HIDDEN)
        w[p + "mlp.up_proj.weight"] = mat(FF, HIDDEN)
        w[p + "mlp.down_proj.weight"] = mat(HIDDEN, FF)
        w[p + "input_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
        w[p + "post_attention_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
    return w


CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": VOCAB, "hidden_size": HIDDEN,
          "intermediate_size": FF, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
          "num_key_value_heads": KV_HEADS, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
          "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir):
    """Shared objects and the single-threaded answers every threaded result is held against."""
    from safetensors.numpy import save_file

    arrays = llama_arrays()
    directory = tmp_path_factory.mktemp("llama_threads")
    save_file(arrays, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(CONFIG))
    (directory / "tokenizer.model").write_bytes(open(os.path.join(data_dir, "llama", "tokenizer.model"), "rb").read())
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "legacy": True}))
    w = {
        "dir": str(directory),
        "arrays": arrays,
        "toks": {"spm": pyllm.Tokenizer.from_file(os.path.join(data_dir, "llama", "tokenizer.model")),
                 "gpt2": pyllm.Tokenizer.from_file(os.path.join(data_dir, "llamacpp", "ggml-vocab-gpt-2.gguf"))},
        "model": pyllm.Model.from_arrays(CONFIG, arrays, n_threads=1),
        "llm": pyllm.LLM(str(directory), n_threads=1),
    }
    spm = w["toks"]["spm"]
    w["encoded"] = {(k, t): tok.encode(t) for k, tok in w["toks"].items() for t in TEXTS}
    w["decoded"] = {key: w["toks"][key[0]].decode(ids) for key, ids in w["encoded"].items()}
    prompts = [spm.encode(t)[:12] for t in TEXTS]
    w["prompts"] = prompts
    model = w["model"]
    w["greedy"] = [model.generate(p, max_new_tokens=10, eos_token_id=[]).tolist() for p in prompts]
    w["sampled"] = [model.generate(p, max_new_tokens=10, eos_token_id=[], do_sample=True, seed=i, top_k=40).tolist()
                    for i, p in enumerate(prompts)]
    w["requests"] = [(p, spm.encode(t, add_special_tokens=False)[:6]) for p, t in zip(prompts, reversed(TEXTS))]
    w["scores"] = model.loglikelihood(w["requests"], batch_size=3)
    # A shared prefix, branched by copies: each branch's next-token logits.
    prefix = np.array(prompts[2], dtype=np.int64)
    w["prefix_cache"] = model.new_cache()
    model(prefix, cache=w["prefix_cache"])
    w["branches"] = [model(np.array([t]), cache=w["prefix_cache"].copy())[-1] for t in (100, 200, 300)]
    w["llm_texts"] = {t: w["llm"].generate(t, max_new_tokens=8, eos_token_id=[]) for t in TEXTS[:3]}
    assert len(set(map(tuple, w["greedy"]))) == len(prompts)  # varied output: equality means something
    yield w
    w["llm"].close()


def stream_decode(tok, ids):
    decoder = tok.stream_decoder()
    return "".join(decoder.push(i) for i in ids) + decoder.flush()


class Closable:
    """The model the closer thread replaces and closes while workers use it: a worker takes the
    current one, and the closer closes it once workers have finished `calls` calls on it (a count,
    not a time)."""

    def __init__(self, arrays):
        self.arrays = arrays
        self.cond = threading.Condition()
        self.model, self.seen = None, 0

    def renew(self):
        with self.cond:
            self.model, self.seen = pyllm.Model.from_arrays(CONFIG, self.arrays, n_threads=1), 0
            self.cond.notify_all()
            return self.model

    def take(self):
        with self.cond:
            return self.model

    def done_one(self, model):
        with self.cond:
            if model is self.model:
                self.seen += 1
                self.cond.notify_all()

    def wait_for(self, calls, stop):
        with self.cond:
            self.cond.wait_for(lambda: self.seen >= calls or stop.is_set())

    def stop(self, stop):
        with self.cond:
            stop.set()
            self.cond.notify_all()


def test_eight_threads_share_tokenizers_models_and_caches(world):
    w = world
    failures, refused = [], {"closed": 0, "cache in use": 0}
    lock = threading.Lock()
    closable = Closable(w["arrays"])
    closable.renew()
    shared_cache = w["model"].new_cache()  # every worker appends to it: one call at a time, or refused
    appended = []
    stop = threading.Event()

    def check(what, got, expected):
        if got != expected:
            with lock:
                failures.append((what, got, expected))

    def job(rng, kind):
        toks, model = w["toks"], w["model"]
        i = rng.randrange(len(TEXTS))
        if kind == "encode":
            k = rng.choice(sorted(toks))
            check(("encode", k, i), toks[k].encode(TEXTS[i]), w["encoded"][k, TEXTS[i]])
            batch = toks[k].encode_batch(TEXTS)
            check(("encode_batch", k), batch, [w["encoded"][k, t] for t in TEXTS])
        elif kind == "decode":
            k = rng.choice(sorted(toks))
            ids = w["encoded"][k, TEXTS[i]]
            check(("decode", k, i), toks[k].decode(ids), w["decoded"][k, TEXTS[i]])
            check(("stream", k, i), stream_decode(toks[k], ids), w["decoded"][k, TEXTS[i]])
        elif kind == "generate":
            p = w["prompts"][i]
            check(("greedy", i), model.generate(p, max_new_tokens=10, eos_token_id=[]).tolist(), w["greedy"][i])
            check(("sampled", i), model.generate(p, max_new_tokens=10, eos_token_id=[], do_sample=True, seed=i,
                                                 top_k=40).tolist(), w["sampled"][i])
        elif kind == "score":
            check("score", model.loglikelihood(w["requests"], batch_size=3), w["scores"])
        elif kind == "branch":
            j = rng.randrange(3)
            branch = w["prefix_cache"].copy()
            got = model(np.array([(100, 200, 300)[j]]), cache=branch)[-1]
            check(("branch", j), got.tolist(), w["branches"][j].tolist())
        elif kind == "shared cache":
            try:
                model(np.array([7, 8]), cache=shared_cache)
                with lock:
                    appended.append(2)
            except RuntimeError as e:
                assert "in use" in str(e), e
                with lock:
                    refused["cache in use"] += 1
        elif kind == "llm":
            t = TEXTS[rng.randrange(3)]
            if rng.random() < 0.5:
                check(("llm generate", t), w["llm"].generate(t, max_new_tokens=8, eos_token_id=[]), w["llm_texts"][t])
            else:
                check(("llm stream", t), "".join(w["llm"].stream(t, max_new_tokens=8, eos_token_id=[])),
                      w["llm_texts"][t])
        elif kind == "closable":
            m = closable.take()
            try:
                got = m.generate(w["prompts"][i], max_new_tokens=10, eos_token_id=[]).tolist()
            except RuntimeError as e:
                assert "closed" in str(e), e
                with lock:
                    refused["closed"] += 1
                return
            check(("closable", i), got, w["greedy"][i])
            closable.done_one(m)

    kinds = ["encode", "decode", "generate", "score", "branch", "shared cache", "llm", "closable"]

    def worker(n):
        rng = random.Random(n)
        try:
            for r in range(ROUNDS):
                job(rng, kinds[(n + r) % len(kinds)])  # every kind runs on several threads at once
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            with lock:
                failures.append(("raised", n, repr(e)))

    def add_tokens():
        for j in range(40):
            for tok in list(w["toks"].values()) + [w["llm"].tokenizer]:
                tok._core.add_token(added(j), tok._core.vocab_size, True)

    def closer():
        for _ in range(3):
            closable.wait_for(2, stop)
            closable.take().close()
            closable.renew()
        stop.wait()
        closable.take().close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    threads += [threading.Thread(target=add_tokens), threading.Thread(target=closer)]
    for t in threads:
        t.start()
    # Meanwhile the main thread (the one Python runs signal handlers on) is interrupted by SIGINT
    # in the middle of its own generations, on the shared model.
    interrupted = 0
    for _ in range(3):
        steps = []

        def processor(input_ids, scores):
            steps.append(1)
            if len(steps) == 2:  # to this thread itself: delivered before pthread_kill returns
                signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            return scores

        try:
            w["model"].generate(w["prompts"][0], max_new_tokens=200, eos_token_id=[], logits_processor=processor)
        except KeyboardInterrupt:
            interrupted += 1
        assert len(steps) <= 3
        assert w["model"].generate(w["prompts"][0], max_new_tokens=10, eos_token_id=[]).tolist() == w["greedy"][0]
    for t in threads[:WORKERS]:
        t.join()
    closable.stop(stop)
    for t in threads[WORKERS:]:
        t.join()

    assert failures == [], failures[:3]
    assert interrupted == 3
    # Every append to the shared cache that was not refused is in it, whole.
    assert shared_cache.used == sum(appended) and shared_cache.lengths == [sum(appended)]
    assert closable.take().closed and closable.take().weight_bytes == 0
    # The added tokens are there and split out of text now; nothing else changed.
    for tok in w["toks"].values():
        extra = tok.token_to_id(added(39))
        assert extra is not None and tok._core.encode(added(39)) == [extra]
        assert tok.encode(TEXTS[1]) == w["encoded"][next(k for k in w["toks"] if w["toks"][k] is tok), TEXTS[1]]


def test_a_cache_in_use_refuses_other_calls_and_is_unchanged(world):
    """What a second call on a KV cache meets while a call appends to it (held here by the test
    entry point, as a forward holds it): RuntimeError from forward, copy, repeat and the fill, and
    the cache afterwards is as the first call left it."""
    model = world["model"]
    ids = np.array(world["prompts"][1], dtype=np.int64)
    cache = model.new_cache()
    model(ids[:5], cache=cache)
    seen = []

    def meanwhile():
        for call in (lambda: model(ids[5:], cache=cache), cache.copy, lambda: cache.repeat(2),
                     lambda: cache.used, lambda: cache.lengths):
            with pytest.raises(RuntimeError, match="in use"):
                call()
            seen.append(1)
        assert cache.capacity == model.n_ctx and cache.batch_size == 1  # fixed at creation: always readable
        return "held"

    assert _testing.hold_kv_cache(cache, meanwhile) == "held"
    assert len(seen) == 5
    assert cache.used == 5
    rest = model(ids[5:], cache=cache)
    fresh = model.new_cache()
    model(ids[:5], cache=fresh)
    np.testing.assert_array_equal(rest, model(ids[5:], cache=fresh))


def test_copies_of_one_cache_may_run_together():
    """Copies only read the cache: a copy taken while another copy is under way is not refused."""
    model = pyllm.Model.from_arrays(CONFIG, llama_arrays(), n_threads=1)
    cache = model.new_cache()
    model(np.arange(10, 20), cache=cache)
    copies = []

    def copy_many():
        for _ in range(20):
            copies.append(cache.copy().used)

    threads = [threading.Thread(target=copy_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert copies == [10] * 80


def test_close_from_another_thread_waits_for_the_running_call(world):
    """close() while a generation runs on another thread: the generation ends normally with the
    same tokens, new calls are refused at once (even from that generation's own hook), and the
    weights are freed when the generation ends."""
    model = pyllm.Model.from_arrays(CONFIG, world["arrays"], n_threads=1)
    inside, closed = threading.Event(), threading.Event()
    seen = []

    def processor(input_ids, scores):
        if not inside.is_set():
            inside.set()
            closed.wait()
            with pytest.raises(RuntimeError, match="closed"):
                model(np.array([1, 2, 3]))
            assert model.weight_bytes > 0  # still in use: not freed yet
            seen.append("refused")
        return scores

    result = {}

    def run():
        result["ids"] = model.generate(world["prompts"][3], max_new_tokens=10, eos_token_id=[],
                                       logits_processor=processor).tolist()

    t = threading.Thread(target=run)
    t.start()
    inside.wait()
    model.close()
    assert model.closed
    closed.set()
    t.join()
    assert seen == ["refused"]
    assert result["ids"] == world["greedy"][3]
    assert model.weight_bytes == 0
    for call in (lambda: model(np.array([1, 2])), lambda: model.generate([1, 2]), model.new_cache,
                 lambda: model.loglikelihood([([1], [2])])):
        with pytest.raises(RuntimeError, match="closed"):
            call()
    model.close()  # twice is fine
    assert model.n_ctx == CONFIG["max_position_embeddings"]  # the configuration outlives the weights


def test_closing_an_llm_frees_its_model(world):
    llm = pyllm.LLM(world["dir"], n_threads=1)
    model = llm.model
    assert llm.generate(TEXTS[0], max_new_tokens=8, eos_token_id=[]) == world["llm_texts"][TEXTS[0]]
    llm.close()
    assert model.closed and model.weight_bytes == 0
    with pytest.raises(RuntimeError, match="closed"):
        llm.generate(TEXTS[0])


def test_n_threads_set_while_another_thread_computes(world):
    """The thread count may change while calls run on other threads: each call uses one setting
    throughout, and results do not depend on it."""
    model = pyllm.Model.from_arrays(CONFIG, world["arrays"], n_threads=1)
    failures = []

    def run():
        for i in range(4):
            if model.generate(world["prompts"][i], max_new_tokens=10, eos_token_id=[]).tolist() != world["greedy"][i]:
                failures.append(i)

    t = threading.Thread(target=run)
    t.start()
    for n in (2, 1, 2, 1) * 5:
        model.n_threads = n
    t.join()
    assert failures == [] and model.n_threads == 1
