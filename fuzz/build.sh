#!/usr/bin/env bash
# Build the fuzz harnesses with clang (14 or later).
#   fuzz/build.sh            libFuzzer harnesses (ASan + UBSan) into fuzz/build/bin/
#   fuzz/build.sh coverage   the same harnesses with clang source coverage (no sanitizers) into
#                            fuzz/build/cov/ (for llvm-cov; see fuzz/README.md)
#   fuzz/build.sh python     pyllm's extension with ASan + UBSan + libFuzzer coverage counters, in
#                            a copy of the package at fuzz/build/py/pyllm (for the atheris harnesses);
#                            PYTHON names the interpreter (default: python3) whose numpy and
#                            onednn-devel-cpu-gomp the build uses
# Runs from anywhere; CC overrides the compiler.
set -euo pipefail
cd "$(dirname "$0")/.."
CC="${CC:-clang}"
mode="${1:-fuzz}"

# The C core's files the harnesses reach: no CPython, no oneDNN.
core_sources=(csrc/core/alloc.c csrc/core/error.c csrc/core/faults.c csrc/tokenizers/*.c csrc/ops/quant.c csrc/ops/quant_gguf.c
              csrc/ops/quant_lanes_avx512.c)
harnesses=(regex sentencepiece llama2c_tokenizer merges tokenizer_text gguf_blocks)
common=(-std=c11 -g -Wall -Wextra -Werror -Wno-unknown-pragmas -D_GNU_SOURCE -Icsrc -Ifuzz -Ifuzz/include)

build_c() { # out_dir, compile flags..., then the link flags after "--"
    local out="$1"; shift
    local cflags=() lflags=()
    while [[ $# -gt 0 && "$1" != "--" ]]; do cflags+=("$1"); shift; done
    shift
    lflags=("$@")
    mkdir -p "$out/obj"
    local objs=()
    for src in "${core_sources[@]}" fuzz/fuzz_tokenizer_checks.c; do
        local obj="$out/obj/$(echo "$src" | tr / _).o"
        # clang ignores "#pragma GCC target": a kernel file's instruction sets become its -m flags
        # (its code runs only where the CPU has them, as in the extension)
        local isa
        isa=$(sed -n 's/^#pragma GCC target("\(.*\)")/\1/p' "$src" | head -1)
        "$CC" "${common[@]}" "${cflags[@]}" ${isa:+-m${isa//,/ -m}} -c "$src" -o "$obj" &
        objs+=("$obj")
    done
    wait
    for h in "${harnesses[@]}"; do
        "$CC" "${common[@]}" "${cflags[@]}" "${lflags[@]}" "fuzz/fuzz_$h.c" "${objs[@]}" -lm -o "$out/fuzz_$h"
    done
    echo "built: ${harnesses[*]/#/$out/fuzz_}"
}

case "$mode" in
fuzz)
    build_c fuzz/build/bin -O1 -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link \
        -fno-sanitize-recover=undefined -- -fsanitize=address,undefined,fuzzer
    ;;
coverage)
    build_c fuzz/build/cov -O1 -fprofile-instr-generate -fcoverage-mapping -fsanitize=fuzzer-no-link \
        -- -fsanitize=fuzzer -fprofile-instr-generate
    ;;
python)
    PYTHON="${PYTHON:-python3}"
    rm -rf fuzz/build/py/pyllm
    mkdir -p fuzz/build/py
    # a copy of the Python package without any built extension; the instrumented one goes beside it
    cp -r pyllm fuzz/build/py/pyllm
    find fuzz/build/py/pyllm \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
    PYLLM_FUZZ=1 CC="$CC" LDSHARED="$CC -shared" "$PYTHON" setup.py -q build_ext \
        --build-lib fuzz/build/py --build-temp fuzz/build/py-tmp
    echo "built: $(ls fuzz/build/py/pyllm/_core*.so)"
    ;;
*)
    echo "usage: fuzz/build.sh [fuzz|coverage|python]" >&2
    exit 2
    ;;
esac
