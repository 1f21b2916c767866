"""Load and encode time of a BLOOM-sized tokenizer.json: pyllm's C tokenizer against `tokenizers`
on one thread (RAYON_NUM_THREADS=1), same file, same run, ids checked identical.

    python benchmarks/bench_tokenizer_json.py [--repeat N] [--mb SIZE]

BLOOM's real tokenizer.json cannot be had here, so a synthetic one of 250,680 tokens with BLOOM's
pipeline is built: the 256 byte characters and <unk> <s> </s> <pad>, then merges that make whole
words of a multilingual corpus (every prefix of a word is a token, as BPE training would make
frequent words), then merges of random token pairs until 250,680 tokens. Every merge is valid
(both parts and the result are tokens). The text encoded is generated apart from that corpus, so
some words are whole tokens and others are merged from pieces. Two worst cases follow: 1 MB
without a separator and 1 MB of spaces (each one pre-token of a million symbols).
"""
import argparse
import json
import os
import random
import re
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers starts its thread pool

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from tokenizers import Tokenizer  # noqa: E402

import pyllm  # noqa: E402
from tokenizer_json_builders import BLOOM_PATTERN, BLOOM_SPECIALS  # noqa: E402
from tokenizer_strings import bpe_test_strings, training_corpus  # noqa: E402

N_TOKENS = 250_680
# BLOOM's pre-tokens, close enough to pick training words: a run of word characters with an
# optional leading space, or a run of the separators.
WORD = re.compile(r" ?[^\s.,!?…。，、।۔،()|]+|[\s.,!?…。，、।۔،()|]+")


def byte_chars():
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, extra = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(0x100 + extra))
            extra += 1
    return out


def synthetic_bloom_json(path, seed=0):
    rng = random.Random(seed)
    chars = byte_chars()
    vocab = {t: i for i, t in enumerate(BLOOM_SPECIALS)}
    for c in chars:
        vocab[c] = len(vocab)
    merges = []
    tokens = list(chars)

    def add(a, b):
        merged = a + b
        if merged in vocab or len(vocab) >= N_TOKENS:
            return
        vocab[merged] = len(vocab)
        merges.append([a, b])
        tokens.append(merged)

    corpus = training_corpus(40000, seed=seed + 1) + training_corpus(8000, seed=seed + 2, chinese=True)
    corpus += bpe_test_strings(20000, seed=seed + 3)
    words = []
    for line in corpus:
        for w in WORD.findall(line):
            words.append("".join(chars[b] for b in w.encode("utf-8")))
    rng.shuffle(words)
    for w in words:
        if len(vocab) >= N_TOKENS * 0.8:
            break
        for k in range(2, min(len(w), 12) + 1):
            add(w[:k - 1], w[k - 1])
    while len(vocab) < N_TOKENS:
        a, b = rng.choice(tokens), rng.choice(tokens)
        if len(a) + len(b) <= 16:
            add(a, b)
    spec = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(BLOOM_SPECIALS)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": BLOOM_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    return len(vocab), len(merges)


def best_time(fn, repeat):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mb", type=float, default=1.0, help="megabytes of text to encode")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_tokenizer_json_") as folder:
        run(args, os.path.join(folder, "tokenizer.json"))


def run(args, path):
    n_vocab, n_merges = synthetic_bloom_json(path)
    print(f"synthetic BLOOM tokenizer.json: {n_vocab} tokens, {n_merges} merges, "
          f"{os.path.getsize(path) / 1e6:.1f} MB")

    # loading: alternate the two libraries, best of N
    t_ours, ours = best_time(lambda: pyllm.Tokenizer.from_file(path), args.repeat)
    t_ref, ref = best_time(lambda: Tokenizer.from_file(path), args.repeat)
    print(f"load       pyllm {t_ours:7.3f} s   tokenizers {t_ref:7.3f} s   ratio {t_ref / t_ours:5.2f}x")

    lines = bpe_test_strings(100000, seed=77)
    target = int(args.mb * 1e6)
    text_lines, size = [], 0
    for line in lines * 10:
        text_lines.append(line)
        size += len(line.encode("utf-8"))
        if size >= target:
            break
    text = "\n".join(text_lines)
    print(f"text: {len(text.encode('utf-8')) / 1e6:.2f} MB in {len(text_lines)} lines")

    results = {}
    for name in ("one string", "batch of lines"):
        for lib in ("pyllm", "tokenizers"):
            if name == "one string":
                fn = (lambda: ours.encode(text, add_special_tokens=False)) if lib == "pyllm" else (
                    lambda: ref.encode(text, add_special_tokens=False).ids)
            else:
                fn = (lambda: ours.encode_batch(text_lines, add_special_tokens=False)) if lib == "pyllm" else (
                    lambda: [e.ids for e in ref.encode_batch(text_lines, add_special_tokens=False)])
            results[name, lib] = best_time(fn, args.repeat)
        (t_o, ids_o), (t_r, ids_r) = results[name, "pyllm"], results[name, "tokenizers"]
        assert ids_o == ids_r, f"{name}: ids differ"
        print(f"encode {name:15s} pyllm {t_o:7.3f} s   tokenizers {t_r:7.3f} s   ratio {t_r / t_o:5.2f}x "
              f"(ids identical)")

    # Worst cases for a pre-token splitter and BPE: one huge pre-token (1 MB without a separator,
    # or 1 MB of spaces before a word), run once each.
    rng = random.Random(1)
    worst = {"1 MB, one word": "".join(rng.choice("abcdefghij") for _ in range(1_000_000)),
             "1 MB of spaces": " " * 1_000_000 + "a"}
    for name, sample in worst.items():
        t_o, ids_o = best_time(lambda: ours.encode(sample, add_special_tokens=False), 1)
        t_r, ids_r = best_time(lambda: ref.encode(sample, add_special_tokens=False).ids, 1)
        assert ids_o == ids_r, f"{name}: ids differ"
        print(f"encode {name:15s} pyllm {t_o:7.3f} s   tokenizers {t_r:7.3f} s   ratio {t_r / t_o:5.2f}x "
              f"(ids identical)")


if __name__ == "__main__":
    main()
