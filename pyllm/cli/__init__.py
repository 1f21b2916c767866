"""The ``pyllm`` command (also ``python -m pyllm``): generate, chat, tokenize, perplexity, bench,
info and convert.

Errors end the command with one line on stderr, ``pyllm COMMAND: error: MESSAGE``, and an exit
code a script can test (``PYLLM_TRACEBACK=1`` shows the traceback instead):

====  ==============================================================================
0     success
1     an unexpected internal error (a bug: please report it with PYLLM_TRACEBACK=1)
2     a usage error: unknown command or option, a bad option value (argparse's code)
3     not found: the model path, an input file, or no model given and no default model
4     refused input: a file or value pyllm cannot use (bad or unsupported model, bad GGUF,
      a prompt longer than the context, an option the model refuses, an existing output)
5     a missing optional dependency (``convert`` needs ``pip install "pyllm[convert]"``)
6     out of memory: the model does not fit (pyllm checks before allocating)
130   interrupted (Ctrl-C)
====  ==============================================================================
"""
import os
import sys

from ..convert import MissingDependency
from .parser import build_parser

__all__ = ["main", "EXIT_CODES"]

OK, INTERNAL, USAGE, NOT_FOUND, REFUSED, MISSING_DEPENDENCY, OUT_OF_MEMORY, INTERRUPTED = 0, 1, 2, 3, 4, 5, 6, 130
EXIT_CODES = {"ok": OK, "internal": INTERNAL, "usage": USAGE, "not_found": NOT_FOUND, "refused": REFUSED,
              "missing_dependency": MISSING_DEPENDENCY, "out_of_memory": OUT_OF_MEMORY, "interrupted": INTERRUPTED}


def _exit_code(error):
    """The exit code of an exception that ended a command (order matters: subclasses first)."""
    if isinstance(error, MissingDependency):
        return MISSING_DEPENDENCY
    if isinstance(error, (FileNotFoundError, NotADirectoryError)):
        return NOT_FOUND
    if isinstance(error, MemoryError):
        return OUT_OF_MEMORY
    if isinstance(error, (ValueError, TypeError, OSError)):  # GGUFError, UnicodeDecodeError are ValueErrors
        return REFUSED
    return INTERNAL


def _one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.strerror}: {error.filename}"  # OSError's own str() is "[Errno 2] ..."
    return text if _exit_code(error) != INTERNAL else f"internal error ({type(error).__name__}): {text}"


def main(argv=None):
    """Run one command; returns its exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors exit with 2 here, one line on stderr
    if args.command is None:
        parser.print_help(sys.stderr)
        return USAGE
    try:
        args.run(args)
        sys.stdout.flush()
        return OK
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`pyllm generate ... | head`): not an error of ours; keep the
        # interpreter from complaining about flushing the closed stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK
    except Exception as error:  # noqa: BLE001 - every error becomes one line and a code
        if os.environ.get("PYLLM_TRACEBACK") == "1":
            raise
        sys.stdout.flush()
        sys.stderr.write(f"pyllm {args.command}: error: {_one_line(error)}\n")
        return _exit_code(error)
