"""tokenizer.json BPE: ids and text identical to the `tokenizers` library.

Reference tokenizers: three byte-level BPEs trained here with `tokenizers` on BLOOM's, GPT-2's and
LLaMA-3's pipelines, and the LLaMA tokenizer.json that transformers writes for the shared
tokenizer.model. For that last file the reference is the `tokenizers` library running it: the
conversion itself can disagree with sentencepiece (e.g. "  leading"), and our job is to run the
file exactly as tokenizers does.
"""
import json
import os
import re
import struct

import pytest
from tokenizers import AddedToken, Tokenizer

import pyllm
from tokenizer_json_builders import BLOOM_SPECIALS, convert_llama, train_byte_level
from tokenizer_strings import bpe_test_strings

KINDS = ["bloom", "gpt2", "llama3", "llama"]


@pytest.fixture(scope="module")
def json_paths(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("tokenizer_json")
    paths = {kind: train_byte_level(kind, folder / f"{kind}.json") for kind in ("bloom", "gpt2", "llama3")}
    paths["llama"] = convert_llama(os.path.join(data_dir, "llama", "tokenizer.model"), str(folder / "llama"))
    return paths


@pytest.fixture(scope="module")
def pair(json_paths):
    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = (Tokenizer.from_file(json_paths[kind]), pyllm.Tokenizer.from_file(json_paths[kind]))
        return cache[kind]
    return get


STRINGS = bpe_test_strings(2000, seed=2024)


@pytest.mark.parametrize("kind", KINDS)
def test_generated_strings_encode_like_tokenizers(pair, kind):
    ref, ours = pair(kind)
    mismatches = []
    for text in STRINGS:
        expected = ref.encode(text, add_special_tokens=True).ids
        got = ours.encode(text)
        if got != expected:
            mismatches.append((text, expected, got))
    assert not mismatches, f"{len(mismatches)}/{len(STRINGS)} differ; first: {mismatches[0]!r}"[:3000]
    batch = ours.encode_batch(STRINGS[:200], add_special_tokens=False)
    assert batch == [ref.encode(t, add_special_tokens=False).ids for t in STRINGS[:200]]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("skip", [False, True])
def test_decode_like_tokenizers(pair, kind, skip):
    ref, ours = pair(kind)
    for text in STRINGS[:800]:
        ids = ref.encode(text, add_special_tokens=True).ids
        assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), text


@pytest.mark.parametrize("kind", KINDS)
def test_random_id_sequences_decode_like_tokenizers(pair, kind):
    import random
    ref, ours = pair(kind)
    rng = random.Random(7)
    n = ours.vocab_size
    for _ in range(300):
        ids = [rng.randrange(n) for _ in range(rng.randint(1, 12))]
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), ids


SPECIAL_TEXTS = ["<s>", "</s>", "<pad>", "<unk>", "<s>hello</s>", " </s> test </s> ", "</s>test</s>", "<s>\n",
                 "a<pad><pad>b", "<s><s>", "x </s>y", "<|endoftext|>a", "<|begin_of_text|> hi<|end_of_text|>",
                 "<s</s>>", "«<s>»", "中<pad>文"]


@pytest.mark.parametrize("kind", KINDS)
def test_special_tokens_written_in_text(pair, kind):
    ref, ours = pair(kind)
    for text in SPECIAL_TEXTS + [s + " " + t for s, t in zip(SPECIAL_TEXTS, STRINGS)]:
        for add in (True, False):
            assert ours.encode(text, add_special_tokens=add) == ref.encode(text, add_special_tokens=add).ids, text


def test_bloom_specials_and_template(pair):
    ref, ours = pair("bloom")
    assert [ours.token_to_id(s) for s in BLOOM_SPECIALS] == [0, 1, 2, 3]
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (1, 2, 3)
    assert ours.encode("The quick brown fox</s>")[-1] == 2      # no BOS added, </s> matched
    _, llama3 = pair("llama3")
    assert llama3.encode("hi")[0] == llama3.token_to_id("<|begin_of_text|>")


