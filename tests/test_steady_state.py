"""Decoding allocates nothing and creates no oneDNN primitive, proven from outside the code.

A child process (steady_state_child.py) generates 40 tokens with random LLaMA and BLOOM models
(greedy; sampled with top-k, top-p and a repetition penalty; a left-padded batch of 3 whose
second row ends at step 12, so the loop drops it from the KV cache and runs on 2 rows) and marks
decode steps 2..32 from a stopping criterion. Run once under an LD_PRELOAD allocation counter
(alloc_counter.c, compiled here) and once under ONEDNN_VERBOSE=all:

- over those steps, no malloc-family call from pyllm's extension or oneDNN (direct), nor one a
  helper library (libc, libgomp, libstdc++) makes for our extension (indirect), and no oneDNN
  line of primitive creation (create:cache_miss, create:cache_hit, create:dispatch);
- the same instruments see what they must see, so a broken counter or a misaligned log cannot
  pass: prefill allocates and creates primitives (int8 and int4 on AVX-512: none, their prefill
  runs pyllm's kernels), and a run that makes a KV cache and a 10-token call of a float32 model
  inside its window is caught by both.

Decode calls oneDNN not at all (every dtype's decode products, float32's included, run on pyllm's
own kernels), so the C++ `new` that oneDNN 3.2's dnnl_primitive_execute does on every call (its
argument map and execution context) cannot appear either: the tests hold its count at zero."""
import json
import os
import re
import subprocess
import sys

import pytest

import pyllm._testing

from conftest import REPO, child_environment

DTYPES = ["float32", "bfloat16", "int8", "int4"]
RUNS = ["llama greedy", "llama sampled", "llama batch", "bloom greedy", "bloom sampled", "bloom batch"]
FIRST, LAST, PROBE_STEP = 2, 32, 10  # as in steady_state_child.py
TESTS = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(TESTS, "steady_state_child.py")
CREATE = re.compile(r"^onednn_verbose,(?:[^,]*,)?create:")
EXEC = re.compile(r"^onednn_verbose,(?:[^,]*,)?exec,")
MARKER = re.compile(r"^@@steady (start|begin|end|result) (.*)$")


@pytest.fixture(scope="module")
def counter_library(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("alloc_counter") / "alloc_counter.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror",
                    os.path.join(TESTS, "alloc_counter.c"), "-o", out, "-ldl", "-lgcc_s"], check=True)
    return out


def run_child(dtype, mode, env):
    child_env = {k: v for k, v in child_environment().items() if k not in ("ONEDNN_VERBOSE", "LD_PRELOAD")}
    child_env.update(env)
    proc = subprocess.run([sys.executable, CHILD, dtype, mode], capture_output=True, text=True, timeout=600,
                          env=child_env, cwd=os.path.dirname(REPO))
    if proc.returncode != 0 or "@@steady result" not in proc.stdout:
        raise AssertionError(f"child ({mode}, {dtype}) died with exit {proc.returncode}:\n"
                             f"stdout: {proc.stdout[-3000:]}\nstderr: {proc.stderr[-3000:]}")
    return proc.stdout


_alloc_results, _verbose_results = {}, {}


def alloc_results(dtype, library):
    """Per run: counts before step FIRST and at each step after it up to LAST."""
    if dtype not in _alloc_results:
        out = run_child(dtype, "alloc", {"LD_PRELOAD": library, "PYLLM_ALLOC_COUNTER": library})
        _alloc_results[dtype] = json.loads(out.rsplit("@@steady result ", 1)[1])
    return _alloc_results[dtype]


def verbose_results(dtype):
    """Per run: oneDNN's create and exec lines in its prefill (start..begin) and window (begin..end)."""
    if dtype not in _verbose_results:
        out = run_child(dtype, "verbose", {"ONEDNN_VERBOSE": "all"})
        runs, label, part = {}, None, None
        for line in out.splitlines():
            m = MARKER.match(line)
            if m:
                kind, label = m.groups()
                part = {"start": "prefill", "begin": "window", "end": None, "result": None}[kind]
                runs.setdefault(label, {"prefill": {"create": [], "exec": 0}, "window": {"create": [], "exec": 0}})
            elif part is not None:
                if CREATE.match(line):
                    runs[label][part]["create"].append(line)
                elif EXEC.match(line):
                    runs[label][part]["exec"] += 1
        _verbose_results[dtype] = runs
    return _verbose_results[dtype]


