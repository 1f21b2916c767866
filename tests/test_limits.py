"""Every count and size from a file or a call is checked before anything is sized from it (issue
9, section 2): a ValueError or MemoryError naming the file, the quantity, the value and the limit,
in bounded time and memory. Hostile loads run in a child process under RLIMIT_AS (and a timeout),
so a regression ends in a failed test, not in the OOM killer; peaks are read from VmHWM."""
import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pyllm
from pyllm import _checks, _core, checkpoint, limits
from pyllm.architectures import canonical_shapes, spec_from_hf

from conftest import REPO, child_environment
from gguf_files import write_gguf

ADDRESS_SPACE = 4 << 30  # the children's RLIMIT_AS: what they may reserve, mappings included

_PRELUDE = f'''
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE}, {ADDRESS_SPACE}))
import numpy as np
import pyllm
from pyllm import _core, memory
from pyllm.architectures import canonical_shapes, spec_from_hf

SMALL = {{"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "max_position_embeddings": 64, "eos_token_id": 63}}

def weights(config, seed=0):
    rng = np.random.default_rng(seed)
    return {{n: (rng.standard_normal(s) * 0.05).astype(np.float32)
            for n, s in canonical_shapes(spec_from_hf(config, None)).items()}}

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

def expect(exc_type, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return str(e)
    except BaseException as e:
        return f"wrong exception {{type(e).__name__}}: {{e}}"
    return f"no {{exc_type.__name__}}"

def report(**values):
    values["peak"] = status("VmHWM")
    print("__RESULT__" + json.dumps(values))
'''


def hostile(code, env=None, timeout=180):
    """Run code after _PRELUDE in a fresh interpreter under RLIMIT_AS; what it report()s."""
    proc = subprocess.run([sys.executable, "-c", _PRELUDE + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env={**child_environment(), **(env or {})}, cwd=os.path.dirname(REPO))
    if proc.returncode != 0 or "__RESULT__" not in proc.stdout:
        raise AssertionError(f"child failed (exit {proc.returncode}):\nstdout: {proc.stdout[-2000:]}\n"
                             f"stderr: {proc.stderr[-4000:]}")
    return json.loads(proc.stdout.rsplit("__RESULT__", 1)[1])


SMALL = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "max_position_embeddings": 64, "eos_token_id": 63}
BLOOM = {"architectures": ["BloomForCausalLM"], "model_type": "bloom", "vocab_size": 64, "hidden_size": 32,
         "n_layer": 2, "n_head": 4}


def _model_dir(folder, config, weights_of=SMALL):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    rng = np.random.default_rng(0)
    checkpoint.save_safetensors(os.path.join(folder, "model.safetensors"),
                                {n: rng.standard_normal(s).astype(np.float32)
                                 for n, s in canonical_shapes(spec_from_hf(weights_of, None)).items()})
    return str(folder)


def _gguf_model(path, **metadata):
    """A one-layer LLaMA GGUF file, its metadata overridden (uint64 for values past 32 bits)."""
    import gguf
    meta = {"llama.block_count": 1, "llama.context_length": 64, "llama.embedding_length": 32,
            "llama.feed_forward_length": 64, "llama.attention.head_count": 4, "llama.vocab_size": 16}
    meta.update(metadata)
    rng = np.random.default_rng(0)
    tensors = [("token_embd.weight", rng.standard_normal((16, 32)).astype(np.float32), None),
               ("output_norm.weight", np.ones(32, np.float32), None)]
    for name, shape in [("attn_norm", (32,)), ("ffn_norm", (32,)), ("attn_q", (32, 32)), ("attn_k", (32, 32)),
                        ("attn_v", (32, 32)), ("attn_output", (32, 32)), ("ffn_gate", (64, 32)),
                        ("ffn_up", (64, 32)), ("ffn_down", (32, 64))]:
        tensors.append((f"blk.0.{name}.weight", rng.standard_normal(shape).astype(np.float32), None))
    typed = [(k, (gguf.GGUFValueType.UINT32 if v < 2**32 else gguf.GGUFValueType.UINT64, v)) for k, v in meta.items()]
    typed.append(("llama.attention.layer_norm_rms_epsilon", 1e-5))
    return write_gguf(path, typed, tensors)


