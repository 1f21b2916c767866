"""``python -m pyllm.lm_eval <lm-eval CLI arguments>``: lm-evaluation-harness's own command line
with the ``pyllm`` backend registered (lm-eval discovers no plugins by itself), e.g.

    python -m pyllm.lm_eval run --model pyllm --model_args pretrained=DIR,n_threads=2 --tasks hellaswag
"""
import sys

import pyllm.lm_eval  # noqa: F401  (registers the backend)
from lm_eval.__main__ import cli_evaluate

_OTHER_COMMANDS = ("ls", "validate")
_ASKS = ("--device", "--config", "-C")  # the user (or a config file) names the device


def default_device_to_cpu(argv):
    """argv with ``--device cpu`` added to an evaluation run that names no device: lm-eval's CLI
    would otherwise pass its own default, "cuda:0", which the backend would have to warn about
    although the user asked for nothing. A config file (--config) keeps its own say."""
    args = argv[1:]
    if args in ([], ["run"]) or args[0] in _OTHER_COMMANDS or "-h" in args or "--help" in args:
        return argv
    if any(a.split("=")[0] in _ASKS for a in args):
        return argv
    return argv + ["--device", "cpu"]


if __name__ == "__main__":
    sys.argv = default_device_to_cpu(sys.argv)
    cli_evaluate()
