#!/usr/bin/env bash
# Run one harness:  fuzz/run.sh NAME SECONDS [more libFuzzer/atheris options]
#   NAME: regex sentencepiece llama2c_tokenizer merges tokenizer_text gguf_blocks (C, libFuzzer)
#         py_tokenizer_json py_config py_safetensors py_llama2c py_gguf py_text (atheris)
# Inputs: the seeds of fuzz/make_corpus.py in fuzz/corpus/NAME (read only) and what earlier runs
# found in fuzz/build/corpus/NAME (new inputs go there). A finding is written to
# fuzz/crashes/NAME-crash-*, -timeout-* or -oom-* and the run exits non-zero.
# Env: PYLLM_TEST_DATA (the shared data), PYTHON (an interpreter with atheris; default
# /work/venv-fuzz/bin/python or .venv-fuzz/bin/python), TIMEOUT (seconds one input may take: 10),
# RSS_MB (2048), MALLOC_CONTEXT (frames ASan keeps per allocation in the atheris harnesses: 2).
set -euo pipefail
cd "$(dirname "$0")/.."
name="$1"; seconds="$2"; shift 2
export PYLLM_TEST_DATA="${PYLLM_TEST_DATA:-$PWD/../shared/data}"
mkdir -p "fuzz/build/corpus/$name" fuzz/crashes "fuzz/corpus/$name"
declare -A dicts=([regex]=regex [sentencepiece]=sentencepiece [llama2c_tokenizer]=sentencepiece [merges]=text
                  [tokenizer_text]=text [py_text]=text [py_tokenizer_json]=tokenizer_json [py_config]=config
                  [py_safetensors]=safetensors [py_gguf]=gguf)
opts=(-max_total_time="$seconds" -timeout="${TIMEOUT:-10}" -rss_limit_mb="${RSS_MB:-2048}" -print_final_stats=1
      -artifact_prefix="fuzz/crashes/$name-")
[[ -n "${dicts[$name]:-}" ]] && opts+=(-dict="fuzz/dict/${dicts[$name]}.dict")
case "$name" in
py_*)
    python="${PYTHON:-}"
    if [[ -z "$python" ]]; then
        for p in .venv-fuzz/bin/python /work/venv-fuzz/bin/python; do [[ -x "$p" ]] && python="$p" && break; done
    fi
    preload="$("$python" -c 'import atheris, os; print(os.path.join(os.path.dirname(os.path.dirname(atheris.__file__)), "asan_with_fuzzer.so"))')"
    # malloc_context_size=2: atheris calls back through pybind11 on every instrumented Python
    # branch, each call allocating; with ASan's default 30-frame context every allocation and
    # free stored a near-unique interpreter stack in its depot, 70% of the time (perf) and 4-6x
    # fewer executions. A report still shows the whole stack of the faulting access.
    LD_PRELOAD="$preload" ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:malloc_context_size=${MALLOC_CONTEXT:-2}" \
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" PYTHONPATH="fuzz/build/py:fuzz" \
        "$python" "fuzz/$name.py" "${opts[@]}" "$@" "fuzz/build/corpus/$name" "fuzz/corpus/$name"
    ;;
*)
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" ASAN_OPTIONS="allocator_may_return_null=1" \
        "fuzz/build/bin/fuzz_$name" "${opts[@]}" "$@" "fuzz/build/corpus/$name" "fuzz/corpus/$name"
    ;;
esac