def _llama2c(path, **fields):
    header = dict(dim=32, hidden_dim=64, n_layers=1, n_heads=4, n_kv_heads=4, vocab_size=16, seq_len=64)
    header.update(fields)
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", *header.values()) + bytes(1024))
    return str(path)


# ---- counts from files: layers -------------------------------------------------------------------

def test_two_billion_layers_from_every_source_end_in_one_named_error_in_bounded_memory(tmp_path, data_dir):
    import shutil
    big = 2**31 - 1
    llama = _model_dir(tmp_path / "llama", dict(SMALL, num_hidden_layers=big))
    shutil.copy(os.path.join(data_dir, "llama", "tokenizer.model"), llama)  # pyllm.LLM reads it first
    bloom = _model_dir(tmp_path / "bloom", dict(BLOOM, n_layer=big))
    gguf_path = _gguf_model(tmp_path / "layers.gguf", **{"llama.block_count": big})
    l2c = _llama2c(tmp_path / "layers.bin", n_layers=big)
    out = hostile(f"""
        import pyllm.llama2c
        report(llama=expect(ValueError, pyllm.Model.from_pretrained, {llama!r}),
               llm=expect(ValueError, pyllm.LLM, {llama!r}),
               bloom=expect(ValueError, pyllm.Model.from_pretrained, {bloom!r}),
               arrays=expect(ValueError, pyllm.Model.from_arrays, dict(SMALL, num_hidden_layers={big}), {{}}),
               gguf=expect(ValueError, pyllm.Model.from_pretrained, {gguf_path!r}),
               l2c=expect(ValueError, pyllm.llama2c.load_llama2c, {l2c!r}))
    """)
    limit = f"{big}, above pyllm's limit of {limits.MAX_LAYERS}"
    assert out["llama"] == f"{llama}/config.json: num_hidden_layers is {limit}", out
    assert out["llm"] == out["llama"]
    assert out["bloom"] == f"{bloom}/config.json: n_layer is {limit}", out
    assert out["arrays"] == f"config: num_hidden_layers is {limit}", out
    assert out["gguf"] == f"{gguf_path}: metadata key 'llama.block_count' is {limit}", out
    assert out["l2c"] == f"{l2c}: llama2.c header field n_layers is {limit}", out
    assert out["peak"] < 300e6, out


@pytest.mark.parametrize("key, value, limit", [
    ("llama.attention.head_count", 2**31, limits.MAX_HEADS), ("llama.attention.head_count_kv", 2**20, limits.MAX_HEADS),
    ("llama.embedding_length", 2**33, limits.MAX_HIDDEN), ("llama.feed_forward_length", 2**40, limits.MAX_INTERMEDIATE),
    ("llama.vocab_size", 2**40, limits.MAX_VOCAB), ("llama.context_length", 2**40, limits.MAX_CONTEXT),
    ("llama.attention.key_length", 2**40, limits.MAX_HEAD_DIM), ("llama.block_count", 2**63, limits.MAX_LAYERS),
])
def test_gguf_counts_name_the_metadata_key_the_value_and_the_limit(tmp_path, key, value, limit):
    path = _gguf_model(tmp_path / "m.gguf", **{key: value})
    with pytest.raises(pyllm.gguf.GGUFError) as e:
        pyllm.Model.from_pretrained(path)
    assert str(e.value) == f"{path}: metadata key {key!r} is {value}, above pyllm's limit of {limit}"


@pytest.mark.parametrize("field, value, limit", [
    ("dim", 2**30, limits.MAX_HIDDEN), ("hidden_dim", 2**30, limits.MAX_INTERMEDIATE),
    ("n_heads", 2**20, limits.MAX_HEADS), ("vocab_size", 2**31 - 1, limits.MAX_VOCAB),
])
def test_llama2c_header_fields_name_the_field_the_value_and_the_limit(tmp_path, field, value, limit):
    import pyllm.llama2c
    path = _llama2c(tmp_path / "m.bin", **{field: value})
    with pytest.raises(ValueError) as e:
        pyllm.llama2c.load_llama2c(path)
    assert str(e.value) == f"{path}: llama2.c header field {field} is {value}, above pyllm's limit of {limit}"


