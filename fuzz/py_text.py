"""atheris: arbitrary bytes through real tokenizers (LLaMA's tokenizer.model, stories260K's
tok512.bin and GGUF vocabulary, GPT-2's byte-level GGUF vocabulary): the bytes as text (UTF-8,
malformed bytes replaced) are encoded, the ids decoded whole and streamed (their concatenation
must equal the whole), and the bytes read as ids (16 bits each, folded into the vocabulary) are
decoded and streamed the same way. The first byte picks the tokenizer (low two bits), whether
encode adds special tokens (bit 2) and whether decoding skips them (bit 3)."""
import os

import py_harness as h
from pyllm import Tokenizer

DATA = h.data_dir()
TOKENIZERS = [
    Tokenizer.from_file(os.path.join(DATA, "llama", "tokenizer.model")),
    Tokenizer.from_llama2c(os.path.join(DATA, "stories260K", "tok512.bin"), 512),
    Tokenizer.from_file(os.path.join(DATA, "llamacpp", "ggml-vocab-gpt-2.gguf")),
    Tokenizer.from_file(os.path.join(DATA, "stories260K", "stories260K.gguf")),
]


def _check_ids(tok, ids, skip):
    whole = tok.decode(ids, skip_special_tokens=skip)
    stream = tok.stream_decoder(skip_special_tokens=skip)
    streamed = "".join(stream.push(i) for i in ids) + stream.flush()
    assert streamed == whole, (ids, streamed, whole)


def test_one_input(data):
    if not data:
        return
    tok = TOKENIZERS[data[0] % len(TOKENIZERS)]
    special, skip = bool(data[0] & 4), bool(data[0] & 8)
    body = data[1:]
    ids = tok.encode(body.decode("utf-8", "replace"), add_special_tokens=special)
    assert all(0 <= i < tok.vocab_size for i in ids)
    _check_ids(tok, ids, skip)
    _check_ids(tok, [int.from_bytes(body[i:i + 2], "little") % tok.vocab_size for i in range(0, len(body) - 1, 2)],
               skip)


if __name__ == "__main__":
    h.main(test_one_input)