def prefill_calls_onednn(dtype):
    """Prefill's products are oneDNN's GEMM but for int8 and int4 on AVX-512, which run pyllm's
    int8 kernels (the control run's float32 probe shows the instruments alive for them)."""
    name = {"int8": "q8_0", "int4": "q4_0"}.get(dtype)
    return name is None or pyllm._testing.prefill_compute(name) != "int8"


def window_total(steps, key):
    return sum(step[key] for step in steps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("run", RUNS)
def test_decode_steps_allocate_nothing(counter_library, dtype, run):
    result = alloc_results(dtype, counter_library)[run]
    steps = result["steps"]
    assert len(steps) == LAST - FIRST
    # The counter is alive in this run: every generate call allocates its KV cache and loop state.
    assert result["before"]["_core direct"] > 0, result["before"]
    if run.endswith("greedy") and prefill_calls_onednn(dtype):  # a model's first run creates its primitives
        assert result["before"]["libdnnl direct"] > 0, result["before"]
        assert result["before"]["libdnnl indirect"] > 0, result["before"]
    detail = "\n".join(result["summaries"][:3])
    for key in ("_core direct", "_core indirect", "libdnnl direct"):
        assert window_total(steps, key) == 0, f"{run}: {key} allocations in decode steps {FIRST + 1}..{LAST}:\n{detail}"
    # oneDNN's own `new` in dnnl_primitive_execute would show here: every dtype decodes on pyllm's
    # kernels (float32 on its plain-layout one, bfloat16's float32 lm_head too), so no step calls oneDNN.
    per_step = {step["libdnnl indirect"] for step in steps}
    assert len(per_step) == 1, f"{run}: oneDNN's per-call allocations vary:\n{detail}"
    calls = per_step.pop()
    assert calls == 0, f"{run}: {calls} oneDNN allocations a step"


@pytest.mark.parametrize("dtype", DTYPES)
def test_allocation_counter_catches_a_deliberate_allocation(counter_library, dtype):
    steps = alloc_results(dtype, counter_library)["llama control"]["steps"]
    probe = steps[PROBE_STEP - FIRST - 1]
    # model.new_cache() inside the window: pyllm_alloc -> posix_memalign from the extension.
    assert probe["_core direct"] > 0, probe
    # A 10-token call: new matmul primitives, created by oneDNN with its malloc and with C++ new.
    assert probe["libdnnl direct"] > 0, probe
    assert probe["libdnnl indirect"] > steps[0]["libdnnl indirect"], (probe, steps[0])
    others = [s for i, s in enumerate(steps) if i != PROBE_STEP - FIRST - 1]
    assert window_total(others, "_core direct") == 0 and window_total(others, "libdnnl direct") == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("run", RUNS)
def test_decode_steps_create_no_primitive(dtype, run):
    result = verbose_results(dtype)[run]
    window = result["window"]
    # Every dtype decodes on pyllm's kernels alone (the control run shows the log lined up).
    assert window["exec"] == 0, f"{run}: {window['exec']} oneDNN calls in decode with {dtype} weights"
    assert not window["create"], f"{run}: primitive creation in decode steps:\n" + "\n".join(window["create"][:10])
    if run.endswith("greedy") and prefill_calls_onednn(dtype):
        assert result["prefill"]["create"], f"{run}: no primitive creation seen in prefill: is the log on?"
    if not prefill_calls_onednn(dtype):  # pyllm's kernels throughout
        assert result["prefill"]["exec"] == 0 and not result["prefill"]["create"], f"{run}: oneDNN in prefill"


@pytest.mark.parametrize("dtype", DTYPES)
def test_verbose_log_catches_a_deliberate_creation(dtype):
    window = verbose_results(dtype)["llama control"]["window"]
    assert any("create:cache_miss" in line or "create:cache_hit" in line for line in window["create"]), \
        "a 10-token call inside the window created no primitive that the log shows"
