"""pyllm.Tokenizer against the sentencepiece library, the reference, id for id.

Models: the real LLaMA tokenizer.model, a merged Chinese-LLaMA-style vocabulary, and small BPE
models trained here with sentencepiece over its normalizer and trainer options. Inputs: every
shared test vector plus thousands of generated strings (tokenizer_strings.py).
"""
import json
import os
import random

import numpy as np
import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

import pyllm
from tokenizer_strings import generated_strings, training_corpus

N_STRINGS = 2000


@pytest.fixture(scope="session")
def llama_model(data_dir):
    return os.path.join(data_dir, "llama", "tokenizer.model")


# -- models trained here ---------------------------------------------------------------

TRAINED = {
    "fallback_digits_nfkc": dict(byte_fallback=True, split_digits=True),
    "nofallback_nodigits_nfkc": dict(byte_fallback=False, split_digits=False),
    "fallback_nodigits_identity": dict(byte_fallback=True, split_digits=False, normalization_rule_name="identity"),
    "nofallback_digits_identity": dict(byte_fallback=False, split_digits=True, normalization_rule_name="identity"),
    "keep_whitespace_nfkc": dict(byte_fallback=True, remove_extra_whitespaces=False),
    "whitespace_suffix": dict(byte_fallback=False, treat_whitespace_as_suffix=True),
    "no_dummy_prefix_nfkc_cf": dict(byte_fallback=True, add_dummy_prefix=False, normalization_rule_name="nfkc_cf"),
    # decode-side rules (a -> A, bc -> XY), a custom unknown surface, renamed and extra specials
    "denormalizer_custom_specials": dict(byte_fallback=False, denormalization_rule_tsv="DENORM_TSV",
                                         unk_surface="<?>", pad_id=3, bos_piece="<bos>", eos_piece="<eos>"),
    "user_defined_and_control": dict(byte_fallback=True, user_defined_symbols=["<sep>", "foo", "\u2581bar", "π", "12"],
                                     control_symbols=["<ctl>", "<mask>"]),
}


def _train(prefix, lines, **options):
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=prefix, model_type="bpe",
                                   vocab_size=options.pop("vocab_size", 900), minloglevel=2, **options)
    return prefix + ".model"


@pytest.fixture(scope="session")
def model_paths(tmp_path_factory, llama_model):
    """name -> path of every model the parity tests run over."""
    root = tmp_path_factory.mktemp("spm_models")
    corpus = training_corpus(3000, seed=1)
    paths = {"llama": llama_model}
    (root / "denorm.tsv").write_text("61\t41\n62 63\t58 59\n")
    for name, options in TRAINED.items():
        options = {k: str(root / "denorm.tsv") if v == "DENORM_TSV" else v for k, v in options.items()}
        paths[name] = _train(str(root / name), corpus, **options)

    # Unused pieces: a trained model with every fifth multi-character piece marked UNUSED.
    proto = model_pb2.ModelProto()
    with open(paths["fallback_digits_nfkc"], "rb") as f:
        proto.ParseFromString(f.read())
    k = 0
    for piece in proto.pieces:
        if piece.type == model_pb2.ModelProto.SentencePiece.NORMAL and len(piece.piece) >= 2:
            k += 1
            if k % 5 == 0:
                piece.type = model_pb2.ModelProto.SentencePiece.UNUSED
    paths["unused_pieces"] = str(root / "unused_pieces.model")
    with open(paths["unused_pieces"], "wb") as f:
        f.write(proto.SerializeToString())

    # Spaces kept as ' ' (the BPE trainer refuses this option, so it is set afterwards).
    proto = model_pb2.ModelProto()
    with open(paths["nofallback_digits_identity"], "rb") as f:
        proto.ParseFromString(f.read())
    proto.normalizer_spec.escape_whitespaces = False
    paths["no_escape_whitespace"] = str(root / "no_escape_whitespace.model")
    with open(paths["no_escape_whitespace"], "wb") as f:
        f.write(proto.SerializeToString())

    # Chinese-LLaMA style: a BPE trained on Chinese text, its new pieces appended to LLaMA's with score 0.
    chinese = _train(str(root / "chinese"), training_corpus(3000, seed=2, chinese=True), vocab_size=1500,
                     character_coverage=1.0)
    merged = model_pb2.ModelProto()
    with open(llama_model, "rb") as f:
        merged.ParseFromString(f.read())
    zh = model_pb2.ModelProto()
    with open(chinese, "rb") as f:
        zh.ParseFromString(f.read())
    known = {p.piece for p in merged.pieces}
    added = 0
    for p in zh.pieces:
        if p.type == model_pb2.ModelProto.SentencePiece.NORMAL and p.piece not in known:
            new = merged.pieces.add()
            new.piece, new.score, new.type = p.piece, 0.0, model_pb2.ModelProto.SentencePiece.NORMAL
            added += 1
    assert added > 500
    paths["chinese_llama_merged"] = str(root / "chinese_llama_merged.model")
    with open(paths["chinese_llama_merged"], "wb") as f:
        f.write(merged.SerializeToString())
    return paths


