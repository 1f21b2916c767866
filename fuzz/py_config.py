"""atheris: a model directory's config.json and generation_config.json (the input split at its
first NUL byte) read as Model.from_pretrained reads them, up to the model spec and the
generation options (no weights)."""
import os

import py_harness as h
from pyllm import architectures, checkpoint
from pyllm.generation import GenerationConfig

DIRECTORY = os.path.join(h.WORKDIR, "model")
os.makedirs(DIRECTORY, exist_ok=True)


def _load_spec():
    config = checkpoint.load_config(DIRECTORY)
    spec = architectures.spec_from_hf(config)
    generation = checkpoint.load_generation_config(DIRECTORY)
    return spec, GenerationConfig.from_dict(generation)


def test_one_input(data):
    config, _, generation = data.partition(b"\0")
    h.write("model/config.json", config)
    h.write("model/generation_config.json", generation)
    h.expected(_load_spec)


if __name__ == "__main__":
    h.main(test_one_input)
