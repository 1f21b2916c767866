"""Chat templates rendered as transformers' apply_chat_template renders them (same tokenizer
config), pyllm.templates' Alpaca / Vicuna formats, llm.chat against transformers' generate on the
rendered prompt, and the tokenizer conveniences (tok(texts, padding=True), batch_decode)."""
import json
import os

import numpy as np
import pytest
import torch

import pyllm
from llm_models import BLOOM_CHAT_TEMPLATE, LLAMA2_CHAT_TEMPLATE, hf_pair, write_bloom, write_llama

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a helpful chatbot."}, {"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": " Four. "}, {"role": "user", "content": "And 3+3? Zürich 東京"}],
    [{"role": "user", "content": "a\n\nb  "}, {"role": "assistant", "content": "c"}, {"role": "user", "content": "d"}],
]

# A template using every global transformers defines, loop controls, tojson and whitespace control.
FEATURES_TEMPLATE = """
{%- set date = strftime_now('%Y') -%}
{% for message in messages %}
    {% if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('bad role') }}{% endif %}
    {% if message['content'] == 'skip' %}{% continue %}{% endif %}
<|{{ message['role'] }}|>
    {{ message['content'] | trim }} {{ message | tojson }}
{% endfor %}
{% if add_generation_prompt %}<|assistant|>{{ date | length }}{% endif %}
"""


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, data_dir):
    return write_llama(tmp_path_factory.mktemp("llama_chat"), data_dir)


@pytest.fixture(scope="module")
def bloom_dir(tmp_path_factory):
    return write_bloom(tmp_path_factory.mktemp("bloom_chat"))


@pytest.fixture(scope="module", params=["llama", "bloom"])
def pair(request, llama_dir, bloom_dir):
    directory = llama_dir if request.param == "llama" else bloom_dir
    hf, hf_tok = hf_pair(directory)
    return request.param, pyllm.LLM(directory, n_threads=2), hf, hf_tok


def _hf_render(hf_tok, messages, template=None, add_generation_prompt=True, tokenize=False):
    out = hf_tok.apply_chat_template(messages, chat_template=template, add_generation_prompt=add_generation_prompt,
                                     tokenize=tokenize)
    if tokenize and not isinstance(out, list):  # newer transformers return a BatchEncoding
        out = out["input_ids"]
    return out


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_model_template_renders_like_transformers(pair, add_generation_prompt):
    name, llm, _, hf_tok = pair
    for messages in CONVERSATIONS:
        if name == "llama" and messages[-1]["role"] == "assistant":
            continue
        expected = _hf_render(hf_tok, messages, add_generation_prompt=add_generation_prompt)
        assert llm.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                 tokenize=False) == expected
        ids = _hf_render(hf_tok, messages, add_generation_prompt=add_generation_prompt, tokenize=True)
        assert llm.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt) == ids


@pytest.mark.parametrize("template", [pyllm.templates.ALPACA, pyllm.templates.VICUNA, FEATURES_TEMPLATE,
                                      LLAMA2_CHAT_TEMPLATE, BLOOM_CHAT_TEMPLATE])
def test_templates_render_like_transformers(pair, template):
    _, llm, _, hf_tok = pair
    conversations = CONVERSATIONS + [[{"role": "user", "content": "skip"}, {"role": "user", "content": "<b>&</b>"}]]
    for messages in conversations:
        try:
            expected = _hf_render(hf_tok, messages, template)
        except Exception as e:  # the template refuses the conversation: so must we
            with pytest.raises(ValueError, match="alternate|bad role"):
                llm.tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                  add_generation_prompt=True)
            assert "alternate" in str(e) or "bad role" in str(e)
            continue
        assert llm.tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                 add_generation_prompt=True) == expected


def test_bloom_chat_cases_from_transformers(data_dir, bloom_dir):
    """The shared BLOOM cases: each message's content then EOS (bloom-560m's real vocabulary is
    not in the shared data, so the text is checked; its ids hold '</s>' = 2 after every message)."""
    with open(os.path.join(data_dir, "bloom", "transformers_bloom_tokenizer_cases.json")) as f:
        cases = json.load(f)["chat_template_cases"]
    tok = pyllm.Tokenizer.from_pretrained(bloom_dir)
    for case in cases:
        text = tok.apply_chat_template(case["messages"], tokenize=False)
        assert text == "".join(m["content"] + "</s>" for m in case["messages"])
        assert text.count("</s>") == case["ids"].count(2)
        ids = tok.apply_chat_template(case["messages"])
        assert ids.count(tok.eos_token_id) == case["ids"].count(2)