# ---- config.json: wrong JSON types name the file and the key -------------------------------------

_WRONG = [("abc", "must be an integer, got 'abc'"), ([1], "must be an integer, got [1]"),
          (True, "must be an integer, got True"), (1.5, "must be an integer, got 1.5"),
          (-3, "must be a positive integer, got -3"), (0, "must be a positive integer, got 0")]
_LLAMA_COUNTS = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "head_dim", "max_position_embeddings"]
_BLOOM_COUNTS = ["vocab_size", "n_embed", "n_layer", "n_head", "seq_length"]


@pytest.mark.parametrize("family, key", [("llama", k) for k in _LLAMA_COUNTS] + [("bloom", k) for k in _BLOOM_COUNTS])
@pytest.mark.parametrize("value, message", _WRONG, ids=[repr(v) for v, _ in _WRONG])
def test_config_counts_of_the_wrong_type_name_the_file_and_the_key(tmp_path, family, key, value, message):
    base = dict(BLOOM) if family == "bloom" else dict(SMALL)
    base.pop({"n_embed": "hidden_size"}.get(key, key), None)
    folder = _model_dir(tmp_path / "m", dict(base, **{key: value}))
    with pytest.raises(ValueError) as e:
        pyllm.Model.from_pretrained(folder)
    assert str(e.value) == f"{folder}/config.json: {key} {message}"


@pytest.mark.parametrize("key, value, message", [
    ("tie_word_embeddings", "false", "tie_word_embeddings must be true or false, got 'false'"),
    ("attention_bias", 1.5, "attention_bias must be true or false, got 1.5"),
    ("mlp_bias", [True], "mlp_bias must be true or false, got [True]"),
    ("rms_norm_eps", "1e-5", "rms_norm_eps must be a number >= 0, got '1e-5'"),
    ("rope_theta", None, None),  # null: the default
    ("rope_theta", -1, "rope_theta must be a positive number, got -1"),
    ("rope_scaling", [1], "rope_scaling / rope_parameters must be a dict or null, got [1]"),
    ("eos_token_id", "abc", "eos_token_id must be a token id or a list of token ids, got 'abc'"),
    ("eos_token_id", [1, 2.0], "eos_token_id must be a token id or a list of token ids, got [1, 2.0]"),
    ("pad_token_id", [0], "pad_token_id must be a token id, got [0]"),
    ("bos_token_id", True, "bos_token_id must be a token id, got True"),
])
def test_config_settings_of_the_wrong_type_name_the_file_and_the_key(tmp_path, key, value, message):
    folder = _model_dir(tmp_path / "m", dict(SMALL, **{key: value}))
    if message is None:
        assert pyllm.Model.from_pretrained(folder)([1, 2]).shape == (2, 64)
        return
    with pytest.raises(ValueError) as e:
        pyllm.Model.from_pretrained(folder)
    assert str(e.value) == f"{folder}/config.json: {message}"


def test_bloom_residual_flag_of_the_wrong_type_names_the_file(tmp_path):
    folder = _model_dir(tmp_path / "m", dict(BLOOM, apply_residual_connection_post_layernorm="yes"))
    with pytest.raises(ValueError) as e:
        pyllm.Model.from_pretrained(folder)
    assert str(e.value) == (f"{folder}/config.json: apply_residual_connection_post_layernorm must be true or "
                            "false, got 'yes'")


