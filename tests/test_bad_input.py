"""Bad input gets a clear exception, never a crash: every case of the foundation issue's list,
each in its own interpreter (so a segfault fails that case instead of killing the run), checked
for the exception type and a fragment of its message."""
import json
import os

import numpy as np
import pytest

import pyllm
from pyllm import checkpoint
from pyllm.architectures import canonical_shapes, spec_from_hf

CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32,
          "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
          "num_attention_heads": 2, "max_position_embeddings": 16, "eos_token_id": 2}


def _write_model(folder, config=CONFIG, change=None):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    weights = {name: rng.standard_normal(shape).astype(np.float32)
               for name, shape in canonical_shapes(spec_from_hf(CONFIG, None)).items()}
    if change:
        change(weights)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    checkpoint.save_safetensors(os.path.join(folder, "model.safetensors"), weights)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Model folders: a good one and one per damage."""
    root = tmp_path_factory.mktemp("models")
    good = _write_model(str(root / "good"))
    _write_model(str(root / "no_hidden"), {k: v for k, v in CONFIG.items() if k != "hidden_size"})
    _write_model(str(root / "gpt2"), dict(CONFIG, architectures=["GPT2LMHeadModel"], model_type="gpt2"))
    _write_model(str(root / "shape"), change=lambda w: w.update(
        {"model.layers.0.mlp.up_proj.weight": np.zeros((16, 16), np.float32)}))
    _write_model(str(root / "dtype"), change=lambda w: w.update(
        {"model.norm.weight": np.zeros(16, np.int32)}))
    for name, damage in [("truncated", lambda b: b[: len(b) - 100]),
                         ("header", lambda b: b[:8] + b"{not json" + b[17:]),
                         ("length", lambda b: (10 ** 12).to_bytes(8, "little") + b[8:])]:
        folder = str(root / name)
        _write_model(folder)
        path = os.path.join(folder, "model.safetensors")
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(damage(data))
    (root / "random.model").write_bytes(np.random.default_rng(1).bytes(4096))
    (root / "empty.model").write_bytes(b"")
    return str(root), good


LOAD = "import numpy as np, pyllm, os\nroot = os.environ['ROOT']\n"
MODEL = LOAD + "m = pyllm.Model.from_pretrained(os.path.join(root, 'good'))\n"

CASES = [
    # missing files
    ("missing model dir", LOAD + "pyllm.Model.from_pretrained(os.path.join(root, 'absent'))",
     "FileNotFoundError", "absent"),
    ("missing tokenizer file", LOAD + "pyllm.Tokenizer.from_file(os.path.join(root, 'absent.model'))",
     "FileNotFoundError", "absent.model"),
    ("missing tokenizer dir", LOAD + "pyllm.Tokenizer.from_pretrained(os.path.join(root, 'absent'))",
     "FileNotFoundError", "absent"),
    # configs and checkpoints
    ("config missing a key", LOAD + "pyllm.Model.from_pretrained(os.path.join(root, 'no_hidden'))",
     "ValueError", "hidden_size"),
    ("other architecture", LOAD + "pyllm.Model.from_pretrained(os.path.join(root, 'gpt2'))",
     "ValueError", "gpt2"),
    ("truncated safetensors", LOAD + "pyllm.Model.from_pretrained(os.path.join(root, 'truncated'))",
     "ValueError", "model.safetensors"),
    ("corrupted safetensors header", LOAD + "pyllm.Model.from_pretrained(os.path.join(root, 'header'))",
     "ValueError", "model.safetensors"),
    ("safetensors header length past the end", LOAD + "pyllm.Model.from_pretrained(os.path.join(root, 'length'))",
     "ValueError", "model.safetensors"),
    ("weight with the wrong shape", LOAD + "pyllm.Model.from_pretrained(os.path.join(root, 'shape'))",
     "ValueError", "model.layers.0.mlp.up_proj.weight"),
    ("weight with the wrong dtype", LOAD + "pyllm.Model.from_pretrained(os.path.join(root, 'dtype'))",
     "TypeError", "model.norm.weight"),
    # token ids and input arrays
    ("negative token id", MODEL + "m([3, -1])", "ValueError", "-1"),
    ("token id = vocab", MODEL + "m([[3, 32]])", "ValueError", "32"),
    ("token id past vocab in generate", MODEL + "m.generate([1000])", "ValueError", "1000"),
    ("empty input", MODEL + "m([])", "ValueError", "empty"),
    ("empty batch rows", MODEL + "m(np.zeros((2, 0), np.int64))", "ValueError", "empty"),
    ("input longer than n_ctx", MODEL + "m(list(range(17)))", "ValueError", "n_ctx"),
    ("input longer than a given n_ctx",
     LOAD + "m = pyllm.Model.from_pretrained(os.path.join(root, 'good'), n_ctx=4)\nm([1, 2, 3, 4, 5])",
     "ValueError", "n_ctx"),
    ("generation past n_ctx", MODEL + "m.generate([1, 2], max_new_tokens=15)", "ValueError", "n_ctx"),
    ("float ids", MODEL + "m(np.array([1.0, 2.0]))", "TypeError", "float64"),
    ("bool ids", MODEL + "m(np.array([True, False]))", "TypeError", "bool"),
    ("string ids", MODEL + "m(['a', 'b'])", "TypeError", "integers"),
    ("3-D ids", MODEL + "m(np.zeros((1, 1, 2), np.int64))", "ValueError", "3-D"),
    ("float mask", MODEL + "m([[1, 2]], attention_mask=[[0.5, 1.0]])", "TypeError", "attention_mask"),
    # sampling values
    ("temperature < 0", MODEL + "m.generate([1], do_sample=True, temperature=-0.5)", "ValueError", "temperature"),
    ("top_p = 0", MODEL + "m.generate([1], do_sample=True, top_p=0.0)", "ValueError", "top_p"),
    ("top_p > 1", MODEL + "m.generate([1], do_sample=True, top_p=1.5)", "ValueError", "top_p"),
    ("top_k < 0", MODEL + "m.generate([1], do_sample=True, top_k=-1)", "ValueError", "top_k"),
    ("max_new_tokens < 0", MODEL + "m.generate([1], max_new_tokens=-1)", "ValueError", "max_new_tokens"),
    # memory: a KV cache that cannot be allocated is a MemoryError, and the model stays usable
    ("unallocatable KV cache",
     LOAD + "m = pyllm.Model.from_pretrained(os.path.join(root, 'good'), n_ctx=2**31 - 1)\n"
     "try:\n    m.new_cache()\nexcept MemoryError:\n    pass\nelse:\n    raise AssertionError('no MemoryError')\n"
     "assert m([1, 2, 3]).shape == (3, 32)\n"
     "m.generate([1, 2], max_new_tokens=2**31 - 3)", "MemoryError", "KV cache"),
    ("n_ctx above the limit", LOAD + "pyllm.Model.from_pretrained(os.path.join(root, 'good'), n_ctx=2**40)",
     "ValueError", "n_ctx is 1099511627776, above pyllm's limit of 2147483647"),
    # tokenizer files
    ("random bytes as tokenizer", LOAD + "pyllm.Tokenizer.from_file(os.path.join(root, 'random.model'))",
     "ValueError", "random.model"),
    ("empty tokenizer file", LOAD + "pyllm.Tokenizer.from_file(os.path.join(root, 'empty.model'))",
     "ValueError", "empty.model"),
    ("safetensors given as tokenizer",
     LOAD + "pyllm.Tokenizer.from_file(os.path.join(root, 'good', 'model.safetensors'))", "ValueError",
     "model.safetensors"),
]


@pytest.mark.parametrize("name, code, exc, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises(models, isolated, name, code, exc, fragment):
    root, _ = models
    kind, message = isolated(code, env={"ROOT": root})
    assert kind == exc, f"{name}: expected {exc}, got {kind}: {message}"
    assert fragment in message, f"{name}: {fragment!r} not in {message!r}"
    assert message.strip(), f"{name}: the exception has no message"


def test_model_usable_after_errors(models):
    """An error leaves nothing behind: the same model object keeps answering correctly."""
    _, good = models
    model = pyllm.Model.from_pretrained(good)
    before = model([1, 2, 3])
    for bad in ([-1], [], [99], np.array([1.5])):
        with pytest.raises((ValueError, TypeError)):
            model(bad)
    with pytest.raises(ValueError):
        model.generate([1], do_sample=True, temperature=-1)
    np.testing.assert_array_equal(model([1, 2, 3]), before)
