"""pyllm.ray on a real two-node Ray cluster, run by tests/test_ray_cluster.py inside a network and PID
namespace of its own (tests/ray_cluster/in_namespace.sh started the nodes and set RAY_ADDRESS).

Node A has the custom resource node_a, node B node_b; each has one CPU and one pyllm_slot, so a pool
of two actors asking for a pyllm_slot each runs one actor per node. Every job uses 1-thread actors
and a small random LLaMA written by the test."""
import json
import math
import os
import signal
import time

import numpy as np
import pytest
import ray
import ray.data
from ray.util.state import list_actors, list_tasks

import pyllm
import pyllm.ray
from llm_models import write_llama

SEED = 1234
MAX_NEW = 10
PROMPTS = ["Once upon a time", "The cat sat on the", "A B C", "In the beginning there was", "Hello",
           "Numbers: 1 2 3", "She opened the door and", "The quick brown fox", "Why is the sky", "Tea or"]


@pytest.fixture(scope="session")
def cluster():
    address = os.environ.get("RAY_ADDRESS")
    assert address, "RAY_ADDRESS is not set: run this suite through tests/test_ray_cluster.py"
    ray.init(address=address, log_to_driver=False)
    nodes = {}
    for node in ray.nodes():
        for name in ("node_a", "node_b"):
            if node["Alive"] and name in node["Resources"]:
                nodes[name] = node["NodeID"]
    assert set(nodes) == {"node_a", "node_b"}, f"the cluster should have two nodes, got {ray.nodes()}"
    yield nodes
    ray.shutdown()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, data_dir):
    return write_llama(str(tmp_path_factory.mktemp("llama")), data_dir)


@pytest.fixture(scope="session")
def local_bi(model_dir):
    return pyllm.LLM(model_dir, n_threads=1, batch_invariant=True)


def _rows(ds):
    rows = ds.take_all()
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), f"a row came back more than once: {sorted(ids)}"
    return {row["id"]: row for row in rows}


def _local(llm, prompt, seed=None, **options):
    """What LLM.generate gives for the prompt alone: (text, new token ids, log-probs float32)."""
    text = llm.generate(prompt, seed=seed, max_new_tokens=MAX_NEW, **options)
    ids = np.array([llm.tokenizer.encode(prompt)], dtype=np.int64)
    out = llm.model.generate(ids, seed=seed, max_new_tokens=MAX_NEW, output_logprobs=True, top_logprobs=2, **options)
    count = int(out.num_new_tokens[0])
    return text, out.sequences[0][ids.shape[1]:ids.shape[1] + count].tolist(), out.logprobs[0][:count], \
        out.top_logprobs[0][:count]


def _same_bits(a, b):
    return np.array_equal(np.asarray(a, dtype=np.float32).view(np.uint32), np.asarray(b, dtype=np.float32).view(np.uint32))


def _pool_actor_ids():
    return {a.actor_id for a in list_actors(limit=10000) if "MapWorker" in (a.class_name or "")}


