"""tokenizer.json files the parity tests train or convert with the real `tokenizers` /
`transformers`: BLOOM's pipeline, GPT-2's, LLaMA-3's (with ignore_merges), and the LLaMA file
transformers writes for the shared tokenizer.model."""
import json
import os

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from tokenizer_strings import generated_strings, training_corpus

BLOOM_PATTERN = r" ?[^(\s|[.,!?…。，、।۔،])]+"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
BLOOM_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


def _corpus():
    return (training_corpus(3000, seed=11) + training_corpus(500, seed=12, chinese=True) +
            generated_strings(500, seed=13))


def train_byte_level(kind, path, vocab_size=3000):
    """Train a byte-level BPE with the pipeline of `kind` ('bloom', 'gpt2' or 'llama3') and save it."""
    tok = Tokenizer(models.BPE(ignore_merges=kind == "llama3"))
    if kind == "bloom":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(BLOOM_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        specials = BLOOM_SPECIALS
    elif kind == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        specials = ["<|endoftext|>"]
    elif kind == "llama3":
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        specials = ["<|begin_of_text|>", "<|end_of_text|>"]
    else:
        raise ValueError(kind)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    if kind == "llama3":
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                           special_tokens=[("<|begin_of_text|>", bos)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(str(path))
    return str(path)


def convert_llama(model_path, directory):
    """The tokenizer.json transformers writes for a SentencePiece tokenizer.model (LLaMA)."""
    from transformers import AutoTokenizer
    src = os.path.join(directory, "src")
    os.makedirs(src, exist_ok=True)
    with open(model_path, "rb") as f, open(os.path.join(src, "tokenizer.model"), "wb") as g:
        g.write(f.read())
    with open(os.path.join(src, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer"}, f)
    out = os.path.join(directory, "converted")
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return os.path.join(out, "tokenizer.json")
