"""Tokenizer from GGUF metadata.

- llama.cpp's vocab files reproduce their .out id lists from their .inp strings exactly
  (SentencePiece BPE and GPT-2 byte-level BPE);
- stories260K.gguf's vocabulary gives the ids of the llama2.c tokenizer tok512.bin there;
- every supported tokenizer.ggml.pre, put on GPT-2's vocabulary, equals HF tokenizers running the
  pre-tokenizer the models' own tokenizer.json files declare (Digits + ByteLevel for SmolLM,
  LLaMA-3's Split with ignore_merges, BLOOM's Split, GPT-2's ByteLevel regex);
- flags, special tokens, the chat template; unknown values raise.
"""
import os

import numpy as np
import pytest
from tokenizers import Regex, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers

import gguf
from gguf import GGUFValueType as V

import pyllm
from pyllm.gguf import GGUFError, open_gguf
from pyllm.tokenizer_gguf import PRE_TOKENIZERS
from gguf_files import write_gguf
from tokenizer_strings import bpe_test_strings, generated_strings

SEP = "\n__ggml_vocab_test__\n"


def _vectors(data_dir, name):
    base = os.path.join(data_dir, "llamacpp", name)
    with open(base + ".inp", encoding="utf-8") as f:
        texts = f.read().split(SEP)[:-1]
    with open(base + ".out", encoding="utf-8") as f:
        lines = f.read().split("\n")
    return texts, [[int(x) for x in line.split()] for line in lines[:len(texts)]]


@pytest.mark.parametrize("name", ["ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"])
def test_llamacpp_vocab_vectors(data_dir, name):
    tok = pyllm.Tokenizer.from_pretrained(os.path.join(data_dir, "llamacpp", name))
    texts, expected = _vectors(data_dir, name)
    assert len(texts) == 46
    for text, ids in zip(texts, expected):
        assert tok.encode(text, add_special_tokens=False) == ids, repr(text)


def test_llama_spm_vocab_flags_and_decode(data_dir):
    tok = pyllm.Tokenizer.from_file(os.path.join(data_dir, "llamacpp", "ggml-vocab-llama-spm.gguf"))
    assert tok._core.kind == "sentencepiece"
    assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.pad_token_id) == (1, 2, 0, None)
    assert tok.add_bos_token and not tok.add_eos_token
    ref = pyllm.Tokenizer.from_file(os.path.join(data_dir, "llama", "tokenizer.model"))
    for text in generated_strings(150, seed=81):
        ids = tok.encode(text)
        assert ids[0] == 1 and ids == ref.encode(text), repr(text)
        assert tok.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)


def test_gpt2_vocab_kind_and_specials(data_dir):
    tok = pyllm.Tokenizer.from_pretrained(os.path.join(data_dir, "llamacpp", "ggml-vocab-gpt-2.gguf"))
    assert tok._core.kind == "merges"
    assert tok.bos_token_id == tok.eos_token_id == 50256 and not tok.add_bos_token
    assert tok.encode("a<|endoftext|>b") == [64, 50256, 65]  # the control token is split out
    text = "Hello  world!\n\tÇa va? 🦙 12345"
    assert tok.decode(tok.encode(text)) == text


def test_stories260k_vocab_equals_tok512(data_dir):
    d = os.path.join(data_dir, "stories260K")
    ours = pyllm.Tokenizer.from_pretrained(os.path.join(d, "stories260K.gguf"))
    ref = pyllm.Tokenizer.from_llama2c(os.path.join(d, "tok512.bin"), 512)
    assert ours.vocab_size == 512 and (ours.bos_token_id, ours.eos_token_id) == (1, 2)
    texts = generated_strings(300, seed=5) + ["Once upon a time, there was a little girl named Lily.", "", " "]
    for text in texts:
        assert ours.encode(text) == ref.encode(text), repr(text)
        ids = ours.encode(text)
        assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)


# -- every pre-tokenizer against HF tokenizers on GPT-2's vocabulary ---------------------------

_GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _hf_pre_tokenizer(pre):
    """The pre-tokenizer as each model family's tokenizer.json writes it (not our table)."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if pre in ("gpt-2", "mpt", "olmo", "phi-2"):
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), False
    if pre in ("smollm", "starcoder", "refact"):
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]), False
    if pre in ("llama-bpe", "llama3", "llama-v3"):
        return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(_LLAMA3_REGEX), "isolated"), byte_level]), True
    if pre in ("bloom", "poro-chat", "gpt3-finnish"):
        return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r" ?[^(\s|[.,!?…。，、।۔،])]+"), "isolated"),
                                        byte_level]), False
    assert pre == "default"  # llama.cpp's own fallback: its four regexes in turn
    regexes = [r"[\p{P}\$\+<=>\^~\|]+", _GPT2_REGEX, r"\p{N}+", r"[0-9][0-9][0-9]"]
    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r), "isolated") for r in regexes] + [byte_level]), False


@pytest.fixture(scope="module")
def gpt2_vocab(data_dir):
    f = open_gguf(os.path.join(data_dir, "llamacpp", "ggml-vocab-gpt-2.gguf"))
    return f.metadata["tokenizer.ggml.tokens"], f.metadata["tokenizer.ggml.merges"]


def _vocab_gguf(path, tokens, merges, pre, extra=()):
    types = [1] * len(tokens)
    types[50256] = 3
    meta = [("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.pre", pre),
            ("tokenizer.ggml.tokens", (V.ARRAY, tokens, V.STRING)),
            ("tokenizer.ggml.token_type", (V.ARRAY, types, V.INT32)),
            ("tokenizer.ggml.merges", (V.ARRAY, merges, V.STRING)),
            ("tokenizer.ggml.bos_token_id", 50256), ("tokenizer.ggml.eos_token_id", 50256)] + list(extra)
    return write_gguf(path, meta)


@pytest.mark.parametrize("pre", sorted(PRE_TOKENIZERS))
def test_every_pre_equals_hf_tokenizers(tmp_path, gpt2_vocab, pre):
    tokens, merges = gpt2_vocab
    path = _vocab_gguf(tmp_path / f"{pre}.gguf", tokens, merges, pre)
    ours = pyllm.Tokenizer.from_pretrained(path)
    pre_tok, ignore_merges = _hf_pre_tokenizer(pre)
    hf = HFTokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                                merges=[tuple(m.split(" ")) for m in merges], ignore_merges=ignore_merges))
    hf.pre_tokenizer = pre_tok
    hf.decoder = decoders.ByteLevel()
    texts = bpe_test_strings(120, seed=len(pre)) + ["1234567 89,000 x=3.14159", "I'M he'S we'Ve 'll", "a\n\n b\r\n c"]
    for text in texts:
        expected = hf.encode(text, add_special_tokens=False).ids
        assert ours.encode(text, add_special_tokens=False) == expected, (pre, text)
    assert ours.add_bos_token == (pre in ("llama-bpe", "llama3", "llama-v3"))


def test_pre_values_differ(tmp_path, gpt2_vocab):
    """The mapping matters: the same text splits into different pieces under each pre value
    (GPT-2's merges rarely cross any of these boundaries, so the ids often agree)."""
    tokens, merges = gpt2_vocab
    text = "In 2024, they'LL pay $1234.50 (really!) don't a+b"
    seen = {}
    for pre in ("gpt-2", "smollm", "llama-bpe", "bloom", "default"):
        tok = pyllm.Tokenizer.from_pretrained(_vocab_gguf(tmp_path / f"{pre}.gguf", tokens, merges, pre))
        seen[pre] = tuple(tok._core.pre_tokenize(text))
    assert len(set(seen.values())) == len(seen), seen


def test_metadata_flags_and_template(tmp_path, gpt2_vocab):
    tokens, merges = gpt2_vocab
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    path = _vocab_gguf(tmp_path / "flags.gguf", tokens, merges, "gpt-2", [
        ("tokenizer.ggml.add_bos_token", True), ("tokenizer.ggml.add_eos_token", True),
        ("tokenizer.ggml.padding_token_id", 0), ("tokenizer.chat_template", template)])
    tok = pyllm.Tokenizer.from_pretrained(path)
    assert tok.encode("hi") == [50256, 5303, 50256]
    assert tok.pad_token_id == 0 and tok.chat_template == template
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}]) == [5303]


def test_unknown_values_raise(tmp_path, gpt2_vocab):
    tokens, merges = gpt2_vocab
    with pytest.raises(GGUFError, match=r"bad\.gguf.*tokenizer\.ggml\.pre 'qwen9' is not supported"):
        pyllm.Tokenizer.from_pretrained(_vocab_gguf(tmp_path / "bad.gguf", tokens, merges, "qwen9"))
    path = write_gguf(tmp_path / "t5.gguf", [("tokenizer.ggml.model", "t5"),
                                             ("tokenizer.ggml.tokens", (V.ARRAY, ["a"], V.STRING))])
    with pytest.raises(GGUFError, match="tokenizer.ggml.model 't5' is not supported"):
        pyllm.Tokenizer.from_pretrained(path)
    path = write_gguf(tmp_path / "none.gguf", [("general.name", "x")])
    with pytest.raises(GGUFError, match="holds no tokenizer"):
        pyllm.Tokenizer.from_pretrained(path)
