"""Tokenizer.from_llama2c: llama2.c's tokenizer.bin / tok512.bin give the same tokenizer as the
SentencePiece model they were exported from, and reproduce run.c's prompt tokens."""
import json
import os
import struct

import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

import pyllm
from tokenizer_strings import generated_strings


def test_tokenizer_bin_equals_tokenizer_model(data_dir):
    from_model = pyllm.Tokenizer.from_file(os.path.join(data_dir, "llama", "tokenizer.model"))
    from_bin = pyllm.Tokenizer.from_llama2c(os.path.join(data_dir, "llama", "tokenizer.bin"), 32000)
    assert from_bin.vocab_size == 32000
    assert (from_bin.bos_token_id, from_bin.eos_token_id, from_bin.pad_token_id) == (1, 2, None)
    for i in range(32000):
        assert from_bin.id_to_token(i) == from_model.id_to_token(i), i
    texts = generated_strings(1500, seed=21)
    assert from_bin.encode_batch(texts) == from_model.encode_batch(texts)
    ids = from_model.encode_batch(texts[:300])
    assert [from_bin.decode(x) for x in ids] == [from_model.decode(x) for x in ids]
    assert [from_bin.decode(x, True) for x in ids] == [from_model.decode(x, True) for x in ids]


def test_tok512_reproduces_run_c_prompt_tokens(data_dir):
    tok = pyllm.Tokenizer.from_llama2c(os.path.join(data_dir, "stories260K", "tok512.bin"), 512)
    with open(os.path.join(data_dir, "stories260K", "run_c_reference_outputs.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    assert len(cases) == 5
    for case in cases:
        assert tok.encode(case["prompt"]) == case["prompt_tokens"], case["prompt"]


def test_tok512_round_trips_the_reference_story(data_dir):
    tok = pyllm.Tokenizer.from_llama2c(os.path.join(data_dir, "stories260K", "tok512.bin"), 512)
    with open(os.path.join(data_dir, "stories260K", "expected_greedy_200steps.txt"), encoding="utf-8") as f:
        story = f.read()
    ids = tok.encode(story)
    assert len(ids) < len(story) / 2  # the merges are used
    assert tok.decode(ids, skip_special_tokens=True) == story
    # pieces in SentencePiece form: ' ' became U+2581, BOS/EOS lost their newlines
    assert [tok.id_to_token(i) for i in (0, 1, 2, 3, 258)] == ["<unk>", "<s>", "</s>", "<0x00>", "<0xFF>"]
    assert all(" " not in tok.id_to_token(i) for i in range(512))


def test_tok512_matches_a_sentencepiece_model_built_from_it(data_dir, tmp_path):
    """The same pieces written as a ModelProto and run by sentencepiece give the same ids."""
    tok = pyllm.Tokenizer.from_llama2c(os.path.join(data_dir, "stories260K", "tok512.bin"), 512)
    with open(os.path.join(data_dir, "stories260K", "tok512.bin"), "rb") as f:
        raw = f.read()
    proto = model_pb2.ModelProto()
    pos = 4
    for i in range(512):
        (score,) = struct.unpack_from("<f", raw, pos)
        n = int.from_bytes(raw[pos + 4:pos + 8], "little")
        text = raw[pos + 8:pos + 8 + n].decode("utf-8")
        pos += 8 + n
        piece = proto.pieces.add()
        piece.piece = {"\n<s>\n": "<s>", "\n</s>\n": "</s>"}.get(text, text.replace(" ", "\u2581"))
        piece.score = score
        piece.type = (2 if piece.piece == "<unk>" else 3 if piece.piece in ("<s>", "</s>")
                      else 6 if piece.piece.startswith("<0x") else 1)
    proto.trainer_spec.model_type = model_pb2.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = True
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = False
    path = tmp_path / "tok512.model"
    path.write_bytes(proto.SerializeToString())
    sp = spm.SentencePieceProcessor(model_file=str(path))
    texts = generated_strings(2000, seed=22)
    assert tok.encode_batch(texts, add_special_tokens=False) == sp.encode(texts)


def test_wrong_vocab_size_raises(data_dir):
    path = os.path.join(data_dir, "stories260K", "tok512.bin")
    with pytest.raises(ValueError, match="vocab_size"):
        pyllm.Tokenizer.from_llama2c(path, 32000)
    with pytest.raises(ValueError, match="vocab_size"):
        pyllm.Tokenizer.from_llama2c(path, 100)
    with pytest.raises(ValueError, match="vocab_size"):
        pyllm.Tokenizer.from_llama2c(path, 2**31 - 1)
    with pytest.raises(ValueError, match="positive"):
        pyllm.Tokenizer.from_llama2c(path, 0)
    with pytest.raises(TypeError):
        pyllm.Tokenizer.from_llama2c(path, "512")
    with pytest.raises(FileNotFoundError):
        pyllm.Tokenizer.from_llama2c(path + ".missing", 512)


def test_broken_llama2c_files_raise(isolated, tmp_path, data_dir):
    with open(os.path.join(data_dir, "stories260K", "tok512.bin"), "rb") as f:
        good = f.read()
    cases = {"truncated": good[:3000], "tiny": good[:3], "garbage": bytes(range(256)) * 20}
    for name, data in cases.items():
        p = tmp_path / f"{name}.bin"
        p.write_bytes(data)
        kind, message = isolated(f"""
            import pyllm
            pyllm.Tokenizer.from_llama2c({str(p)!r}, 512)
        """)
        assert kind == "ValueError", (name, kind, message)
