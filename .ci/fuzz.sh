#!/usr/bin/env bash
# The fuzz step of CI (issue 9, section 1): every harness of fuzz/ for a bounded time over the
# sanitizer builds, failing on any finding (crash, sanitizer report, input slower than 10 s,
# out-of-memory, a Python exception outside the harness contract). About 13-15 minutes: setup and
# builds 3-5 (venv, clang builds of the harnesses and of the instrumented extension), then 12
# harnesses x 45 s (FUZZ_SECONDS).
# Assumes the venv .venv that .ci/run made (pip install ".[test]", so its pyllm is this checkout's):
# its Python builds the seed corpora with the tests' file builders. Installs clang if missing, and atheris with the
# extension's build requirements in its own venv .venv-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYLLM_TEST_DATA="$(cd "${PYLLM_TEST_DATA:-../shared/data}" && pwd)"
SECONDS_EACH="${FUZZ_SECONDS:-45}"

if ! command -v clang >/dev/null || [[ ! -e "$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a)" ]]; then
    apt-get update -q && apt-get install -y -q clang libclang-rt-14-dev llvm-14
fi
numpy_version="$(.venv/bin/python -c 'import numpy; print(numpy.__version__)')"
python3 -m venv .venv-fuzz
.venv-fuzz/bin/pip install -q atheris==3.0.0 "numpy==$numpy_version" onednn-cpu-gomp==2023.2.0 \
    onednn-devel-cpu-gomp==2023.2.0 "setuptools>=77" wheel

echo "== fuzz: builds (libFuzzer harnesses; the extension with ASan+UBSan+coverage counters for atheris)"
fuzz/build.sh
PYTHON=.venv-fuzz/bin/python fuzz/build.sh python > fuzz/build/python-build.log 2>&1 || {
    tail -30 fuzz/build/python-build.log; exit 1; }
.venv/bin/python fuzz/make_corpus.py

failed=()
for name in regex sentencepiece llama2c_tokenizer merges tokenizer_text gguf_blocks \
            py_tokenizer_json py_config py_safetensors py_llama2c py_gguf py_text; do
    echo "== fuzz: $name for ${SECONDS_EACH} s"
    if PYTHON=.venv-fuzz/bin/python fuzz/run.sh "$name" "$SECONDS_EACH" > "fuzz/build/$name.log" 2>&1; then
        grep -E "^#[0-9]+.*DONE|^stat::number_of_executed_units" "fuzz/build/$name.log" | head -2
    else
        failed+=("$name")
        grep -E -B5 -A40 "ERROR|Uncaught Python exception|SUMMARY" "fuzz/build/$name.log" | head -80
    fi
done
if (( ${#failed[@]} )); then
    echo "fuzz: findings in ${failed[*]} (inputs in fuzz/crashes/; reproduce: fuzz/README.md)" >&2
    ls -l fuzz/crashes >&2
    exit 1
fi
echo "fuzz: 12 harnesses, no finding"
