"""Constrained generation (regex=, json_schema=, grammar=): every output matches its constraint,
whatever the logits. Random tiny models (a LLaMA on the SentencePiece vocabulary, a BLOOM on a
byte-level one) generate under many random regexes and JSON schemas, greedy and sampled, three
prompts a batch; the outputs are checked with Python's re and jsonschema, not with llguidance.

The random constraints describe finite languages short enough for the token budget, so every row
must end complete; unbounded regexes are checked as prefixes (the regex module's partial matching)
where the budget cut them."""
import json
import re

import jsonschema
import numpy as np
import pytest
import regex as regex_module

import pyllm
from pyllm import constrained
from llm_models import write_bloom, write_llama

PROMPTS = ["The answer:", "Once upon a time", "{"]
BUDGET = 96  # new tokens: above the longest text (in bytes) any random constraint here allows
MODES = {"greedy": {}, "sampled": {"do_sample": True, "temperature": 1.5, "top_k": 0}}


@pytest.fixture(scope="module", params=["llama", "bloom"])
def llm(request, tmp_path_factory, data_dir):
    directory = tmp_path_factory.mktemp(request.param)
    if request.param == "llama":
        write_llama(directory, data_dir)
    else:
        write_bloom(directory)
    with pyllm.LLM(str(directory), n_threads=1) as llm:
        yield llm


# ---- random regexes: (pattern, longest match in bytes); never a leading space, which a
# SentencePiece decode of the new tokens alone would drop (docs/constrained.md) ----

_LITERALS = ["a", "xy", "-", ":", "\\.", "é", "日本", "Z9", "_", "\\(", "ü"]
_CLASSES = [("[a-z]", 1), ("[0-9]", 1), ("[A-F0-9]", 1), ("[^a-z,]", 4), ("[ab ]", 1), ("[äöü]", 2)]


def _atom(rng, depth, first):
    kind = int(rng.integers(0, 4 if depth < 2 else 3))
    if kind == 2 and first:  # no space first
        kind = 1
    if kind == 0:
        text = str(rng.choice(_LITERALS))
        size = len(text.replace("\\", "").encode())
    elif kind == 1:
        text, size = _CLASSES[rng.integers(0, len(_CLASSES))]
        if first and text in ("[ab ]", "[^a-z,]"):  # classes that hold a space
            text, size = "[a-z]", 1
    elif kind == 2:
        text, size = " ", 1
    else:
        left, a = _sequence(rng, depth + 1, first)
        right, b = _sequence(rng, depth + 1, first)
        text, size = f"({left}|{right})", max(a, b)
    low, high = [(1, 1), (0, 1), (1, 3), (2, 2), (0, 2)][rng.integers(0, 5)]
    if first and low == 0:
        low = 1
    quantifier = {(1, 1): "", (0, 1): "?"}.get((low, high), f"{{{low},{high}}}")
    return text + quantifier, size * high


def _sequence(rng, depth=0, first=True):
    parts, total = [], 0
    for i in range(int(rng.integers(1, 4))):
        text, size = _atom(rng, depth, first and i == 0)
        parts.append(text)
        total += size
    return "".join(parts), total


def random_regexes(seed, count, limit=BUDGET - 8):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        pattern, size = _sequence(rng)
        if size <= limit:
            out.append(pattern)
    return out


# ---- random JSON schemas: objects, arrays, enums, integers, strings with lengths and patterns,
# nesting; every instance bounded in size ----

_NAMES = ["id", "name", "tags", "ok", "kind", "size", "x", "value"]