def test_ignore_merges_changes_ids_and_we_follow(tmp_path):
    """A word that is in the vocabulary is one token under ignore_merges, merges otherwise."""
    vocab = {c: i for i, c in enumerate("abcd")}
    vocab.update({"bc": 4, "abc": 5, "cd": 6})
    for ignore in (False, True):
        spec = {"model": {"type": "BPE", "vocab": vocab, "merges": ["b c", "c d"], "ignore_merges": ignore},
                "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Removed",
                                  "invert": False}}
        path = tmp_path / f"ignore_{ignore}.json"
        path.write_text(json.dumps(spec))
        ref, ours = Tokenizer.from_file(str(path)), pyllm.Tokenizer.from_file(path)
        for text in ["abc", "abcd", "abc abc bcd", "dabc"]:
            assert ours.encode(text) == ref.encode(text).ids
        assert ours.encode("abc") == ([5] if ignore else [0, 4])


def test_both_merge_serialisations(json_paths, tmp_path):
    spec = json.loads(open(json_paths["gpt2"], encoding="utf-8").read())
    pairs = spec["model"]["merges"]
    assert isinstance(pairs[0], list)
    spec["model"]["merges"] = [" ".join(p) for p in pairs]
    strings_path = tmp_path / "strings.json"
    strings_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    a, b = pyllm.Tokenizer.from_file(json_paths["gpt2"]), pyllm.Tokenizer.from_file(strings_path)
    ref = Tokenizer.from_file(str(strings_path))
    for text in STRINGS[:300]:
        assert a.encode(text) == b.encode(text) == ref.encode(text).ids


def test_added_token_options(json_paths, tmp_path):
    ref = Tokenizer.from_file(json_paths["gpt2"])
    ref.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False),
                            AddedToken("[R]", rstrip=True),
                            AddedToken("<both>", lstrip=True, rstrip=True)])
    ref.add_tokens([AddedToken("hello", single_word=True), AddedToken("wor", normalized=False),
                    AddedToken(" spaced ", special=False), AddedToken("Ωmega", special=False)])
    path = tmp_path / "added.json"
    ref.save(str(path))
    ours = pyllm.Tokenizer.from_file(path)
    texts = ["I saw a <mask> 😺", "x  <mask>  y", "[R]   z", "a \t<both>\n b", "hello world", "ahello hello_x hello!",
             "sayhello hello", "world wor worst", "a spaced b", " spaced  spaced ", "Ωmega ωmega", "hello",
             "<mask><mask>", "   [R]", "héllo hello1 1hello"]
    for text in texts + [t + " " + s for t, s in zip(texts * 20, STRINGS)]:
        assert ours.encode(text) == ref.encode(text).ids, text
        ids = ref.encode(text).ids
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip), text


# -- shared vectors ------------------------------------------------------------------------

