"""Constrained generation on the real default model, SmolLM2-135M-Instruct (a byte-level
vocabulary of 49,152 tokens, Q4_1): a JSON schema and a regex, greedy and sampled, a batch of two."""
import json
import re

import jsonschema
import pytest

import pyllm

PERSON = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 24},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120},
                         "city": {"enum": ["Paris", "London", "Tokyo", "other"]}},
          "required": ["name", "age", "city"], "additionalProperties": False}
DATE = r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"


@pytest.fixture(scope="module")
def llm():
    return pyllm.LLM()


def _prompts(llm, questions):
    return [llm.chat_prompt([{"role": "user", "content": q}]) for q in questions]


@pytest.mark.parametrize("options", [{}, {"do_sample": True, "seed": 7}], ids=["greedy", "sampled"])
def test_json_schema_on_smollm2(llm, options):
    prompts = _prompts(llm, ["Describe a person as JSON with name, age and city.",
                             "Invent a character who lives in Tokyo; answer in JSON."])
    # room to finish: a name of 24 characters may take 3 byte-level tokens each (kana, kanji)
    texts = llm.generate(prompts, json_schema=PERSON, max_new_tokens=160, **options)
    for text in texts:
        jsonschema.validate(json.loads(text), PERSON)


@pytest.mark.parametrize("options", [{}, {"do_sample": True, "seed": 3}], ids=["greedy", "sampled"])
def test_regex_on_smollm2(llm, options):
    prompts = _prompts(llm, ["When did Apollo 11 land on the Moon? Answer with the date only.",
                             "Give today's date in ISO format."])
    texts = llm.generate(prompts, regex=DATE, max_new_tokens=16, **options)
    for text in texts:
        assert re.fullmatch(DATE, text), text