def random_schema(rng, depth=0):
    kinds = ["string", "integer", "boolean", "null", "enum", "const", "pattern"]
    if depth < 2:
        kinds += ["object", "object", "array", "array"]
    if depth == 0:
        kinds = ["object", "array"]
    kind = kinds[rng.integers(0, len(kinds))]
    if kind == "string":
        return {"type": "string", "minLength": int(rng.integers(0, 2)), "maxLength": int(rng.integers(2, 5))}
    if kind == "integer":
        low = int(rng.integers(-50, 50))
        return {"type": "integer", "minimum": low, "maximum": low + int(rng.integers(0, 1000))}
    if kind == "boolean" or kind == "null":
        return {"type": kind}
    if kind == "enum":
        pool = ["red", "green", "a b", "é", 1, 2.5, -3, None, True]
        picks = rng.choice(len(pool), size=int(rng.integers(1, 4)), replace=False)
        return {"enum": [pool[i] for i in picks]}
    if kind == "const":
        return {"const": ["yes", 7, False][rng.integers(0, 3)]}
    if kind == "pattern":
        return {"type": "string", "pattern": "^" + random_regexes(int(rng.integers(0, 1 << 30)), 1, 10)[0] + "$"}
    if kind == "object":
        names = list(rng.choice(_NAMES, size=int(rng.integers(1, 4)), replace=False))
        properties = {str(n): random_schema(rng, depth + 1) for n in names}
        required = [n for n in properties if rng.random() < 0.7]
        return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    low = int(rng.integers(0, 2))
    return {"type": "array", "items": random_schema(rng, depth + 1), "minItems": low,
            "maxItems": low + int(rng.integers(0, 3))}


def random_schemas(seed, count):
    rng = np.random.default_rng(seed)
    return [random_schema(rng) for _ in range(count)]


def _new_texts(llm, out, width):
    return [llm.tokenizer.decode(row[width:width + int(n)], skip_special_tokens=True)
            for row, n in zip(out.sequences, out.num_new_tokens)]


def _generate(llm, prompts, **options):
    """Model.generate with tokenizer= (the new texts and the output)."""
    enc = llm.tokenizer(prompts, padding=True, return_tensors="np")
    out = llm.model.generate(enc["input_ids"], attention_mask=enc["attention_mask"], tokenizer=llm.tokenizer,
                             return_dict_in_generate=True, **options)
    width = enc["input_ids"].shape[1]
    return _new_texts(llm, out, width), out, width


@pytest.mark.parametrize("mode", MODES)
def test_random_regexes_match_whole(llm, mode):
    patterns = random_regexes(seed=5 if mode == "greedy" else 6, count=14)
    for i, pattern in enumerate(patterns):
        texts, _, _ = _generate(llm, PROMPTS, regex=pattern, max_new_tokens=BUDGET, seed=i, **MODES[mode])
        for text in texts:
            assert re.fullmatch(pattern, text), (pattern, text)


@pytest.mark.parametrize("mode", MODES)
def test_random_json_schemas_validate(llm, mode):
    schemas = random_schemas(seed=11 if mode == "greedy" else 12, count=12)
    for i, schema in enumerate(schemas):
        texts = llm.generate(PROMPTS, json_schema=schema, max_new_tokens=4 * BUDGET, seed=i, **MODES[mode])
        for text in texts:
            try:
                value = json.loads(text)
            except ValueError:
                pytest.fail(f"not JSON under {schema}: {text!r}")
            jsonschema.validate(value, schema)


def test_outputs_vary_so_the_checks_mean_something(llm):
    """The random models do not write the same text for every constraint: under a loose regex
    the prompts and the sampling give different texts."""
    texts = set()
    for seed in range(3):
        texts.update(llm.generate(PROMPTS, regex="[a-z]{3,6}", do_sample=True, seed=seed, max_new_tokens=12))
    assert len(texts) >= 6, texts


@pytest.mark.parametrize("pattern", ["[a-z]+", "(ab|c)*d+", "[0-9]{2,}(\\.[0-9]+)?"])
def test_unbounded_regexes_are_whole_matches_or_prefixes_of_one(llm, pattern):
    texts, out, width = _generate(llm, PROMPTS, regex=pattern, max_new_tokens=24, do_sample=True, seed=3)
    for text, n in zip(texts, out.num_new_tokens):
        if n < 24:  # ended by an end token, where the text may end
            assert re.fullmatch(pattern, text), (pattern, text)
        else:
            assert regex_module.fullmatch(pattern, text, partial=True), (pattern, text)


