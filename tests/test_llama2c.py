"""pyllm.llama2c turns the trained stories260K llama2.c checkpoint into Hugging Face LLaMA
weights that make transformers reproduce run.c: its logits, its greedy continuations, and
`./run stories260K.bin -z tok512.bin -t 0.0 -n 200` character for character."""
import json
import os
import struct

import numpy as np
import pytest
import torch
import transformers

from pyllm.llama2c import load_llama2c

FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")


@pytest.fixture(scope="module")
def stories(data_dir):
    path = os.path.join(data_dir, "stories260K", "stories260K.bin")
    config, weights = load_llama2c(path)
    return path, config, weights


@pytest.fixture(scope="module")
def hf_model(stories):
    # A 260K-parameter model gains nothing from threads; on a busy 2-core machine they only spin.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield _build_hf_model(stories)
    torch.set_num_threads(threads)


def _build_hf_model(stories):
    _, config, weights = stories
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config)).eval()
    state = {name: torch.from_numpy(np.array(w)) for name, w in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert unexpected == [] and missing == ["lm_head.weight"]  # tied to the embedding
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


def read_tok512(path):
    """llama2.c tokenizer file (FORMATS.md section 2): the 512 pieces as bytes."""
    with open(path, "rb") as f:
        data = f.read()
    pos, pieces = 4, []
    for _ in range(512):
        _score, length = struct.unpack_from("<fi", data, pos)
        pos += 8
        pieces.append(data[pos:pos + length])
        pos += length
    assert pos == len(data)
    return pieces


def run_c_piece(pieces, prev, token):
    """The bytes run.c prints for token after prev (decode + safe_printf)."""
    piece = pieces[token]
    if prev == 1 and piece.startswith(b" "):
        piece = piece[1:]
    if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
        piece = bytes([int(piece[3:5], 16)])
    if len(piece) == 1 and not (32 <= piece[0] < 127 or piece in b" \t\n\r\x0b\x0c"):
        return b""
    return piece


def test_config(stories):
    _, config, weights = stories
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"],
            config["num_attention_heads"], config["num_key_value_heads"], config["vocab_size"],
            config["max_position_embeddings"]) == (64, 172, 5, 8, 4, 512, 512)
    assert config["tie_word_embeddings"] is True and "lm_head.weight" not in weights
    assert config["rms_norm_eps"] == 1e-5 and config["rope_theta"] == 10000
    assert (config["bos_token_id"], config["eos_token_id"]) == (1, 2)
    assert all(w.dtype == np.float32 for w in weights.values())
    assert len(weights) == 2 + 9 * 5
    assert weights["model.layers.4.self_attn.k_proj.weight"].shape == (32, 64)
    assert weights["model.layers.0.mlp.down_proj.weight"].shape == (64, 172)


def test_logits_match_run_c(data_dir, hf_model):
    with open(os.path.join(data_dir, "stories260K", "run_c_reference_outputs.json")) as f:
        cases = json.load(f)["cases"]
    assert len(cases) == 5
    worst = 0.0
    for case in cases:
        ids = (case["prompt_tokens"] + case["greedy_continuation"])[:3]
        with torch.no_grad():
            logits = hf_model(torch.tensor([ids])).logits[0].numpy()
        want = np.array(case["logits_first_positions"], dtype=np.float32)
        assert want.shape == (3, 512)
        rel = np.abs(logits - want).max() / np.abs(want).max()
        worst = max(worst, rel)
        assert rel < 1e-5, (case["prompt"], rel)
        assert (logits.argmax(-1) == want.argmax(-1)).all()
    print(f"worst relative logit error vs run.c: {worst:.2e}")


