"""torch_dtype= (transformers' name) as an alias of dtype= in every loader, torch dtypes and names."""
import os

import numpy as np
import pytest
import torch

import pyllm
from pyllm.llama2c import convert_llama2c, load_llama2c

IDS = [1, 403, 260, 29, 511, 7, 88]


@pytest.fixture(scope="module")
def stories(data_dir, tmp_path_factory):
    """(llama2.c checkpoint, the same as a Hugging Face directory, the same as GGUF)."""
    folder = os.path.join(data_dir, "stories260K")
    directory = convert_llama2c(os.path.join(folder, "stories260K.bin"), tmp_path_factory.mktemp("hf"))
    return os.path.join(folder, "stories260K.bin"), directory, os.path.join(folder, "stories260K.gguf")


def _loaders(stories):
    checkpoint, directory, gguf = stories
    config, weights = load_llama2c(checkpoint)
    return {
        "from_arrays": lambda **kw: pyllm.Model.from_arrays(config, weights, **kw),
        "from_pretrained": lambda **kw: pyllm.Model.from_pretrained(directory, **kw),
        "from_gguf": lambda **kw: pyllm.Model.from_gguf(gguf, **kw),
        "LLM": lambda **kw: pyllm.LLM(gguf, **kw).model,
    }


@pytest.mark.parametrize("loader", ["from_arrays", "from_pretrained", "from_gguf", "LLM"])
@pytest.mark.parametrize("value", [torch.bfloat16, "bfloat16"])
def test_torch_dtype_is_dtype(stories, loader, value):
    load = _loaders(stories)[loader]
    model = load(torch_dtype=value)
    reference = load(dtype="bfloat16")
    assert model.dtype == "bfloat16"
    assert np.array_equal(model(IDS), reference(IDS))
    # and a float32 load differs: the alias changed what was loaded
    assert not np.array_equal(load(torch_dtype=torch.float32)(IDS), model(IDS))


@pytest.mark.parametrize("loader", ["from_arrays", "from_pretrained", "from_gguf", "LLM"])
def test_dtype_takes_torch_dtypes_and_auto(stories, loader):
    load = _loaders(stories)[loader]
    assert load(dtype=torch.bfloat16).dtype == "bfloat16"
    assert load(torch_dtype="auto").dtype == "float32"  # the checkpoint's own: float32


@pytest.mark.parametrize("loader", ["from_arrays", "from_pretrained", "from_gguf", "LLM"])
def test_dtype_and_torch_dtype_together_is_a_type_error(stories, loader):
    load = _loaders(stories)[loader]
    with pytest.raises(TypeError, match=r"dtype='float32' and torch_dtype=torch.bfloat16.*one of them"):
        load(dtype="float32", torch_dtype=torch.bfloat16)


@pytest.mark.parametrize("value", [torch.float16, torch.int8, "half", 3])
def test_bad_torch_dtype_names_the_argument_and_the_accepted_values(stories, value):
    load = _loaders(stories)["from_pretrained"]
    with pytest.raises(ValueError, match=r"torch_dtype must be one of float32, bfloat16, int8.*torch.bfloat16, got"):
        load(torch_dtype=value)
