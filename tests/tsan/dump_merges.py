"""Write the description pyllm's Python loader hands the C core for a merges-BPE (byte-level)
tokenizer, so the ThreadSanitizer driver (driver.c, no CPython) can build the same tokenizer:
    python dump_merges.py VOCAB.gguf OUT.txt
The format, one item a line, strings as hex of their UTF-8:
    pyllm-merges N_VOCAB N_MERGES N_STEPS UNK BYTE_FALLBACK FUSE_UNK IGNORE_MERGES
    N_VOCAB lines: token
    N_MERGES lines: left right
    N_STEPS lines: stage kind is_regex a b s1 s2   (an absent string is "-")"""
import sys

import pyllm
from pyllm import _core


def hexed(s):
    if s is None:
        return "-"
    return s.encode("utf-8", "surrogateescape").hex() or "="  # "=" stands for the empty string


def main(source, out):
    seen = {}
    real = _core.hf_bpe_tokenizer

    def record(vocab, merges, steps, unk, byte_fallback, fuse_unk, ignore_merges):
        seen.update(vocab=vocab, merges=merges, steps=steps, flags=(unk, byte_fallback, fuse_unk, ignore_merges))
        return real(vocab, merges, steps, unk, byte_fallback, fuse_unk, ignore_merges)

    _core.hf_bpe_tokenizer = record
    try:
        pyllm.Tokenizer.from_file(source)
    finally:
        _core.hf_bpe_tokenizer = real
    with open(out, "w") as f:
        unk, byte_fallback, fuse_unk, ignore_merges = seen["flags"]
        f.write(f"pyllm-merges {len(seen['vocab'])} {len(seen['merges'])} {len(seen['steps'])} {unk} "
                f"{int(byte_fallback)} {int(fuse_unk)} {int(ignore_merges)}\n")
        for token in seen["vocab"]:
            f.write(hexed(token) + "\n")
        for merge in seen["merges"]:
            left, right = merge.split(" ") if isinstance(merge, str) else merge
            f.write(f"{hexed(left)} {hexed(right)}\n")
        for stage, kind, s1, s2, is_regex, a, b in seen["steps"]:
            f.write(f"{stage} {kind} {int(bool(is_regex))} {a} {b} {hexed(s1)} {hexed(s2)}\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