MODEL_NAMES = ["llama", *TRAINED, "unused_pieces", "no_escape_whitespace", "chinese_llama_merged"]


def _first_mismatches(pairs, limit=3):
    return [p for p in pairs if p[1] != p[2]][:limit]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_generated_strings_encode_like_sentencepiece(model_paths, name):
    path = model_paths[name]
    sp = spm.SentencePieceProcessor(model_file=path)
    tok = pyllm.Tokenizer.from_file(path)
    strings = generated_strings(N_STRINGS, seed=MODEL_NAMES.index(name))
    ours = tok.encode_batch(strings, add_special_tokens=False)
    theirs = sp.encode(strings)
    bad = _first_mismatches(list(zip(strings, ours, theirs)))
    assert not bad, f"{name}: {sum(a != b for a, b in zip(ours, theirs))} of {len(strings)} differ, e.g. {bad}"
    # the ids really exercise the model: many distinct pieces, and unknowns where expected
    assert len({i for ids in theirs for i in ids}) > min(300, sp.get_piece_size() // 3)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_decode_like_sentencepiece(model_paths, name):
    path = model_paths[name]
    sp = spm.SentencePieceProcessor(model_file=path)
    tok = pyllm.Tokenizer.from_file(path)
    strings = generated_strings(500, seed=7)
    ids = sp.encode(strings)
    ours = [tok.decode(x, skip_special_tokens=True) for x in ids]
    assert _first_mismatches(list(zip(strings, ours, sp.decode(ids)))) == []
    # random id sequences: control, unknown, byte pieces (also broken UTF-8) and leading spaces
    rng = random.Random(3)
    n = sp.get_piece_size()
    for _ in range(1000):
        seq = [rng.randrange(n) if rng.random() < 0.6 else rng.randrange(min(n, 300)) for _ in range(rng.randint(0, 14))]
        assert tok.decode(seq, skip_special_tokens=True) == sp.decode(seq), seq


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_special_ids_like_sentencepiece(model_paths, name):
    sp = spm.SentencePieceProcessor(model_file=model_paths[name])
    tok = pyllm.Tokenizer.from_file(model_paths[name])
    none_if_negative = [None if i < 0 else i for i in (sp.bos_id(), sp.eos_id(), sp.pad_id(), sp.unk_id())]
    assert [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id] == none_if_negative
    assert tok.vocab_size == sp.get_piece_size()


def test_denormalizer_and_unknown_surface(model_paths):
    sp = spm.SentencePieceProcessor(model_file=model_paths["denormalizer_custom_specials"])
    tok = pyllm.Tokenizer.from_file(model_paths["denormalizer_custom_specials"])
    ids = sp.encode("abc bc a zzz")
    assert tok.decode(ids, skip_special_tokens=True) == sp.decode(ids) == "AXY XY A zzz"
    assert tok.decode([0, 5], skip_special_tokens=True) == sp.decode([0, 5])
    assert tok.decode([0], skip_special_tokens=True) == "<?>"
    assert (tok.bos_token_id, tok.pad_token_id) == (1, 3)


def test_encoding_from_threads(llama_model):
    """The GIL is released while encoding: concurrent calls must not disturb each other."""
    from concurrent.futures import ThreadPoolExecutor
    tok = pyllm.Tokenizer.from_file(llama_model)
    texts = generated_strings(400, seed=31)
    expected = [tok.encode(t) for t in texts]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(tok.encode, texts))
        batches = list(pool.map(tok.encode_batch, [texts[i:i + 50] for i in range(0, 400, 50)]))
    assert got == expected
    assert [ids for batch in batches for ids in batch] == expected


def test_merged_chinese_model_uses_new_pieces(model_paths):
    tok = pyllm.Tokenizer.from_file(model_paths["chinese_llama_merged"])
    assert tok.vocab_size > 32500
    ids = tok.encode("我们的国家是一个大国，你说的不对。", add_special_tokens=False)
    assert any(i >= 32000 for i in ids), ids


