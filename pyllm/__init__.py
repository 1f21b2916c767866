"""pyllm: CPU inference for LLaMA- and BLOOM-family language models.

The C core (pyllm._core) runs tokenizers, transformer layers and the generation loop on
oneDNN; this package is its Python face.
"""
from ._loader import load_onednn as _load_onednn

_load_onednn()

from . import _core  # noqa: E402
from .generation import GenerateOutput, GenerationConfig  # noqa: E402
from .model import Model  # noqa: E402
from .interventions import Intervention  # noqa: E402
from .tokenizer import AddedToken, Tokenizer  # noqa: E402
from . import scoring  # noqa: E402  (pyllm.scoring.perplexity and friends)
from . import templates  # noqa: E402  (chat formats: pyllm.templates.ALPACA, VICUNA)
from .llm import LLM  # noqa: E402
from .prefix_cache import PrefixCache  # noqa: E402
from .default_model import default_model_path  # noqa: E402

__version__ = "0.1.0"


def onednn_version() -> str:
    """The version of the oneDNN library in use, e.g. ``"3.2.0"``."""
    return _core.onednn_version()


__all__ = ["__version__", "onednn_version", "default_model_path", "LLM", "Model", "Tokenizer", "AddedToken",
           "GenerationConfig", "GenerateOutput", "Intervention", "PrefixCache"]
