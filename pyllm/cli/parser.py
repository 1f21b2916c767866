"""The command line's grammar: one subparser per command, the options they share, and usage
errors as one line."""
import argparse
import sys

from ..convert import TYPES
from ..dtypes import DTYPES

MODEL_HELP = ("a model directory (Hugging Face: config.json + safetensors) or a .gguf file; "
              "default: the default model (pyllm.default_model_path()) when installed")


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """A usage error: one line naming the command and where its help is, exit code 2."""
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_model(p, dtype=True):
    p.add_argument("-m", "--model", metavar="PATH", help=MODEL_HELP)
    if dtype:
        p.add_argument("--dtype", default="float32", choices=sorted(DTYPES) + ["auto"],
                       help="weight type the model runs in (default: float32)")
        p.add_argument("-t", "--threads", type=_positive, metavar="N", help="threads (default: all cores)")
        p.add_argument("--n-ctx", type=_positive, metavar="N", help="context capacity (default: the model's)")


def _add_sampling(p):
    g = p.add_argument_group("generation (Hugging Face names; unset: the model's generation_config.json)")
    g.add_argument("-n", "--max-new-tokens", type=_positive, metavar="N", help="tokens to generate at most")
    g.add_argument("--do-sample", action="store_true", default=None, help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, metavar="T")
    g.add_argument("--top-k", type=int, metavar="K")
    g.add_argument("--top-p", type=float, metavar="P")
    g.add_argument("--min-p", type=float, metavar="P")
    g.add_argument("--repetition-penalty", type=float, metavar="R")
    g.add_argument("--seed", type=int, metavar="S", help="seed of the sampler")
    g.add_argument("--stop", action="append", metavar="TEXT", help="stop before this text (repeatable)")


def build_parser():
    from . import bench, commands, info  # the commands import numpy-heavy modules: only when parsing

    parser = Parser(prog="pyllm", description="CPU inference for LLaMA- and BLOOM-family models. "
                    "Exit codes: 0 ok, 1 internal error, 2 usage, 3 not found, 4 refused input, "
                    "5 missing optional dependency, 6 out of memory, 130 interrupted.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("generate", help="continue a prompt, streaming the new text to stdout",
                       description="Continue PROMPT (or stdin, without its final newline) and stream the new text.")
    p.add_argument("prompt", nargs="?", help="the prompt; '-' or absent: read stdin")
    _add_model(p)
    _add_sampling(p)
    p.set_defaults(run=commands.generate)

    p = sub.add_parser("chat", help="an interactive chat through the model's chat template",
                       description="Chat with the model: each line of stdin is one user message; each reply "
                                   "streams to stdout on its own line. End with EOF (Ctrl-D) or /exit. "
                                   "Works through a pipe as well as on a terminal.")
    _add_model(p)
    p.add_argument("--system", metavar="TEXT", help="a system message first")
    p.add_argument("--template", metavar="NAME|FILE",
                   help="chat template: 'alpaca', 'vicuna' or a Jinja file (default: the model's own)")
    _add_sampling(p)
    p.set_defaults(run=commands.chat)

    p = sub.add_parser("tokenize", help="print the token ids of a text",
                       description="Print the ids of TEXT (or stdin, without its final newline), space-separated.")
    p.add_argument("text", nargs="?", help="the text; '-' or absent: read stdin")
    _add_model(p, dtype=False)
    p.add_argument("--no-special", action="store_true", help="do not add BOS/EOS as the model would")
    p.add_argument("--pieces", action="store_true", help="one token a line: id, tab, piece")
    p.set_defaults(run=commands.tokenize)

    p = sub.add_parser("perplexity", help="perplexity of the model on a text file",
                       description="Token-level perplexity of FILE as one text (lm-evaluation-harness's rolling "
                                   "windows from BOS).")
    p.add_argument("file", help="a UTF-8 text file; '-': stdin")
    _add_model(p)
    p.add_argument("--max-length", type=_positive, metavar="N", help="window length (default: the context)")
    p.add_argument("--batch-size", type=_positive, default=8, metavar="N")
    p.set_defaults(run=commands.perplexity)

    p = sub.add_parser("bench", help="tokens/s of prefill and decode on this machine",
                       description="Time prefill (the prompt in one pass) and decode (one token a step, greedy) "
                                   "on a random prompt; prints the median of the repeats.")
    _add_model(p)
    p.add_argument("-p", "--prompt-tokens", type=_positive, default=128, metavar="N")
    p.add_argument("-n", "--new-tokens", type=_positive, default=32, metavar="N")
    p.add_argument("-r", "--repeats", type=_positive, default=3, metavar="N")
    p.set_defaults(run=bench.run)

    p = sub.add_parser("info", help="the model's architecture, size and context; oneDNN and the CPU kernels",
                       description="Describe the runtime (pyllm, oneDNN, kernels for this CPU, OpenMP) and, "
                                   "given one, a model (read from its files, weights not loaded).")
    p.add_argument("-m", "--model", metavar="PATH", help=MODEL_HELP + "; none: the runtime only")
    p.set_defaults(run=info.run)

    p = sub.add_parser("convert", help="write a Hugging Face LLaMA directory as a GGUF file",
                       description="Convert a Hugging Face LLaMA directory (tokenizer.model or a byte-level "
                                   "tokenizer.json) to GGUF, "
                                   "readable by pyllm and llama.cpp. Needs: pip install \"pyllm[convert]\".")
    p.add_argument("model_dir", help="the Hugging Face model directory")
    p.add_argument("output", help="the .gguf file to write")
    p.add_argument("--type", default="Q8_0", type=str.upper, choices=list(TYPES),
                   help="type of the weight matrices (default: Q8_0); norms stay F32")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(run=commands.convert)
    return parser
