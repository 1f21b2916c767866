"""Every tokenizer loop over user data advances, and its work is linear in the text.

The first part holds the tokenizer.json configurations that used to make encode or decode loop
forever (an empty pattern or replacement in Replace, Metaspace and Strip) against tokenizers: each
does what tokenizers does with it, or is refused at load where tokenizers refuses it. The rest
counts work (pyllm._testing.tokenizer_work / regex_work report the C core's counters) rather than
timing it: regex steps, BPE merge-queue operations, special-token probes and normalizer steps grow
at most 12x from 100 kB to 1 MB, and no adversarial text costs more than 20x ordinary text of the
same length, for every regex and pipeline we ship and the real tokenizers in the data directory.
"""
import json
import os

import pytest
from tokenizers import Tokenizer as HFTokenizer

import pyllm
from pyllm import _testing
from pyllm.gguf import GGUFFile

from tokenizer_json_builders import BLOOM_PATTERN, LLAMA3_PATTERN

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# Every regex a supported file names: tokenizer.json's ByteLevel and the three families' Split
# patterns, and those tokenizer_gguf.py runs for each tokenizer.ggml.pre.
PATTERNS = {
    "gpt2": GPT2_PATTERN,
    "llama3": LLAMA3_PATTERN,
    "bloom": BLOOM_PATTERN,
    "bloom_gguf": r" ?[^(\s|.,!?…。，、।۔،)]+",
    "gguf_default_punct": r"[\p{P}\$\+<=>\^~\|]+",
    "gguf_default_numbers": r"\p{N}+",
    "gguf_default_digits": r"[0-9][0-9][0-9]",
    "digit": r"\p{N}",
}
# Texts made of one repeated unit: long runs of one class, alternating classes, no spaces at all,
# and the shapes that make the backtracking alternatives above (\s+(?!\S), \s*[\r\n]+) rescan.
ADVERSARIAL = {
    "letter": "a", "digit": "7", "space": " ", "cjk": "中", "punct": ".", "newline": "\n",
    "space_newline": " \n", "crlf_space": "\r\n ", "alternating": "a1 .", "apostrophe_s": "'s",
    "letter_apostrophe": "a'", "spaces_then_letter": " " * 4999 + "a", "tabs_then_cjk": "\t" * 999 + "中",
    "emoji": "\U0001F600", "combining": "e\u0301", "backslashes": "\\",
    "lt_pipe": "<|", "special_prefix": "<|reserved_special_token_",
}
# The whole pipelines are held to a share of them (each costs a full encode of 1.1 MB).
PIPELINE_ADVERSARIAL = ["letter", "digit", "space", "cjk", "punct", "space_newline", "alternating",
                        "letter_apostrophe", "spaces_then_letter", "emoji", "lt_pipe", "special_prefix"]
KB100, MB1 = 100_000, 1_000_000


