"""Build the seed corpora fuzz/corpus/<harness>/ from the shared test data ($PYLLM_TEST_DATA) and
from the files the tests build (tests/*_files.py, tests/tokenizer_json_builders.py), at run time:
no copy of the shared data is committed. Large real files are cut down to small valid ones of the
same shape (the first pieces of LLaMA's tokenizer.model, the first tokens of tokenizer.bin, a
GPT-2 GGUF vocabulary of its first tokens and merges), so the fuzzers run fast on them.

Run with the test environment's Python (it needs numpy, gguf, tokenizers and pyllm):
    PYLLM_TEST_DATA=../shared/data .venv/bin/python fuzz/make_corpus.py [out_dir]"""
import hashlib
import json
import os
import struct
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

DATA = os.environ.get("PYLLM_TEST_DATA", os.path.join(HERE, "..", "..", "shared", "data"))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
TMP = tempfile.mkdtemp(prefix="pyllm-corpus-")

TEXTS = ["Hello world", "  two  spaces,\tA tab\nand a newline  ", "12345 678.9 1,000", "caf\u00e9 \u2581 \U0001f999 \u4e2d\u6587",
         "I'm here, you're there; they'll've", "<s>x</s><unk><|endoftext|>", "\u00a0\u3000 \r\n\r\n end"]


def data(*parts):
    return os.path.join(DATA, *parts)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def seed(harness, content):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(content).hexdigest()[:16]), "wb") as f:
        f.write(content)


def inp_strings():
    raw = read(data("llamacpp", "ggml-vocab-llama-spm.gguf.inp")).decode()
    return [s for s in raw.split("\n__ggml_vocab_test__\n") if s]


# -- protobuf (tokenizer.model) ----------------------------------------------------------------

def _varint(buf, pos):
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


