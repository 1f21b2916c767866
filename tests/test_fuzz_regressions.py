"""Inputs the fuzz harnesses (fuzz/) found failing, each pinned with the answer it must give."""
from pyllm import _testing


def test_regex_backtracks_over_malformed_bytes_one_at_a_time():
    # A greedy repetition over bytes read one at a time (malformed UTF-8, U+FFFD each) stepped
    # back by counting continuation bytes: three at a time, past the \x80 that [^a] matches here,
    # and before the subject's start when the repetition began at 0 (a read out of bounds).
    assert _testing.regex_find_all(b".+[^a]", b"xa\x80\x80") == [(0, 4)]
    assert _testing.regex_find_all(b".+[^a]", b"a\x80\x80") == [(0, 3)]
    assert _testing.regex_find_all(b"\\S+b", b"\xaf\xaf\xafb\xb7") == [(0, 4)]
    # well-formed characters still step back whole
    assert _testing.regex_find_all(".+é".encode(), "aéé€".encode()) == [(0, 5)]