@pytest.mark.parametrize("key, value, message", [
    ("max_new_tokens", "abc", "generation option max_new_tokens must be an integer >= 0 or None, got 'abc'"),
    ("max_new_tokens", 2**63, f"generation option max_new_tokens is {2**63}, above pyllm's limit of 2147483647"),
    ("top_k", 1.5, "generation option top_k must be an integer >= 0, got 1.5"),
    ("num_return_sequences", 2**40, f"generation option num_return_sequences is {2**40}, above pyllm's limit of "
                                    f"{limits.MAX_BATCH}"),
    ("do_sample", "yes", "generation option do_sample must be True or False, got 'yes'"),
])
def test_generation_config_json_errors_name_the_file_and_the_key(tmp_path, key, value, message):
    folder = _model_dir(tmp_path / "m", SMALL)
    with open(os.path.join(folder, "generation_config.json"), "w") as f:
        json.dump({key: value}, f)
    with pytest.raises(ValueError) as e:
        pyllm.Model.from_pretrained(folder)
    assert str(e.value) == f"{folder}/generation_config.json: {message}"


def test_json_files_are_sized_before_they_are_read(tmp_path):
    folder = _model_dir(tmp_path / "m", SMALL)
    config = os.path.join(folder, "config.json")
    os.truncate(config, limits.MAX_JSON_BYTES + 1)  # sparse: no disk used, and never read
    with pytest.raises(ValueError) as e:
        pyllm.Model.from_pretrained(folder)
    assert str(e.value) == (f"{config}: config.json of {limits.MAX_JSON_BYTES + 1} bytes is above pyllm's limit "
                            f"of {limits.MAX_JSON_BYTES} bytes")


# ---- tokenizer files ---------------------------------------------------------------------------------

def test_tokenizer_files_are_sized_before_they_are_read(tmp_path):
    out = {}
    for name in ("tokenizer.model", "tok.bin", "tokenizer.json"):
        path = tmp_path / name
        path.write_bytes(b"")
        os.truncate(path, limits.MAX_TOKENIZER_BYTES + 1)
        out[name] = str(path)
    result = hostile(f"""
        report(model=expect(ValueError, pyllm.Tokenizer.from_file, {out['tokenizer.model']!r}),
               llama2c=expect(ValueError, pyllm.Tokenizer.from_llama2c, {out['tok.bin']!r}, 32000),
               json=expect(ValueError, pyllm.Tokenizer.from_file, {out['tokenizer.json']!r}))
    """)
    for key, name in (("model", "tokenizer.model"), ("llama2c", "tok.bin"), ("json", "tokenizer.json")):
        assert result[key] == (f"{out[name]}: tokenizer file of {limits.MAX_TOKENIZER_BYTES + 1} bytes is above "
                               f"pyllm's limit of {limits.MAX_TOKENIZER_BYTES} bytes"), result
    assert result["peak"] < 300e6


def test_added_tokens_with_a_key_that_is_no_token_id_name_the_file_and_the_key(tmp_path, data_dir):
    import shutil
    for key in ("abc", str(2**40), "-1"):
        folder = tmp_path / f"tok{key}"
        folder.mkdir()
        shutil.copy(os.path.join(data_dir, "llama", "tokenizer.model"), folder / "tokenizer.model")
        config = {"added_tokens_decoder": {key: {"content": "<x>", "special": True}}}
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError) as e:
            pyllm.Tokenizer.from_pretrained(str(folder))
        assert str(e.value) == (f"{folder}/tokenizer_config.json: added_tokens_decoder key {key!r} must be a token "
                                f"id below pyllm's limit of {limits.MAX_VOCAB}")


def test_llama2c_tokenizer_vocab_size_is_bounded_before_it_reaches_the_core(tmp_path):
    path = tmp_path / "tok.bin"
    path.write_bytes(struct.pack("<i", 8) + struct.pack("<fi", 0.0, 1) + b"a")
    with pytest.raises(ValueError) as e:
        pyllm.Tokenizer.from_llama2c(str(path), 2**40)
    assert str(e.value) == f"vocab_size is {2**40}, above pyllm's limit of {limits.MAX_VOCAB}"


# ---- GGUF reader: counts, strings, arrays ----------------------------------------------------------

_HEADER = b"GGUF" + struct.pack("<I", 3)


