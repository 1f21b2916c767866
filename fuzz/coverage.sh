#!/usr/bin/env bash
# Line coverage of the C core reached by each C harness's corpus (seeds + what runs found):
#   fuzz/build.sh coverage && fuzz/coverage.sh [harness...]
# Prints llvm-cov's per-file report over the C core's files (harness code left out).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYLLM_TEST_DATA="${PYLLM_TEST_DATA:-$PWD/../shared/data}"
LLVM_COV="${LLVM_COV:-llvm-cov-14}"
LLVM_PROFDATA="${LLVM_PROFDATA:-llvm-profdata-14}"
[[ $# -gt 0 ]] || set -- regex sentencepiece llama2c_tokenizer merges tokenizer_text gguf_blocks
out="fuzz/build/cov/profiles"
mkdir -p "$out"
for h in "$@"; do
    dirs=()
    for d in "fuzz/build/corpus/$h" "fuzz/corpus/$h"; do [[ -d "$d" ]] && dirs+=("$d"); done
    rm -f "$out/$h".prof*
    LLVM_PROFILE_FILE="$out/$h.profraw" "fuzz/build/cov/fuzz_$h" -runs=0 "${dirs[@]}" > /dev/null 2>&1
    "$LLVM_PROFDATA" merge -sparse "$out/$h.profraw" -o "$out/$h.profdata"
    echo "== $h"
    "$LLVM_COV" report "fuzz/build/cov/fuzz_$h" -instr-profile="$out/$h.profdata" \
        -ignore-filename-regex='fuzz/|unicode_tables' csrc/
done
