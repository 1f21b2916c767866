"""Encode time of 1 MB of text: pyllm's C tokenizer against sentencepiece, same model, same run.

    python benchmarks/bench_tokenizer.py [path/to/tokenizer.model] [--repeat N]

The text mixes English prose-like words with CJK, Cyrillic, emoji, digits and whitespace runs
(the generator of the tests). Runs alternate between the two libraries and the best of N is
reported, with the ratio; the ids are checked to be identical. Also shows that the cost grows
linearly: 0.25, 0.5 and 1 MB, and the worst case for pyllm, 1 MB without a single space
(one word: no word-by-word split, one priority queue over the whole text, still O(n log n)).
"""
import argparse
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import sentencepiece as spm  # noqa: E402

import pyllm  # noqa: E402
from tokenizer_strings import generated_strings  # noqa: E402

DEFAULT_MODEL = os.path.join(HERE, "..", "..", "shared", "data", "llama", "tokenizer.model")


def text_of_bytes(n_bytes):
    base = " ".join(generated_strings(4000, seed=123))
    text = base
    while len(text.encode("utf-8")) < n_bytes:
        text += " " + base
    data = text.encode("utf-8")[:n_bytes]
    return data.decode("utf-8", errors="ignore")


def best_time(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    tok = pyllm.Tokenizer.from_file(args.model)
    sp = spm.SentencePieceProcessor(model_file=args.model)
    print(f"model: {os.path.abspath(args.model)} ({tok.vocab_size} pieces)")
    rng = random.Random(0)
    one_word = "".join(rng.choice("abcdefghij") for _ in range(1_000_000))
    for size in (250_000, 500_000, 1_000_000, "1 MB, one word"):
        text = one_word if isinstance(size, str) else text_of_bytes(size)
        ours = tok.encode(text, add_special_tokens=False)
        theirs = sp.encode(text)
        if ours != theirs:
            sys.exit(f"ids differ at {size} bytes: the comparison would be meaningless")
        t_pyllm = t_sp = float("inf")
        for _ in range(args.repeat):  # alternate so both see the same machine state
            t_pyllm = min(t_pyllm, best_time(lambda: tok.encode(text, add_special_tokens=False), 1))
            t_sp = min(t_sp, best_time(lambda: sp.encode(text), 1))
        print(f"{len(text.encode('utf-8')) / 1e6:5.2f} MB, {len(ours):7d} tokens: "
              f"pyllm {t_pyllm * 1000:7.1f} ms   sentencepiece {t_sp * 1000:7.1f} ms   "
              f"ratio sentencepiece/pyllm = {t_sp / t_pyllm:4.2f}x")


if __name__ == "__main__":
    main()