def _kv_file(path, body, n_tensors=0, n_kv=1, pad=64):
    path.write_bytes(_HEADER + struct.pack("<QQ", n_tensors, n_kv) + body + bytes(pad))
    return str(path)


def test_gguf_header_counts_and_strings_have_limits(tmp_path):
    cases = {
        "tensors": (_kv_file(tmp_path / "t.gguf", b"", n_tensors=limits.MAX_GGUF_TENSORS + 1, n_kv=0),
                    f"the header claims {limits.MAX_GGUF_TENSORS + 1} tensors, above pyllm's limit of "
                    f"{limits.MAX_GGUF_TENSORS}"),
        "metadata": (_kv_file(tmp_path / "k.gguf", b"", n_kv=limits.MAX_GGUF_METADATA + 1),
                     f"the header claims {limits.MAX_GGUF_METADATA + 1} metadata pairs, above pyllm's limit of "
                     f"{limits.MAX_GGUF_METADATA}"),
        "key": (_kv_file(tmp_path / "s.gguf", struct.pack("<Q", 2**40)),
                f"metadata key 0 is a string of {2**40} bytes, above pyllm's limit of {limits.MAX_GGUF_STRING}"),
        "array": (_kv_file(tmp_path / "a.gguf", struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 0, 2**40)),
                  f"metadata value 'k' claims {2**40} elements, above pyllm's limit of {limits.MAX_GGUF_ARRAY}"),
        "element": (_kv_file(tmp_path / "e.gguf", struct.pack("<Q", 1) + b"k" + struct.pack("<IIQQ", 9, 8, 1, 2**40)),
                    f"metadata value 'k' element 0 is a string of {2**40} bytes, above pyllm's limit of "
                    f"{limits.MAX_GGUF_STRING}"),
    }
    for name, (path, message) in cases.items():
        with pytest.raises(pyllm.gguf.GGUFError) as e:
            pyllm.gguf.open_gguf(path)
        assert str(e.value) == f"{path}: {message}", name


def test_gguf_arrays_nested_deeper_than_the_limit_are_refused_without_recursing(tmp_path):
    depth = 100_000  # Python's recursion limit is 1000: the old reader raised RecursionError
    body = struct.pack("<Q", 1) + b"k" + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * depth
    path = _kv_file(tmp_path / "deep.gguf", body + struct.pack("<IQ", 0, 0))
    with pytest.raises(pyllm.gguf.GGUFError) as e:
        pyllm.gguf.open_gguf(path)
    assert str(e.value) == (f"{path}: metadata value 'k' element 0 nests arrays 3 deep, above pyllm's limit of "
                            f"{limits.MAX_GGUF_ARRAY_DEPTH}")


def test_gguf_arrays_of_many_small_objects_are_checked_against_memory(tmp_path):
    # 12 bytes of file make an empty array, 8 an empty string: each a Python object of 60-150 bytes.
    n = 1_000_000
    arrays = _kv_file(tmp_path / "arrays.gguf", struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 9, n)
                      + struct.pack("<IQ", 0, 0) * n)
    strings = _kv_file(tmp_path / "strings.gguf", struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 8, 2 * n)
                       + bytes(16 * n))
    out = hostile(f"""
        report(arrays=expect(MemoryError, pyllm.gguf.open_gguf, {arrays!r}),
               strings=expect(MemoryError, pyllm.gguf.open_gguf, {strings!r}))
    """, env={"PYLLM_MEMORY_LIMIT": "200M"})
    assert out["arrays"].startswith(f"reading metadata value 'k' of {arrays} (1,000,000 elements) needs 256.0 MB "
                                    f"but the process can have "), out
    assert out["strings"].startswith(f"reading metadata value 'k' of {strings} (2,000,000 elements) needs 192.0 MB"), out
    assert "(PYLLM_MEMORY_LIMIT)" in out["arrays"] and out["peak"] < 300e6, out


# ---- the KV cache and the memory function ------------------------------------------------------------