def _greedy(model, prompt, steps, stop_at_bos):
    """Greedy tokens after prompt, as run.c's loop chooses them (full recompute each step:
    the model is tiny and this avoids every cache API difference between transformers versions)."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            nxt = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            if stop_at_bos and nxt == 1:
                break
            ids.append(nxt)
    return ids[len(prompt):]


def test_greedy_continuations_match_run_c(data_dir, hf_model):
    with open(os.path.join(data_dir, "stories260K", "run_c_reference_outputs.json")) as f:
        cases = json.load(f)["cases"]
    for case in cases:
        want = case["greedy_continuation"]
        got = _greedy(hf_model, case["prompt_tokens"], len(want), stop_at_bos=False)
        assert got == want, case["prompt"]


def test_greedy_200_steps_match_run_c_text(data_dir, hf_model):
    pieces = read_tok512(os.path.join(data_dir, "stories260K", "tok512.bin"))
    with open(os.path.join(data_dir, "stories260K", "expected_greedy_200steps.txt"), "rb") as f:
        expected = f.read()
    ids = _greedy(hf_model, [1], 200, stop_at_bos=True)
    # Walk the expected text token by token so a failure names the first wrong step.
    text, prev = b"", 1
    for step, token in enumerate(ids):
        piece = run_c_piece(pieces, prev, token)
        assert expected.startswith(text + piece), (step, token, piece, expected[len(text):len(text) + 40])
        text += piece
        prev = token
    assert text == expected
    assert len(ids) == 200


def _write_v0(path, params, arrays, shared=True):
    vocab = params["vocab_size"] if shared else -params["vocab_size"]
    header = struct.pack("<7i", *[vocab if k == "vocab_size" else params[k] for k in FIELDS])
    head = params["dim"] // params["n_heads"]
    order = ["embed", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final"]
    body = b"".join(arrays[k].astype("<f4").tobytes() for k in order)
    body += np.zeros(2 * params["seq_len"] * head // 2, "<f4").tobytes()
    if not shared:
        body += arrays["wcls"].astype("<f4").tobytes()
    path.write_bytes(header + body)


def _write_v1(path, params, arrays, shared=True):
    header = struct.pack("<Ii7iB", 0x616B3432, 1, *[params[k] for k in FIELDS], int(shared))
    header += bytes(256 - len(header))
    order = ["rms_att", "rms_ffn", "rms_final", "embed", "wq", "wk", "wv", "wo", "w1", "w2", "w3"]
    body = b"".join(arrays[k].astype("<f4").tobytes() for k in order)
    if not shared:
        body += arrays["wcls"].astype("<f4").tobytes()
    path.write_bytes(header + body)


def _random_llama2c(seed, dim=48, hidden=80, layers=2, heads=6, kv_heads=2, vocab=70, seq=32):
    rng = np.random.default_rng(seed)
    params = dict(dim=dim, hidden_dim=hidden, n_layers=layers, n_heads=heads, n_kv_heads=kv_heads,
                  vocab_size=vocab, seq_len=seq)
    kv = dim // heads * kv_heads
    shapes = dict(embed=(vocab, dim), rms_att=(layers, dim), wq=(layers, dim, dim), wk=(layers, kv, dim),
                  wv=(layers, kv, dim), wo=(layers, dim, dim), rms_ffn=(layers, dim), w1=(layers, hidden, dim),
                  w2=(layers, dim, hidden), w3=(layers, hidden, dim), rms_final=(dim,), wcls=(vocab, dim))
    return params, {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def _run_c_forward(params, a, shared, tokens):
    """run.c's forward pass (FORMATS.md section 3) in NumPy, for the logits at every position."""
    dim, heads, kv_heads = params["dim"], params["n_heads"], params["n_kv_heads"]
    head = dim // heads
    n = len(tokens)

    def rmsnorm(x, w):
        return w * x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5)

    def rope(x, n_rows):  # x [n, n_rows*head], adjacent pairs
        x = x.reshape(n, n_rows, head // 2, 2).astype(np.float64)
        i = np.arange(head // 2)
        angle = np.arange(n)[:, None] * 10000.0 ** (-2 * i / head)[None, :]
        c, s = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
        out = np.stack([x[..., 0] * c - x[..., 1] * s, x[..., 0] * s + x[..., 1] * c], -1)
        return out.reshape(n, n_rows * head)

    x = a["embed"][tokens].astype(np.float64)
    for layer in range(params["n_layers"]):
        xb = rmsnorm(x, a["rms_att"][layer])
        q = rope(xb @ a["wq"][layer].T, heads).reshape(n, heads, head)
        k = rope(xb @ a["wk"][layer].T, kv_heads).reshape(n, kv_heads, head)
        v = (xb @ a["wv"][layer].T).reshape(n, kv_heads, head)
        att = np.empty((n, heads, head))
        for h in range(heads):
            kvh = h // (heads // kv_heads)
            scores = q[:, h] @ k[:, kvh].T / np.sqrt(head)
            scores[np.triu_indices(n, 1)] = -np.inf
            p = np.exp(scores - scores.max(-1, keepdims=True))
            att[:, h] = (p / p.sum(-1, keepdims=True)) @ v[:, kvh]
        x = x + att.reshape(n, dim) @ a["wo"][layer].T
        xb = rmsnorm(x, a["rms_ffn"][layer])
        g = xb @ a["w1"][layer].T
        x = x + ((g / (1 + np.exp(-g))) * (xb @ a["w3"][layer].T)) @ a["w2"][layer].T
    x = rmsnorm(x, a["rms_final"])
    return x @ (a["embed"] if shared else a["wcls"]).T


@pytest.mark.parametrize("version", [0, 1])
@pytest.mark.parametrize("shared", [True, False])
def test_v0_v1_layouts_and_classifier(tmp_path, version, shared):
    """Random models in both layouts, tied or not: transformers on the converted weights equals
    a NumPy transcription of run.c's forward pass (interleaved RoPE, GQA)."""
    params, arrays = _random_llama2c(seed=10 * version + shared)
    arrays = {k: v * (0.3 if k.startswith("w") and k != "wcls" else 1.0) for k, v in arrays.items()}
    path = tmp_path / f"v{version}.bin"
    (_write_v1 if version else _write_v0)(path, params, arrays, shared)
    config, weights = load_llama2c(path)
    assert config["tie_word_embeddings"] is shared
    assert ("lm_head.weight" in weights) is not shared
    assert np.array_equal(weights["model.embed_tokens.weight"], arrays["embed"])
    assert np.array_equal(weights["model.layers.1.mlp.down_proj.weight"], arrays["w2"][1])
    assert np.array_equal(weights["model.norm.weight"], arrays["rms_final"])
    if not shared:
        assert np.array_equal(weights["lm_head.weight"], arrays["wcls"])

    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config)).eval()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=False)
    tokens = list(np.random.default_rng(5).integers(0, params["vocab_size"], 12))
    with torch.no_grad():
        got = model(torch.tensor([tokens])).logits[0].double().numpy()
    want = _run_c_forward(params, arrays, shared, tokens)
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-4
    # The row reordering is what makes it work: llama2.c's own row order is far off.
    for i in range(params["n_layers"]):
        state = model.model.layers[i].self_attn
        state.q_proj.weight.data = torch.from_numpy(arrays["wq"][i].copy())
        state.k_proj.weight.data = torch.from_numpy(arrays["wk"][i].copy())
    with torch.no_grad():
        unpermuted = model(torch.tensor([tokens])).logits[0].double().numpy()
    assert np.abs(unpermuted - want).max() / np.abs(want).max() > 1e-2


