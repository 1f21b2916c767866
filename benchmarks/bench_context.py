"""Decode speed against context length: tokens/s of greedy decoding after a prompt of 128 and of
2,000 tokens, for a random LLaMA of TinyLlama-1.1B's layer shape (hidden 2048, 32 heads, 4 KV
heads, MLP 5632, vocab 32000) with few layers, packed as float32 (f32 KV cache) and int8/int4
(16-bit KV cache), in alternating rounds.

    python benchmarks/bench_context.py                       # 4 layers, positions 128 and 2000
    python benchmarks/bench_context.py --kv-dtypes bfloat16,float16,float32 --dtypes int4
    python benchmarks/bench_context.py --perf                # + attention's share of each step

Each round copies a cache holding the prefilled prompt and times --new-tokens single-token calls
through it (the prompt's prefill is not timed). "growth ms" is the step time's growth from the
first position to each one: a lower bound on attention's time there. With --perf, after the
timed rounds, `perf record` samples this process through more decode steps at each position and
"attention %" is the share of its samples in the attention code (the kernels, the softmax and
the task loop: every symbol named attn_/attend_/pyllm_attention, and expf).

With --threads 2 on a host where other processes hold the cores, OpenMP's barriers make every
figure swing widely: compare within one run, or use --threads 1."""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_dtypes import random_llama  # noqa: E402

import pyllm  # noqa: E402

ATTENTION_SYMBOLS = re.compile(r"attn_|attend_|pyllm_attention|softmax_pass|expf")


def decode_seconds(model, base, first_token, new):
    """Seconds per single-token step over `new` greedy steps after the prefilled cache `base`."""
    cache = base.copy()
    token = first_token
    start = time.perf_counter()
    for _ in range(new):
        logits = model(np.array([token]), cache=cache, logits_to_keep=1)
        token = int(np.argmax(logits[0, -1]))
    return (time.perf_counter() - start) / new


def attention_share(model, base, new, seconds):
    """% of this process's perf samples in attention over `seconds` of decode steps (None
    without a working perf)."""
    with tempfile.TemporaryDirectory() as folder:
        data = os.path.join(folder, "perf.data")
        try:
            perf = subprocess.Popen(["perf", "record", "-F", "999", "-o", data, "-p", str(os.getpid())],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            return None
        time.sleep(0.5)  # perf attaches
        end = time.time() + seconds
        while time.time() < end:
            decode_seconds(model, base, 5, new)
        perf.send_signal(signal.SIGINT)
        perf.wait()
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "symbol", "--stdio"],
                                capture_output=True, text=True).stdout
    share = 0.0
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[[.k]\]\s+(\S+)", line)
        if m and ATTENTION_SYMBOLS.search(m.group(2)):
            share += float(m.group(1))
    return share if report.strip() else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--positions", default="128,2000")
    ap.add_argument("--dtypes", default="float32,int8,int4")
    ap.add_argument("--kv-dtypes", default="default",
                    help="comma-separated KV cache types to compare per dtype (default: the model's rule)")
    ap.add_argument("--perf", action="store_true", help="measure attention's share of decode with perf")
    ap.add_argument("--perf-seconds", type=float, default=8.0)
    args = ap.parse_args()
    config, weights = random_llama(2048, args.layers, 32, 4, 5632, 32000)
    positions = [int(p) for p in args.positions.split(",")]
    config["max_position_embeddings"] = max(positions) + args.new_tokens + 8
    kv_dtypes = [None if k == "default" else k for k in args.kv_dtypes.split(",")]
    variants = {}
    for dt in args.dtypes.split(","):
        for kv in kv_dtypes:
            options = {} if kv is None else {"kv_dtype": kv}
            model = pyllm.Model.from_arrays(config, weights, dtype=dt, n_threads=args.threads, progress=False,
                                            **options)
            # (a build from before kv_dtype existed had an f32 cache: for before/after runs)
            variants[f"{dt}/{getattr(model, 'kv_dtype', 'float32')}"] = model
    del weights
    rng = np.random.default_rng(1)
    prompts = {p: rng.integers(3, 32000, size=p) for p in positions}
    bases = {}
    for name, model in variants.items():  # prefill once; warm up primitives, scratch, page faults
        for p in positions:
            cache = model.new_cache(1, p + args.new_tokens + 1)
            model(prompts[p], cache=cache, logits_to_keep=1)
            bases[name, p] = cache
            decode_seconds(model, cache, 5, 2)
    times = {key: [] for key in bases}
    for _ in range(args.rounds):
        for name, model in variants.items():
            for p in positions:
                times[name, p].append(decode_seconds(model, bases[name, p], 5, args.new_tokens))
    shares = {}
    if args.perf:
        for name, model in variants.items():
            for p in positions:
                shares[name, p] = attention_share(model, bases[name, p], args.new_tokens, args.perf_seconds)
    print(f"LLaMA hidden 2048, {args.layers} layers, 32 heads / 4 KV heads, ffn 5632, vocab 32000; "
          f"{args.threads} threads; kernels: {pyllm._core.kernel_isa()}; {args.new_tokens} greedy tokens per "
          f"round; medians of {args.rounds} alternating rounds")
    print(f"{'dtype/kv':18} {'position':>8} {'tok/s':>8} {'ms/step':>8} {'growth ms':>10} {'vs first':>9}"
          + (f" {'attention %':>12}" if args.perf else ""))
    for name in variants:
        first = statistics.median(times[name, positions[0]])
        for p in positions:
            t = statistics.median(times[name, p])
            share = shares.get((name, p))
            print(f"{name:18} {p:8d} {1 / t:8.1f} {1e3 * t:8.2f} {1e3 * (t - first):10.2f} {first / t:9.2f}"
                  + (f" {share:12.1f}" if share is not None else " " * 13 if args.perf else ""))


if __name__ == "__main__":
    main()