def _repeat(unit, n_chars):
    return (unit * (n_chars // len(unit) + 1))[:n_chars]


@pytest.fixture(scope="module")
def prose(data_dir):
    """Ordinary text: the BLOOM model card (English prose, markdown, numbers) and the tokenizer
    test strings (many scripts), repeated."""
    with open(os.path.join(data_dir, "bloom", "bloom-560m.MODEL_CARD.md"), encoding="utf-8") as f:
        text = f.read()
    with open(os.path.join(data_dir, "llama", "transformersjs_llama_tokenizer_cases.json"), encoding="utf-8") as f:
        text += "\n".join(case["text"] for case in json.load(f)["cases"])
    return text


def _write(tmp_path, name, spec):
    path = tmp_path / name
    path.write_text(json.dumps(spec), encoding="utf-8")
    return str(path)


def _both(tmp_path, spec, name="tokenizer.json"):
    path = _write(tmp_path, name, spec)
    return pyllm.Tokenizer.from_file(path), HFTokenizer.from_file(path)


# -- configurations that never returned ------------------------------------------------------

_VOCAB = {c: i for i, c in enumerate(["<unk>", "a", "b", "c", " ", "X", "▁", "é", "中", "ab", "▁a", "Xa", "aX"])}
_MODEL = {"type": "BPE", "vocab": _VOCAB, "merges": ["a b", "▁ a", "X a", "a X"], "unk_token": "<unk>"}
_IDS = [1, 2, 4, 9, 6, 10, 7, 8, 3]


def _spec(**parts):
    return {"model": dict(_MODEL), **parts}


@pytest.mark.parametrize("content", ["X", "", "<>"])
def test_replace_decoder_with_an_empty_pattern_decodes_like_tokenizers(tmp_path, content):
    ours, ref = _both(tmp_path, _spec(decoder={"type": "Replace", "pattern": {"String": ""}, "content": content}))
    assert ours.decode(_IDS) == ref.decode(_IDS)
    assert ours.decode([]) == ref.decode([])


def test_replace_normalizer_with_an_empty_pattern_encodes_like_tokenizers(tmp_path):
    ours, ref = _both(tmp_path, _spec(normalizer={"type": "Replace", "pattern": {"String": ""}, "content": "X"}))
    for text in ["a", "ab c", "é中a", "", "ba\u2581a"]:
        assert ours.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False).ids, text


@pytest.mark.parametrize("behavior", ["Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"])
@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("pattern", [{"String": ""}, {"Regex": ""}, {"Regex": "X*"}, {"Regex": "a|"},
                                     {"String": "a"}])
def test_split_with_empty_matches_encodes_like_tokenizers(tmp_path, pattern, behavior, invert):
    ours, ref = _both(tmp_path, _spec(pre_tokenizer={"type": "Split", "pattern": pattern, "behavior": behavior,
                                                      "invert": invert}))
    for text in ["abXXc", "aXa", "XaaX", "é中", "a", ""]:
        assert ours.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False).ids, text


def _refused_like_tokenizers(tmp_path, spec, words):
    path = _write(tmp_path, "bad.json", spec)
    with pytest.raises(Exception):
        HFTokenizer.from_file(path)
    with pytest.raises(ValueError) as caught:
        pyllm.Tokenizer.from_file(path)
    for word in words + [path]:
        assert word in str(caught.value)


@pytest.mark.parametrize("replacement", ["", "ab"])
def test_metaspace_pre_tokenizer_replacement_must_be_one_character(tmp_path, replacement):
    spec = _spec(pre_tokenizer={"type": "Metaspace", "replacement": replacement, "prepend_scheme": "always",
                                "split": True})
    _refused_like_tokenizers(tmp_path, spec, ["pre-tokenizer Metaspace", "replacement", "one character"])


@pytest.mark.parametrize("replacement", ["", "▁▁"])
def test_metaspace_decoder_replacement_must_be_one_character(tmp_path, replacement):
    spec = _spec(decoder={"type": "Metaspace", "replacement": replacement, "prepend_scheme": "always",
                          "split": True})
    _refused_like_tokenizers(tmp_path, spec, ["decoder Metaspace", "replacement", "one character"])


@pytest.mark.parametrize("content", ["", "ab"])
def test_strip_decoder_content_must_be_one_character(tmp_path, content):
    spec = _spec(decoder={"type": "Strip", "content": content, "start": 2**40, "stop": 0})
    _refused_like_tokenizers(tmp_path, spec, ["decoder Strip", "content", "one character"])


@pytest.mark.parametrize("field", ["start", "stop"])
def test_strip_decoder_counts_must_not_be_negative(tmp_path, field):
    spec = _spec(decoder={"type": "Strip", "content": "a", "start": 0, "stop": 0, field: -1})
    _refused_like_tokenizers(tmp_path, spec, ["decoder Strip", field, "non-negative"])


@pytest.mark.parametrize("start,stop", [(2**40, 0), (0, 2**40), (2**62, 2**62), (1, 1)])
def test_strip_decoder_with_huge_counts_decodes_like_tokenizers(tmp_path, start, stop):
    ours, ref = _both(tmp_path, _spec(decoder={"type": "Strip", "content": "a", "start": start, "stop": stop}))
    for ids in [[9, 2, 11, 12], [12, 12, 11], [2, 3], []]:
        assert ours.decode(ids) == ref.decode(ids), ids
    # tokenizers 0.23 panics on a token made only of the content character; it strips to nothing
    assert ours.decode([1] * 50) == ""


def test_added_token_id_out_of_range_is_refused(tmp_path):
    spec = _spec(added_tokens=[{"id": 2**40, "content": "<x>", "special": True}])
    path = _write(tmp_path, "bad.json", spec)
    with pytest.raises(ValueError, match=r"added token '<x>': id must be an integer"):
        pyllm.Tokenizer.from_file(path)


