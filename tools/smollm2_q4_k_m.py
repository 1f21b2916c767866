"""Measure what pyllm's default conversion of a Q4_K_M GGUF costs, on SmolLM2's weights.

llama.cpp's Q4_K_M mixes Q4_K and Q6_K, which pyllm has no kernels for: by default it converts
both to int8 (Q8_0) at load (pyllm/gguf_model.py). This script makes a Q4_K_M SmolLM2 and
compares the perplexity of a held text at the default dtype with the same file run exactly
(dtype="float32": the dequantized values in float32), prefill and decode.

    # 1. an F32 GGUF of SmolLM2's (Q4_1-dequantized) weights, with pyllm's environment:
    python tools/smollm2_q4_k_m.py f32 /tmp/smollm2-f32.gguf
    # 2. quantize it with llama.cpp (llama-cpp-python's binding), in an environment that has it:
    python tools/smollm2_q4_k_m.py quantize /tmp/smollm2-f32.gguf /tmp/smollm2-q4_k_m.gguf
    # 3. the perplexities, with pyllm's environment:
    python tools/smollm2_q4_k_m.py measure /tmp/smollm2-q4_k_m.gguf
"""
import pathlib
import sys

import numpy as np

# The held text of tests/test_smollm2.py's perplexity test.
HELD_TEXT = (pathlib.Path(__file__).resolve().parent.parent / "tests" / "reference" / "smollm2" / "held_text.txt").read_text()


def write_f32(out):
    """SmolLM2's GGUF with every tensor dequantized to F32 (metadata copied as it is)."""
    import gguf
    import pyllm
    from pyllm.gguf import open_gguf
    src = open_gguf(pyllm.default_model_path())
    reader = gguf.GGUFReader(src.path)
    w = gguf.GGUFWriter(out, src.architecture())
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name in ("general.architecture", "general.file_type"):
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            w.add_key_value(field.name, field.contents(), kind, field.types[1])
        else:
            w.add_key_value(field.name, field.contents(), kind)
    w.add_file_type(0)
    for name in src.tensors:
        w.add_tensor(name, src.dequantize(name))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quantize(src, out):
    import ctypes

    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), out.encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed: {rc}")
    print(f"llama-cpp-python {llama_cpp.__version__}: wrote {out}")


def _perplexities(model, ids):
    def nll(logits, targets):
        x = logits.astype(np.float64)
        x = x - x.max(-1, keepdims=True)
        lp = x - np.log(np.exp(x).sum(-1, keepdims=True))
        return -lp[np.arange(len(targets)), targets].mean()
    targets = np.asarray(ids[1:])
    prefill = nll(model(ids[:-1]), targets)
    cache = model.new_cache()
    decode = nll(np.concatenate([model(ids[i:i + 1], cache=cache) for i in range(len(ids) - 1)]), targets)
    return float(np.exp(prefill)), float(np.exp(decode))


def measure(path):
    import collections

    import pyllm
    from pyllm.gguf import open_gguf
    f = open_gguf(path)
    print("tensor types:", dict(collections.Counter(t.type_name for t in f.tensors.values())))
    ids = pyllm.Tokenizer.from_pretrained(path).encode(HELD_TEXT)
    exact = _perplexities(pyllm.Model.from_pretrained(path, dtype="float32"), ids)
    rows = [("float32 (exact)", exact)]
    for dtype in (None, "bfloat16", "q4_1"):
        model = pyllm.Model.from_pretrained(path, dtype=dtype)
        rows.append((f"{model.dtype}{' (default)' if dtype is None else ''}", _perplexities(model, ids)))
    print(f"{len(ids)} tokens; perplexity prefill / decode, and the change against float32:")
    for name, (p, d) in rows:
        print(f"  {name:18s} {p:8.4f} {d:8.4f}   {100 * (p / exact[0] - 1):+6.2f}% {100 * (d / exact[1] - 1):+6.2f}%")


if __name__ == "__main__":
    {"f32": write_f32, "quantize": quantize, "measure": measure}[sys.argv[1]](*sys.argv[2:])
