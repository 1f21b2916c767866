"""pyllm.ray against one local LLM on this machine: throughput and the Ray path's cost per row.

    python benchmarks/bench_ray.py [--model MODEL] [--rows 32] [--new 32] [--rounds 2]

Run it inside a network namespace of its own so Ray stays on loopback, as the tests do:
    unshare -n sh -c 'ip link set lo up; python benchmarks/bench_ray.py'

Compared, each round alternating them:
- local: one pyllm.LLM with n_threads=2, the rows in batches of 8 (LLM.generate of a list);
- ray: pyllm.ray.generate on 2 actors x 1 thread (a local Ray started with 2 CPUs), whole jobs
  timed from the call to the last row, actor start and model load included, and the load alone;
both greedy (the actor batches rows) and sampled (each row its own call, for its own seed).
tokens/s counts new tokens, with and without the fixed cost of a job (a 2-row job: actor start,
model load). Overhead per row: a job of --overhead-rows one-token rows on one 1-thread actor, minus
a 1-row job and minus the same rows run locally with 1 thread, per row.
"""
import argparse
import os
import statistics
import time

import ray

import pyllm
import pyllm.ray

WORDS = "the of and a to in is you that it he was for on are as with his they at be this have from".split()


def prompts(n):
    return [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(8 + i % 9)) for i in range(n)]


def local_run(llm, rows, new, sample):
    start = time.perf_counter()
    tokens = 0
    for i in range(0, len(rows), 8):
        chunk = rows[i:i + 8]
        ids, mask = llm._encode_prompts(chunk)
        cfg, stops, hooks, eos = llm._prepare(dict(max_new_tokens=new, do_sample=sample, seed=i))
        out = llm._run(ids, mask, cfg, stops, hooks, eos)
        tokens += int(out.num_new_tokens.sum())
    return tokens, time.perf_counter() - start


def ray_run(model, rows, new, sample, concurrency=2):
    start = time.perf_counter()
    out = pyllm.ray.generate(rows, model, concurrency=concurrency, n_threads=1, batch_size=8, seed=0,
                             max_new_tokens=new, do_sample=sample).take_all()
    assert all(row["error"] is None for row in out), [row["error"] for row in out if row["error"]]
    return sum(len(row["token_ids"]) for row in out), time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model path (default: SmolLM2-135M-Instruct Q4_1)")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--overhead-rows", type=int, default=512, help="rows of the per-row overhead job")
    args = parser.parse_args()
    model = args.model or pyllm.default_model_path()
    rows = prompts(args.rows)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False

    start = time.perf_counter()
    llm2 = pyllm.LLM(model, n_threads=2)
    load = time.perf_counter() - start
    llm1 = pyllm.LLM(model, n_threads=1)
    results = {}
    for _ in range(args.rounds):
        for sample in (False, True):
            mode = "sampled" if sample else "greedy"
            results.setdefault(("local 1x2 threads", mode), []).append(local_run(llm2, rows, args.new, sample))
            results.setdefault(("ray 2 actors x 1 thread", mode), []).append(ray_run(model, rows, args.new, sample))
    print(f"model {os.path.basename(model)}, {args.rows} rows x {args.new} new tokens, median of {args.rounds}")
    print(f"local model load: {load:.2f} s\n")
    print("| engine | mode | new tokens | seconds | tokens/s |\n|---|---|---|---|---|")
    for (engine, mode), runs in results.items():
        tokens = runs[0][0]
        seconds = statistics.median(t for _, t in runs)
        print(f"| {engine} | {mode} | {tokens} | {seconds:.2f} | {tokens / seconds:.1f} |")

    # The fixed cost of a job (actor start, model load, the pool's wait): 2 one-token rows on 2 actors.
    fixed = statistics.median(ray_run(model, rows[:2], 1, False)[1] for _ in range(args.rounds))
    print(f"\nfixed cost of a job on 2 actors (start, model load): {fixed:.2f} s")
    print("\n| engine | mode | tokens/s without the fixed cost |\n|---|---|---|")
    for (engine, mode), runs in results.items():
        if engine.startswith("ray"):
            seconds = statistics.median(t for _, t in runs)
            print(f"| {engine} | {mode} | {runs[0][0] / (seconds - fixed):.1f} |")

    # What Ray adds per row: many one-token rows on one 1-thread actor, against the same work done
    # locally with 1 thread, both in batches of 8, the fixed cost taken out.
    many = prompts(args.overhead_rows)
    t_one = statistics.median(ray_run(model, many[:1], 1, False, concurrency=1)[1] for _ in range(args.rounds))
    t_many = statistics.median(ray_run(model, many, 1, False, concurrency=1)[1] for _ in range(args.rounds))
    local = statistics.median(local_run(llm1, many, 1, False)[1] for _ in range(args.rounds))
    per_row = (t_many - t_one - local) / (len(many) - 1)
    print(f"\n{len(many)} one-token rows on 1 actor: {t_many:.2f} s (a 1-row job: {t_one:.2f} s); "
          f"locally with 1 thread: {local:.2f} s")
    print(f"ray overhead per row: {per_row * 1000:.2f} ms")
    ray.shutdown()


if __name__ == "__main__":
    main()