@pytest.mark.parametrize("stage,kind,s1,message", [
    (1, 5, "", "Metaspace: replacement must not be empty"),     # pre-tokenizer Metaspace
    (2, 4, "", "decoder Strip: content must not be empty"),
    (2, 5, "", "decoder Metaspace: replacement must not be empty"),
    (1, 17, "a", "unknown pipeline step kind"),
])
def test_the_core_refuses_steps_that_cannot_advance(stage, kind, s1, message):
    """The C core's own guard, for any loader (tokenizer_json.py refuses these first)."""
    from pyllm import _core
    with pytest.raises(ValueError, match=message):
        _core.hf_bpe_tokenizer(["a", "b"], [], [(stage, kind, s1, None, False, 0, 0)], -1, False, False, False)


# -- regex engine: linear on every shipped pattern, bounded on any pattern ---------------------

def _regex_steps(pattern, text):
    return _testing.regex_work(pattern, text)["steps"]


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_shipped_regexes_take_linear_steps(name, prose):
    pattern = PATTERNS[name]
    ordinary = {n: _regex_steps(pattern, _repeat(prose, n)) for n in (KB100, MB1)}
    assert ordinary[MB1] <= 12 * ordinary[KB100]
    for unit_name, unit in ADVERSARIAL.items():
        small, big = _regex_steps(pattern, _repeat(unit, KB100)), _regex_steps(pattern, _repeat(unit, MB1))
        assert big <= 12 * small, (unit_name, small, big)
        assert big <= 20 * ordinary[MB1], (unit_name, big, ordinary[MB1])


def test_ten_megabytes_without_a_space_take_linear_steps(prose):
    for name in ("gpt2", "llama3", "bloom"):
        for unit in ("a", " "):
            work = _testing.regex_work(PATTERNS[name], _repeat(unit, 10 * MB1))
            assert work["steps"] <= 20 * _regex_steps(PATTERNS[name], _repeat(prose, 10 * MB1)), (name, unit)
            assert work["steps"] <= 100 * _regex_steps(PATTERNS[name], _repeat(unit, KB100)), (name, unit)


# Patterns a file could hold whose backtracking explodes on the text beside them: exponential
# (optional alternatives of one character), high polynomial (repeated overlapping classes),
# quadratic over successive searches (a long scan that fails at every start).
EXPLOSIVE = [
    ("(?:a|a)?" * 30 + "b", "a" * 30),
    ("(?:a|ab|b)?" * 25 + "c", "ab" * 25),
    (r"\p{L}*\p{L}*\p{L}*\p{L}*\p{L}*x", "a" * 2000),
    (r"\s*\s*\s*(?:\s|x)?\s*y", " " * 3000),
    (r"\p{L}+\d", "a" * 100_000),
]


@pytest.mark.parametrize("pattern,text", EXPLOSIVE)
def test_explosive_patterns_stop_at_the_step_budget(pattern, text):
    with pytest.raises(ValueError, match="budget of [0-9]+ steps exhausted"):
        _testing.regex_work(pattern, text)