def test_the_memory_function_knows_the_process_rlimit():
    out = hostile("""
        limit, source = memory.memory_limit()
        report(limit=limit, source=source, size=status("VmSize"))
    """)
    assert out["source"] == "RLIMIT_AS", out
    assert out["limit"] == pytest.approx(ADDRESS_SPACE - out["size"], abs=64 << 20), out


def test_a_huge_context_is_refused_by_the_memory_check_before_the_cache_touches_memory(tmp_path):
    folder = _model_dir(tmp_path / "ctx", dict(SMALL, max_position_embeddings=2**31 - 1))
    gguf_path = _gguf_model(tmp_path / "ctx.gguf", **{"llama.context_length": 2**31 - 1})
    out = hostile(f"""
        hf = pyllm.Model.from_pretrained({folder!r})
        g = pyllm.Model.from_pretrained({gguf_path!r})
        before = status("VmHWM")
        report(hf=expect(MemoryError, hf.new_cache), gguf=expect(MemoryError, g.new_cache),
               n_ctx=expect(MemoryError, pyllm.Model.from_pretrained({folder!r}, n_ctx=2**30).new_cache),
               generate=expect(MemoryError, hf.generate, [1, 2], max_new_tokens=2**31 - 3),
               grown=status("VmHWM") - before, still=hf.generate([1, 2], max_new_tokens=3).tolist())
    """)
    for key, rows in (("hf", "2,147,483,647"), ("gguf", "2,147,483,647"), ("n_ctx", "1,073,741,824"),
                      ("generate", "2,147,483,646")):
        assert out[key].startswith(f"a KV cache of 1 row x {rows} positions needs "), out
        assert "but the process can have" in out[key] and "(RLIMIT_AS)" in out[key], out
    assert out["grown"] < 20e6 and out["peak"] < 400e6, out
    assert len(out["still"]) == 5


def test_calls_whose_outputs_cannot_fit_are_refused_before_allocating():
    out = hostile("""
        wide = dict(SMALL, vocab_size=1 << 16, hidden_size=8, intermediate_size=16, num_attention_heads=2,
                    num_hidden_layers=1)
        m = pyllm.Model.from_arrays(wide, weights(wide))
        ids = np.ones((512, 64), np.int64)
        report(logits=expect(MemoryError, m, ids),
               keep=m(ids, logits_to_keep=1).shape,
               rows=expect(MemoryError, pyllm.Model.from_arrays(SMALL, weights(SMALL)), np.zeros((10**7, 1), np.int64)),
               samples=expect(ValueError, pyllm.generation.sample_logits, np.zeros(4, np.float32),
                              num_samples=2**40),
               returns=expect(MemoryError, pyllm.Model.from_arrays(SMALL, weights(SMALL)).generate, [1, 2],
                              do_sample=True, num_return_sequences=10**7, max_new_tokens=3))
    """)
    assert out["logits"].startswith("a forward call of 512 x 64 tokens (KV cache, workspace and outputs) needs 8.6 GB"
                                    " but the process can have "), out
    assert out["keep"] == [512, 1, 1 << 16]
    assert out["rows"].startswith("a KV cache of 10,000,000 rows x 1 positions needs"), out
    assert out["samples"] == f"num_samples is {2**40}, above pyllm's limit of {limits.MAX_BATCH}"
    assert out["returns"].startswith("a KV cache of 10,000,000 rows x 4 positions needs"), out
    assert out["peak"] < 400e6, out


# ---- call arguments never wrap ---------------------------------------------------------------------

@pytest.mark.parametrize("option, value, limit", [
    ("max_new_tokens", 2**63 - 1, limits.MAX_TOKENS), ("max_new_tokens", 2**64, limits.MAX_TOKENS),
    ("max_length", 2**64, limits.MAX_TOKENS), ("min_new_tokens", 2**63, limits.MAX_TOKENS),
    ("no_repeat_ngram_size", 2**64, limits.MAX_TOKENS), ("top_k", 2**64, limits.MAX_INT64),
    ("num_return_sequences", 2**40, limits.MAX_BATCH), ("top_logprobs", 2**63, limits.MAX_VOCAB),
    ("pad_token_id", 2**63, limits.MAX_VOCAB - 1),
])
def test_generation_options_past_their_limit_name_it(option, value, limit):
    out = hostile(f"""
        m = pyllm.Model.from_arrays(SMALL, weights(SMALL))
        report(message=expect(ValueError, m.generate, [1, 2], do_sample=True, **{{{option!r}: {value}}}))
    """)
    assert out["message"] == f"generation option {option} is {value}, above pyllm's limit of {limit}"


