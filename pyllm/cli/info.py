"""``pyllm info``: what runs here (pyllm, oneDNN and the instruction set it chose, pyllm's own
kernels, the OpenMP runtime, threads) and, given one, what a model is, read from its files
without loading the weights."""
import ctypes
import os
import sys

import pyllm

from .. import _core, architectures, checkpoint
from ..gguf import open_gguf
from .commands import model_path

# dnnl_cpu_isa_t (oneapi/dnnl/dnnl_types.h, oneDNN 3.x) -> name.
_ONEDNN_ISAS = {0x0: "default", 0x1: "sse41", 0x3: "avx", 0x7: "avx2", 0xF: "avx2_vnni", 0x1F: "avx2_vnni_2",
                0x27: "avx512_core", 0x67: "avx512_core_vnni", 0xE7: "avx512_core_bf16",
                0x1EF: "avx512_core_fp16", 0xFEF: "avx512_core_amx", 0x1FEF: "avx512_core_amx_fp16"}
_OPENMP_NAMES = ("libgomp", "libiomp5", "libomp")


def onednn_isa():
    """The instruction set oneDNN's kernels use on this CPU (its ONEDNN_MAX_CPU_ISA applied)."""
    try:
        library = ctypes.CDLL("libdnnl.so.3")  # the copy pyllm loaded (same soname)
        value = library.dnnl_get_effective_cpu_isa()
    except (OSError, AttributeError):
        return "unknown"
    return _ONEDNN_ISAS.get(value, hex(value))


def openmp_runtimes():
    """Paths of the OpenMP runtimes mapped into this process (one is right; two fight)."""
    found = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if os.path.basename(path).startswith(_OPENMP_NAMES) and path not in found:
                found.append(path)
    return found


def _runtime():
    return [("pyllm", pyllm.__version__), ("oneDNN", f"{pyllm.onednn_version()} (kernels: {onednn_isa()})"),
            ("pyllm kernels", _core.kernel_isa()), ("OpenMP", ", ".join(openmp_runtimes()) or "none loaded"),
            ("threads", str(_core.get_num_threads()))]


def _hf_model(path):
    config = checkpoint.load_config(path)
    spec = architectures.spec_from_hf(config)
    weights = checkpoint.load_weights(path, bf16="bits")  # mapped, not read
    stored = sorted({"bfloat16" if isinstance(w, checkpoint.BFloat16Bits) else str(w.dtype) for w in weights.values()})
    return [("format", "Hugging Face directory (safetensors)"), ("architecture", spec["architecture"]),
            ("parameters", f"{sum(int(w.size) for w in weights.values()):,}"), ("stored as", ", ".join(stored)),
            ("context", str(spec["n_ctx"])), ("layers", str(spec["num_hidden_layers"])),
            ("hidden size", str(spec["hidden_size"])),
            ("heads", f"{spec['num_attention_heads']} (KV {spec['num_key_value_heads']})"),
            ("vocabulary", str(spec["vocab_size"]))]


def _gguf_model(path):
    f = open_gguf(path)
    arch = f.get_str("general.architecture", "unknown")
    types = {}
    for t in f.tensors.values():
        types[t.type_name] = types.get(t.type_name, 0) + 1
    stored = ", ".join(f"{name} ({n} tensors)" for name, n in sorted(types.items(), key=lambda kv: -kv[1]))
    rows = [("format", f"GGUF v{f.version}"), ("architecture", arch),
            ("parameters", f"{sum(t.n_elements for t in f.tensors.values()):,}"), ("stored as", stored)]
    for label, key in (("context", "context_length"), ("layers", "block_count"), ("hidden size", "embedding_length")):
        value = f.metadata.get(f"{arch}.{key}")
        if value is not None:
            rows.append((label, str(value)))
    return rows


def run(args):
    rows = _runtime()
    if args.model is not None or getattr(pyllm, "default_model_path", None) is not None:
        try:
            path = model_path(args)
        except FileNotFoundError:
            if args.model is not None:
                raise
            path = None  # no default model installed: the runtime alone
        if path is not None:
            rows.append(("model", path))
            rows += _gguf_model(path) if os.path.isfile(path) else _hf_model(path)
    width = max(len(label) for label, _ in rows)
    sys.stdout.write("".join(f"{label + ':':<{width + 2}}{value}\n" for label, value in rows))