def test_explosive_split_pattern_fails_encode_with_a_clear_error(tmp_path):
    pattern, text = EXPLOSIVE[0]
    tok = pyllm.Tokenizer.from_file(_write(tmp_path, "t.json", _spec(
        pre_tokenizer={"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False})))
    assert tok.encode("ab", add_special_tokens=False) == [9]  # short text: within budget
    with pytest.raises(ValueError, match=r"Split: regex .* needed more than [0-9]+ steps .* backtracks"):
        tok.encode(text, add_special_tokens=False)


def test_the_budget_is_linear_in_the_text():
    small = _testing.regex_work(GPT2_PATTERN, "a" * KB100)["limit"]
    assert _testing.regex_work(GPT2_PATTERN, "a" * MB1)["limit"] <= 11 * small


@pytest.mark.parametrize("pattern,message", [
    ("(" * 100 + "a" + ")" * 100, "nesting deeper than 64"),
    ("[" * 100 + "a" + "]" * 100, "nesting deeper than 64"),
    ("a?" * 5000, "more than 4096 nodes"),
    ("[" + "a-b" * 20000 + "]", "more than 16384 class items"),
])
def test_patterns_too_large_to_match_safely_are_refused(pattern, message):
    with pytest.raises(ValueError, match=message):
        _testing.regex_work(pattern, "a")


# -- whole tokenizers: normalizer, pre-tokenizers, BPE and special tokens ----------------------

def _gpt2_vocab(data_dir):
    meta = GGUFFile(os.path.join(data_dir, "llamacpp", "ggml-vocab-gpt-2.gguf")).metadata
    return list(meta["tokenizer.ggml.tokens"]), list(meta["tokenizer.ggml.merges"])


def _byte_level_json(tmp_path, data_dir, name, split_pattern=None):
    """GPT-2's real vocabulary and merges behind a family's pipeline, with LLaMA-3's many special
    tokens (which the special-token matcher probes at every '<')."""
    tokens, merges = _gpt2_vocab(data_dir)
    pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": split_pattern is None}
    if split_pattern is not None:
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": split_pattern}, "behavior": "Isolated", "invert": False}, pre]}
    specials = ["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(250)]
    added = [{"id": len(tokens) + i, "content": s, "special": True} for i, s in enumerate(specials)]
    spec = {"model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges},
            "pre_tokenizer": pre, "decoder": {"type": "ByteLevel"}, "added_tokens": added}
    return _write(tmp_path, f"{name}.json", spec)


@pytest.fixture(scope="module")
def real_tokenizers(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("bounds")
    paths = {
        "llama_spm": os.path.join(data_dir, "llama", "tokenizer.model"),
        "llama_spm_gguf": os.path.join(data_dir, "llamacpp", "ggml-vocab-llama-spm.gguf"),
        "gpt2_gguf": os.path.join(data_dir, "llamacpp", "ggml-vocab-gpt-2.gguf"),
        "gpt2_json": _byte_level_json(folder, data_dir, "gpt2"),
        "bloom_json": _byte_level_json(folder, data_dir, "bloom", BLOOM_PATTERN),
        "llama3_json": _byte_level_json(folder, data_dir, "llama3", LLAMA3_PATTERN),
        "smollm2": pyllm.default_model_path(),
    }
    return {name: pyllm.Tokenizer.from_file(path) for name, path in paths.items()}


_COUNTS = ("regex_steps", "bpe_steps", "special_steps", "normalizer_steps", "pre_tokenizer_steps")


def _work(tok, text):
    return _testing.tokenizer_work(tok._core, text)


@pytest.mark.parametrize("name", ["llama_spm", "llama_spm_gguf", "gpt2_gguf", "gpt2_json", "bloom_json",
                                  "llama3_json", "smollm2"])
def test_real_tokenizers_do_linear_work_on_any_text(real_tokenizers, prose, name):
    tok = real_tokenizers[name]
    ordinary = {n: _work(tok, _repeat(prose, n)) for n in (KB100, MB1)}
    assert ordinary[MB1]["bpe_steps"] > 0 and ordinary[MB1]["ids"] > 0
    for count in _COUNTS:
        assert ordinary[MB1][count] <= 12 * ordinary[KB100][count], count
    for unit_name in PIPELINE_ADVERSARIAL:
        unit = ADVERSARIAL[unit_name]
        small, big = _work(tok, _repeat(unit, KB100)), _work(tok, _repeat(unit, MB1))
        for count in _COUNTS:
            assert big[count] <= 12 * small[count], (unit_name, count, small[count], big[count])
            # a count that ordinary text never exercises (no '<' in it) is held to the text's length
            assert big[count] <= 20 * max(ordinary[MB1][count], MB1), (unit_name, count, big[count])


def test_one_megabyte_word_is_encoded_with_linear_merges(real_tokenizers):
    """BLOOM's pattern leaves a text without spaces or punctuation as one piece: ranked BPE over a
    1 MB word must stay O(n log n) (merge-queue operations linear), not a quadratic merge loop."""
    tok = real_tokenizers["bloom_json"]
    small, big = _work(tok, "ab" * (KB100 // 2)), _work(tok, "ab" * (MB1 // 2))
    assert small["pieces"] == big["pieces"] == 1
    assert small["bpe_steps"] >= KB100 and big["bpe_steps"] <= 11 * small["bpe_steps"]
