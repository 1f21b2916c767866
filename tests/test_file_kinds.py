"""Files are recognised by their content, not their name: every loader given a file of another
kind says what the file is and which call reads it (pyllm.file_kinds).

The samples carry misleading names on purpose (a GGUF named tokenizer.model, a SentencePiece model
named model.gguf, a llama2.c checkpoint named config.json), so a name-based guess would fail."""
import json
import os
import shutil

import numpy as np
import pytest

import pyllm
from pyllm import checkpoint, file_kinds, llama2c, sentencepiece_model
from pyllm.file_kinds import (CONFIG_JSON, DIRECTORY, GGUF, LLAMA2C_CHECKPOINT, LLAMA2C_TOKENIZER, SAFETENSORS,
                              SENTENCEPIECE, TOKENIZER_JSON)
from tokenizer_json_builders import train_byte_level


@pytest.fixture(scope="module")
def samples(data_dir, tmp_path_factory):
    """{kind: path} of one file of every kind, named as another kind would be."""
    tmp = tmp_path_factory.mktemp("kinds")
    out = {}

    def copy(kind, source, name):
        out[kind] = str(tmp / name)
        shutil.copy(os.path.join(data_dir, source), out[kind])

    copy(GGUF, "stories260K/stories260K.gguf", "tokenizer.model")
    copy(SENTENCEPIECE, "llama/tokenizer.model", "model.gguf")
    copy(LLAMA2C_CHECKPOINT, "stories260K/stories260K.bin", "config.json")
    copy(LLAMA2C_TOKENIZER, "stories260K/tok512.bin", "tokenizer.json")
    out[SAFETENSORS] = str(tmp / "tok512.bin")
    checkpoint.save_safetensors(out[SAFETENSORS], {"w": np.ones((4, 4), np.float32)})
    out[TOKENIZER_JSON] = str(tmp / "vocab.safetensors")
    train_byte_level("bloom", out[TOKENIZER_JSON], vocab_size=300)
    out[CONFIG_JSON] = str(tmp / "stories.bin")
    with open(out[CONFIG_JSON], "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64}, f)
    out[DIRECTORY] = str(tmp / "a-directory")
    os.mkdir(out[DIRECTORY])
    return out


def test_sniff_tells_every_kind_by_content(samples):
    for kind, path in samples.items():
        assert file_kinds.sniff(path) == kind, path


# loader name -> (call on a path, the kinds it reads)
LOADERS = {
    "Tokenizer.from_file": (pyllm.Tokenizer.from_file, {GGUF, TOKENIZER_JSON, SENTENCEPIECE}),
    "Tokenizer.from_llama2c": (lambda p: pyllm.Tokenizer.from_llama2c(p, 512), {LLAMA2C_TOKENIZER}),
    "Tokenizer.from_gguf": (pyllm.Tokenizer.from_gguf, {GGUF}),
    "Tokenizer.from_pretrained": (pyllm.Tokenizer.from_pretrained, {GGUF}),
    "Model.from_pretrained": (pyllm.Model.from_pretrained, {GGUF, LLAMA2C_CHECKPOINT}),
    "Model.from_gguf": (pyllm.Model.from_gguf, {GGUF}),
    "sentencepiece_model.read_vocabulary": (sentencepiece_model.read_vocabulary, {SENTENCEPIECE}),
    "llama2c.load_llama2c": (llama2c.load_llama2c, {LLAMA2C_CHECKPOINT}),
    "checkpoint.load_safetensors": (checkpoint.load_safetensors, {SAFETENSORS}),
}
KINDS = [GGUF, SAFETENSORS, TOKENIZER_JSON, CONFIG_JSON, SENTENCEPIECE, LLAMA2C_CHECKPOINT, LLAMA2C_TOKENIZER,
         DIRECTORY]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("loader", list(LOADERS))
def test_every_loader_names_the_kind_it_was_given(samples, loader, kind):
    call, accepted = LOADERS[loader]
    path = samples[kind]
    if kind in accepted:
        assert call(path) is not None  # read as what it is, whatever its name
        return
    if loader == "Tokenizer.from_pretrained" and kind == DIRECTORY:
        with pytest.raises(FileNotFoundError, match="no tokenizer.json or tokenizer.model"):
            call(path)  # a directory is what it reads: this one holds no tokenizer
        return
    if loader == "Model.from_pretrained" and kind == DIRECTORY:
        with pytest.raises(FileNotFoundError, match="config.json not found"):
            call(path)
        return
    what, reader = file_kinds.describe(kind)
    with pytest.raises(ValueError) as info:
        call(path)
    message = str(info.value)
    assert message.startswith(f"{path} is {what}, not ") and message.endswith(f"; load it with {reader}")
    assert type(info.value) is ValueError  # the class every loader raises for bad content


def test_files_inside_a_model_directory_are_checked_too(samples, tmp_path):
    """A directory whose tokenizer.model is a GGUF, whose model.safetensors is a llama2.c checkpoint."""
    shutil.copy(samples[GGUF], tmp_path / "tokenizer.model")
    with pytest.raises(ValueError, match=r"tokenizer.model is a GGUF file, not a SentencePiece model; "
                                                       r"load it with Tokenizer.from_gguf"):
        pyllm.Tokenizer.from_pretrained(tmp_path)
    os.remove(tmp_path / "tokenizer.model")
    shutil.copy(samples[SENTENCEPIECE], tmp_path / "tokenizer.json")
    with pytest.raises(ValueError, match=r"tokenizer.json is a SentencePiece model \(tokenizer.model\), "
                                                       r"not a Hugging Face tokenizer.json"):
        pyllm.Tokenizer.from_pretrained(tmp_path)
    config, _ = llama2c.load_llama2c(samples[LLAMA2C_CHECKPOINT])
    with open(tmp_path / "config.json", "w") as f:
        json.dump(config, f)
    shutil.copy(samples[LLAMA2C_CHECKPOINT], tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"model.safetensors is a llama2.c checkpoint, not a safetensors "
                                                       r"file; load it with Model.from_pretrained\(path\)"):
        pyllm.Model.from_pretrained(tmp_path)


def test_llama2c_checkpoint_loads_as_its_converted_directory(samples, tmp_path):
    """Model.from_pretrained reads a llama2.c checkpoint (the call the messages name for it)."""
    directory = llama2c.convert_llama2c(samples[LLAMA2C_CHECKPOINT], tmp_path / "hf")
    ids = [1, 403, 260, 29, 511]
    a = pyllm.Model.from_pretrained(samples[LLAMA2C_CHECKPOINT])(ids)
    b = pyllm.Model.from_pretrained(directory)(ids)
    assert np.array_equal(a, b)


def test_damaged_files_keep_their_loaders_own_messages(tmp_path):
    """What file_kinds cannot tell is left to the loader's parser, which says what is wrong."""
    truncated = tmp_path / "model.gguf"
    truncated.write_bytes(b"GGUF\x03\x00")
    with pytest.raises(ValueError, match="model.gguf"):
        pyllm.Model.from_gguf(truncated)
    garbage = tmp_path / "tokenizer.model"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="not a usable SentencePiece model"):
        pyllm.Tokenizer.from_file(garbage)
    empty = tmp_path / "weights.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="too short"):
        checkpoint.load_safetensors(empty)
