"""Generate csrc/tokenizers/unicode_tables.c: the Unicode data the tokenizer.json pipelines need.

`tokenizers` (0.23.x, the reference) takes its Unicode rules from two places that follow
different Unicode versions, and so do these tables:
  * regex classes of Split patterns (\\p{L}, \\p{N}, \\s, ...) come from the Oniguruma built into
    tokenizers (onig_sys), whose tables are Unicode 16.0.0 (checked code point by code point):
    general category and White_Space;
  * the `Digits` pre-tokenizer (char::is_numeric) and the whitespace of added tokens' lstrip /
    rstrip (char::is_whitespace) come from Rust's standard library, on Unicode 17.0.0 in the Rust
    release that built tokenizers 0.23 (e.g. U+11DE0..U+11DE9 are digits there, unassigned in 16).
  * single_word added tokens test a word boundary with Rust's regex crate, whose word characters
    (Alphabetic, marks, Nd, Pc, Join_Control) are Unicode 16.0.0. Alphabetic needs the
    Other_Alphabetic property, which unicodedata2 lacks: it is read from the `regex` package
    (\p{Other_Alphabetic}, a newer Unicode) and kept to code points assigned in 16.0.0.
The tests check every code point against `tokenizers` itself.

The data come from the `unicodedata2` package at those two versions, each installed in its own
folder and read in a child interpreter (Python's own unicodedata is older: 14.0.0 on 3.11):

    pip install --target /tmp/ucd16 unicodedata2==16.0.0
    pip install --target /tmp/ucd17 unicodedata2==17.0.0
    python tools/gen_unicode_tables.py /tmp/ucd16 /tmp/ucd17   # rewrites csrc/tokenizers/unicode_tables.c

Per code point 16 bits: Oniguruma's general category (index into CATEGORIES) in bits 0-4,
its White_Space in bit 5, Rust's is_numeric in bit 6, Rust's is_whitespace in bit 7 and the regex
crate's word character in bit 8, in a two-stage table (256-code-point blocks, identical blocks stored once). Case folds for (?i:...)
are the single-character results of str.casefold under Unicode 16.0.0 (unicodedata2 has no
fold table; Python's casefold follows Python's Unicode, and the tests compare (?i) matching
over all code points with tokenizers).
"""
import json
import os
import subprocess
import sys

import regex

ONIGURUMA_UNICODE = "16.0.0"
RUST_UNICODE = "17.0.0"
CATEGORIES = ["Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi",
              "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"]
WHITE_SPACE_BIT, RUST_NUMERIC_BIT, RUST_WHITE_SPACE_BIT, RUST_WORD_BIT = 0x20, 0x40, 0x80, 0x100
JOIN_CONTROL = (0x200C, 0x200D)
BLOCK = 256

# Run in a child interpreter whose path holds one unicodedata2 version: prints its version and
# the general category of every code point.
_READER = """
import json, sys, unicodedata2
print(json.dumps([unicodedata2.unidata_version, [unicodedata2.category(chr(c)) for c in range(0x110000)]]))
"""


def categories(folder, expected):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(folder))
    out = subprocess.run([sys.executable, "-c", _READER], env=env, capture_output=True, text=True, check=True)
    version, cats = json.loads(out.stdout)
    if version != expected:
        sys.exit(f"{folder} holds unicodedata2 for Unicode {version}; Unicode {expected} is needed")
    return cats


def white_space(cp, category):
    # PropList.txt's White_Space: the separators Zs/Zl/Zp plus TAB..CR and NEL.
    return category in ("Zs", "Zl", "Zp") or 0x09 <= cp <= 0x0D or cp == 0x85


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    onig = categories(sys.argv[1], ONIGURUMA_UNICODE)
    rust = categories(sys.argv[2], RUST_UNICODE)
    everything = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    other_alphabetic = {ord(c) for c in regex.findall(r"\p{Other_Alphabetic}", everything)}
    values = []
    for cp in range(0x110000):
        v = CATEGORIES.index(onig[cp])
        if white_space(cp, onig[cp]):
            v |= WHITE_SPACE_BIT
        if rust[cp] in ("Nd", "Nl", "No"):
            v |= RUST_NUMERIC_BIT
        if white_space(cp, rust[cp]):
            v |= RUST_WHITE_SPACE_BIT
        if (onig[cp][0] in "LM" or onig[cp] in ("Nd", "Nl", "Pc") or cp in JOIN_CONTROL or
                (cp in other_alphabetic and onig[cp] != "Cn")):
            v |= RUST_WORD_BIT
        values.append(v)
    blocks, stage1, stage2 = {}, [], []
    for start in range(0, 0x110000, BLOCK):
        block = tuple(values[start:start + BLOCK])
        if block not in blocks:
            blocks[block] = len(blocks)
            stage2.extend(block)
        stage1.append(blocks[block])

    folds = []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF or onig[cp] == "Cn":
            continue
        f = chr(cp).casefold()
        if len(f) == 1 and ord(f) != cp:
            folds.append((cp, ord(f)))

    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "csrc", "tokenizers", "unicode_tables.c")
    with open(out, "w", encoding="utf-8") as f:
        f.write("/* GENERATED by tools/gen_unicode_tables.py -- do not edit.\n"
                f" * Regex classes (general category, White_Space): Unicode {ONIGURUMA_UNICODE}, as the Oniguruma\n"
                " * of tokenizers 0.23. is_numeric / is_whitespace (Digits, added-token lstrip/rstrip):\n"
                f" * Unicode {RUST_UNICODE}, as Rust's std in tokenizers 0.23. Word characters of single_word:\n"
                f" * Unicode {ONIGURUMA_UNICODE}, as Rust's regex crate there. Data: unicodedata2 at those versions,\n"
                " * Other_Alphabetic from the regex package. Case folds: Python str.casefold, single characters. */\n")
        f.write('#include "tokenizers/unicode.h"\n\n')
        f.write(f"const uint16_t pyllm_unicode_stage1[{len(stage1)}] = {{\n")
        for i in range(0, len(stage1), 16):
            f.write("    " + ", ".join(str(v) for v in stage1[i:i + 16]) + ",\n")
        f.write("};\n\n")
        f.write(f"const uint16_t pyllm_unicode_stage2[{len(stage2)}] = {{\n")
        for i in range(0, len(stage2), 32):
            f.write("    " + ",".join(str(v) for v in stage2[i:i + 32]) + ",\n")
        f.write("};\n\n")
        f.write(f"const uint32_t pyllm_unicode_folds[{len(folds)}][2] = {{\n")
        for i in range(0, len(folds), 6):
            f.write("    " + " ".join(f"{{0x{a:X}, 0x{b:X}}}," for a, b in folds[i:i + 6]) + "\n")
        f.write("};\n")
        f.write(f"const size_t pyllm_unicode_n_folds = {len(folds)};\n")
    print(f"wrote {out}: {len(blocks)} blocks, {len(folds)} folds")


if __name__ == "__main__":
    main()