GREETING = re.compile(r"(hi|hello) [a-z]{1,3}!")
LARK = """
start: GREETING " " NAME "!"
GREETING: "hi" | "hello"
NAME: /[a-z]{1,3}/
"""
GBNF = """
root ::= greeting " " name "!"
greeting ::= "hi" | "hello"
name ::= [a-z] [a-z]? [a-z]?
"""


@pytest.mark.parametrize("grammar", [LARK, GBNF], ids=["lark", "gbnf"])
def test_grammars_lark_and_gbnf(llm, grammar):
    for seed in range(3):
        texts = llm.generate(PROMPTS, grammar=grammar, do_sample=True, seed=seed, max_new_tokens=20)
        for text in texts:
            assert GREETING.fullmatch(text), text


def test_recursive_grammar(llm):
    grammar = 'start: expr\nexpr: DIGIT | "(" expr "+" expr ")"\nDIGIT: /[0-9]/\n'

    def value(text):  # the grammar's own language, parsed here
        if re.fullmatch("[0-9]", text):
            return int(text)
        assert text[0] == "(" and text[-1] == ")", text
        depth = 0
        for i, c in enumerate(text[1:-1], 1):
            depth += c == "("
            depth -= c == ")"
            if c == "+" and depth == 0:
                return value(text[1:i]) + value(text[i + 1:-1])
        raise AssertionError(text)

    texts, out, width = _generate(llm, PROMPTS, grammar=grammar, max_new_tokens=64)
    for text, n in zip(texts, out.num_new_tokens):
        if n < 64:
            value(text)


def test_llm_generate_with_num_return_sequences_and_stream(llm):
    pattern = "[a-c]{2}-[0-9]"
    groups = llm.generate(PROMPTS[:2], regex=pattern, do_sample=True, num_return_sequences=3, seed=4)
    assert len(groups) == 2 and all(len(g) == 3 for g in groups)
    assert all(re.fullmatch(pattern, t) for g in groups for t in g), groups
    streamed = "".join(llm.stream(PROMPTS[0], regex=pattern, do_sample=True, seed=4))
    assert re.fullmatch(pattern, streamed) and streamed == llm.generate(PROMPTS[0], regex=pattern, do_sample=True,
                                                                        seed=4)


def test_row_ends_when_the_grammar_is_complete(llm):
    """A finite language: the row ends on its last character, without spending a step on an end
    token; with no end token at all (eos_token_id=[]) it ends the same way."""
    eos = llm.tokenizer.eos_token_id
    for eos_option in (None, []):
        texts, out, width = _generate(llm, PROMPTS, regex="(yes|no)", max_new_tokens=20, eos_token_id=eos_option,
                                      pad_token_id=0)
        assert all(t in ("yes", "no") for t in texts), texts
        for row, n in zip(out.sequences, out.num_new_tokens):
            assert row[width + n - 1] != eos and (row[width + n:] == 0).all()
    # No end token: the text runs to the longest the regex allows (flat sampling would pick an
    # end token now and then if one were allowed).
    for seed in range(3):
        texts, out, width = _generate(llm, PROMPTS, regex="[a-z]{1,8}", max_new_tokens=20, eos_token_id=[],
                                      do_sample=True, temperature=5.0, top_k=0, seed=seed)
        assert all(len(t) == 8 for t in texts), texts


def test_other_rows_go_on_when_one_is_stopped(llm):
    """A stopping criterion ends row 0 early; rows 1 and 2 keep their constraint (their matchers
    are not fed row 0's padding)."""
    def stop_first(input_ids, scores):
        done = np.zeros(input_ids.shape[0], dtype=bool)
        done[0] = True
        return done

    pattern = "[a-z]{4}:[0-9]{4}"
    texts, out, width = _generate(llm, PROMPTS, regex=pattern, stopping_criteria=stop_first, max_new_tokens=BUDGET,
                                  pad_token_id=0)  # a special token: a matcher fed it would fail
    assert out.num_new_tokens[0] == 1
    assert all(re.fullmatch(pattern, t) for t in texts[1:]), texts


