"""The compute ceilings of this CPU beside what pyllm's prefill kernels reach, and what the prefill
targets against a peer would need.

    python benchmarks/bench_ceilings.py
    python benchmarks/bench_ceilings.py --peers benchmarks/results/peers-tinyllama-small.json

1. Peaks (ceilings.c, built here with cc): 12 independent chains of vfmadd231ps, vpdpbusd or
   vdpbf16ps on zmm registers per thread, 1 thread and --threads threads: instructions per ns,
   and as GOP/s (a multiply-add counts two: 32 per FMA, 64 per vdpbf16ps, 128 per vpdpbusd).
2. The block-scale tile (ceilings.c): the int8 prefill tile's loop on data in L1, with its full
   epilogue (int-to-float, product of the two block scales, multiply-add per pair and 16 blocks),
   without the scale product, and without an epilogue: the share of the vpdpbusd peak each keeps
   shows what Q8_0's scales (one per 32 values, on both sides) cost before any memory traffic.
3. pyllm's own products at prefill size (2048 x 2048 weights, 512 activation rows, pyllm's
   threads; float32 and bfloat16 through oneDNN's GEMM, q8_0 and q4_0 through pyllm's VNNI tile):
   GOP/s and the share of the matching peak.
4. With --peers (a bench_peers.py JSON), per shape and precision: the peer's prefill tokens/s,
   the target ratio of issue 7, and the share of the peak the weight products alone would need
   to reach it (attention, norms and the rest left out, so this is a lower bound).

Needs a C compiler and a CPU with AVX-512 F/BW/VL, VNNI and BF16 (else it says so and stops).
"""
import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = {"fma": 0, "vpdpbusd": 1, "vdpbf16ps": 2, "tile_full": 3, "tile_no_scale_product": 4, "tile_no_epilogue": 5}
OPS_PER_INSTRUCTION = {"fma": 32, "vdpbf16ps": 64, "vpdpbusd": 128}
PEAK_OF = {"float32": "fma", "bfloat16": "vdpbf16ps", "q8_0": "vpdpbusd", "q4_0": "vpdpbusd"}
NEEDED_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "fma", "f16c")
# issue 7's prefill targets: pyllm / llama.cpp at the matched precision (and the peer precision)
PREFILL_TARGETS = {"float32": ("F32", 1.7), "bfloat16": ("BF16", 1.7), "int8": ("Q8_0", 3.0),
                   "int4": ("Q4_0", 2.0)}