def test_v1_equals_v0_for_stories(stories, tmp_path):
    path, _, weights0 = stories
    raw = np.fromfile(path, dtype="<f4", offset=28)
    params = dict(zip(FIELDS, struct.unpack("<7i", open(path, "rb").read(28))))
    dim, hidden, layers, vocab = params["dim"], params["hidden_dim"], params["n_layers"], params["vocab_size"]
    kv = dim // params["n_heads"] * params["n_kv_heads"]
    shapes = [("embed", (vocab, dim)), ("rms_att", (layers, dim)), ("wq", (layers, dim, dim)),
              ("wk", (layers, kv, dim)), ("wv", (layers, kv, dim)), ("wo", (layers, dim, dim)),
              ("rms_ffn", (layers, dim)), ("w1", (layers, hidden, dim)), ("w2", (layers, dim, hidden)),
              ("w3", (layers, hidden, dim)), ("rms_final", (dim,))]
    arrays, pos = {}, 0
    for name, shape in shapes:
        size = int(np.prod(shape))
        arrays[name] = raw[pos:pos + size].reshape(shape)
        pos += size
    _write_v1(tmp_path / "v1.bin", params, arrays)
    config1, weights1 = load_llama2c(tmp_path / "v1.bin")
    assert sorted(weights1) == sorted(weights0)
    for name in weights0:
        assert np.array_equal(weights0[name], weights1[name]), name


