"""A Hugging Face directory's vocabulary as GGUF tokenizer metadata, as llama.cpp reads it:

- ``tokenizer.model`` (SentencePiece) -> ``tokenizer.ggml.model = "llama"``: pieces, scores and
  types as they are, the dummy-prefix and whitespace flags of its normalizer;
- else a byte-level BPE ``tokenizer.json`` -> ``"gpt2"``: tokens by id, merges, types (special
  added tokens CONTROL, other added tokens USER_DEFINED) and ``tokenizer.ggml.pre``, the name
  llama.cpp gives the pre-tokenizer, found by comparing the file's split regexes with the
  regexes each name stands for (pyllm.tokenizer_gguf.PRE_TOKENIZERS); no match is an error,
  never a guess.

Special ids, add_bos/add_eos and the chat template come from pyllm's own reading of the
directory (pyllm.Tokenizer.from_pretrained), so the file behaves as the directory does.
"""
import json
import os

from .sentencepiece_model import CONTROL, NORMAL, UNUSED, USER_DEFINED, read_vocabulary
from .tokenizer import Tokenizer
from .tokenizer_gguf import PRE_TOKENIZERS

__all__ = ["add_vocabulary", "pre_tokenizer_name"]


def _pad(tokens, scores, types, vocab_size, source):
    """Embedding rows past the vocabulary get placeholder tokens, as llama.cpp pads them."""
    if len(tokens) > vocab_size:
        raise ValueError(f"{source} has {len(tokens)} tokens, more than the model's vocab_size {vocab_size}")
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]")
        scores.append(-1000.0)
        types.append(UNUSED)


def _split_regexes(pre, path):
    """The regexes a tokenizer.json pre_tokenizer splits with, in order (ByteLevel's own regex is
    GPT-2's); ValueError for steps that are not regex splits."""
    kind = (pre or {}).get("type")
    if kind == "Sequence":
        return [r for step in pre.get("pretokenizers", []) for r in _split_regexes(step, path)]
    if kind == "ByteLevel":
        return list(PRE_TOKENIZERS["gpt-2"][0]) if pre.get("use_regex", True) else []
    if kind == "Split" and pre.get("behavior") == "Isolated" and not pre.get("invert"):
        pattern = pre.get("pattern", {})
        if "Regex" in pattern:
            return [pattern["Regex"]]
    if kind == "Digits":
        return [r"\p{N}" if pre.get("individual_digits") else r"\p{N}+"]
    raise ValueError(f"{path}: its pre_tokenizer step {json.dumps(pre)[:200]} has no llama.cpp equivalent")


def pre_tokenizer_name(pre, path):
    """tokenizer.ggml.pre for a tokenizer.json pre_tokenizer: the first name whose regexes equal its."""
    regexes = _split_regexes(pre, path)
    for name, (known, _) in PRE_TOKENIZERS.items():
        if list(known) == regexes:
            return name
    raise ValueError(f"{path}: no tokenizer.ggml.pre name splits with the regexes {regexes}: "
                     f"llama.cpp could not tokenize this vocabulary as written")


def _sentencepiece(writer, path, vocab_size):
    vocab = read_vocabulary(path)
    tokens, scores, types = vocab["pieces"], vocab["scores"], vocab["types"]
    _pad(tokens, scores, types, vocab_size, path)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_add_space_prefix(vocab["add_dummy_prefix"])
    writer.add_remove_extra_whitespaces(vocab["remove_extra_whitespaces"])


def _byte_level(writer, path, vocab_size):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    model = data.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ValueError(f"{path}: convert writes BPE vocabularies; this model is {model.get('type')!r}")
    if not any(d.get("type") == "ByteLevel" for d in [data.get("decoder") or {}] +
               (data.get("decoder") or {}).get("decoders", [])):
        raise ValueError(f"{path}: not a byte-level BPE (no ByteLevel decoder); SentencePiece-style "
                         f"tokenizer.json files need their tokenizer.model")
    by_id = {int(i): t for t, i in model["vocab"].items()}
    kinds = {}
    for added in data.get("added_tokens") or []:
        by_id[int(added["id"])] = added["content"]
        kinds[int(added["id"])] = CONTROL if added.get("special") else USER_DEFINED
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError(f"{path}: token ids are not 0..{len(by_id) - 1} without gaps")
    tokens = [by_id[i] for i in range(len(by_id))]
    types = [kinds.get(i, NORMAL) for i in range(len(by_id))]
    scores = [0.0] * len(tokens)
    _pad(tokens, scores, types, vocab_size, path)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(data.get("pre_tokenizer"), path))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)


def add_vocabulary(writer, model_dir, vocab_size):
    """Add tokenizer.ggml.* and tokenizer.chat_template of model_dir to a gguf.GGUFWriter."""
    spm, hf = os.path.join(model_dir, "tokenizer.model"), os.path.join(model_dir, "tokenizer.json")
    if os.path.exists(spm):
        _sentencepiece(writer, spm, vocab_size)
    elif os.path.exists(hf):
        _byte_level(writer, hf, vocab_size)
    else:
        raise ValueError(f"{model_dir} has no tokenizer.model or tokenizer.json: a GGUF file needs the vocabulary")
    tok = Tokenizer.from_pretrained(model_dir)
    # What encode adds, however the directory says it (tokenizer_config.json or a post-processor
    # such as Llama-3's, whose BOS tokenizer_config.json may not name): one token before, one after.
    plain, full = tok.encode("a", add_special_tokens=False), tok.encode("a")
    start = full.index(plain[0]) if plain and plain[0] in full else 0
    added_bos = full[0] if start == 1 else None
    added_eos = full[-1] if len(full) - start - len(plain) == 1 else None
    bos = added_bos if added_bos is not None else tok.bos_token_id
    eos = tok.eos_token_id if tok.eos_token_id is not None else added_eos
    for value, add in ((bos, writer.add_bos_token_id), (eos, writer.add_eos_token_id),
                       (tok.unk_token_id, writer.add_unk_token_id), (tok.pad_token_id, writer.add_pad_token_id)):
        if value is not None:
            add(int(value))
    writer.add_add_bos_token(added_bos is not None)
    writer.add_add_eos_token(added_eos is not None)
    if tok.chat_template:
        writer.add_chat_template(tok.chat_template)
