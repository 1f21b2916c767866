"""The vocabulary llguidance sees (pyllm.constrained.token_bytes): every token's bytes must equal
what pyllm's own decode makes of that token, for SentencePiece vocabularies (byte fallback pieces,
the ▁ space) and byte-level ones (the GPT-2 byte table), from every file kind pyllm reads.

A token is decoded after an anchor token ("a"), so decoders that strip the text's first space see
none to strip; bytes that are not UTF-8 on their own are checked inside complete characters."""
import pytest

import pyllm
from pyllm import constrained
from tokenizer_json_builders import convert_llama, train_byte_level

_CONTROL, _BYTE = 3, 6

# A lead byte and the continuation bytes that complete a character with it (RFC 3629's table).
_COMPLETIONS = ([(lead, b"\x80") for lead in range(0xC2, 0xE0)] + [(0xE0, b"\xa0\x80")] +
                [(lead, b"\x80\x80") for lead in range(0xE1, 0xF0)] + [(0xF0, b"\x90\x80\x80")] +
                [(lead, b"\x80\x80\x80") for lead in range(0xF1, 0xF5)])


@pytest.fixture(scope="module")
def tokenizers(data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vocab")
    return {
        "sentencepiece tokenizer.model": pyllm.Tokenizer.from_file(f"{data_dir}/llama/tokenizer.model"),
        "llama2.c tok512.bin": pyllm.Tokenizer.from_llama2c(f"{data_dir}/stories260K/tok512.bin", 512),
        "gguf llama (sentencepiece)": pyllm.Tokenizer.from_file(f"{data_dir}/llamacpp/ggml-vocab-llama-spm.gguf"),
        "gguf gpt2 (byte-level)": pyllm.Tokenizer.from_file(f"{data_dir}/llamacpp/ggml-vocab-gpt-2.gguf"),
        "tokenizer.json bloom (byte-level)": pyllm.Tokenizer.from_file(
            train_byte_level("bloom", tmp / "bloom.json", vocab_size=2000)),
        "tokenizer.json llama3 (byte-level)": pyllm.Tokenizer.from_file(
            train_byte_level("llama3", tmp / "llama3.json", vocab_size=2000)),
        "tokenizer.json llama (byte fallback)": pyllm.Tokenizer.from_file(
            convert_llama(f"{data_dir}/llama/tokenizer.model", tmp)),
    }


def _decode_after(tok, anchor, ids):
    """pyllm's decode of ids written after the anchor token, without the anchor's own text."""
    head = tok.decode([anchor])
    text = tok.decode([anchor] + list(ids))
    assert text.startswith(head)
    return text[len(head):]


@pytest.mark.parametrize("name", ["sentencepiece tokenizer.model", "llama2.c tok512.bin",
                                  "gguf llama (sentencepiece)", "gguf gpt2 (byte-level)",
                                  "tokenizer.json bloom (byte-level)", "tokenizer.json llama3 (byte-level)",
                                  "tokenizer.json llama (byte fallback)"])
def test_every_token_is_the_bytes_pyllm_decodes_it_to(tokenizers, name):
    tok = tokenizers[name]
    tokens, specials = constrained.token_bytes(tok)
    assert len(tokens) == tok.vocab_size
    anchor = tok.token_to_id("a")
    assert anchor is not None and tokens[anchor] == b"a"
    byte_piece = {}
    checked = 0
    for token_id, data in enumerate(tokens):
        kind = tok._core.token_type(token_id)
        if token_id in specials:  # never text: llguidance's 0xFF mark, then the piece
            assert data == b"\xff" + tok.id_to_token(token_id).encode() and kind != _BYTE
            continue
        assert kind != _CONTROL, f"control token {token_id} is not special"
        if kind == _BYTE:
            byte_piece[data[0]] = token_id
            assert len(data) == 1 and tok.id_to_token(token_id) == f"<0x{data[0]:02X}>"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            if kind == _BYTE:  # checked below, inside whole characters
                continue
            # byte-level pieces hold parts of characters: both decoders replace what is not UTF-8
            text = data.decode("utf-8", "replace")
        assert _decode_after(tok, anchor, [token_id]) == text, (token_id, tok.id_to_token(token_id), data)
        checked += 1
    high_bytes = sum(1 for b in byte_piece if b >= 0x80)
    assert checked == len(tokens) - len(specials) - high_bytes
    if byte_piece:  # byte fallback: all 256 bytes, the high ones completing characters
        assert sorted(byte_piece) == list(range(256))
        for lead, rest in _COMPLETIONS:
            char = bytes([lead]) + rest
            ids = [byte_piece[b] for b in char]
            assert _decode_after(tok, anchor, ids) == char.decode("utf-8"), char
        for cont in range(0x80, 0xC0):
            char = b"\xc2" + bytes([cont])
            assert _decode_after(tok, anchor, [byte_piece[b] for b in char]) == char.decode("utf-8")


def test_special_tokens_are_marked(tokenizers):
    tok = tokenizers["sentencepiece tokenizer.model"]
    tokens, specials = constrained.token_bytes(tok)
    assert {0, 1, 2} <= set(specials)  # <unk>, <s>, </s>
    assert tokens[2] == b"\xff</s>"
    gpt2 = tokenizers["gguf gpt2 (byte-level)"]
    tokens, specials = constrained.token_bytes(gpt2)
    assert specials == [gpt2.eos_token_id] and tokens[gpt2.eos_token_id] == b"\xff<|endoftext|>"
    assert tokens[gpt2.token_to_id("\u0120the")] == b" the"  # Ġ is the space byte
    assert tokens[gpt2.token_to_id("\u010a")] == b"\n"


def test_llguidance_spells_forced_text_exactly(tokenizers):
    """The encoder llguidance calls for the text a grammar forces gives ids that spell exactly that
    text (a SentencePiece encode would add its dummy-prefix space)."""
    for name in ("sentencepiece tokenizer.model", "gguf gpt2 (byte-level)", "tokenizer.json llama (byte fallback)"):
        tok = tokenizers[name]
        ll = constrained.ll_tokenizer(tok, tok.vocab_size, [tok.eos_token_id])
        for text in ["ab", " ab", "x = 1;\n", "héllo wörld", "日本語", "  two spaces"]:
            ids = ll.tokenize_str(text)
            assert ll.decode_bytes(ids) == text.encode(), (name, text, ids)
