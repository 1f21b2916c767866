"""Two threads against one, with and without another process spinning on a core.

    python benchmarks/bench_threads.py [--rounds 5] [--new 64] [--prefill 512]
    python benchmarks/bench_threads.py --sweep [--rounds 3]   # under several OpenMP settings

A random LLaMA (hidden 1024, 8 layers, 16/4 heads, MLP 2816, vocab 32000, float32) decodes
greedily `--new` tokens after an 8-token prompt with n_threads=1 and 2, each alone and beside a
competitor (a subprocess running `while True: pass`, free to run on either core, as a user's
other work would). The configurations alternate in rounds; the table shows medians. The figure
that matters is `2t/1t with competitor`: a token has dozens of parallel regions, and if each one
waits at a barrier for a thread the kernel has descheduled, two threads decode slower than one
(the target is >= 0.9). Also reported: prefill tok/s of a `--prefill`-token prompt (2 threads,
no competitor), and the CPU seconds the process burns per wall second while idle right after a
call (a notebook between cells: threads spinning there steal a core from everything else).

--sweep reruns the whole measurement in subprocesses under each environment setting of
SETTINGS (libgomp reads OMP_* and GOMP_* once, when it is loaded) and prints one table.
--builds DIR,DIR... does the same for several builds of pyllm (each DIR goes first on PYTHONPATH),
e.g. a checkout of the previous commit against this one. Both repeat the subprocesses --repeat
times, alternating, and pool their rounds.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "hidden_size": 1024,
    "intermediate_size": 2816, "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 4,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
}

# Environment settings compared by --sweep; {} is whatever the library does by default.
SETTINGS = [
    {},
    {"OMP_WAIT_POLICY": "passive"},
    {"OMP_WAIT_POLICY": "active"},
    {"GOMP_SPINCOUNT": "0"},
    {"GOMP_SPINCOUNT": "10000"},
    {"GOMP_SPINCOUNT": "1000000"},
    {"OMP_PROC_BIND": "true", "OMP_PLACES": "cores"},
    {"OMP_PROC_BIND": "false"},
    {"OMP_DYNAMIC": "true"},
]
OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_PROC_BIND", "OMP_PLACES", "OMP_DYNAMIC")


def random_weights(config, seed=0):
    rng = np.random.default_rng(seed)
    d, ff, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    hd = d // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * hd

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * (1.5 / cols ** 0.5)).astype(np.float32)

    w = {"model.embed_tokens.weight": matrix(v, d) * 10, "model.norm.weight": np.ones(d, np.float32),
         "lm_head.weight": matrix(v, d)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "self_attn.q_proj.weight"] = matrix(d, d)
        w[p + "self_attn.k_proj.weight"] = matrix(kv, d)
        w[p + "self_attn.v_proj.weight"] = matrix(kv, d)
        w[p + "self_attn.o_proj.weight"] = matrix(d, d)
        w[p + "mlp.gate_proj.weight"] = matrix(ff, d)
        w[p + "mlp.up_proj.weight"] = matrix(ff, d)
        w[p + "mlp.down_proj.weight"] = matrix(d, ff)
        w[p + "input_layernorm.weight"] = np.ones(d, np.float32)
        w[p + "post_attention_layernorm.weight"] = np.ones(d, np.float32)
    return w


class Competitor:
    """A busy process (pure Python spin) while the with-block runs."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.2)  # let it start spinning
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(args):
    """Run the rounds in this process; return a dict of medians."""
    import pyllm

    model = pyllm.Model.from_arrays(CONFIG, random_weights(CONFIG), n_threads=2)
    rng = np.random.default_rng(1)
    prompt = rng.integers(3, CONFIG["vocab_size"], size=8)
    long_prompt = rng.integers(3, CONFIG["vocab_size"], size=args.prefill)

    def decode(threads):
        model.n_threads = threads
        t = time.perf_counter()
        model.generate(prompt, max_new_tokens=args.new, eos_token_id=[])
        return args.new / (time.perf_counter() - t)

    def prefill():
        model.n_threads = 2
        t = time.perf_counter()
        model.generate(long_prompt, max_new_tokens=1, eos_token_id=[])
        return args.prefill / (time.perf_counter() - t)

    def idle_burn():
        """CPU seconds per wall second over the half second after a 2-thread call."""
        decode(2)
        c, t = cpu_seconds(), time.perf_counter()
        time.sleep(0.5)
        return (cpu_seconds() - c) / (time.perf_counter() - t)

    for threads in (1, 2):  # warm up: primitives created, pages touched
        decode(threads)
    prefill()
    keys = [(1, False), (2, False), (1, True), (2, True)]
    runs = {k: [] for k in keys}
    runs["prefill"], runs["idle"] = [], []
    for r in range(args.rounds):
        order = keys if r % 2 == 0 else keys[::-1]
        for threads, busy in order:
            if busy:
                with Competitor():
                    runs[(threads, busy)].append(decode(threads))
            else:
                runs[(threads, busy)].append(decode(threads))
        runs["prefill"].append(prefill())
        runs["idle"].append(idle_burn())
    return {**{f"{t}t{'+busy' if b else ''}": runs[(t, b)] for t, b in keys},
            "prefill": runs["prefill"], "idle_cpu": runs["idle"]}