def test_bad_headers_raise(tmp_path, isolated):
    params, arrays = _random_llama2c(seed=1, dim=16, hidden=24, layers=1, heads=2, kv_heads=1, vocab=10, seq=4)
    good = tmp_path / "good.bin"
    _write_v0(good, params, arrays)
    data = good.read_bytes()
    cases = {}

    def case(name, content, *fragments):
        p = tmp_path / f"{name}.bin"
        p.write_bytes(content)
        cases[name] = (str(p), fragments)

    case("truncated", data[:-4], "implies", str(len(data)))
    case("extra_bytes", data + bytes(4), "implies")
    case("too_short", data[:20], "too short")
    case("empty", b"", "empty")
    for i, field in enumerate(FIELDS):
        if field == "vocab_size":
            continue
        case(f"zero_{field}", data[:4 * i] + struct.pack("<i", 0) + data[4 * i + 4:], field, "positive")
    # The LLaMA spec's limits (pyllm/_checks.py LIMITS) refuse such a header before its size is read.
    case("huge_dims", struct.pack("<7i", 2**30, 2**30, 2**30, 1, 1, 2**30, 2**30) + data[28:], "limit")
    case("heads_not_dividing", data[:12] + struct.pack("<i", 3) + data[16:], "divisible")
    case("kv_not_dividing", struct.pack("<7i", 16, 24, 1, 4, 3, 10, 4) + data[28:], "multiple")
    case("version2", struct.pack("<Ii", 0x616B3432, 2) + bytes(300), "version 2")
    case("v1_short", struct.pack("<Ii", 0x616B3432, 1) + bytes(100), "256")
    code = "from pyllm.llama2c import load_llama2c\nimport json\nout = {}\n"
    for name, (p, _) in cases.items():
        code += (f"try:\n    load_llama2c({p!r})\n    out[{name!r}] = 'loaded'\n"
                 f"except ValueError as e:\n    out[{name!r}] = str(e)\n")
    code += "raise RuntimeError(json.dumps(out))\n"
    kind, message = isolated(code)
    assert kind == "RuntimeError", message
    results = json.loads(message)
    for name, (p, fragments) in cases.items():
        assert results[name] != "loaded", name
        for fragment in fragments:
            assert fragment in results[name], (name, fragment, results[name])
    kind, message = isolated(f"from pyllm.llama2c import load_llama2c\nload_llama2c({str(tmp_path / 'nope.bin')!r})")
    assert kind == "FileNotFoundError" and "nope.bin" in message


def test_converted_directory_loads_in_transformers(data_dir, stories, tmp_path):
    """convert_llama2c writes a model directory that transformers' own from_pretrained (and
    the safetensors package) read back to the same weights and run.c's logits."""
    from safetensors.numpy import load_file

    from pyllm import checkpoint
    from pyllm.llama2c import convert_llama2c

    path, config, weights = stories
    out = convert_llama2c(path, tmp_path / "stories260K-hf")
    assert checkpoint.load_config(out) == config
    assert checkpoint.load_generation_config(out) == {"bos_token_id": 1, "eos_token_id": 2}
    by_package = load_file(os.path.join(out, "model.safetensors"))
    by_us = checkpoint.load_weights(out)
    assert sorted(by_package) == sorted(by_us) == sorted(weights)
    for name, w in weights.items():
        assert np.array_equal(by_package[name], w) and np.array_equal(by_us[name], w), name

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = transformers.LlamaForCausalLM.from_pretrained(out).float().eval()
        with open(os.path.join(data_dir, "stories260K", "run_c_reference_outputs.json")) as f:
            case = json.load(f)["cases"][2]
        ids = (case["prompt_tokens"] + case["greedy_continuation"])[:3]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].numpy()
    finally:
        torch.set_num_threads(threads)
    want = np.array(case["logits_first_positions"], dtype=np.float32)
    assert np.abs(logits - want).max() / np.abs(want).max() < 1e-5

