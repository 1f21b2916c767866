"""Every code point's class, as our regex engine and Digits see it, against `tokenizers` itself.

tokenizers takes its regex classes from Oniguruma (Unicode 16.0.0 in 0.23) and Digits from Rust's
char::is_numeric (Unicode 17.0.0): csrc/tokenizers/unicode_tables.c is generated for both by
tools/gen_unicode_tables.py. Each test runs one pre-tokenizer over strings that hold all code
points and compares the pieces."""
import json

import pytest
from tokenizers import Regex, pre_tokenizers

import pyllm
from tokenizer_json_builders import BLOOM_PATTERN, LLAMA3_PATTERN

ALL = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
ALL_TEXT = "".join(chr(c) for c in ALL)
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def _ours(tmp_path, pre_tokenizer):
    spec = {"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": pre_tokenizer}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(spec))
    return pyllm.Tokenizer.from_file(path)._core


def _split(pattern):
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}


def _first_difference(ours, theirs):
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            return i, [hex(ord(c)) for c in a[:4]], [hex(ord(c)) for c in b[:4]]
    return len(ours), len(theirs)


# One pattern per table column the real patterns use (L, N, White_Space, Nd) plus the other major
# categories and a subcategory; negations are covered by the class of the last one.
@pytest.mark.parametrize("pattern", [r"\p{L}+", r"\p{N}+", r"\s+", r"\d+", r"\p{Lu}", r"\p{M}+", r"\p{P}+",
                                     r"\p{S}+", r"\p{Z}+", r"[^\s\p{L}\p{N}]+"])
def test_every_code_point_class(tmp_path, pattern):
    ours = _ours(tmp_path, _split(pattern)).pre_tokenize(ALL_TEXT)
    theirs = [p for p, _ in pre_tokenizers.Split(Regex(pattern), "isolated").pre_tokenize_str(ALL_TEXT)]
    assert ours == theirs, _first_difference(ours, theirs)


@pytest.mark.parametrize("individual", [True, False])
def test_every_code_point_digits(tmp_path, individual):
    ours = _ours(tmp_path, {"type": "Digits", "individual_digits": individual}).pre_tokenize(ALL_TEXT)
    theirs = [p for p, _ in pre_tokenizers.Digits(individual_digits=individual).pre_tokenize_str(ALL_TEXT)]
    assert ours == theirs, _first_difference(ours, theirs)


def test_case_insensitive_contractions_over_all_code_points(tmp_path):
    """(?i:'s|'t|...) folds case as Oniguruma does (e.g. 'ſ matches 's)."""
    pattern = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    text = "".join("'" + chr(c) + chr(c) + " " for c in ALL)
    ours = _ours(tmp_path, _split(pattern)).pre_tokenize(text)
    theirs = [p for p, _ in pre_tokenizers.Split(Regex(pattern), "isolated").pre_tokenize_str(text)]
    assert ours == theirs, _first_difference(ours, theirs)
    assert "'ſ" in ours and "'S" in ours


@pytest.mark.parametrize("pattern", [BLOOM_PATTERN, GPT2_PATTERN, LLAMA3_PATTERN])
def test_real_patterns_over_all_code_points(tmp_path, pattern):
    text = "".join(chr(c) + rest for c, rest in zip(ALL[::3], [" ", "a", "1", "  ", "'s ", "\n", ".", "中"] * 200000))
    ours = _ours(tmp_path, _split(pattern)).pre_tokenize(text)
    theirs = [p for p, _ in pre_tokenizers.Split(Regex(pattern), "isolated").pre_tokenize_str(text)]
    assert ours == theirs, _first_difference(ours, theirs)


def test_single_word_boundaries_over_code_points(tmp_path):
    """single_word added tokens: tokenizers checks a word boundary with Rust's regex crate, whose
    word characters (Alphabetic incl. Other_Alphabetic, marks, Nd, Pc, Join_Control) we tabulate."""
    from tokenizers import Tokenizer
    spec = {"model": {"type": "BPE", "vocab": {"q": 0, "z": 1}, "merges": []},
            "added_tokens": [{"id": 2, "content": "qz", "single_word": True, "lstrip": False, "rstrip": False,
                              "normalized": False, "special": False}]}
    path = tmp_path / "single_word.json"
    path.write_text(json.dumps(spec))
    ours, ref = pyllm.Tokenizer.from_file(path), Tokenizer.from_file(str(path))
    # tokenizers needs ~15 s for all code points, so the large uniform blocks (CJK ideographs,
    # Hangul syllables, private use, planes 2-16) are sampled; everything else is complete.
    uniform = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xF8FF), (0x20000, 0x10FFFF))
    points = [c for c in ALL if not any(lo <= c <= hi for lo, hi in uniform) or c % 61 == 0]
    for text in (" ".join(chr(c) + "qz" for c in points), " ".join("qz" + chr(c) for c in points)):
        expected = ref.encode(text).ids
        assert ours.encode(text) == expected
        assert 1000 < expected.count(2) < len(points) - 1000  # both outcomes occur