@pytest.mark.parametrize("option, value", [("eos_token_id", 2**63), ("bad_words_ids", [[2**64]]),
                                           ("logit_bias", {2**40: 1.0})])
def test_token_ids_past_the_vocabulary_limit_name_the_option(option, value):
    model = pyllm.Model.from_arrays(SMALL, {n: np.ones(s, np.float32) for n, s in
                                            canonical_shapes(spec_from_hf(SMALL, None)).items()})
    with pytest.raises(ValueError) as e:
        model.generate([1, 2], max_new_tokens=2, **{option: value})
    assert str(e.value).startswith(f"generation option {option} must be ")
    assert f"below pyllm's limit of {limits.MAX_VOCAB}" in str(e.value)


def test_the_c_binding_names_every_int_argument_and_never_wraps():
    out = hostile("""
        m = pyllm.Model.from_arrays(SMALL, weights(SMALL))
        d, ids = m._decoder, np.array([[1, 2]], np.int32)
        def raised(fn, *args, **kwargs):
            try:
                fn(*args, **kwargs)
            except (OverflowError, ValueError, TypeError) as e:
                return f"{type(e).__name__}: {e}"
            return "nothing raised"
        report(max_new=raised(d.generate, ids, max_new_tokens=2**64),
               top_k=raised(d.generate, ids, max_new_tokens=1, top_k=2**64),
               bias=raised(d.generate, ids, max_new_tokens=1, logit_bias={2**40: 1.0}),
               eos=raised(d.generate, ids, max_new_tokens=1, eos_token_ids=[2**40]),
               bad=raised(d.generate, ids, max_new_tokens=1, bad_words_ids=[[2**33]]),
               top_n=raised(d.generate, ids, max_new_tokens=1, top_logprobs=2**40),
               batch=raised(d.new_cache, 2**64, 4), capacity=raised(d.new_cache, 1, -2**64),
               keep=raised(d.forward, d.new_cache(1, 4), ids, logits_to_keep=2**64),
               repeat=raised(d.new_cache(1, 4).repeat, 2**64),
               threads=raised(setattr, d, "n_threads", 2**64), set_threads=raised(_core.set_num_threads, 2**40),
               decoder=raised(_core.Decoder, dict(m.spec), {}, 2**40),
               flag=raised(d.generate, ids, max_new_tokens=True),
               samples=raised(_core.sample_logits, np.zeros(4, np.float32), num_samples=2**64))
    """)
    assert out["max_new"] == f"OverflowError: max_new_tokens is {2**64}, outside [0, {2**63 - 1}]", out
    assert out["top_k"] == f"OverflowError: top_k is {2**64}, outside [0, {2**63 - 1}]", out
    assert out["bias"] == f"ValueError: a logit_bias token id is {2**40}, outside [0, {2**31 - 1}]", out
    assert out["eos"] == f"ValueError: eos_token_id is {2**40}, outside [{-2**31}, {2**31 - 1}]", out
    assert out["bad"] == f"ValueError: a bad_words_ids entry is {2**33}, outside [{-2**31}, {2**31 - 1}]", out
    assert out["top_n"] == f"ValueError: top_logprobs is {2**40}, outside [0, 64]", out
    assert out["batch"].startswith(f"OverflowError: batch_size is {2**64}, outside"), out
    assert out["capacity"].startswith(f"OverflowError: capacity is {-2**64}, outside"), out
    assert out["keep"].startswith(f"OverflowError: logits_to_keep is {2**64}, outside"), out
    assert out["repeat"].startswith(f"OverflowError: batch_size is {2**64}, outside"), out
    assert out["threads"] == f"OverflowError: n_threads is {2**64}, outside [1, {limits.MAX_THREADS}]", out
    assert out["set_threads"] == f"ValueError: n_threads is {2**40}, outside [1, {limits.MAX_THREADS}]", out
    assert out["decoder"] == f"ValueError: n_threads is {2**40}, outside [0, {limits.MAX_THREADS}]", out
    assert out["flag"] == "TypeError: max_new_tokens must be an int, got bool", out
    assert out["samples"].startswith(f"OverflowError: num_samples is {2**64}, outside [1, "), out