def test_one_megabyte_text_matches(llama_model):
    sp = spm.SentencePieceProcessor(model_file=llama_model)
    tok = pyllm.Tokenizer.from_file(llama_model)
    text = " ".join(generated_strings(3000, seed=11))
    text = (text * (1_000_000 // len(text) + 1))[:1_000_000]
    assert tok.encode(text, add_special_tokens=False) == sp.encode(text)


# -- the shared test vectors -----------------------------------------------------------

def test_llama2c_test_c_vectors(data_dir, llama_model):
    tok = pyllm.Tokenizer.from_file(llama_model)
    with open(os.path.join(data_dir, "llama", "llama2c_test_c_vectors.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    assert len(cases) == 5
    for case in cases:
        assert tok.encode(case["text"]) == case["ids"], case["text"]


def test_transformersjs_llama_cases(data_dir, llama_model):
    tok = pyllm.Tokenizer.from_file(llama_model)
    sp = spm.SentencePieceProcessor(model_file=llama_model)
    with open(os.path.join(data_dir, "llama", "transformersjs_llama_tokenizer_cases.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    assert len(cases) == 37
    for case in cases:
        assert tok.encode(case["text"]) == case["ids"], case["name"]
        assert tok.decode(case["ids"]) == case["decoded"], case["name"]
        assert tok.decode(case["ids"], skip_special_tokens=True) == sp.decode(case["ids"]), case["name"]


def test_transformersjs_tokens_are_the_pieces(data_dir, llama_model):
    tok = pyllm.Tokenizer.from_file(llama_model)
    with open(os.path.join(data_dir, "llama", "transformersjs_llama_tokenizer_cases.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    for case in cases:
        pieces = [tok.id_to_token(i) for i in case["ids"]]
        assert pieces[-len(case["tokens"]):] == case["tokens"], case["name"]
        assert [tok.token_to_id(p) for p in case["tokens"]] == case["ids"][-len(case["tokens"]):]


def test_llamacpp_spm_vectors(data_dir, llama_model):
    tok = pyllm.Tokenizer.from_file(llama_model)
    base = os.path.join(data_dir, "llamacpp", "ggml-vocab-llama-spm.gguf")
    with open(base + ".inp", encoding="utf-8") as f:
        texts = f.read().split("\n__ggml_vocab_test__\n")[:-1]
    with open(base + ".out", encoding="utf-8") as f:
        expected = [[int(x) for x in line.split()] for line in f.read().split("\n")[:len(texts)]]
    assert len(texts) == 46
    for text, ids in zip(texts, expected):
        assert tok.encode(text, add_special_tokens=False) == ids, repr(text)


# -- special tokens, configuration, API ------------------------------------------------

def test_special_token_strings_are_split_out(llama_model):
    sp = spm.SentencePieceProcessor(model_file=llama_model)
    tok = pyllm.Tokenizer.from_file(llama_model)
    # transformers (legacy LLaMA): split on the special strings, encode every other stretch alone
    for parts in (["Hello", "<s>", " world"], ["", "</s>", ""], ["a", "<unk>", "b", "</s>", "\n<s>", "c"],
                  ["  ", "<s>", "<s>", "  x"]):
        text = "".join(parts)
        expected = []
        for chunk in _split_keep(text, ["<s>", "</s>", "<unk>"]):
            expected += {"<s>": [1], "</s>": [2], "<unk>": [0]}.get(chunk) or sp.encode(chunk)
        assert tok.encode(text, add_special_tokens=False) == expected, text
        assert tok.encode(text) == [1] + expected
    # sentencepiece itself sees the characters; our text without special strings is unaffected
    assert tok.encode("<s", add_special_tokens=False) == sp.encode("<s")


def _split_keep(text, specials):
    out, start, i = [], 0, 0
    while i < len(text):
        hit = next((s for s in specials if text.startswith(s, i)), None)
        if hit:
            out += [text[start:i], hit]
            i += len(hit)
            start = i
        else:
            i += 1
    out.append(text[start:])
    return [c for c in out if c]


def test_decode_renders_special_tokens_unless_skipped(llama_model):
    sp = spm.SentencePieceProcessor(model_file=llama_model)
    tok = pyllm.Tokenizer.from_file(llama_model)
    ids = tok.encode("Hello</s>world")
    assert ids == [1, 15043, 2, 3186]
    assert tok.decode(ids) == "<s> Hello</s> world"
    assert tok.decode(ids, skip_special_tokens=True) == sp.decode(ids) == "Hello world"
    # the stretch after a special string gets its own dummy prefix, as in transformers' legacy mode
    ids = tok.encode("Hello</s> world")
    assert ids == [1, 15043, 2] + sp.encode(" world")
    assert tok.decode(ids) == "<s> Hello</s>  world"
    assert tok.decode([0, 15043]) == "<unk> Hello"
    assert tok.decode([0, 15043], skip_special_tokens=True) == " \u2047  Hello"


def test_user_defined_and_control_symbols(model_paths):
    path = model_paths["user_defined_and_control"]
    sp = spm.SentencePieceProcessor(model_file=path)
    tok = pyllm.Tokenizer.from_file(path)
    for text in ["x<sep>y", "foofoo bar", "π=3.14 foo<sep>", "a bar  <sep> 12 123"]:
        assert tok.encode(text, add_special_tokens=False) == sp.encode(text), text
    ctl = sp.piece_to_id("<ctl>")
    assert tok.encode("a<ctl>b", add_special_tokens=False) == sp.encode("a") + [ctl] + sp.encode("b")
    assert tok.decode([ctl]) == "<ctl>" and tok.decode([ctl], skip_special_tokens=True) == ""


def test_vocabulary_api(llama_model):
    sp = spm.SentencePieceProcessor(model_file=llama_model)
    tok = pyllm.Tokenizer.from_file(llama_model)
    assert (tok.vocab_size, len(tok)) == (32000, 32000)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, None)
    for i in random.Random(0).sample(range(32000), 500):
        piece = sp.id_to_piece(i)
        assert tok.id_to_token(i) == piece
        assert tok.token_to_id(piece) == i
    assert tok.token_to_id("no such piece") is None
    with pytest.raises(IndexError):
        tok.id_to_token(32000)


def test_encode_batch_and_inputs(llama_model):
    tok = pyllm.Tokenizer.from_file(llama_model)
    texts = generated_strings(50, seed=5)
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    assert tok.encode_batch([]) == []
    ids = tok.encode("Hello world, 123")
    for dtype in (np.int64, np.int32, np.uint16, np.int16, np.uint64, np.uint32):
        assert tok.decode(np.array(ids, dtype=dtype)) == tok.decode(ids)
    assert tok.decode(np.array(ids)[::2]) == tok.decode(ids[::2])
    with pytest.raises(TypeError):
        tok.decode(np.array(ids, dtype=np.float32))
    with pytest.raises(TypeError):
        tok.decode([1.0, 2.0])
    with pytest.raises(ValueError):
        tok.decode(np.array([ids]))
    with pytest.raises(IndexError, match="out of range"):
        tok.decode([5, 32000])
    with pytest.raises(IndexError):
        tok.decode([-1])
    with pytest.raises(IndexError):
        tok.decode(np.array([1, 2**63 + 5], dtype=np.uint64))
    with pytest.raises(TypeError):
        tok.decode(np.array([True, False]))
    with pytest.raises(TypeError):
        tok.decode([True])
    with pytest.raises(TypeError):
        tok.encode(b"bytes")
    with pytest.raises(TypeError):
        tok.encode_batch("a single string")
    assert tok.encode("") == [1] and tok.encode("", add_special_tokens=False) == []


def test_from_pretrained_reads_the_config(tmp_path, llama_model):
    with open(llama_model, "rb") as f:
        (tmp_path / "tokenizer.model").write_bytes(f.read())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": True, "add_eos_token": True,
        "bos_token": {"content": "<s>", "special": True}, "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<pad>",
        "added_tokens_decoder": {"0": {"content": "<unk>", "special": True},
                                 "32000": {"content": "<pad>", "special": True},
                                 "32001": {"content": "<|im_end|>", "special": True},
                                 "32002": {"content": "<think>", "special": False}},
    }))
    tok = pyllm.Tokenizer.from_pretrained(tmp_path)
    assert (tok.vocab_size, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (32003, 1, 2, 32000)
    plain = pyllm.Tokenizer.from_file(llama_model)
    assert tok.encode("Hello world") == plain.encode("Hello world") + [2]
    assert tok.encode("Hi<|im_end|><pad>", add_special_tokens=False) == plain.encode("Hi", False) + [32001, 32000]
    assert tok.decode([1, 15043, 32001, 32000]) == "<s> Hello<|im_end|><pad>"
    assert tok.decode([1, 15043, 32001, 32000], skip_special_tokens=True) == "Hello"
    # a non-special added token is split out too, but decode always writes it
    assert tok.encode("a<think>b", add_special_tokens=False) == plain.encode("a", False) + [32002] + plain.encode(
        "b", False)
    assert tok.decode([1, 15043, 32002, 2], skip_special_tokens=True) == "Hello<think>"
    assert tok.id_to_token(32002) == "<think>" and tok.token_to_id("<|im_end|>") == 32001

    # special_tokens_map.json alone; BOS off
    other = tmp_path / "other"
    other.mkdir()
    (other / "tokenizer.model").write_bytes((tmp_path / "tokenizer.model").read_bytes())
    (other / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": False}))
    (other / "special_tokens_map.json").write_text(json.dumps({"pad_token": "</s>", "eos_token": "</s>"}))
    tok = pyllm.Tokenizer.from_pretrained(other)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 2)
    assert tok.encode("Hello") == plain.encode("Hello", add_special_tokens=False)

    # "legacy": false (transformers' non-legacy LLaMA): only the start of the text gets the dummy prefix
    proto = model_pb2.ModelProto()
    proto.ParseFromString((tmp_path / "tokenizer.model").read_bytes())
    proto.normalizer_spec.add_dummy_prefix = False
    no_prefix = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    sp = spm.SentencePieceProcessor(model_file=llama_model)
    strict = tmp_path / "strict"
    strict.mkdir()
    (strict / "tokenizer.model").write_bytes((tmp_path / "tokenizer.model").read_bytes())
    (strict / "tokenizer_config.json").write_text(json.dumps({"legacy": False}))
    tok = pyllm.Tokenizer.from_pretrained(strict)
    assert not tok.legacy and plain.legacy
    for text in generated_strings(100, seed=41):
        assert tok.encode(text) == plain.encode(text)  # no special string: the same as sentencepiece
    assert tok.encode("Hello</s>world", False) == sp.encode("Hello") + [2] + no_prefix.encode("world")
    assert tok.encode("<s>Hello there", False) == [1] + no_prefix.encode("Hello there")
    assert tok.encode("Hi <s> there") == [1] + sp.encode("Hi ") + [1] + no_prefix.encode(" there")
    assert plain.encode("<s>Hello", False) == [1] + sp.encode("Hello")

    with pytest.raises(FileNotFoundError):
        pyllm.Tokenizer.from_pretrained(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="tokenizer.model"):
        pyllm.Tokenizer.from_pretrained(empty)


# -- bad models and files --------------------------------------------------------------

def test_unigram_model_raises(tmp_path):
    path = spm.SentencePieceTrainer.train(sentence_iterator=iter(training_corpus(500, seed=4)),
                                          model_prefix=str(tmp_path / "uni"), model_type="unigram",
                                          vocab_size=300, minloglevel=2)
    assert path is None
    with pytest.raises(ValueError, match="unigram"):
        pyllm.Tokenizer.from_file(tmp_path / "uni.model")


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        pyllm.Tokenizer.from_file(tmp_path / "nope.model")


@pytest.mark.parametrize("kind", ["random", "truncated", "empty", "text", "no_unknown_piece"])
def test_broken_model_file_raises(isolated, tmp_path, llama_model, kind):
    with open(llama_model, "rb") as f:
        good = f.read()
    if kind == "random":
        data = bytes(random.Random(0).getrandbits(8) for _ in range(5000))
    elif kind == "truncated":
        data = good[:len(good) // 2]
    elif kind == "empty":
        data = b""
    elif kind == "text":
        data = b"this is not a protobuf file\n" * 10
    else:
        proto = model_pb2.ModelProto()
        proto.ParseFromString(good)
        proto.pieces[0].type = model_pb2.ModelProto.SentencePiece.NORMAL
        data = proto.SerializeToString()
    path = tmp_path / "tokenizer.model"
    path.write_bytes(data)
    kind_name, message = isolated(f"""
        import pyllm
        pyllm.Tokenizer.from_file({str(path)!r})
    """)
    assert kind_name == "ValueError", message
    assert "tokenizer.model" in message


def test_many_random_files_never_crash(isolated, tmp_path, llama_model):
    """Corrupted copies of a real model: every one either loads or raises ValueError."""
    with open(llama_model, "rb") as f:
        good = f.read()
    rng = random.Random(9)
    paths = []
    for i in range(40):
        data = bytearray(good[:rng.randint(1, 60000)])
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        p = tmp_path / f"m{i}.model"
        p.write_bytes(bytes(data))
        paths.append(str(p))
    kind_name, message = isolated(f"""
        import pyllm
        outcomes = set()
        for p in {paths!r}:
            try:
                tok = pyllm.Tokenizer.from_file(p)
                tok.decode(tok.encode("Hello wörld 123 🦙"))
                outcomes.add("ok")
            except ValueError as e:
                outcomes.add("ValueError")
        print(outcomes)
    """)
    assert kind_name is None, message
