"""``python -m pyllm.lm_eval <lm-eval CLI arguments>``: lm-evaluation-harness's own command line
with the ``pyllm`` backend registered (lm-eval discovers no plugins by itself), e.g.

    python -m pyllm.lm_eval run --model pyllm --model_args pretrained=DIR,n_threads=2 --tasks hellaswag
"""
import pyllm.lm_eval  # noqa: F401  (registers the backend)
from lm_eval.__main__ import cli_evaluate

if __name__ == "__main__":
    cli_evaluate()