def _fields(buf):
    """(field number, raw bytes of the whole field) of a message."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            n, pos = _varint(buf, pos)
            pos += n
        yield key >> 3, buf[start:pos]


def small_sentencepiece(model, keep):
    """The model with only its first `keep` pieces and every other field as it is."""
    out, n = bytearray(), 0
    for number, raw in _fields(model):
        if number == 1:
            n += 1
            if n > keep:
                continue
        out += raw
    return bytes(out)


# -- the corpora ---------------------------------------------------------------------------------

def regex():
    from pyllm.tokenizer_gguf import PRE_TOKENIZERS
    from tokenizer_json_builders import BLOOM_PATTERN, LLAMA3_PATTERN
    patterns = {BLOOM_PATTERN, LLAMA3_PATTERN, r"\s+(?!\S)", r"(?i:ab|cd)+?", r"[^\p{L}\p{N}]{2,4}+", r"a*?b|\d{3}",
                r"\P{Lu}\S?", r"(?=x)x|(?!y)."}
    for regexes, _ in PRE_TOKENIZERS.values():
        patterns.update(regexes)
    for i, p in enumerate(sorted(patterns)):
        seed("regex", p.encode() + b"\0" + TEXTS[i % len(TEXTS)].encode())
        seed("regex", p.encode() + b"\0" + b"\xff\x80abc \xc3\xa9\xe2\x96")


def sentencepiece():
    from spm_files import write_sentencepiece
    llama = read(data("llama", "tokenizer.model"))
    for keep in (0, 40, 300, 1200):
        seed("sentencepiece", small_sentencepiece(llama, keep))
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581", "a", "b", "\u2581a", "ab", "\u2581ab"]
    types = [2, 3, 3] + [6] * 256 + [1] * 6
    for prefix in (True, False):
        path = os.path.join(TMP, "spm.model")
        write_sentencepiece(path, pieces, [-float(i) for i in range(len(pieces))], types, add_dummy_prefix=prefix)
        seed("sentencepiece", read(path))


def llama2c_tokenizer():
    tok512 = read(data("stories260K", "tok512.bin"))
    seed("llama2c_tokenizer", struct.pack("<H", 512) + tok512)
    seed("llama2c_tokenizer", struct.pack("<H", 300) + tok512)
    big = read(data("llama", "tokenizer.bin"))
    pos, n = 4, 0
    while n < 400:
        (length,) = struct.unpack_from("<i", big, pos + 4)
        pos += 8 + length
        n += 1
    seed("llama2c_tokenizer", struct.pack("<H", 400) + big[:pos])
    return tok512, big[:pos]


def merges_input(flags, tokens, merges, steps, added, text):
    """An input of fuzz_merges.c, in the order its reader takes it. A step is (stage, options byte,
    s1, s2, the bytes its kind reads next): pre-tokenizer kinds are 2 + options % 4 (Split,
    ByteLevel, Digits, Metaspace), decoder kinds options % 6, normalizers Prepend or Replace."""
    def s(b):
        return bytes([len(b)]) + b
    out = bytes([flags, len(tokens)]) + b"".join(s(t) for t in tokens)
    out += bytes([len(merges)]) + b"".join(struct.pack("<HH", a, b) for a, b in merges)
    out += bytes([len(steps)])
    for which, opts, s1, s2, extra in steps:
        out += bytes([which, opts]) + s(s1) + s(s2) + extra
    out += bytes([len(added)]) + b"".join(bytes([o]) + s(t) for o, t in added)
    return out + text


def merges():
    sp = "\u2581".encode()
    texts = [t.encode() for t in TEXTS]
    # byte-level with GPT-2's ByteLevel split and decoder
    seed("merges", merges_input(1, [b"he", b"llo"], [(0, 1), (40, 41)], [(1, 1, b"", b"", b"\x03"), (2, 0, b"", b"", b"")],
                                [(1, b"<|eot|>"), (6, b"<x>")], texts[0]))
    # BLOOM-like: Split regex isolated, ByteLevel without regex
    seed("merges", merges_input(1, [], [(5, 7)], [(1, 0, b" ?[^(\\s|.,!?)]+", b"", b"\x03"), (1, 1, b"", b"", b"\x00"),
                                                  (2, 0, b"", b"", b"")], [], texts[1]))
    # SentencePiece-style tokenizer.json: Prepend + Replace normalizers, byte fallback, every decoder
    seed("merges", merges_input(2 | 4 | 8, [sp, b"a", b"b", sp + b"a"], [(258, 259)],
                                [(0, 0, sp, b"", b""), (0, 1, b" ", sp, b""), (2, 1, sp, b" ", b""), (2, 2, b"", b"", b""),
                                 (2, 3, b"", b"", b""), (2, 4, b" ", b"", b"\x01\x00"), (2, 5, sp, b"", b"\x00")],
                                [(1, b"<s>")], texts[3]))
    # Metaspace pre-tokenizer, Digits, Split strings with each behaviour
    for behaviour in range(5):
        seed("merges", merges_input(1 | 16, [b"1", b"23"], [(0, 1)],
                                    [(1, 3, sp, b"", bytes([behaviour % 3 | 4])), (1, 2, b"", b"", b"\x01"),
                                     (1, 0, b",", b"", bytes([behaviour << 1]))], [(3, b"x")], texts[2]))


def tokenizer_text():
    strings = [t.encode() for t in TEXTS] + [s.encode() for s in inp_strings()]
    for i, s in enumerate(strings):
        seed("tokenizer_text", bytes([i % 6]) + s)
        seed("py_text", bytes([i % 16]) + s)


def gguf_blocks():
    import gguf
    from gguf_files import ALL_TYPES, random_tensor_bytes
    order = [0, 1, 30, 2, 3, 6, 7, 8, 12, 13, 14]  # fuzz_gguf_blocks.c's TYPES
    rng = np.random.default_rng(0)
    for qtype in ALL_TYPES:
        block, _ = gguf.GGML_QUANT_SIZES[qtype]
        k = 256 if block == 256 else 64
        blocks = random_tensor_bytes(rng, qtype, 2, k).tobytes()
        seed("gguf_blocks", bytes([order.index(int(qtype)), k // block - 1]) + blocks)


def py_tokenizer_json():
    from tokenizer_json_builders import train_byte_level
    for kind in ("bloom", "gpt2", "llama3"):
        path = train_byte_level(kind, os.path.join(TMP, f"{kind}.json"), vocab_size=300)
        seed("py_tokenizer_json", read(path))
    sp = "\u2581"
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for t in (sp, "a", "b", sp + "a", "ab"):
        vocab[t] = len(vocab)
    spm_style = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 1, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True}],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": sp},
                                                           {"type": "Replace", "pattern": {"String": " "}, "content": sp}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                    {"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": sp}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                  "vocab": vocab, "merges": [f"{sp} a", "a b"]},
    }
    seed("py_tokenizer_json", json.dumps(spm_style, ensure_ascii=False).encode())
    metaspace = dict(spm_style, normalizer=None,
                     pre_tokenizer={"type": "Sequence", "pretokenizers": [
                         {"type": "Metaspace", "replacement": sp, "prepend_scheme": "first", "split": True},
                         {"type": "Digits", "individual_digits": True},
                         {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithNext", "invert": False}]},
                     decoder={"type": "Metaspace", "replacement": sp, "prepend_scheme": "always", "split": True})
    seed("py_tokenizer_json", json.dumps(metaspace).encode())


def py_config():
    llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
             "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
             "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 64}, "head_dim": 16, "attention_bias": False}
    generation = {"bos_token_id": 1, "eos_token_id": [2, 3], "pad_token_id": -1, "do_sample": True,
                  "temperature": 0.7, "top_k": 40, "top_p": 0.9, "max_new_tokens": 32, "repetition_penalty": 1.1,
                  "transformers_version": "4.40.0"}
    bloom = json.loads(read(data("bloom", "bloom-560m.config.json")))
    for config in (llama, bloom, dict(llama, rope_scaling={"type": "linear", "factor": 2.0}),
                   dict(llama, rope_scaling={"type": "dynamic", "factor": 2.0}, num_key_value_heads=None)):
        seed("py_config", json.dumps(config).encode() + b"\0" + json.dumps(generation).encode())
    seed("py_config", json.dumps(bloom).encode() + b"\0")


def py_safetensors():
    from pyllm.checkpoint import save_safetensors
    rng = np.random.default_rng(1)
    path = os.path.join(TMP, "model.safetensors")
    tensors = {"a.weight": rng.standard_normal((3, 4)).astype(np.float32), "b": np.arange(6, dtype=np.int64),
               "c": rng.standard_normal((2, 2)).astype(np.float16), "empty": np.zeros((0, 3), np.float32)}
    save_safetensors(path, tensors, metadata={"format": "pt"})
    seed("py_safetensors", read(path))
    bf16 = {"x": (rng.standard_normal(8).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)}
    header = json.dumps({"x": {"dtype": "BF16", "shape": [2, 4], "data_offsets": [0, 16]}}).encode()
    seed("py_safetensors", struct.pack("<Q", len(header)) + header + bf16["x"].tobytes())


def py_llama2c(tok512, tokenizer_bin):
    rng = np.random.default_rng(2)
    fields = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
    p = dict(dim=16, hidden_dim=24, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=12, seq_len=8)
    kv, head = 8, 8
    v0 = [(12, 16), (1, 16), (1, 16, 16), (1, kv, 16), (1, kv, 16), (1, 16, 16), (1, 16), (1, 24, 16), (1, 16, 24),
          (1, 24, 16), (16,), (8 * head // 2,), (8 * head // 2,)]
    body = b"".join(rng.standard_normal(s).astype("<f4").tobytes() for s in v0)
    seed("py_llama2c", b"\0" + struct.pack("<7i", *[p[k] for k in fields]) + body)
    header = struct.pack("<Ii7iB", 0x616B3432, 1, *[p[k] for k in fields], 1)
    v1 = [(1, 16), (1, 16), (16,), (12, 16), (1, 16, 16), (1, kv, 16), (1, kv, 16), (1, 16, 16), (1, 24, 16),
          (1, 16, 24), (1, 24, 16)]
    body = b"".join(rng.standard_normal(s).astype("<f4").tobytes() for s in v1)
    seed("py_llama2c", b"\0" + header + bytes(256 - len(header)) + body)
    seed("py_llama2c", b"\1" + struct.pack("<H", 512) + tok512)
    seed("py_llama2c", b"\1" + struct.pack("<H", 400) + tokenizer_bin)


def py_gguf():
    import gguf
    from gguf import GGUFValueType as V
    from gguf_files import random_tensor_bytes, write_gguf
    from pyllm.gguf import open_gguf
    rng = np.random.default_rng(3)
    gpt2 = open_gguf(data("llamacpp", "ggml-vocab-gpt-2.gguf"))
    tokens = list(gpt2.metadata["tokenizer.ggml.tokens"][:400])
    merges = [m for m in gpt2.metadata["tokenizer.ggml.merges"][:200]
              if all(part in tokens for part in m.split(" ")) and m.replace(" ", "") in tokens]
    spm = open_gguf(data("stories260K", "stories260K.gguf"))
    meta_gpt2 = [("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.pre", "llama-bpe"),
                 ("tokenizer.ggml.tokens", (V.ARRAY, tokens, V.STRING)),
                 ("tokenizer.ggml.token_type", (V.ARRAY, [1] * len(tokens), V.INT32)),
                 ("tokenizer.ggml.merges", (V.ARRAY, merges, V.STRING)),
                 ("tokenizer.ggml.bos_token_id", 1), ("tokenizer.ggml.eos_token_id", 2),
                 ("tokenizer.chat_template", "{{ messages }}")]
    write_gguf(os.path.join(TMP, "gpt2.gguf"), meta_gpt2)
    seed("py_gguf", read(os.path.join(TMP, "gpt2.gguf")))
    meta_spm = [("tokenizer.ggml.model", "llama"),
                ("tokenizer.ggml.tokens", (V.ARRAY, list(spm.metadata["tokenizer.ggml.tokens"]), V.STRING)),
                ("tokenizer.ggml.scores", (V.ARRAY, [float(x) for x in spm.metadata["tokenizer.ggml.scores"]], V.FLOAT32)),
                ("tokenizer.ggml.token_type", (V.ARRAY, [int(x) for x in spm.metadata["tokenizer.ggml.token_type"]], V.INT32)),
                ("tokenizer.ggml.add_bos_token", True), ("tokenizer.ggml.unknown_token_id", 0)]
    # a whole (tiny) LLaMA model: hyperparameters, every tensor in a different type, and the SPM vocabulary
    n_vocab, dim, ff = len(meta_spm[1][1][1]), 32, 64
    model_meta = meta_spm + [("llama.context_length", 64), ("llama.embedding_length", dim), ("llama.block_count", 1),
                             ("llama.feed_forward_length", ff), ("llama.attention.head_count", 4),
                             ("llama.attention.head_count_kv", 2), ("llama.rope.dimension_count", 8),
                             ("llama.attention.layer_norm_rms_epsilon", 1e-5)]
    G = gguf.GGMLQuantizationType
    shapes = [("token_embd.weight", (n_vocab, dim), G.Q8_0), ("output_norm.weight", (dim,), G.F32),
              ("output.weight", (n_vocab, dim), G.Q4_0), ("blk.0.attn_norm.weight", (dim,), G.F32),
              ("blk.0.attn_q.weight", (dim, dim), G.F16), ("blk.0.attn_k.weight", (dim // 2, dim), G.Q4_1),
              ("blk.0.attn_v.weight", (dim // 2, dim), G.BF16), ("blk.0.attn_output.weight", (dim, dim), G.Q5_0),
              ("blk.0.ffn_norm.weight", (dim,), G.F32), ("blk.0.ffn_gate.weight", (ff, dim), G.Q5_1),
              ("blk.0.ffn_up.weight", (ff, dim), G.F32), ("blk.0.ffn_down.weight", (dim, ff), G.Q8_0)]
    tensors = []
    for name, shape, qtype in shapes:
        rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        raw = random_tensor_bytes(rng, qtype, rows, shape[-1])
        if qtype == G.F32:
            tensors.append((name, raw.view(np.float32).reshape(shape), None))
        else:
            tensors.append((name, raw.reshape(shape[:-1] + (-1,)) if len(shape) > 1 else raw.reshape(-1), qtype))
    write_gguf(os.path.join(TMP, "model.gguf"), model_meta, tensors)
    seed("py_gguf", read(os.path.join(TMP, "model.gguf")))


def main():
    regex()
    sentencepiece()
    tok512, tokenizer_bin = llama2c_tokenizer()
    merges()
    tokenizer_text()
    gguf_blocks()
    py_tokenizer_json()
    py_config()
    py_safetensors()
    py_llama2c(tok512, tokenizer_bin)
    py_gguf()
    for name in sorted(os.listdir(OUT)):
        files = os.listdir(os.path.join(OUT, name))
        print(f"{name}: {len(files)} seeds, {sum(os.path.getsize(os.path.join(OUT, name, f)) for f in files)} bytes")


if __name__ == "__main__":
    main()
