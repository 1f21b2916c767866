"""The weight-product kernels alone: time per call of x · Wᵀ with W packed as each weight type,
for several activation rows m, on a matrix that stays in cache and on one that streams from DRAM.

    python benchmarks/bench_kernels.py                                  # this checkout
    python benchmarks/bench_kernels.py --builds /tmp/base,.             # two builds, alternating
    python benchmarks/bench_kernels.py --types q4_0 --m 1,8 --rounds 6

Each figure is the best of `--calls` timed calls (after a warm one) inside pyllm's C code
(pyllm._testing.linear), so Python's overhead is not in it; the threads are pyllm's default.
"GB/s" is the packed weight bytes (quants and scales) over the time; "GOP/s" counts a
multiply-add as two. With --builds each round runs every build in its own process, one after
another, and the table shows each build's median over the rounds beside its ratio to the first
build: this host's memory bandwidth swings from minute to minute, so only alternating runs compare.
A bandwidth probe (2 threads, 1 GB, best of 5) runs at the start of each round when a C compiler
is there (the DRAM rows only mean something beside it)."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

SHAPES = {"cache": (6144, 2048), "dram": (96000, 2048)}  # 6.5 MB of Q4_0 (L3); 104 MB (DRAM)
BYTES_PER_WEIGHT = {"float32": 4.0, "bfloat16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32}


def measure(types, ms, shapes, calls):
    """{(shape, type, m): seconds per call} in this process."""
    import pyllm._testing as testing
    rng = np.random.default_rng(0)
    out = {}
    for shape in shapes:
        n, k = SHAPES[shape]
        w = rng.standard_normal((n, k), dtype=np.float32)
        for m in ms:
            x = rng.standard_normal((m, k), dtype=np.float32)
            for ty in types:
                out[f"{shape} {ty} {m}"] = min(testing.linear(w, ty, x, None, calls)[1] for _ in range(2))
    return out


def probe_gbs(workdir):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_peers
    probe = bench_peers.build_probe(workdir)
    return bench_peers.bandwidth(probe, 2) if probe else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default="bfloat16,q8_0,q4_0,q4_1")
    ap.add_argument("--m", default="1,2,8", help="activation rows, comma-separated")
    ap.add_argument("--shapes", default="cache,dram")
    ap.add_argument("--calls", type=int, default=20, help="timed calls per figure (the best is kept)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--builds", help="comma-separated pyllm checkouts, each first on PYTHONPATH in its own process")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    types, ms, shapes = args.types.split(","), [int(v) for v in args.m.split(",")], args.shapes.split(",")
    if args.worker:
        print(json.dumps(measure(types, ms, shapes, args.calls)))
        return
    builds = [os.path.abspath(d) for d in args.builds.split(",")] if args.builds else [None]
    results = [[] for _ in builds]  # by position: a build may be given twice
    workdir = tempfile.mkdtemp(prefix="bench-kernels-")
    probes = []
    for r in range(args.rounds):
        probes.append(probe_gbs(workdir))
        for i, b in enumerate(builds):
            env = dict(os.environ)
            if b:
                env["PYTHONPATH"] = os.pathsep.join([b] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "1", "--types", args.types, "--m", args.m,
                   "--shapes", args.shapes, "--calls", str(args.calls)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            results[i].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"round {r + 1}/{args.rounds} done (probe {probes[-1]:.1f} GB/s)", file=sys.stderr)
    print(f"probe {min(probes):.1f}-{max(probes):.1f} GB/s; medians of {args.rounds} rounds")
    names = [os.path.basename(b.rstrip("/")) or b if b else "this" for b in builds]
    header = f"{'shape':6} {'type':9} {'m':>3}" + "".join(f" {n[:14]:>14} {'GB/s':>6} {'GOP/s':>6}" for n in names)
    print(header + ("  ratio" if len(builds) > 1 else ""))
    for key in results[0][0]:
        shape, ty, m = key.split()
        n, k = SHAPES[shape]
        line = f"{shape:6} {ty:9} {m:>3}"
        medians = []
        for runs in results:
            t = statistics.median(run[key] for run in runs)
            medians.append(t)
            line += f" {t * 1e6:12.1f}us {n * k * BYTES_PER_WEIGHT[ty] / t / 1e9:6.1f} {2 * n * k * int(m) / t / 1e9:6.0f}"
        if len(builds) > 1:
            line += "  " + " ".join(f"{medians[0] / t:.2f}x" for t in medians[1:])
        print(line)


if __name__ == "__main__":
    main()