def test_sampling_is_bitwise_local_whatever_the_layout(cluster, model_dir, local_bi, tmp_path):
    """Sampled rows with batch_invariant=True: each equals LLM.generate of the row alone with seed
    row_seed(SEED, id), bits of the log-probs included, on two actors (one per node, both doing
    work) with batches of 3, and again on one actor with batches of 4 over the rows reversed
    (ids given in a JSONL file)."""
    options = dict(do_sample=True, temperature=0.9, top_k=40, output_logprobs=True)
    before = _pool_actor_ids()
    two = _rows(pyllm.ray.generate(PROMPTS, model_dir, concurrency=2, batch_size=3, seed=SEED, batch_invariant=True,
                                   resources={"pyllm_slot": 1}, max_new_tokens=MAX_NEW, **options))
    pool = _pool_actor_ids() - before
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in reversed(list(enumerate(PROMPTS)))))
    one = _rows(pyllm.ray.generate(str(path), model_dir, concurrency=1, batch_size=4, seed=SEED, batch_invariant=True,
                                   max_new_tokens=MAX_NEW, **options))
    assert sorted(two) == sorted(one) == list(range(len(PROMPTS)))
    for i, prompt in enumerate(PROMPTS):
        text, tokens, logprobs, _ = _local(local_bi, prompt, pyllm.ray.row_seed(SEED, i), do_sample=True,
                                           temperature=0.9, top_k=40)
        for run in (two, one):
            row = run[i]
            assert row["error"] is None and row["prompt"] == prompt
            assert row["text"] == text and list(row["token_ids"]) == tokens, (i, row, text, tokens)
            assert _same_bits(row["logprobs"], logprobs), (i, row["logprobs"], logprobs)
            assert row["finish_reason"] == ("length" if len(tokens) == MAX_NEW else "stop")
    # Different seeds per row: not all rows sampled the same first token.
    assert len({two[i]["token_ids"][0] for i in two}) > 1
    # Both nodes held an actor of the pool and ran batches on it (task events arrive within seconds).
    deadline = time.monotonic() + 60
    while True:
        actors = [a for a in list_actors(limit=10000, detail=True) if a.actor_id in pool]
        tasks = [t for t in list_tasks(filters=[("type", "=", "ACTOR_TASK")], limit=10000)
                 if t.actor_id in pool and t.state == "FINISHED" and "submit" in (t.name or "")]
        worked = {t.node_id for t in tasks}
        if worked == set(cluster.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {a.node_id for a in actors} == set(cluster.values()), actors
    assert worked == set(cluster.values()), tasks


def test_greedy_without_batch_invariance_and_bad_rows(cluster, model_dir):
    """Greedy rows run batched on the actor (no seed plays a part); without batch_invariant their
    tokens equal the row alone up to the first near-tie and their log-probs agree within 1e-5. An
    empty prompt and one longer than the context give an error row; the others complete."""
    local = pyllm.LLM(model_dir, n_threads=1)
    prompts = PROMPTS[:5] + ["", "word " * 600] + PROMPTS[5:]
    rows = _rows(pyllm.ray.generate(prompts, model_dir, concurrency=1, batch_size=6, max_new_tokens=MAX_NEW,
                                    do_sample=False, output_logprobs=True))
    assert sorted(rows) == list(range(len(prompts)))
    assert rows[5]["error"] == "ValueError: prompt is empty: nothing to continue" and rows[5]["text"] is None
    assert "tokens, more than the context n_ctx=512" in rows[6]["error"] and rows[6]["token_ids"] == []
    whole = 0
    for i, prompt in enumerate(prompts):
        if i in (5, 6):
            continue
        row = rows[i]
        assert row["error"] is None
        text, tokens, logprobs, top = _local(local, prompt, do_sample=False)
        for step, token in enumerate(tokens):
            gap = top[step][0] - top[step][1]
            if gap < 1e-4:  # a near-tie: the batched row may take the other token from here on
                break
            assert row["token_ids"][step] == token, (i, step, row["token_ids"], tokens)
            assert abs(row["logprobs"][step] - logprobs[step]) <= 1e-5
        else:
            whole += 1
            assert row["text"] == text and list(row["token_ids"]) == tokens
    assert whole >= 6, "near-ties cut nearly every comparison short: the check proves little"


def test_scoring_matches_local(cluster, model_dir, local_bi):
    """loglikelihood and loglikelihood_rolling over a Dataset equal LLM's locally: the same bits
    with batch_invariant=True (on two actors), within 1e-5 without; an empty text is an error row."""
    pairs = [("The capital of France is", " Paris"), ("", "Hello there"), ("Two plus two equals", " four"),
             ("She opened the door and", " walked in."), ("A B", " C D E")]
    ds = ray.data.from_items([{"context": c, "continuation": x} for c, x in pairs])
    got = _rows(pyllm.ray.loglikelihood(ds, model_dir, concurrency=2, batch_size=2, batch_invariant=True,
                                        resources={"pyllm_slot": 1}))
    want = local_bi.loglikelihood(pairs)
    for i, (score, greedy) in enumerate(want):
        assert got[i]["error"] is None
        assert got[i]["loglikelihood"] == score and got[i]["is_greedy"] == greedy, (i, got[i], score)
    texts = ["The quick brown fox jumps over the lazy dog. " * 30, "Once upon a time", "", "Numbers 12345 and 2024."]
    got = _rows(pyllm.ray.loglikelihood_rolling(texts, model_dir, concurrency=1, batch_size=3, batch_invariant=True,
                                                max_length=128))
    assert got[2]["error"] == "ValueError: text is empty: nothing to score" and got[2]["loglikelihood"] is None
    for i, text in enumerate(texts):
        if i != 2:
            assert got[i]["loglikelihood"] == local_bi.loglikelihood_rolling(text, max_length=128), i
    plain = pyllm.LLM(model_dir, n_threads=1)
    got = _rows(pyllm.ray.loglikelihood(pairs, model_dir, concurrency=1, batch_size=3))
    for i, (score, greedy) in enumerate(plain.loglikelihood(pairs)):
        assert abs(got[i]["loglikelihood"] - score) <= 1e-5 and got[i]["is_greedy"] == greedy


def test_missing_model_path_names_path_and_node(cluster):
    """A model path that does not exist on the worker: the job fails with an error naming the path and
    the node, raised to the caller, not a hang."""
    missing = "/nonexistent/pyllm-ray-model"
    start = time.monotonic()
    with pytest.raises(Exception) as info:
        pyllm.ray.generate(["hello"], missing, concurrency=1, resources={"node_b": 1}).materialize()
    message = str(info.value)
    assert missing in message and f"node {cluster['node_b']}" in message, message
    assert time.monotonic() - start < 240


def test_killed_actor_mid_job(cluster, model_dir, local_bi, tmp_path):
    """kill -9 of a pool actor's process (found with list_actors) once the first rows have come back
    and while most are still to come: Ray restarts it and retries its batch; every row comes back
    exactly once and equals the row alone locally."""
    count, new = 120, 16
    prompts = [f"Story {i}: once upon a time" for i in range(count)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": f"row-{i}", "prompt": p}) + "\n" for i, p in enumerate(prompts)))
    before = _pool_actor_ids()
    ds = pyllm.ray.generate(str(path), model_dir, concurrency=2, batch_size=2, seed=SEED, batch_invariant=True,
                            resources={"pyllm_slot": 1}, max_new_tokens=new, do_sample=True)
    got, killed, rows_at_kill = [], None, None
    for row in ds.iter_rows():
        got.append(row)
        if killed is None:
            alive = [a for a in list_actors(filters=[("state", "=", "ALIVE")], limit=10000)
                     if "MapWorker" in (a.class_name or "") and a.actor_id not in before and a.pid]
            assert alive, "no live pool actor to kill while the job runs"
            os.kill(alive[0].pid, signal.SIGKILL)
            killed, rows_at_kill = alive[0], len(got)
    assert rows_at_kill < count // 2, f"the kill came after {rows_at_kill} of {count} rows"
    restarted = [a for a in list_actors(limit=10000, detail=True) if a.actor_id == killed.actor_id]
    assert restarted and restarted[0].num_restarts >= 1, restarted
    ids = [row["id"] for row in got]
    assert sorted(ids) == sorted(f"row-{i}" for i in range(count)), "rows lost or repeated"
    rows = {row["id"]: row for row in got}
    for i, prompt in enumerate(prompts):
        row = rows[f"row-{i}"]
        want = local_bi.generate(prompt, seed=pyllm.ray.row_seed(SEED, f"row-{i}"), max_new_tokens=new, do_sample=True)
        assert row["error"] is None and row["text"] == want, (i, row, want)


def test_lm_eval_ray_actors_equal_single_process(cluster, tmp_path, data_dir):
    """lm-eval's pyllm backend with ray_actors=2 (one actor per... wherever Ray puts them) returns
    every metric and every per-request answer equal to the single-process backend's
    (batch_invariant=true: the same bits)."""
    import lm_eval
    from lm_eval.tasks import TaskManager
    import pyllm.lm_eval  # noqa: F401  (registers "pyllm")
    from test_lm_eval_backend import TASKS, llama_factory
    directory = tmp_path / "model"
    directory.mkdir()
    llama_factory(str(directory), data_dir)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for name, (filename, docs, body) in TASKS.items():
        (tasks / filename).write_text("".join(json.dumps(doc) + "\n" for doc in docs))
        header = (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tasks / filename}\n"
                  "test_split: test\n")
        import textwrap
        (tasks / f"{name}.yaml").write_text(header + textwrap.dedent(body))
    manager = TaskManager(include_path=str(tasks), include_defaults=False)

    def evaluate(extra):
        return lm_eval.simple_evaluate(model="pyllm", model_args=f"pretrained={directory},max_length=320,n_threads=1,"
                                       f"batch_invariant=true{extra}", tasks=sorted(TASKS), task_manager=manager,
                                       batch_size=2, device="cpu", log_samples=True, random_seed=0,
                                       numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)

    single, spread = evaluate(""), evaluate(",ray_actors=2")
    for task in TASKS:
        assert single["results"][task] == spread["results"][task], task
        answers = [s["resps"] for s in single["samples"][task]]
        assert answers == [s["resps"] for s in spread["samples"][task]], task
    assert any(not math.isnan(v) for v in single["results"]["pyllm_test_ppl"].values() if isinstance(v, float))
