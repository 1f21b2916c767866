"""Generated test strings and training corpora for the tokenizer parity tests.

Each string mixes fragments drawn from many scripts and edge cases (CJK, Cyrillic, Arabic,
Devanagari, Hangul, emoji and ZWJ sequences, combining marks, full-width forms, control
characters, whitespace runs, digits, very long words, random code points), so one string
crosses several normalizer and byte-fallback paths at once. Everything is seeded.
"""
import random

_ASCII_WORDS = ("the quick brown fox jumps over lazy dog hello world tokenizer piece merge "
                "score byte fallback llama model running wasn't can't I'm they'll we've "
                "HTTP URL https://example.com/path?q=1&r=2 foo_bar camelCase C++ e-mail").split()
_PUNCT = list(".,;:!?'\"()[]{}<>@#$%^&*-_=+/\\|~`")
_CJK_COMMON = "的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出而要于就下得可你年生自会那后能对着事其里所去行过家十用发天如然作方成者多日都三小军二无同么经法当起与好看学进种将还分此心前面又定见只主没公从"
_CYRILLIC = "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"
_ARABIC = "ابتثجحخدذرزسشصضطظعغفقكلمنهوي" + "\u064b\u064e\u064f\u0650\u0651\u0652"
_DEVANAGARI = "कखगघङचछजझञटठडढणतथदधनपफबभमयरलवशषसह" + "\u093e\u093f\u0940\u0941\u0942\u0947\u0948\u094b\u094c\u094d\u0902\u0903"
_HANGUL = "가나다라마바사아자차카타파하한국어안녕하세요"
_EMOJI = ["🦙", "😀", "👍🏽", "🇫🇷", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "❤️", "🤖", "🎉", "👩🏾\u200d💻", "☕", "1️⃣"]
_COMBINING = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "\u0301", "i\u0307\u0301", "A\u030a", "c\u0327"]
_FULLWIDTH = [chr(c) for c in range(0xFF01, 0xFF5F)] + ["\u3000", "\uff61", "\uff65", "\uffe5"]
_COMPAT = ["ﬁ", "ﬂ", "№", "™", "½", "²", "ℌ", "Ⅻ", "㎏", "㍿", "ｶﾞ", "ﾊﾟ", "…", "\u00a0", "\u2002", "\u2009",
           "\u200b", "\u200d", "\ufeff", "\u00ad", "Å", "Ω", "ǅ", "\ufffd"]
_CONTROL = [chr(c) for c in range(0, 32)] + ["\x7f", "\u0085", "\u2028", "\u2029", "\u200e"]
_SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \t ", "\t\t", "      ", " \n "]


def _random_code_point(rng):
    while True:
        c = rng.choice((rng.randint(0x20, 0x2FF), rng.randint(0x300, 0xFFFF), rng.randint(0x10000, 0x10FFFF)))
        if not 0xD800 <= c <= 0xDFFF:
            return chr(c)


def _fragment(rng):
    kind = rng.randrange(17)
    if kind <= 2:
        return " ".join(rng.choice(_ASCII_WORDS) for _ in range(rng.randint(1, 5)))
    if kind == 3:
        return "".join(rng.choice(_CJK_COMMON) for _ in range(rng.randint(1, 8))) + (
            chr(rng.randint(0x4E00, 0x9FFF)) if rng.random() < 0.5 else "")
    if kind == 4:
        return "".join(rng.choice(_CYRILLIC) for _ in range(rng.randint(1, 10)))
    if kind == 5:
        return "".join(rng.choice(_ARABIC) for _ in range(rng.randint(1, 10)))
    if kind == 6:
        return "".join(rng.choice(_DEVANAGARI) for _ in range(rng.randint(1, 10)))
    if kind == 7:
        return "".join(rng.choice(_HANGUL) for _ in range(rng.randint(1, 6)))
    if kind == 8:
        return "".join(rng.choice(_EMOJI) for _ in range(rng.randint(1, 4)))
    if kind == 9:
        return "".join(rng.choice(_COMBINING) for _ in range(rng.randint(1, 4)))
    if kind == 10:
        return "".join(rng.choice(_FULLWIDTH) for _ in range(rng.randint(1, 8)))
    if kind == 11:
        return "".join(rng.choice(_COMPAT) for _ in range(rng.randint(1, 4)))
    if kind == 12:
        return "".join(rng.choice(_CONTROL) for _ in range(rng.randint(1, 3)))
    if kind == 13:
        return rng.choice(_SPACES) * rng.randint(1, 3)
    if kind == 14:
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25))) + rng.choice(["", ".5", ",000"])
    if kind == 15:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(30, 300)))
    return "".join(_random_code_point(rng) for _ in range(rng.randint(1, 6))) + rng.choice(_PUNCT)


