"""Incremental decoding: one id at a time, never a broken character, and the pieces add up to
decode(all ids) -- for tokenizer.json (byte-level and SentencePiece-style) and tokenizer.model."""
import os
import random

import pytest

import pyllm
from tokenizer_json_builders import convert_llama, train_byte_level
from tokenizer_strings import bpe_test_strings


@pytest.fixture(scope="module")
def tokenizers_by_kind(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("stream")
    model = os.path.join(data_dir, "llama", "tokenizer.model")
    return {
        "bloom_json": pyllm.Tokenizer.from_file(train_byte_level("bloom", folder / "bloom.json", vocab_size=1000)),
        "llama_json": pyllm.Tokenizer.from_file(convert_llama(model, str(folder / "llama"))),
        "llama_model": pyllm.Tokenizer.from_file(model),
    }


def _stream(tok, ids, skip):
    dec = tok.stream_decoder(skip_special_tokens=skip)
    pieces = [dec.push(i) for i in ids]
    pieces.append(dec.flush())
    return pieces


def _check(tok, ids, skip):
    pieces = _stream(tok, ids, skip)
    assert "".join(pieces) == tok.decode(ids, skip_special_tokens=skip), ids
    for piece in pieces[:-1]:
        # a piece never ends inside a character: U+FFFD only where decode itself has it
        assert not piece.endswith("\ufffd") or "\ufffd" in tok.decode(ids, skip_special_tokens=skip)
        piece.encode("utf-8")  # no lone surrogates


@pytest.mark.parametrize("kind", ["bloom_json", "llama_json", "llama_model"])
@pytest.mark.parametrize("skip", [False, True])
def test_random_id_sequences(tokenizers_by_kind, kind, skip):
    tok = tokenizers_by_kind[kind]
    rng = random.Random(hash((kind, skip)) & 0xFFFF)
    byte_ids = [i for i in range(tok.vocab_size) if tok._core.token_type(i) == 6]
    specials = [i for i in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) if i is not None]
    for _ in range(300):
        ids = []
        for _ in range(rng.randint(1, 30)):
            r = rng.random()
            if r < 0.3 and byte_ids:
                ids.append(rng.choice(byte_ids))
            elif r < 0.35 and specials:
                ids.append(rng.choice(specials))
            else:
                ids.append(rng.randrange(tok.vocab_size))
        _check(tok, ids, skip)


@pytest.mark.parametrize("kind", ["bloom_json", "llama_json", "llama_model"])
def test_encoded_text_streams_back(tokenizers_by_kind, kind):
    tok = tokenizers_by_kind[kind]
    for text in bpe_test_strings(300, seed=99):
        ids = tok.encode(text)
        pieces = _stream(tok, ids, True)
        assert "".join(pieces) == tok.decode(ids, skip_special_tokens=True)
        # multi-byte characters arrive whole: no piece but the last holds U+FFFD unless the text does
        if "\ufffd" not in text:
            assert all("\ufffd" not in p for p in pieces)


def test_byte_pieces_wait_for_their_character(tokenizers_by_kind):
    tok = tokenizers_by_kind["llama_model"]
    ids = [tok.token_to_id(f"<0x{b:02X}>") for b in "中".encode()]
    dec = tok.stream_decoder()
    assert [dec.push(i) for i in ids] == ["", "", ""]
    assert dec.flush() == "中"
    dec = tok.stream_decoder()
    hello = tok.encode("Hello world", add_special_tokens=False)
    assert "".join(dec.push(i) for i in hello) + dec.flush() == "Hello world"


def test_bad_ids(tokenizers_by_kind):
    dec = tokenizers_by_kind["bloom_json"].stream_decoder()
    with pytest.raises(IndexError):
        dec.push(10 ** 9)
    with pytest.raises(TypeError):
        dec.push("a")


class _CountingCore:
    """A tokenizer core that counts the ids every decode call is given: the stream decoder's work."""

    def __init__(self, core):
        self._core = core
        self.decoded_ids = 0

    def decode(self, ids, skip):
        self.decoded_ids += len(ids)
        return self._core.decode(ids, skip)

    def __getattr__(self, name):
        return getattr(self._core, name)


class _CountingTokenizer:
    def __init__(self, tok):
        self._core = _CountingCore(tok._core)
        self.vocab_size = tok.vocab_size


@pytest.mark.parametrize("skip", [False, True])
def test_stream_work_is_linear_in_held_back_runs(tokenizers_by_kind, skip):
    """Long runs that hold text back (byte pieces, skipped special tokens between them) cost a
    bounded number of decoded ids per push, not a decode of the whole run at every push."""
    from pyllm.tokenizer import StreamDecoder
    tok = tokenizers_by_kind["llama_model"]
    byte_a = tok.token_to_id("<0x41>")
    control = tok.token_to_id("</s>")
    word = tok.encode("Hello", add_special_tokens=False)
    work = {}
    for n in (1000, 4000):
        ids = ([byte_a, control] * n) + word
        counting = _CountingTokenizer(tok)
        dec = StreamDecoder(counting, skip_special_tokens=skip)
        text = "".join(dec.push(i) for i in ids) + dec.flush()
        assert text == tok.decode(ids, skip_special_tokens=skip)
        work[n] = counting._core.decoded_ids
    assert work[4000] <= 4.5 * work[1000], work