def test_thread_counts_share_one_limit_everywhere():
    weights = {n: np.ones(s, np.float32) for n, s in canonical_shapes(spec_from_hf(SMALL, None)).items()}
    for value in (limits.MAX_THREADS + 1, 2**64):
        with pytest.raises(ValueError) as e:
            pyllm.Model.from_arrays(SMALL, weights, n_threads=value)
        assert str(e.value) == f"n_threads is {value}, above pyllm's limit of {limits.MAX_THREADS}"
    model = pyllm.Model.from_arrays(SMALL, weights, n_threads=2)
    with pytest.raises(ValueError, match=f"outside \\[1, {limits.MAX_THREADS}\\]"):
        model.n_threads = limits.MAX_THREADS + 1


def test_stop_strings_are_bounded_in_count_and_length():
    weights = {n: np.ones(s, np.float32) for n, s in canonical_shapes(spec_from_hf(SMALL, None)).items()}
    model = pyllm.Model.from_arrays(SMALL, weights)
    with pytest.raises(ValueError, match=f"above pyllm's limit of {limits.MAX_STOP_STRING_CHARS}"):
        model.generate([1], max_new_tokens=1, stop_strings=["a" * (limits.MAX_STOP_STRING_CHARS + 1)], tokenizer=object())
    with pytest.raises(ValueError, match=f"more than {limits.MAX_STOP_STRINGS} strings"):
        model.generate([1], max_new_tokens=1, stop_strings=["a"] * (limits.MAX_STOP_STRINGS + 1), tokenizer=object())


def test_the_limits_live_in_one_place():
    assert limits.MAX_LAYERS == _core.MAX_LAYERS and limits.MAX_THREADS == _core.MAX_THREADS
    assert _checks.LIMITS == {"num_hidden_layers": limits.MAX_LAYERS, "num_attention_heads": limits.MAX_HEADS,
                              "num_key_value_heads": limits.MAX_HEADS, "head_dim": limits.MAX_HEAD_DIM,
                              "hidden_size": limits.MAX_HIDDEN, "intermediate_size": limits.MAX_INTERMEDIATE,
                              "vocab_size": limits.MAX_VOCAB, "context": limits.MAX_CONTEXT}
    assert pyllm.checkpoint._MAX_HEADER_BYTES == limits.MAX_SAFETENSORS_HEADER


def test_safetensors_shapes_with_more_dimensions_than_the_limit_name_the_tensor(tmp_path):
    path = tmp_path / "m.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [1] * 100, "data_offsets": [0, 4]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
    with pytest.raises(ValueError) as e:
        checkpoint.load_safetensors(str(path))
    assert str(e.value) == f"{path}: tensor 'w': 'shape' has 100 dimensions, above pyllm's limit of {limits.MAX_TENSOR_DIMS}"


def test_add_token_names_its_id_argument(data_dir):
    core = pyllm.Tokenizer.from_file(os.path.join(data_dir, "llama", "tokenizer.model"))._core
    with pytest.raises(ValueError, match=rf"add_token's id is {2**40}, outside \[0, {2**31 - 1}\]"):
        core.add_token("zz", 2**40)
    with pytest.raises(ValueError, match=r"add_token's id is -1, outside"):
        core.add_token("zz", -1)
    with pytest.raises(TypeError, match="add_token's id must be an int, got bool"):
        core.add_token("zz", True)
    assert core.vocab_size == 32000  # nothing was added by the refused calls