def test_constraint_applies_after_the_users_processor(llm):
    """A logits_processor that pushes a banned token to the top cannot make it come out."""
    bad = llm.tokenizer.encode("Z", add_special_tokens=False)[-1]

    def push(input_ids, scores):
        scores[:, bad] = 1e9
        return scores

    texts = llm.generate(PROMPTS, regex="[a-c]{3}", logits_processor=push, max_new_tokens=8)
    assert all(re.fullmatch("[a-c]{3}", t) for t in texts), texts


# ---- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, says", [
    ("regex", "(ab", "unclosed group"),
    ("regex", 5, "must be a str"),
    ("json_schema", {"type": "foo"}, "foo"),
    ("json_schema", "{not json", "not JSON"),
    ("json_schema", [1], "must be a JSON schema"),
    ("json_schema", "true", "must be a JSON schema object"),
    ("json_schema", {"type": {1, 2}}, "not JSON serializable"),
    ("grammar", "start: missing_rule", "missing_rule"),
    ("grammar", "root ::= \"a\" undefined", "Rule 'undefined' not found"),
    ("grammar", 5, "must be a str"),
])
def test_invalid_constraint_is_named_with_llguidances_message(llm, option, value, says):
    with pytest.raises((ValueError, TypeError)) as info:
        llm.generate("Hi", **{option: value})
    assert option in str(info.value) and says in str(info.value), str(info.value)
    with pytest.raises((ValueError, TypeError)) as info:
        pyllm.GenerationConfig(**{option: value})
    assert option in str(info.value)


def test_incompatible_options_are_refused_by_name(llm):
    with pytest.raises(ValueError, match="regex.*num_beams=2"):
        llm.generate("Hi", regex="a+", num_beams=2)
    with pytest.raises(ValueError, match="regex, grammar"):
        llm.generate("Hi", regex="a+", grammar="start: \"a\"")
    with pytest.raises(ValueError, match="grammar does not work with speculative decoding .prompt_lookup_num_tokens=3"):
        llm.generate("Hi", grammar="start: \"a\"", prompt_lookup_num_tokens=3)
    ids = llm.tokenizer.encode("Hi")
    with pytest.raises(ValueError, match="regex does not work with speculative decoding .assistant_model"):
        llm.model.generate(ids, tokenizer=llm.tokenizer, regex="a", assistant_model=llm.model)
    with pytest.raises(ValueError, match="json_schema needs the tokenizer.*tokenizer="):
        llm.model.generate(ids, json_schema={"type": "integer"})


def test_every_allowed_token_banned_is_an_error_naming_the_constraint(llm):
    tokens, _ = constrained.token_bytes(llm.tokenizer)
    bias = {i: float("-inf") for i, b in enumerate(tokens) if b[:1] == b"q"}
    with pytest.raises(ValueError, match="regex: row 0 has no allowed token left.*logit_bias"):
        llm.generate("Hi", regex="q[a-z]", logit_bias=bias)


def test_missing_llguidance_says_the_pip_command(llm, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "llguidance", None)
    with pytest.raises(ImportError, match=r'pip install "pyllm\[constrained\]"'):
        llm.generate("Hi", regex="a")


def test_masks_filled_in_llguidances_pool_give_the_same_tokens(llm, monkeypatch):
    """Batches of 4+ rows use llguidance's thread pool on machines with more than 2 cores: the
    same masks, so the same tokens, as filling them one row at a time."""
    prompts = PROMPTS + ["Hello", "1, 2, 3,"]
    options = dict(json_schema=random_schemas(seed=21, count=1)[0], do_sample=True, seed=5, max_new_tokens=4 * BUDGET)
    serial = llm.generate(prompts, **options)
    calls = []
    real = constrained._executor
    monkeypatch.setattr(constrained.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(constrained, "_executor", lambda: calls.append(1) or real())
    assert llm.generate(prompts, **options) == serial
    assert calls
