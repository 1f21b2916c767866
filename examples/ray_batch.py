"""Batch generation and scoring over a Ray cluster with pyllm.ray (pip install "pyllm[ray]").

    python examples/ray_batch.py                          # a local Ray on this machine, the default model
    python examples/ray_batch.py --model MODEL            # a .gguf file or a Hugging Face model directory
    python examples/ray_batch.py --address HOST:6379 --model /shared/models/MODEL --concurrency 8

Without --address Ray starts on this machine (on 127.0.0.1 only); with it the same script runs on a
cluster, where MODEL must be a path every node can read (a shared disk) or a Hub id. Each actor loads
the model once; rows come back with their id, and each row's output is the same whatever the
number of actors: LLM.generate(prompt, seed=pyllm.ray.row_seed(SEED, id)) reproduces it locally.
"""
import argparse
import os
import time

import ray

import pyllm
import pyllm.ray

PROMPTS = ["The capital of France is", "Here is a recipe for pancakes:", "1, 2, 3, 4,",
           "The three primary colours are", "Once upon a time", "The best way to learn a language is"]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Generate for many prompts on Ray actors, then score them.")
    parser.add_argument("--model", default=None,
                        help="a .gguf file, a Hugging Face model directory or a Hub id with pyllm[hub] "
                             "(default: SmolLM2-135M-Instruct)")
    parser.add_argument("--address", default=None, help="a Ray cluster's address (default: a local Ray)")
    parser.add_argument("--concurrency", type=int, default=2, help="actors (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="threads (and CPUs) per actor (default: 1)")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="tokens per prompt (default: 16)")
    parser.add_argument("--seed", type=int, default=0, help="the global seed (default: 0)")
    parser.add_argument("prompts", nargs="*", help="prompts (default: six examples)")
    args = parser.parse_args(argv)
    model = args.model or pyllm.default_model_path()
    prompts = args.prompts or PROMPTS

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.address:
        ray.init(address=args.address)
    else:  # a one-machine Ray that listens on loopback only
        ray.init(num_cpus=args.concurrency * args.threads, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        start = time.perf_counter()
        ds = pyllm.ray.generate(prompts, model, concurrency=args.concurrency, n_threads=args.threads,
                                seed=args.seed, max_new_tokens=args.max_new_tokens, do_sample=True, temperature=0.8)
        rows = sorted(ds.take_all(), key=lambda row: row["id"])
        print(f"{len(rows)} prompts in {time.perf_counter() - start:.1f} s on {args.concurrency} actors")
        for row in rows:
            print(f"{row['id']}: {row['prompt']!r} -> {row['text']!r} ({row['finish_reason']})"
                  if row["error"] is None else f"{row['id']}: error {row['error']}")
        # Score what was generated: log p(text | prompt) for each row.
        pairs = [(row["prompt"], row["text"]) for row in rows if row["error"] is None and row["text"]]
        if pairs:
            scores = sorted(pyllm.ray.loglikelihood(pairs, model, concurrency=args.concurrency,
                                                    n_threads=args.threads).take_all(), key=lambda row: row["id"])
            for row in scores:
                print(f"log p = {row['loglikelihood']:.2f} for {row['continuation']!r}")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
