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

if [[ -n "${TSAN_WORK:-}" ]]; then  # a kept build directory, to debug in
    work="$TSAN_WORK"
    mkdir -p "$work"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi
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
echo "== clang -fsanitize=thread: tests/tsan/driver.c + the C core (csrc/ minus csrc/python)"
flags=(-std=c11 -O1 -g -fsanitize=thread -fno-omit-frame-pointer -D_GNU_SOURCE -Wall -Wextra -Werror
       -Wno-unknown-pragmas -Wno-source-uses-openmp -Icsrc -I"$dnnl_include" -Itests/tsan
       # target_clones makes ifunc resolvers, which the dynamic loader runs before the TSan
       # runtime is set up while clang instruments them (a crash at start): one baseline clone here.
       '-Dtarget_clones(...)=unused')
objects=()
for src in tests/tsan/driver.c $(find csrc -name '*.c' -not -path 'csrc/python/*' | sort); do
    # clang ignores "#pragma GCC target": a kernel file's instruction sets become its -m flags
    # (it still runs only where the CPU has them: the kernels are chosen from CPUID).
    isa=$(sed -n 's/^#pragma GCC target("\(.*\)")/\1/p' "$src" | head -1)
    obj="$work/obj/${src//\//_}.o"
    mkdir -p "$work/obj"
    clang "${flags[@]}" ${isa:+-m${isa//,/ -m}} -c "$src" -o "$obj"
    objects+=("$obj")
done
clang -fsanitize=thread "${objects[@]}" "$dnnl_lib" "$(gcc -print-file-name=libgomp.so)" -lm -lpthread \
    -Wl,-rpath,"$(dirname "$dnnl_lib")" -o "$work/driver"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$python" tests/tsan/dump_merges.py \
    "$data/llamacpp/ggml-vocab-gpt-2.gguf" "$work/gpt2-merges.txt"
echo "== driver under ThreadSanitizer"
OMP_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan/tsan.supp" \
    "$work/driver" "$data/llama/tokenizer.model" "$data/stories260K/tok512.bin" 512 "$work/gpt2-merges.txt"