def test_alpaca_and_vicuna_text():
    messages = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "Q1"},
                {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}]
    alpaca = pyllm.templates.render("alpaca", messages, add_generation_prompt=True, eos_token="</s>")
    assert alpaca == "SYS\n\n### Instruction:\nQ1\n\n### Response:\nA1</s>\n\n### Instruction:\nQ2\n\n### Response:\n"
    vicuna = pyllm.templates.render(pyllm.templates.VICUNA, messages, add_generation_prompt=True, eos_token="</s>")
    assert vicuna == "SYS USER: Q1 ASSISTANT: A1</s>USER: Q2 ASSISTANT:"
    plain = pyllm.templates.render("vicuna", messages[1:2], add_generation_prompt=False, eos_token="</s>")
    assert plain.startswith("A chat between") and plain.endswith("USER: Q1 ")


def test_chat_generates_like_transformers(pair):
    name, llm, hf, hf_tok = pair
    for messages in CONVERSATIONS[:3]:
        ids = torch.tensor([_hf_render(hf_tok, messages, tokenize=True)])
        with torch.no_grad():
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False,
                              pad_token_id=hf_tok.pad_token_id or hf_tok.eos_token_id)
        expected = hf_tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        assert llm.chat(messages, max_new_tokens=16) == expected
        # A callable template and a named one work too.
        rendered = llm.chat_prompt(messages, template="alpaca")
        assert rendered == pyllm.templates.render(pyllm.templates.ALPACA, messages, add_generation_prompt=True,
                                                  **llm.tokenizer.special_tokens())
        assert llm.chat(messages, template=lambda m, add_generation_prompt, **kw: rendered, max_new_tokens=8) == \
            llm.chat(messages, template="alpaca", max_new_tokens=8)


def test_model_without_template_needs_one(tmp_path, data_dir):
    directory = write_llama(tmp_path, data_dir, chat_template=None)
    llm = pyllm.LLM(directory)
    messages = [{"role": "user", "content": "Hi"}]
    with pytest.raises(ValueError, match="template="):
        llm.chat(messages, max_new_tokens=3)
    with pytest.raises(ValueError, match="chat_template="):
        llm.tokenizer.apply_chat_template(messages)
    assert isinstance(llm.chat(messages, template="vicuna", max_new_tokens=3), str)
    for bad in ([{"content": "no role"}], [], [{"role": "user"}], "Hi", [["user", "Hi"]]):
        with pytest.raises((ValueError, TypeError)):
            llm.chat(bad, template="vicuna", max_new_tokens=3)
    with pytest.raises(ValueError, match="Jinja"):
        llm.chat(messages, template="{% if %}", max_new_tokens=3)
    with pytest.raises(TypeError, match="bogus"):
        llm.chat(messages, template="vicuna", bogus=3)
    assert isinstance(llm.chat(messages, template="alpaca", max_new_tokens=3), str)


def test_tokenizer_call_pads_like_transformers(pair):
    _, llm, _, hf_tok = pair
    texts = ["Hello world", "a", "The cat sat on the mat, Zürich 東京", ""]
    for side in ("left", "right"):
        hf_tok.padding_side = side
        if hf_tok.pad_token is None:
            hf_tok.pad_token = hf_tok.eos_token
        expected = hf_tok(texts, padding=True, return_tensors="np")
        got = llm.tokenizer(texts, padding=True, return_tensors="np", padding_side=side)
        for key in ("input_ids", "attention_mask"):
            assert got[key].dtype == np.int64
            np.testing.assert_array_equal(got[key], expected[key])
    hf_tok.padding_side = "left"
    single = llm.tokenizer("Hello world")
    assert single == {"input_ids": hf_tok("Hello world")["input_ids"],
                      "attention_mask": hf_tok("Hello world")["attention_mask"]}
    no_specials = llm.tokenizer(texts[:3], add_special_tokens=False)
    assert no_specials["input_ids"] == [hf_tok(t, add_special_tokens=False)["input_ids"] for t in texts[:3]]
    with pytest.raises(ValueError, match="padding=True"):
        llm.tokenizer(texts, return_tensors="np")
    with pytest.raises(ValueError, match="padding_side"):
        llm.tokenizer(texts, padding=True, padding_side="middle")
    with pytest.raises(ValueError, match="return_tensors"):
        llm.tokenizer(texts, padding=True, return_tensors="pt")
    with pytest.raises(TypeError):
        llm.tokenizer([1, 2])


def test_batch_decode_like_transformers(pair):
    _, llm, _, hf_tok = pair
    rng = np.random.default_rng(0)
    ids = rng.integers(0, min(hf_tok.vocab_size, llm.tokenizer.vocab_size), size=(5, 12))
    ids[:, 0] = llm.tokenizer.eos_token_id
    for skip in (True, False):
        assert llm.tokenizer.batch_decode(ids, skip_special_tokens=skip) == \
            hf_tok.batch_decode(ids.tolist(), skip_special_tokens=skip)
    assert llm.tokenizer.batch_decode(ids.tolist()) == [llm.tokenizer.decode(row) for row in ids.tolist()]
    with pytest.raises(ValueError):
        llm.tokenizer.batch_decode(ids[0])