def _read_gguf_vocab(path):
    """tokens and merges arrays of a GGUF v3 file (a minimal reader: these two keys only)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"GGUF"
    pos = 4
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, pos)
    pos += 20
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def read_string():
        nonlocal pos
        (n,) = struct.unpack_from("<Q", data, pos)
        s = data[pos + 8:pos + 8 + n].decode("utf-8")
        pos += 8 + n
        return s

    def read_value(kind):
        nonlocal pos
        if kind == 8:
            return read_string()
        if kind == 9:
            elem, count = struct.unpack_from("<IQ", data, pos)
            pos += 12
            return [read_value(elem) for _ in range(count)]
        fmt = "<" + scalar[kind]
        (v,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v

    values = {}
    for _ in range(n_kv):
        key = read_string()
        (kind,) = struct.unpack_from("<I", data, pos)
        pos += 4
        values[key] = read_value(kind)
    return values


def test_gpt2_vocabulary_llamacpp_vectors(data_dir, tmp_path):
    values = _read_gguf_vocab(os.path.join(data_dir, "llamacpp", "ggml-vocab-gpt-2.gguf"))
    tokens, merges = values["tokenizer.ggml.tokens"], values["tokenizer.ggml.merges"]
    assert len(tokens) == 50257 and len(merges) == 50000
    spec = {"version": "1.0",
            "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": False, "special": True}],
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": True},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                               "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                      "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges}}
    path = tmp_path / "gpt2.json"
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    ours = pyllm.Tokenizer.from_file(path)
    ref = Tokenizer.from_file(str(path))
    sep = "\n__ggml_vocab_test__\n"
    with open(os.path.join(data_dir, "llamacpp", "ggml-vocab-gpt-2.gguf.inp"), encoding="utf-8") as f:
        inputs = f.read().split(sep)[:-1]
    with open(os.path.join(data_dir, "llamacpp", "ggml-vocab-gpt-2.gguf.out"), encoding="utf-8") as f:
        outputs = [[int(x) for x in line.split()] for line in f.read().split("\n")[:len(inputs)]]
    assert len(inputs) == len(outputs) == 46
    for text, expected in zip(inputs, outputs):
        assert ours.encode(text, add_special_tokens=False) == expected, text
        assert ours.decode(expected) == text
    for text in STRINGS[:1000]:
        assert ours.encode(text) == ref.encode(text).ids, text


def test_bloom_vectors_never_cut_inside_a_token(data_dir, pair):
    """The real BLOOM vocabulary is not available, so its vectors are checked through their token
    boundaries: our BLOOM pre-tokenizer never cuts inside an expected token."""
    _, ours = pair("bloom")
    with open(os.path.join(data_dir, "bloom", "transformersjs_bloom_tokenizer_cases.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    from tokenizers import pre_tokenizers
    byte_of = {c: b for b, c in enumerate(_byte_chars())}
    special = re.compile("|".join(re.escape(s) for s in BLOOM_SPECIALS))
    assert len(cases) == 31
    for case in cases:
        text = case["text"].encode("utf-8")
        token_ends, pos = {0}, 0
        for token in case["tokens"]:
            raw = token.encode() if token in BLOOM_SPECIALS else bytes(byte_of[c] for c in token)
            pos += len(raw)
            token_ends.add(pos)
        assert pos == len(text), case["name"]
        cuts, offset = set(), 0
        segments = []
        last = 0
        for m in special.finditer(case["text"]):
            segments.append(case["text"][last:m.start()])
            segments.append(m.group())
            last = m.end()
        segments.append(case["text"][last:])
        for i, segment in enumerate(segments):
            pieces = [segment] if i % 2 else ours._core.pre_tokenize(segment)
            for piece in pieces:
                offset += len(piece.encode("utf-8", "surrogateescape"))
                cuts.add(offset)
        assert cuts <= token_ends, (case["name"], sorted(cuts - token_ends))
    del pre_tokenizers


def _byte_chars():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(0x100 + extra))
            extra += 1
    return chars


# -- loading -------------------------------------------------------------------------------

def test_from_pretrained_prefers_tokenizer_json(json_paths, data_dir, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    with open(os.path.join(data_dir, "llama", "tokenizer.model"), "rb") as f:
        (folder / "tokenizer.model").write_bytes(f.read())
    spm_only = pyllm.Tokenizer.from_pretrained(folder)
    (folder / "tokenizer.json").write_text(open(json_paths["llama"], encoding="utf-8").read(), encoding="utf-8")
    with_json = pyllm.Tokenizer.from_pretrained(folder)
    ref = Tokenizer.from_file(json_paths["llama"])
    text = "  leading"
    assert with_json.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False).ids
    assert spm_only.encode(text, add_special_tokens=False) != with_json.encode(text, add_special_tokens=False)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"add_bos_token": True, "add_eos_token": True, "bos_token": "<s>", "eos_token": "</s>"}))
    configured = pyllm.Tokenizer.from_pretrained(folder)
    assert configured.encode("hi")[0] == 1 and configured.encode("hi")[-1] == 2
    os.remove(folder / "tokenizer.json")
    assert pyllm.Tokenizer.from_pretrained(folder).encode(text) == [1] + spm_only.encode(text, False) + [2]


def test_vocabulary_api(pair):
    ref, ours = pair("gpt2")
    assert ours.vocab_size == ref.get_vocab_size()
    for i in range(0, ours.vocab_size, 97):
        assert ours.id_to_token(i) == ref.id_to_token(i)
        assert ours.token_to_id(ref.id_to_token(i)) == i
    assert ours.token_to_id("definitely not a token") is None


# -- pipeline variants ---------------------------------------------------------------------

def _variant(path, tmp_path, name, **changes):
    spec = json.loads(open(path, encoding="utf-8").read())
    for key, value in changes.items():
        if key == "model":
            spec["model"].update(value)
        else:
            spec[key] = value
    out = tmp_path / f"{name}.json"
    out.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return Tokenizer.from_file(str(out)), pyllm.Tokenizer.from_file(out)


def _byte_level(add_prefix_space, use_regex):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}


BYTE_LEVEL_VARIANTS = {
    "removed": [{"type": "Split", "pattern": {"Regex": r"\s+"}, "behavior": "Removed", "invert": False}],
    "merged_prev": [{"type": "Split", "pattern": {"Regex": r"[.,!?]"}, "behavior": "MergedWithPrevious",
                     "invert": False}],
    "merged_next": [{"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False}],
    "contiguous": [{"type": "Split", "pattern": {"Regex": r"\p{N}"}, "behavior": "Contiguous", "invert": False}],
    "inverted": [{"type": "Split", "pattern": {"Regex": r"\p{L}+"}, "behavior": "Isolated", "invert": True}],
    "digits": [{"type": "Digits", "individual_digits": True},
               {"type": "Split", "pattern": {"Regex": r" ?\p{L}+|\s+(?!\S)|\s+"}, "behavior": "Isolated",
                "invert": False}],
    "digits_runs": [{"type": "Digits", "individual_digits": False}],
    "lazy_possessive": [{"type": "Split", "pattern": {"Regex": r"\p{L}{2,4}?|\p{N}++|[^\p{L}\p{N}]{1,3}|\s*+"},
                         "behavior": "Isolated", "invert": False}],
    "lookahead": [{"type": "Split", "pattern": {"Regex": r"\p{L}+(?=\s)|(?:ab)?c|\s+(?!\S)"},
                   "behavior": "Isolated", "invert": False}],
}


@pytest.mark.parametrize("name", sorted(BYTE_LEVEL_VARIANTS))
@pytest.mark.parametrize("prefix", [False, True])
def test_byte_level_pipeline_variants(json_paths, tmp_path, name, prefix):
    steps = BYTE_LEVEL_VARIANTS[name] + [_byte_level(prefix, False)]
    ref, ours = _variant(json_paths["gpt2"], tmp_path, name, pre_tokenizer={"type": "Sequence",
                                                                            "pretokenizers": steps})
    for text in STRINGS[:300] + SPECIAL_TEXTS:
        assert ours.encode(text) == ref.encode(text).ids, text


def test_byte_level_with_its_own_regex_and_prefix_space(json_paths, tmp_path):
    ref, ours = _variant(json_paths["gpt2"], tmp_path, "gpt2_prefix", pre_tokenizer=_byte_level(True, True))
    for text in STRINGS[:500]:
        assert ours.encode(text) == ref.encode(text).ids, text
        ids = ref.encode(text).ids
        assert ours.decode(ids) == ref.decode(ids)


LLAMA_VARIANTS = {
    "metaspace_always_split": dict(pre_tokenizer={"type": "Metaspace", "replacement": "▁",
                                                  "prepend_scheme": "always", "split": True}),
    "metaspace_never": dict(pre_tokenizer={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never",
                                           "split": False},
                            decoder={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never",
                                     "split": False}),
    "metaspace_decoder_first": dict(decoder={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first",
                                             "split": False}),
    # The form older transformers wrote for LLaMA: normalizer Prepend + Replace, no pre-tokenizer.
    "legacy_normalizer": dict(normalizer={"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        pre_tokenizer=None),
    "unk_no_fallback": dict(model={"byte_fallback": False, "unk_token": "<unk>", "fuse_unk": True}),
    "unk_no_fuse": dict(model={"byte_fallback": False, "unk_token": "<unk>", "fuse_unk": False}),
    "bos_eos_template": dict(post_processor={
        "type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                 {"Sequence": {"id": "A", "type_id": 0}},
                                                 {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
                                       "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}}}),
}


@pytest.mark.parametrize("name", sorted(LLAMA_VARIANTS))
def test_sentencepiece_style_variants(json_paths, tmp_path, name):
    ref, ours = _variant(json_paths["llama"], tmp_path, name, **LLAMA_VARIANTS[name])
    for text in STRINGS[:400] + SPECIAL_TEXTS:
        expected = ref.encode(text).ids
        assert ours.encode(text) == expected, text
        for skip in (False, True):
            assert ours.decode(expected, skip_special_tokens=skip) == ref.decode(expected, skip_special_tokens=skip)


def test_bloom_directory_like_transformers(json_paths, data_dir, tmp_path):
    """A BLOOM model directory (our trained tokenizer.json with bloom-560m's own tokenizer_config
    and special_tokens_map): from_pretrained gives what transformers' AutoTokenizer gives."""
    from transformers import AutoTokenizer
    folder = tmp_path / "bloom"
    folder.mkdir()
    (folder / "tokenizer.json").write_text(open(json_paths["bloom"], encoding="utf-8").read(), encoding="utf-8")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        with open(os.path.join(data_dir, "bloom", f"bloom-560m.{name}"), encoding="utf-8") as f:
            (folder / name).write_text(f.read(), encoding="utf-8")
    ours = pyllm.Tokenizer.from_pretrained(folder)
    theirs = AutoTokenizer.from_pretrained(str(folder))
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (
        theirs.bos_token_id, theirs.eos_token_id, theirs.pad_token_id) == (1, 2, 3)
    for text in STRINGS[:300] + SPECIAL_TEXTS:
        ids = theirs(text)["input_ids"]
        assert ours.encode(text) == ids, text
        assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)