def generated_strings(n, seed):
    """n strings of 1..8 fragments, joined by nothing, a space or other whitespace."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [_fragment(rng) for _ in range(rng.randint(1, 8))]
        text = parts[0]
        for p in parts[1:]:
            text += rng.choice(["", " ", " ", rng.choice(_SPACES)]) + p
        if rng.random() < 0.15:
            text = rng.choice(_SPACES) + text
        if rng.random() < 0.15:
            text += rng.choice(_SPACES)
        out.append(text)
    return out


def training_corpus(n_lines, seed, chinese=False):
    """Lines to train a small BPE on: mostly words of a few scripts, digits and punctuation."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        if chinese:
            words = ["".join(rng.choice(_CJK_COMMON) for _ in range(rng.randint(1, 4)))
                     for _ in range(rng.randint(3, 12))]
            lines.append(rng.choice(["", "，", "。"]).join(words))
            continue
        words = []
        for _ in range(rng.randint(3, 15)):
            r = rng.random()
            if r < 0.55:
                words.append(rng.choice(_ASCII_WORDS))
            elif r < 0.65:
                words.append("".join(rng.choice(_CYRILLIC[:33]) for _ in range(rng.randint(2, 7))))
            elif r < 0.72:
                words.append("".join(rng.choice(_CJK_COMMON[:40]) for _ in range(rng.randint(1, 3))))
            elif r < 0.8:
                words.append(str(rng.randint(0, 10 ** rng.randint(1, 6))))
            elif r < 0.85:
                words.append("".join(rng.choice(_FULLWIDTH[:40]) for _ in range(rng.randint(1, 3))))
            elif r < 0.9:
                words.append(rng.choice(_COMBINING) + rng.choice(_ASCII_WORDS))
            else:
                words.append(rng.choice(_PUNCT) * rng.randint(1, 3))
        lines.append(" ".join(words))
    return lines


_CODE = ["def main():\n\tpass", "let a = obj.toString();\ntoString();", "for (int i = 0; i < n; ++i) { x[i] |= 1; }",
         "if __name__ == '__main__':\n    sys.exit(run(argv[1:]))", "#include <stdio.h>\n", "SELECT * FROM t WHERE a<>b;",
         "x => x ** 2 // (a|b)", "<div class=\"x\">&amp;</div>", "fn f<'a>(s: &'a str) -> Option<&'a str>",
         "$ echo \"$HOME\" | grep -E '^/r(oo)?t$'", "arr[3:7:-1] @ W.T", "{\"key\": [1, 2.5e-3, null]}"]
# The punctuation BLOOM's split pattern singles out, plus brackets and bars it treats specially.
_SPLIT_PUNCT = list(".,!?…。，、।۔،") + ["(", ")", "|", "(|)", "...", "?!", "।।", "،،"]
_PUNCT_SCRIPTS = ["中文句子", "另一个", "مرحبا بالعالم", "नमस्ते दुनिया", "हिन्दी", "اردو", "word", "123"]


def bpe_test_strings(n, seed):
    """Strings for tokenizer.json parity: the multilingual mix of generated_strings, with code
    and the Chinese / Arabic / Hindi punctuation of BLOOM's split pattern worked in."""
    rng = random.Random(seed)
    base = generated_strings(n, seed)
    out = []
    for text in base:
        r = rng.random()
        if r < 0.25:
            text = rng.choice(_CODE) + rng.choice(["", " ", "\n"]) + text
        elif r < 0.5:
            parts = [rng.choice(_PUNCT_SCRIPTS) + rng.choice(_SPLIT_PUNCT) for _ in range(rng.randint(1, 6))]
            joiner = rng.choice(["", " ", "  ", "\n"])
            text = joiner.join(parts) + rng.choice(["", " "]) + text
        out.append(text)
    return out