PEAK_OF_DTYPE = {"float32": "fma", "bfloat16": "vdpbf16ps", "int8": "vpdpbusd", "int4": "vpdpbusd"}


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def build(workdir):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        sys.exit("bench_ceilings: no C compiler (cc) found")
    lib = os.path.join(workdir, "ceilings.so")
    cmd = [cc, "-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", "-mavx512bf16", "-mfma", "-mf16c",
           "-Wall", "-Wextra", "-shared", "-fPIC", "-pthread", os.path.join(HERE, "ceilings.c"), "-o", lib]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or proc.stderr.strip():
        sys.exit(f"bench_ceilings: ceilings.c did not build cleanly:\n{proc.stderr}")
    fn = ctypes.CDLL(lib).ceiling
    fn.restype, fn.argtypes = ctypes.c_double, [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    return fn


def pyllm_products(reps):
    """{type: GOP/s} of a 2048 x 2048 product at 512 activation rows, best of reps."""
    import pyllm._testing as testing
    rng = np.random.default_rng(0)
    n = k = 2048
    m = 512
    w = rng.standard_normal((n, k), dtype=np.float32)
    x = rng.standard_normal((m, k), dtype=np.float32)
    out = {}
    for ty in PEAK_OF:
        seconds = min(testing.linear(w, ty, x, None, 4)[1] for _ in range(reps))
        out[ty] = (2.0 * n * k * m / seconds / 1e9, testing.prefill_compute(ty))
    return out


def prefill_ops_per_token(shape):
    """Multiply-adds x 2 per prompt token in the weight products of a prefill (the lm_head runs for
    the last position only)."""
    sys.path.insert(0, HERE)
    import bench_peers
    config = bench_peers.SHAPES[shape][0]()
    s = bench_peers.dims(config)
    return 2.0 * (bench_peers.matrix_params(config) - s["vocab"] * s["d"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5, help="timed runs per figure (the best is kept)")
    ap.add_argument("--peers", help="a bench_peers.py JSON: what its prefill targets would need")
    ap.add_argument("--no-pyllm", action="store_true", help="the CPU's ceilings only")
    args = ap.parse_args()

    missing = [f for f in NEEDED_FLAGS if f not in cpu_flags()]
    if missing:
        sys.exit(f"bench_ceilings: this CPU lacks {', '.join(missing)}; the ceilings measured here are "
                 "those of the AVX-512 VNNI/BF16 kernels")
    with tempfile.TemporaryDirectory() as workdir:
        ceiling = build(workdir)
        threads = sorted({1, args.threads})
        rate = {(kind, t): ceiling(code, t, args.reps) for kind, code in KINDS.items() for t in threads}
    if any(v < 0 for v in rate.values()):
        sys.exit("bench_ceilings: a measuring thread could not start")
    t = args.threads

    print(f"## Peaks ({t} threads; 1 thread beside)\n")
    print("| instruction | per ns, 1 thread | per ns | GOP/s |")
    print("|---|---|---|---|")
    for kind, ops in OPS_PER_INSTRUCTION.items():
        print(f"| {kind} (zmm) | {rate[(kind, 1)]:.2f} | {rate[(kind, t)]:.2f} | {rate[(kind, t)] * ops:.0f} |")

    print("\n## The int8 prefill tile's loop in L1 (3 weight rows x 4 activation rows, Q8_0 block scales)\n")
    print("| epilogue per pair and 16 blocks | vpdpbusd per ns | share of the vpdpbusd peak |")
    print("|---|---|---|")
    labels = {"tile_full": "int-to-float, scale product, multiply-add (the kernel's)",
              "tile_no_scale_product": "int-to-float, multiply-add",
              "tile_no_epilogue": "none (int32 sums xor-folded)"}
    for kind, label in labels.items():
        print(f"| {label} | {rate[(kind, t)]:.2f} | {rate[(kind, t)] / rate[('vpdpbusd', t)]:.0%} |")

    peak_gops = {kind: rate[(kind, t)] * ops for kind, ops in OPS_PER_INSTRUCTION.items()}
    tile_gops = rate[("tile_full", t)] * OPS_PER_INSTRUCTION["vpdpbusd"]
    if not args.no_pyllm:
        got = pyllm_products(args.reps)
        print("\n## pyllm's products at prefill size (2048 x 2048, 512 rows)\n")
        print("| weights | computed in | GOP/s | share of its peak | share of the block-scale tile's cap |")
        print("|---|---|---|---|---|")
        for ty, (gops, compute) in got.items():
            cap = f"{gops / tile_gops:.0%}" if PEAK_OF[ty] == "vpdpbusd" else "–"
            print(f"| {ty} | {compute} ({PEAK_OF[ty]}) | {gops:.0f} | {gops / peak_gops[PEAK_OF[ty]]:.0%} | {cap} |")

    if args.peers:
        with open(args.peers) as f:
            rows = json.load(f)["rows"]
        print(f"\n## What the prefill targets need ({os.path.basename(args.peers)})\n")
        print("| shape | pyllm | llama.cpp | its prefill tok/s | target | pyllm's tok/s now | weight products alone "
              "would need | share of the peak | of the block-scale tile's cap |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            if r["engine"] != "pyllm" or r["precision"] not in PREFILL_TARGETS or not r.get("prefill"):
                continue
            peer_prec, ratio = PREFILL_TARGETS[r["precision"]]
            peer = next((p for p in rows if p["shape"] == r["shape"] and p["engine"] == "llama.cpp"
                         and p["precision"] == peer_prec and p.get("prefill")), None)
            if peer is None:
                continue
            need = ratio * peer["prefill"] * prefill_ops_per_token(r["shape"]) / 1e9
            peak = peak_gops[PEAK_OF_DTYPE[r["precision"]]]
            cap = f"{need / tile_gops:.0%}" if PEAK_OF_DTYPE[r["precision"]] == "vpdpbusd" else "–"
            print(f"| {r['shape']} | {r['precision']} | {peer_prec} | {peer['prefill']:.0f} | {ratio:.1f}x | "
                  f"{r['prefill']:.0f} ({r['prefill'] / peer['prefill']:.2f}x) | {need:.0f} GOP/s | {need / peak:.0%} | "
                  f"{cap} |")


if __name__ == "__main__":
    main()
