"""Malformed or unsupported tokenizer.json files: each a clear exception naming the problem,
checked in a fresh process so a crash would fail the test rather than the run."""
import json

import pytest

GOOD = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}}


def _with(**changes):
    spec = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if key == "model":
            spec["model"].update(value)
        else:
            spec[key] = value
    return json.dumps(spec)


CASES = {
    "not_json": ("{model: BPE", "ValueError", "not valid JSON"),
    "not_utf8": (b"\xff\xfe{}", "ValueError", "UTF-8"),
    "array": ("[1, 2]", "ValueError", "'model' object"),
    "unigram": (_with(model={"type": "Unigram", "vocab": [["a", 0.0]]}), "ValueError", "Unigram"),
    "wordpiece": (_with(model={"type": "WordPiece", "vocab": {"a": 0}}), "ValueError", "WordPiece"),
    "merge_unknown_token": (_with(model={"merges": ["a c"]}), "ValueError", "'c', which is not in the vocabulary"),
    "merge_unknown_result": (_with(model={"merges": ["b a"]}), "ValueError", "makes 'ba'"),
    "merge_malformed": (_with(model={"merges": ["a b c"]}), "ValueError", "two tokens"),
    "vocab_ids_gap": (_with(model={"vocab": {"a": 0, "b": 5}}), "ValueError", "vocabulary ids"),
    "regex_backreference": (_with(pre_tokenizer={"type": "Split", "pattern": {"Regex": r"(a)\1"},
                                                 "behavior": "Isolated", "invert": False}),
                            "ValueError", "escape \\1"),
    "regex_lookbehind": (_with(pre_tokenizer={"type": "Split", "pattern": {"Regex": r"(?<=a)b"},
                                              "behavior": "Isolated", "invert": False}),
                         "ValueError", "group kind"),
    "regex_group_plus": (_with(pre_tokenizer={"type": "Split", "pattern": {"Regex": r"(ab)+"},
                                              "behavior": "Isolated", "invert": False}),
                         "ValueError", "quantifier other than ?"),
    "regex_unclosed": (_with(pre_tokenizer={"type": "Split", "pattern": {"Regex": r"[abc"},
                                            "behavior": "Isolated", "invert": False}),
                       "ValueError", "unterminated"),
    "regex_property": (_with(pre_tokenizer={"type": "Split", "pattern": {"Regex": r"\p{Greek}"},
                                            "behavior": "Isolated", "invert": False}),
                       "ValueError", "\\p{Greek}"),
    "normalizer_nfkc": (_with(normalizer={"type": "NFKC"}), "ValueError", "'NFKC'"),
    "pre_tokenizer_whitespace": (_with(pre_tokenizer={"type": "Whitespace"}), "ValueError", "'Whitespace'"),
    "decoder_wordpiece": (_with(decoder={"type": "WordPiece", "prefix": "##"}), "ValueError", "'WordPiece'"),
    "post_processor_unknown": (_with(post_processor={"type": "Mystery"}), "ValueError", "'Mystery'"),
    "dropout": (_with(model={"dropout": 0.1}), "ValueError", "dropout"),
    "suffix": (_with(model={"end_of_word_suffix": "</w>"}), "ValueError", "end_of_word_suffix"),
    "split_behavior": (_with(pre_tokenizer={"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways",
                                            "invert": False}), "ValueError", "Sideways"),
    "added_bad_id": (_with(added_tokens=[{"id": 9, "content": "<x>", "special": True}]), "ValueError", "next free id"),
    "vocab_not_object": (_with(model={"vocab": ["a", "b"]}), "ValueError", "model.vocab"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_file_raises_clearly(isolated, tmp_path, name):
    content, kind, message = CASES[name]
    path = tmp_path / "tokenizer.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    got_kind, got_message = isolated(f"""
        import pyllm
        pyllm.Tokenizer.from_file({str(path)!r})
    """)
    assert got_kind == kind, (got_kind, got_message)
    assert message in got_message, got_message
    assert got_message.startswith(str(path)), got_message


def test_good_file_loads(tmp_path):
    """The base of the cases above is valid: characters without a token and no unk are dropped."""
    import pyllm
    from tokenizers import Tokenizer
    path = tmp_path / "tokenizer.json"
    path.write_text(_with())
    tok = pyllm.Tokenizer.from_file(path)
    for text in ["ab a", "ba", "aab", "b ab"]:
        assert tok.encode(text) == Tokenizer.from_file(str(path)).encode(text).ids
    assert tok.encode("ab") == [2]
