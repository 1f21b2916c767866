"""Loading packs a checkpoint layer by layer without a float32 copy of bf16/f16 weights and hands
each packed layer's file pages back at once: the load's peak memory is the packed weights plus
about one layer of the file, not the file plus the packed weights (checked in a fresh process,
by its peak RSS against the model's own weight_bytes)."""
import json

import pytest

from conftest import run_isolated

# LLaMA of 97M parameters: a 194 MB bf16 file, whose layers (22 MB each) are a small part.
CHILD = """
import json, os, resource
import numpy as np
import pyllm
from pyllm import checkpoint

def rss_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024

folder, dtype = {folder!r}, {dtype!r}
config = {{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 16000,
          "hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 6, "num_attention_heads": 16,
          "num_key_value_heads": 4, "max_position_embeddings": 256, "torch_dtype": "bfloat16"}}
if not os.path.exists(os.path.join(folder, "model.safetensors")):
    rng = np.random.default_rng(0)
    def bf16(rows, cols):
        x = rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(0.5 / cols ** 0.5)
        return (x.view(np.uint32) >> 16).astype(np.uint16).view(checkpoint.BFloat16Bits)
    d, ff, kv = 1024, 2816, 256
    t = {{"model.embed_tokens.weight": bf16(16000, d), "lm_head.weight": bf16(16000, d),
         "model.norm.weight": np.ones(d, np.float32)}}
    for i in range(6):
        p = f"model.layers.{{i}}."
        for name, shape in (("self_attn.q_proj", (d, d)), ("self_attn.k_proj", (kv, d)), ("self_attn.v_proj", (kv, d)),
                            ("self_attn.o_proj", (d, d)), ("mlp.gate_proj", (ff, d)), ("mlp.up_proj", (ff, d)),
                            ("mlp.down_proj", (d, ff))):
            t[p + name + ".weight"] = bf16(*shape)
        t[p + "input_layernorm.weight"] = np.ones(d, np.float32)
        t[p + "post_attention_layernorm.weight"] = np.ones(d, np.float32)
    os.makedirs(folder, exist_ok=True)
    checkpoint.save_safetensors(os.path.join(folder, "model.safetensors"), t)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    del t
import gc; gc.collect()
# Reset the peak: VmHWM then counts from here (writing 5 to clear_refs resets it).
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = rss_mb("VmRSS")
model = pyllm.Model.from_pretrained(folder, dtype=dtype, progress=False)
peak = rss_mb("VmHWM") - before
after = rss_mb("VmRSS") - before
print(json.dumps({{"peak": peak, "after": after, "weights": model.weight_bytes / 2**20,
                  "file": os.path.getsize(os.path.join(folder, "model.safetensors")) / 2**20}}))
ids = np.arange(1, 20)
assert np.isfinite(model(ids)).all()
"""


@pytest.fixture(scope="module")
def checkpoint_folder(tmp_path_factory):
    return str(tmp_path_factory.mktemp("bf16_llama"))


@pytest.mark.parametrize("dtype", ["int4", "int8", "bfloat16", "float32"])
def test_load_peak_is_packed_weights_plus_about_a_layer(checkpoint_folder, dtype):
    import subprocess, sys, os
    from conftest import child_environment, REPO
    proc = subprocess.run([sys.executable, "-c", CHILD.format(folder=checkpoint_folder, dtype=dtype)],
                          capture_output=True, text=True, timeout=600, env=child_environment(),
                          cwd=os.path.dirname(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    embed_and_head = 2 * 16000 * 1024 * 2 / 2**20   # their file pages stay mapped until the end
    layer = r["file"] / 8                             # a generous layer of the file
    limit = 1.1 * r["weights"] + embed_and_head + layer + 40
    assert r["peak"] <= limit, f"{dtype}: load peak {r['peak']:.0f} MB, limit {limit:.0f} MB ({r})"
    # After the load the file's pages are gone: what stays is the packed model.
    assert r["after"] <= 1.05 * r["weights"] + 40, r
    # The check can fail: holding the whole file mapped as well would exceed the limit.
    assert r["weights"] + r["file"] > limit, r
