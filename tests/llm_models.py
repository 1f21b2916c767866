"""Small random model directories with a tokenizer, as users' model directories look: a LLaMA over
the shared 32,000-token SentencePiece model, and a BLOOM with a byte-level tokenizer.json trained
here. Each is loaded twice by the tests: as pyllm.LLM and as transformers' model + tokenizer."""
import json
import os
import shutil

from bloom_reference import make_config as bloom_config, reference_model as bloom_model
from llama_reference import make_config as llama_config, reference_model as llama_model
from tokenizer_json_builders import train_byte_level

LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}")

# What transformers used as BLOOM's default chat format: every message's content then EOS.
BLOOM_CHAT_TEMPLATE = "{% for message in messages %}{{ message.content }}{{ eos_token }}{% endfor %}"


def write_llama(directory, data_dir, chat_template=LLAMA2_CHAT_TEMPLATE, n_positions=512):
    config = llama_config(vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=n_positions)
    hf = llama_model(config, seed=7, gain=2.0)
    hf.save_pretrained(directory, safe_serialization=True)
    shutil.copy(os.path.join(data_dir, "llama", "tokenizer.model"), os.path.join(directory, "tokenizer.model"))
    tok_config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
                  "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "legacy": True}
    if chat_template is not None:
        tok_config["chat_template"] = chat_template
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump(tok_config, f)
    return str(directory)


def write_bloom(directory, chat_template=BLOOM_CHAT_TEMPLATE):
    train_byte_level("bloom", os.path.join(directory, "tokenizer.json"), vocab_size=3000)
    config = bloom_config(vocab_size=3000, n_layer=2)
    hf = bloom_model(config, seed=3, gain=3.0, bias_std=0.05)
    hf.save_pretrained(directory, safe_serialization=True)
    tok_config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                  "unk_token": "<unk>", "pad_token": "<pad>"}
    if chat_template is not None:
        tok_config["chat_template"] = chat_template
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump(tok_config, f)
    return str(directory)


def hf_pair(directory):
    """transformers' model and tokenizer of a directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return AutoModelForCausalLM.from_pretrained(directory).eval(), AutoTokenizer.from_pretrained(directory)


def write_model(arch, directory, data_dir):
    """write_llama or write_bloom by name ("llama" / "bloom"), for tests parametrized over both."""
    return write_llama(directory, data_dir) if arch == "llama" else write_bloom(directory)