def test_llama_json_gives_the_tokenizer_model_ids(json_paths, data_dir):
    """The converted LLaMA tokenizer.json and tokenizer.model give the same ids, except where the
    conversion itself departs from sentencepiece: a leading space (HF's Metaspace adds no prefix
    before one) and runs of spaces (the converted merges order "▁▁" pieces differently). There,
    tokenizers running the file is the reference (test_generated_strings_encode_like_tokenizers)."""
    as_json = pyllm.Tokenizer.from_file(json_paths["llama"])
    as_model = pyllm.Tokenizer.from_file(os.path.join(data_dir, "llama", "tokenizer.model"))
    plain = [re.sub(r"\s{2,}", " ", t).lstrip() for t in STRINGS]
    for text in plain:
        assert as_json.encode(text, add_special_tokens=False) == as_model.encode(text, add_special_tokens=False), text
        ids = as_model.encode(text, add_special_tokens=False)
        assert as_json.decode(ids) == as_model.decode(ids, skip_special_tokens=True), text


def test_encoding_from_threads(pair):
    """Encoding only reads the tokenizer and runs without the GIL: threads agree with one thread."""
    from concurrent.futures import ThreadPoolExecutor
    _, ours = pair("llama3")
    texts = STRINGS[:400]
    expected = [ours.encode(t) for t in texts]
    with ThreadPoolExecutor(4) as pool:
        chunks = list(pool.map(ours.encode_batch, [texts[i::4] for i in range(4)]))
    for i in range(4):
        assert chunks[i] == expected[i::4]