def medians(raw):
    med = {k: statistics.median(v) for k, v in raw.items()}
    med["ratio_busy"] = med["2t+busy"] / med["1t+busy"]
    med["ratio_alone"] = med["2t"] / med["1t"]
    med["spread_2t+busy"] = [round(x, 1) for x in sorted(raw["2t+busy"])]
    return med


HEADER = ("| setting | 1t | 2t | 1t+busy | 2t+busy | 2t/1t busy | 2t/1t alone | prefill 2t | idle CPU |\n"
          "|---|---|---|---|---|---|---|---|---|")


def row(name, m):
    return (f"| {name} | {m['1t']:.1f} | {m['2t']:.1f} | {m['1t+busy']:.1f} | {m['2t+busy']:.1f} | "
            f"{m['ratio_busy']:.2f} | {m['ratio_alone']:.2f} | {m['prefill']:.0f} | {m['idle_cpu']:.2f} |")


def sweep(args):
    base = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    cmd = [sys.executable, os.path.abspath(__file__), "--json", "--rounds", str(args.rounds),
           "--new", str(args.new), "--prefill", str(args.prefill)]
    builds = [None]
    if args.builds:
        path = base.get("PYTHONPATH")
        builds = [{"PYTHONPATH": os.pathsep.join([os.path.abspath(d)] + ([path] if path else []))}
                  for d in args.builds.split(",")]
    if args.envs:
        settings = [dict(kv.split("=", 1) for kv in v.split(",") if kv) for v in args.envs.split("|")]
    else:
        settings = SETTINGS if args.sweep else [{}]
    variants = []
    for build in builds:
        for setting in settings:
            name = " ".join([build["PYTHONPATH"].split(os.pathsep)[0]] if build else [])
            name += (" " if name else "") + (" ".join(f"{k}={v}" for k, v in setting.items()) or "(default)")
            variants.append((name, {**(build or {}), **setting}))
    pooled = {name: {} for name, _ in variants}
    for r in range(args.repeat):
        for name, setting in (variants if r % 2 == 0 else variants[::-1]):
            out = subprocess.run(cmd, env={**base, **setting}, check=True, capture_output=True, text=True).stdout
            for k, v in json.loads(out.strip().splitlines()[-1]).items():
                pooled[name].setdefault(k, []).extend(v)
            print(f"repeat {r}: " + row(name, medians(pooled[name])), file=sys.stderr, flush=True)
    print(HEADER)
    for name, _ in variants:
        print(row(name, medians(pooled[name])))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    ap.add_argument("--new", type=int, default=64, help="new tokens per decode run")
    ap.add_argument("--prefill", type=int, default=512, help="prompt length of the prefill run")
    ap.add_argument("--sweep", action="store_true", help="repeat under each OpenMP environment setting")
    ap.add_argument("--builds", help="comma-separated pyllm checkouts to compare in subprocesses")
    ap.add_argument("--envs", help="environment variants, A=1,B=2|A=3|  (an empty one: as is), crossed with --builds")
    ap.add_argument("--repeat", type=int, default=1, help="subprocess runs per variant (--sweep, --builds)")
    ap.add_argument("--json", action="store_true", help="print the raw rounds as one JSON line")
    args = ap.parse_args()
    if args.sweep or args.builds or args.envs:
        return sweep(args)
    raw = measure(args)
    if args.json:
        print(json.dumps(raw))
        return
    m = medians(raw)
    env = " ".join(f"{k}={os.environ[k]}" for k in OMP_VARS if k in os.environ) or "(default)"
    print(f"random LLaMA {CONFIG['hidden_size']}x{CONFIG['num_hidden_layers']}, decode {args.new} tokens after 8, "
          f"tok/s medians of {args.rounds} rounds; 2t+busy runs: {m['spread_2t+busy']}")
    print(HEADER)
    print(row(env, m))


if __name__ == "__main__":
    main()
