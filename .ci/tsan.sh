#!/usr/bin/env bash
# The C core under ThreadSanitizer (issue 9, section 3): tests/tsan/driver.c, a C program with its
# own pthreads (no CPython), linked with the core's sources (csrc/ minus the Python binding) built
# by clang -fsanitize=thread, runs the generation loop and the tokenizers from several threads and
# must end with 0 reports and results equal to single-threaded ones. OMP_NUM_THREADS=1: libgomp
# and libdnnl are not built with TSan (the core's own loops are compiled without OpenMP here).
# Assumes .ci/run's venv (.venv); about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${PYLLM_TEST_DATA:-../shared/data}"
if [[ ! -d "$data" ]]; then
    echo "error: test data not found at $data (../shared/data or \$PYLLM_TEST_DATA)" >&2
    exit 1
fi
data="$(cd "$data" && pwd)"
python="${TSAN_PYTHON:-$PWD/.venv/bin/python}"  # another venv's python for a local run
if ! "$python" -c "import importlib.metadata as m; m.distribution('onednn-devel-cpu-gomp')" 2>/dev/null; then
    "$python" -m pip install -q onednn-devel-cpu-gomp==2023.2.0
fi
command -v clang >/dev/null || apt-get install -y clang libclang-rt-14-dev llvm-14

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# oneDNN's headers and library, where setup.py finds them.
read -r dnnl_include dnnl_lib < <("$python" - <<'PY'
import os
from importlib import metadata

def locate(dist, suffix):
    d = metadata.distribution(dist)
    return next(os.path.abspath(str(d.locate_file(f))) for f in d.files if str(f).endswith(suffix))

header = locate("onednn-devel-cpu-gomp", "include/oneapi/dnnl/dnnl.h")
print(os.path.dirname(os.path.dirname(os.path.dirname(header))), locate("onednn-cpu-gomp", "libdnnl.so.3"))
PY
)
# omp.h alone from gcc (clang has none without its own OpenMP runtime); the calls go to libgomp.
mkdir -p "$work/omp"
ln -s "$(gcc -print-file-name=include/omp.h)" "$work/omp/omp.h"
sources=$(find csrc -name '*.c' -not -path 'csrc/python/*' | sort)
echo "== clang -fsanitize=thread: tests/tsan/driver.c + $(echo "$sources" | wc -l) files of csrc/"
clang -std=c11 -O1 -g -fsanitize=thread -fno-omit-frame-pointer -D_GNU_SOURCE -Wall -Wextra -Werror \
    -Wno-unknown-pragmas -Wno-source-uses-openmp -Icsrc -I"$dnnl_include" -I"$work/omp" \
    tests/tsan/driver.c $sources "$dnnl_lib" "$(gcc -print-file-name=libgomp.so)" -lm -lpthread \
    -Wl,-rpath,"$(dirname "$dnnl_lib")" -o "$work/driver"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$python" tests/tsan/dump_merges.py \
    "$data/llamacpp/ggml-vocab-gpt-2.gguf" "$work/gpt2-merges.txt"
echo "== driver under ThreadSanitizer"
OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan/tsan.supp" \
    "$work/driver" "$data/llama/tokenizer.model" "$data/stories260K/tok512.bin" 512 "$work/gpt2-merges.txt"
