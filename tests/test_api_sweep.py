"""The bad-argument sweep: every public callable of pyllm, every parameter, wrong types, values out
of range and wrong strings; each must raise TypeError or ValueError whose message names the
parameter and says what is accepted.

The public API is enumerated, not listed: everything in ``pyllm.__all__``, the public methods of
its classes and of the objects they hand out (KV caches, stream decoders), the public functions of
``pyllm.scoring`` and every generation option. A callable or a parameter without a row in TABLE
fails ``test_every_public_callable_has_a_row``: new API must add its rows here. A parameter may be
exempt only with a reason (EXEMPT).
"""
import inspect

import numpy as np
import pytest

from unittest import mock

import pyllm
import pyllm.ray
from pyllm import generation, scoring
from llama_reference import make_config, make_pair, state_arrays
from llm_models import write_llama

# Words that say what a parameter accepts ("must be ...", "expected ...", "one of ...").
ACCEPTS = ("must", "needs", "required", "expected", "accepted", "one of", "outside", "out of range", "at least", "at most", "above pyllm's limit",
           "exceeds", "give ", "wrap it", "not supported", "use ", "accepts")

NAN = float("nan")
BAD_BOOL = ["yes", 2]
BAD_POSITIVE = [0, -1, "2", 1.5]
BAD_PROGRESS = ["yes", 2]

# Bad values of every generation option (model.generate, LLM.generate, GenerationConfig).
OPTIONS = {
    "bad_words_ids": [5, [["a"]], [[-1]], []],
    "bos_token_id": [-1, "a", 1.5],
    "do_sample": BAD_BOOL,
    "eos_token_id": [-1, "a", [1.5]],
    "frequency_penalty": ["x", NAN],
    "logit_bias": [5, {"a": 1.0}, {5: "x"}],
    "logprobs_processed": BAD_BOOL,
    "max_length": [0, "x", 1.5],
    "max_new_tokens": [-1, "x", 1.5],
    "min_new_tokens": [-1, "x"],
    "min_p": [-0.1, 1.5, "x"],
    "no_repeat_ngram_size": [-1, "x"],
    "num_return_sequences": [0, "x"],
    "output_logprobs": BAD_BOOL,
    "pad_token_id": [-1, "x"],
    "presence_penalty": ["x", NAN],
    "repetition_penalty": [0, -1, "x"],
    "return_dict_in_generate": BAD_BOOL,
    "seed": ["x", 1.5],
    "stop_strings": [5, [5], [""]],
    "temperature": [-1, "x", NAN],
    "top_k": [-1, "x", 1.5],
    "top_logprobs": [-1, "x"],
    "top_p": [0, 1.5, "x"],
    "typical_p": [0, 1.5, "x"],
    "num_beams": [0, "x", 1.5],
    "length_penalty": ["x", NAN],
    "early_stopping": ["yes", 2],
    "output_scores": BAD_BOOL,
    "output_logits": BAD_BOOL,
    "prompt_lookup_num_tokens": [0, "x", 1.5, 257],
    "max_matching_ngram_size": [0, "x", 1.5],
    "num_assistant_tokens": [0, "x", 257],
    "speculative": ["sometimes", 1, True],
    "max_tokens": [5],  # a name transformers does not use either: refused with the accepted names
    # constrained decoding (pyllm.constrained; the bad texts are llguidance's to refuse)
    "regex": [5, b"a+", "(ab"],
    "json_schema": [5, [1], "{not json", {"type": "foo"}],
    "grammar": [5, "start: missing_rule"],
}

# PEFT LoRA adapters merged at load (pyllm.lora): Model.from_pretrained and LLM.
ADAPTERS = {"adapters": [5, [5], "/nonexistent/adapter", [b"/nonexistent/adapter"], {"a": 1}]}

# The Hub loaders' extra parameters (pyllm.hub).
HUB = {"revision": [5, 1.5], "filename": [5, 1.5], "local_files_only": BAD_BOOL}

# Bad interventions= (pyllm.Intervention lists) for the model's calls: not a list of them, and an
# intervention that cannot apply to the test model (2 layers of width 64, positions reached).
BAD_INTERVENTIONS = [5, "x", [5], [pyllm.Intervention(7, add=np.ones(64))], [pyllm.Intervention(0, add=np.ones(8))],
                     [pyllm.Intervention(0, positions=[500], add=np.ones(64))]]

MESSAGES = [{"role": "user", "content": "Hi"}]
BAD_MESSAGES = ["hi", [{"role": "user"}], [{"role": 5, "content": "x"}], [5]]



def _no_ray(fn):
    """A pyllm.ray call whose arguments must fail before Ray is reached: reading the data (which
    would start a Ray) raises AssertionError instead, so an argument let through fails the row."""
    def call(**kw):
        reached = AssertionError("pyllm.ray reached Ray with a bad argument")
        with mock.patch("ray.data.from_items", side_effect=reached), \
                mock.patch("ray.data.read_json", side_effect=reached), \
                mock.patch("ray.data.read_parquet", side_effect=reached):
            return fn(**kw)
    return call


# pyllm.ray's actor-pool and model arguments, shared by its three calls.
RAY_POOL = {"model": [5, 1.5], "concurrency": BAD_POSITIVE, "num_cpus": [0, -1, "2"], "batch_size": BAD_POSITIVE,
            "dtype": [5, "float33"], "n_threads": BAD_POSITIVE, "n_ctx": BAD_POSITIVE, "batch_invariant": BAD_BOOL,
            "resources": [5, {"node_a": "x"}]}
# name -> (how to call it: fn(env) -> a callable taking keyword arguments, {parameter: [bad values]}).
# A "**options" row is checked against OPTIONS; a callable without parameters has (None, {}).
# env holds the fixtures.
TABLE = {
    "onednn_version": (None, {}),
    # pyllm.ray (bad arguments fail before Ray starts)
    "ray.generate": (lambda e: _no_ray(lambda **kw: pyllm.ray.generate(**{"data": ["Hi"], "model": e["dir"], **kw})), {
        "data": [5, [], "prompts.txt"], "seed": ["x", 1.5, True], **RAY_POOL,
        "**generation_options": {**OPTIONS, "num_return_sequences": [0, "x", 2], "assistant_model": [5]}}),
    "ray.loglikelihood": (lambda e: _no_ray(lambda **kw: pyllm.ray.loglikelihood(**{
        "data": [("Hi", " there")], "model": e["dir"], **kw})), {
        "data": [5, [], "pairs.csv", [("Hi",)]], "score_batch_size": BAD_POSITIVE, "max_length": [0, "x", 1.5],
        **RAY_POOL}),
    "ray.loglikelihood_rolling": (lambda e: _no_ray(lambda **kw: pyllm.ray.loglikelihood_rolling(**{
        "data": ["Hi there"], "model": e["dir"], **kw})), {
        "data": [5, [], "texts.txt"], "score_batch_size": BAD_POSITIVE, "max_length": [0, "x", 1.5], **RAY_POOL}),
    "ray.row_seed": (lambda e: lambda **kw: pyllm.ray.row_seed(**{"seed": 1, "row_id": 0, **kw}), {
        "seed": ["x", 1.5, True], "row_id": [1.5, None, True, b"x"]}),
    "default_model_path": (None, {}),
    # pyllm.LLM
    "LLM.__init__": (lambda e: lambda **kw: pyllm.LLM(**{"model_dir": e["dir"], **kw}), {
        "model_dir": [5, 1.5], "dtype": [5, "float33"], "n_threads": BAD_POSITIVE, "n_ctx": BAD_POSITIVE,
        "batch_invariant": BAD_BOOL, "progress": BAD_PROGRESS, "torch_dtype": [5, "float33"],
        "prefix_cache": ["yes", -1, 1.5, 0], **HUB, **ADAPTERS}),
    "LLM.chat": (lambda e: lambda **kw: e["llm"].chat(**{"messages": MESSAGES, "template": "vicuna",
                                                          "max_new_tokens": 2, **kw}),
                 {"messages": BAD_MESSAGES, "template": [5, "vicunaa"], "**options": OPTIONS}),
    "LLM.chat_prompt": (lambda e: lambda **kw: e["llm"].chat_prompt(**{"messages": MESSAGES, "template": "vicuna",
                                                                        **kw}),
                        {"messages": BAD_MESSAGES, "template": [5, "vicunaa"], "add_generation_prompt": BAD_BOOL}),
    "LLM.chat_stream": (lambda e: lambda **kw: list(e["llm"].chat_stream(**{
        "messages": MESSAGES, "template": "vicuna", "max_new_tokens": 2, **kw})),
        {"messages": BAD_MESSAGES, "template": [5, "vicunaa"], "**options": OPTIONS}),
    "LLM.close": (None, {}),
    "LLM.generate": (lambda e: lambda **kw: e["llm"].generate(**{"prompts": "Hi", "max_new_tokens": 2, **kw}),
                     {"prompts": [5, [5], [], b"Hi"], "**options": OPTIONS}),
    "LLM.stream": (lambda e: lambda **kw: list(e["llm"].stream(**{"prompt": "Hi", "max_new_tokens": 2, **kw})),
                   {"prompt": [5, ["Hi"]], "**options": OPTIONS}),
    "LLM.loglikelihood": (lambda e: lambda **kw: e["llm"].loglikelihood(**{"requests": [("Hi", " there")], **kw}), {
        "requests": ["Hi", [("Hi", 3)], ("Hi", " there"), [], [("Hi", "")]], "batch_size": BAD_POSITIVE,
        "max_length": [0, 10 ** 9, "x", 1.5], "progress": BAD_PROGRESS}),
    "LLM.loglikelihood_rolling": (lambda e: lambda **kw: e["llm"].loglikelihood_rolling(**{"texts": ["Hi"], **kw}), {
        "texts": [5, [5], [], b"Hi"], "batch_size": BAD_POSITIVE, "max_length": [0, 10 ** 9, "x"],
        "progress": BAD_PROGRESS}),
    "LLM.perplexity": (lambda e: lambda **kw: e["llm"].perplexity(**{"texts": ["Hi there"], **kw}), {
        "texts": [5, [5], []], "max_length": [0, 10 ** 9, "x"], "batch_size": BAD_POSITIVE,
        "progress": BAD_PROGRESS}),
    # pyllm.Model
    "Model.__init__": (lambda e: lambda **kw: pyllm.Model(**{"decoder": 5, "config": {}, "spec": {},
                                                             "generation_config": None, **kw}),
                       {"decoder": [5, "x"], "config": None, "spec": None, "generation_config": None}),
    "Model.__call__": (lambda e: lambda **kw: e["model"](**{"input_ids": [1, 2, 3], **kw}), {
        "input_ids": ["hello", [[1, 2], [3]], [1.5], [-1], [[[1]]], [], [10 ** 6]],
        "attention_mask": [[[1, 1]], [0.5, 1, 1], [2, 1, 1], "x"], "cache": ["x", 5],
        "logits_to_keep": [-1, "1", 1.5], "output_hidden_states": BAD_BOOL, "output_attentions": BAD_BOOL,
        "interventions": BAD_INTERVENTIONS}),
    "Model.unembed": (lambda e: lambda **kw: e["model"].unembed(**{"hidden": np.zeros(64, np.float32), **kw}), {
        "hidden": ["x", np.zeros((2, 5)), np.zeros(64, bool), 1.5]}),
    "Intervention.__init__": (lambda e: lambda **kw: pyllm.Intervention(**{"layer": 0, "add": np.ones(64), **kw}), {
        "layer": [-1, "0", 1.5, True], "site": ["mlp", 5], "positions": [-1, [1, 1], [], "x", [1.5]],
        "add": ["x", np.ones((1, 1, 4)), [np.nan], np.ones((2, 64))], "replace": [np.ones(64), "x"]}),
    "Intervention.key": (None, {}),
    "Model.close": (None, {}),
    "Model.from_arrays": (lambda e: lambda **kw: pyllm.Model.from_arrays(**{
        "config": e["config"], "weights": e["weights"], **kw}), {
        "config": [5, {}, "x"], "weights": [5, {}, "x"], "dtype": [5, "float33"], "n_threads": BAD_POSITIVE,
        "n_ctx": BAD_POSITIVE, "generation_config": [5, "greedy"], "lm_head_dtype": [5, "float33"],
        "progress": BAD_PROGRESS, "batch_invariant": BAD_BOOL, "kv_dtype": [5, "int8"],
        "torch_dtype": [5, "float33"]}),
    "Model.from_gguf": (lambda e: lambda **kw: pyllm.Model.from_gguf(**{"path": e["gguf"], **kw}), {
        "path": [5, 1.5], "dtype": [5, "float33"], "n_threads": BAD_POSITIVE, "n_ctx": BAD_POSITIVE,
        "lm_head_dtype": [5, "float33"], "progress": BAD_PROGRESS, "batch_invariant": BAD_BOOL,
        "kv_dtype": [5, "int8"], "torch_dtype": [5, "float33"], **HUB}),
    "Model.from_pretrained": (lambda e: lambda **kw: pyllm.Model.from_pretrained(**{"model_dir": e["dir"], **kw}), {
        "model_dir": [5, 1.5], "dtype": [5, "float33"], "n_threads": BAD_POSITIVE, "n_ctx": BAD_POSITIVE,
        "lm_head_dtype": [5, "float33"], "progress": BAD_PROGRESS, "batch_invariant": BAD_BOOL,
        "kv_dtype": [5, "int8"], "torch_dtype": [5, "float33"], **HUB, **ADAPTERS}),
    "Model.generate": (lambda e: lambda **kw: e["model"].generate(**{"input_ids": [1, 2], "max_new_tokens": 2,
                                                                     **kw}), {
        "input_ids": ["hello", [[1, 2], [3]], [1.5], [-1], []], "generation_config": [5, "greedy"],
        "attention_mask": [[[1]], [0.5, 1], "x"], "logits_processor": [5, [5]], "stopping_criteria": [5, [5]],
        "streamer": [5, "x"], "stop_strings": [5, [5]], "tokenizer": [5, "x"], "assistant_model": [5, "x"],
        "interventions": BAD_INTERVENTIONS,
        "**options": OPTIONS}),
    "Model.generate_with": (lambda e: lambda **kw: e["model"].generate_with(**{
        "input_ids": [1, 2], "config": generation.resolve(e["model"], None, {"max_new_tokens": 2}), **kw}), {
        "input_ids": ["hello", [[1, 2], [3]], [1.5]], "config": [5, {"max_new_tokens": 2}, None],
        "attention_mask": [[[1]], "x"], "logits_processor": [5, [5]], "stopping_criteria": [5, [5]],
        "streamer": [5, "x"], "stop_strings": [5, [5]], "tokenizer": [5, "x"], "assistant_model": [5, "x"],
        "interventions": BAD_INTERVENTIONS, "cache": [5, "x"]}),
    "Model.loglikelihood": (lambda e: lambda **kw: e["model"].loglikelihood(**{"requests": [([1, 2], [3])], **kw}), {
        "requests": ["x", [("a", "b")], [([1],)], [([1], [500])], [], [([], [1])], 5],
        "batch_size": BAD_POSITIVE, "max_length": [0, 10 ** 9, "x"], "progress": BAD_PROGRESS}),
    "Model.loglikelihood_rolling": (lambda e: lambda **kw: e["model"].loglikelihood_rolling(**{"ids": [1, 2, 3], **kw}), {
        "ids": ["x", [500], [1.5], [[1], [2]]], "max_length": [0, 10 ** 9, "x"],
        "prefix_token_id": [-1, 10 ** 6, "1"], "batch_size": BAD_POSITIVE, "progress": BAD_PROGRESS}),
    "Model.new_cache": (lambda e: lambda **kw: e["model"].new_cache(**kw), {
        "batch_size": BAD_POSITIVE, "capacity": [0, 10 ** 9, "x", 1.5]}),
    # pyllm.Tokenizer
    "Tokenizer.__init__": (lambda e: lambda **kw: pyllm.Tokenizer(**{"core": 5, **kw}),
                           {"core": [5, "x"], "add_bos_token": None, "add_eos_token": None, "legacy": None,
                            "bos_token_id": None, "eos_token_id": None, "pad_token_id": None, "unk_token_id": None,
                            "prefix_ids": None, "suffix_ids": None}),
    "Tokenizer.__call__": (lambda e: lambda **kw: e["tok"](**{"text": ["Hi", "Hello there"], **kw}), {
        "text": [5, [5], b"Hi"], "padding": ["max_len", 5], "add_special_tokens": BAD_BOOL,
        "return_tensors": ["pt", 5], "padding_side": ["middle", 5], "truncation": ["sideways", 5],
        "max_length": [0, -1, "x"], "pad_to_multiple_of": [0, "x"], "return_attention_mask": ["yes"],
        "return_length": ["yes"], "verbose": None, "**unsupported": {"is_split_into_words": [True]}}),
    "Tokenizer.apply_chat_template": (lambda e: lambda **kw: e["tok"].apply_chat_template(**{
        "conversation": MESSAGES, "chat_template": "{{ messages[0].content }}", **kw}), {
        "conversation": BAD_MESSAGES, "add_generation_prompt": BAD_BOOL, "tokenize": BAD_BOOL,
        "chat_template": [5], "tools": [5], "documents": [5], "continue_final_message": BAD_BOOL,
        "padding": ["max_len"], "truncation": ["sideways"], "max_length": [0, "x"], "return_tensors": ["pt"],
        "return_dict": BAD_BOOL, "tokenizer_kwargs": [{"a": 1}], "return_assistant_tokens_mask": [True],
        "sanitize_control_tokens": [True], "**template_variables": None}),
    "Tokenizer.batch_decode": (lambda e: lambda **kw: e["tok"].batch_decode(**{"sequences": [[1, 2]], **kw}), {
        "sequences": [5, "abc", [[-1]], [[1.5]]], "skip_special_tokens": BAD_BOOL,
        "clean_up_tokenization_spaces": ["yes"], "**kwargs": {"spaces_between_special_tokens": [True]}}),
    "Tokenizer.decode": (lambda e: lambda **kw: e["tok"].decode(**{"token_ids": [1, 2], **kw}), {
        "token_ids": ["abc", [-1], [10 ** 9], [1.5], 1.5], "skip_special_tokens": BAD_BOOL,
        "clean_up_tokenization_spaces": ["yes"], "**kwargs": {"spaces_between_special_tokens": [True]}}),
    "Tokenizer.encode": (lambda e: lambda **kw: e["tok"].encode(**{"text": "Hi", **kw}), {
        "text": [5, None, ["a"], b"Hi"], "add_special_tokens": BAD_BOOL,
        "**options": {"truncation": ["sideways"], "max_length": [0, "x"], "return_tensors": ["pt"]}}),
    "Tokenizer.add_special_tokens": (lambda e: lambda **kw: e["fresh_tok"]().add_special_tokens(**{
        "special_tokens_dict": {"pad_token": "<pad>"}, **kw}), {
        "special_tokens_dict": [5, "x", {"no_such_token": "<x>"}, {"pad_token": 5}],
        "replace_extra_special_tokens": BAD_BOOL, "replace_additional_special_tokens": BAD_BOOL}),
    "Tokenizer.add_tokens": (lambda e: lambda **kw: e["fresh_tok"]().add_tokens(**{"new_tokens": ["<x>"], **kw}), {
        "new_tokens": [5, [5], None], "special_tokens": BAD_BOOL}),
    "Tokenizer.convert_ids_to_tokens": (lambda e: lambda **kw: e["tok"].convert_ids_to_tokens(**{"ids": [1], **kw}), {
        "ids": ["x", [1.5]], "skip_special_tokens": BAD_BOOL}),  # an id past the vocabulary gives None
    "Tokenizer.convert_tokens_to_ids": (lambda e: e["tok"].convert_tokens_to_ids, {"tokens": [5, [5]]}),
    "Tokenizer.get_vocab": (None, {}),
    "Tokenizer.num_special_tokens_to_add": (lambda e: e["tok"].num_special_tokens_to_add, {"pair": BAD_BOOL}),
    "Tokenizer.tokenize": (lambda e: lambda **kw: e["tok"].tokenize(**{"text": "Hi", **kw}), {
        "text": [5, None, ["a"]], "add_special_tokens": BAD_BOOL}),
    "AddedToken.__init__": (lambda e: lambda **kw: pyllm.tokenizer.AddedToken(**{"content": "<x>", **kw}), {
        "content": [5, None], "single_word": BAD_BOOL, "lstrip": BAD_BOOL, "rstrip": BAD_BOOL,
        "normalized": BAD_BOOL, "special": BAD_BOOL}),
    "Model.num_parameters": (None, {}),
    "Tokenizer.encode_batch": (lambda e: lambda **kw: e["tok"].encode_batch(**{"texts": ["Hi"], **kw}), {
        "texts": [5, [5], "Hi"], "add_special_tokens": BAD_BOOL}),
    "Tokenizer.from_file": (lambda e: pyllm.Tokenizer.from_file, {"path": [5, 1.5]}),
    "Tokenizer.from_gguf": (lambda e: lambda **kw: pyllm.Tokenizer.from_gguf(**{"source": e["gguf"], **kw}),
                            {"source": [5, 1.5], **HUB}),
    "Tokenizer.from_llama2c": (lambda e: lambda **kw: pyllm.Tokenizer.from_llama2c(**{
        "path": e["tokbin"], "vocab_size": 32000, **kw}), {"path": [5, 1.5], "vocab_size": [0, -1, "x"]}),
    "Tokenizer.from_pretrained": (lambda e: lambda **kw: pyllm.Tokenizer.from_pretrained(**{
        "directory": e["dir"], **kw}), {"directory": [5, 1.5], **HUB}),
    "Tokenizer.id_to_token": (lambda e: e["tok"].id_to_token, {"token_id": [-1, 10 ** 9, "a", 1.5]}),
    "Tokenizer.token_to_id": (lambda e: e["tok"].token_to_id, {"token": [5, None]}),
    "Tokenizer.special_tokens": (None, {}),
    "Tokenizer.stream_decoder": (lambda e: e["tok"].stream_decoder, {"skip_special_tokens": BAD_BOOL}),
    "StreamDecoder.__init__": (lambda e: lambda **kw: type(e["tok"].stream_decoder())(**{"tokenizer": e["tok"], **kw}),
                               {"tokenizer": [5, "x"], "skip_special_tokens": BAD_BOOL}),
    "StreamDecoder.push": (lambda e: e["tok"].stream_decoder().push, {"token_id": [-1, "a", 10 ** 9, 1.5]}),
    "StreamDecoder.flush": (None, {}),
    # pyllm.GenerationConfig and its output record
    "GenerationConfig.__init__": (lambda e: pyllm.GenerationConfig, {"**kwargs": OPTIONS}),
    "GenerationConfig.update": (lambda e: pyllm.GenerationConfig().update, {"**kwargs": OPTIONS}),
    "GenerationConfig.copy": (None, {}),
    "GenerationConfig.to_dict": (None, {}),
    "GenerationConfig.from_dict": (lambda e: pyllm.GenerationConfig.from_dict, {
        "values": [5, "x"]}),
    "GenerationConfig.from_pretrained": (lambda e: lambda **kw: pyllm.GenerationConfig.from_pretrained(**{
        "model_dir": e["dir"], **kw}), {"model_dir": [5, 1.5], "config_file_name": [5]}),
    "GenerationConfig.get": (lambda e: pyllm.GenerationConfig().get, {"name": None, "default": None}),
    "GenerationConfig.is_set": (lambda e: pyllm.GenerationConfig().is_set, {"name": [5, "no_such_option"]}),
    "GenerationConfig.merged": (lambda e: pyllm.GenerationConfig().merged, {"other": [5, "x"]}),
    "GenerateOutput.__init__": (lambda e: pyllm.GenerateOutput, {
        "sequences": None, "num_new_tokens": None, "logprobs": None, "top_logprob_ids": None, "top_logprobs": None,
        "scores": None, "logits": None, "sequences_scores": None, "beam_indices": None, "speculation": None}),
    # KV caches (model.new_cache())
    "KVCache.copy": (None, {}),
    "KVCache.repeat": (lambda e: lambda **kw: e["model"].new_cache().repeat(*kw.values()), {
        "batch_size": [0, -1, "2", 1.5]}),
    "KVCache.take": (lambda e: lambda **kw: _filled_cache(e["model"]).take(**{"tokens": 2, **kw}), {
        "tokens": [0, 4, "2", 1.5], "row": [-1, 1, "0"], "capacity": [1, 10 ** 9, "x"]}),
    # pyllm.PrefixCache
    "PrefixCache.__init__": (lambda e: pyllm.PrefixCache, {"max_bytes": [0, -1, "1", 1.5, True]}),
    "PrefixCache.clear": (None, {}),
    # pyllm.scoring
    "scoring.loglikelihood": (lambda e: lambda **kw: scoring.loglikelihood(**{
        "model": e["model"], "requests": [([1], [2])], **kw}), {
        "model": [5, "x"], "requests": ["x", [([1],)], []], "batch_size": BAD_POSITIVE, "max_length": [0, "x"],
        "progress": BAD_PROGRESS}),
    "scoring.loglikelihood_rolling": (lambda e: lambda **kw: scoring.loglikelihood_rolling(**{
        "model": e["model"], "ids": [1, 2], **kw}), {
        "model": [5, "x"], "ids": ["x", [500]], "max_length": [0, "x"], "prefix_token_id": [-1, "1"],
        "batch_size": BAD_POSITIVE, "progress": BAD_PROGRESS}),
    "scoring.rolling_windows": (lambda e: lambda **kw: scoring.rolling_windows(**{
        "ids": [1, 2], "prefix_token_id": 1, "max_length": 4, **kw}), {
        "ids": ["x", 5], "prefix_token_id": ["1", -1], "max_length": [0, "x"]}),
    "scoring.perplexity": (lambda e: lambda **kw: scoring.perplexity(**{
        "model": e["llm"].model, "tokenizer": e["tok"], "texts": ["Hi"], **kw}), {
        "model": [5], "tokenizer": [5], "texts": [5, [5], []], "max_length": [0, "x"], "batch_size": BAD_POSITIVE,
        "progress": BAD_PROGRESS}),
}

# Parameters with no bad-value row, and why. (None in TABLE means: see here.)
def _filled_cache(model):
    """A one-row cache holding three tokens."""
    cache = model.new_cache()
    model([[1, 2, 3]], cache=cache)
    return cache


EXEMPT = {
    "Model.__init__": "built by Model.from_pretrained / from_arrays / from_gguf; only `decoder` is checked, "
                      "to refuse direct construction",
    "Tokenizer.__init__": "built by Tokenizer.from_* loaders; only `core` is checked, to refuse direct construction",
    "GenerateOutput.__init__": "a result record built by generate, not by users",
    "GenerationConfig.get": "a dict-style read: any name, default (any value) for names it does not hold",
    "Tokenizer.apply_chat_template": "**template_variables are any values the template reads",
    "Tokenizer.__call__": "verbose only quiets warnings, any value is read as true or false",
}


def _public_methods(cls):
    names = []
    for name in dir(cls):
        if name.startswith("_") and name not in ("__init__", "__call__"):
            continue
        attribute = inspect.getattr_static(cls, name)
        if isinstance(attribute, property):
            continue
        if name == "__init__" and cls.__init__ is object.__init__:
            continue
        if name == "__call__" and not hasattr(attribute, "__code__"):
            continue
        if callable(getattr(cls, name)):
            names.append(name)
    return names


def _parameters(fn):
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # C methods without a text signature: the docstring's form
        return None
    out = []
    for p in signature.parameters.values():
        if p.name in ("self", "cls"):
            continue
        out.append(("**" + p.name) if p.kind is p.VAR_KEYWORD else ("*" + p.name) if p.kind is p.VAR_POSITIONAL
                   else p.name)
    return out


def public_api(env):
    """{qualified name: callable or None} of the whole public surface."""
    api = {}
    kinds = {}
    for name in pyllm.__all__:
        value = getattr(pyllm, name)
        if inspect.isclass(value):
            kinds[name] = value
        elif callable(value):
            api[name] = value
    kinds["KVCache"] = type(env["model"].new_cache())
    kinds["StreamDecoder"] = type(env["tok"].stream_decoder())
    for cls_name, cls in kinds.items():
        for method in _public_methods(cls):
            api[f"{cls_name}.{method}"] = getattr(cls, method)
    for name in scoring.__all__:
        api[f"scoring.{name}"] = getattr(scoring, name)
    for name in pyllm.ray.__all__:
        api[f"ray.{name}"] = getattr(pyllm.ray, name)
    return api


@pytest.fixture(scope="module")
def env(tmp_path_factory, data_dir):
    config = make_config(max_position_embeddings=64)
    hf, model = make_pair(config, seed=2)
    weights = state_arrays(hf)
    directory = write_llama(tmp_path_factory.mktemp("llm"), data_dir, n_positions=128)
    llm = pyllm.LLM(directory, n_threads=1)
    env = {"model": model, "config": config, "weights": weights, "dir": directory, "llm": llm,
           "tok": llm.tokenizer, "fresh_tok": lambda: pyllm.Tokenizer.from_pretrained(directory), "gguf": f"{data_dir}/stories260K/stories260K.gguf",
           "tokbin": f"{data_dir}/llama/tokenizer.bin"}
    yield env
    llm.close()


def test_every_public_callable_has_a_row(env):
    api = public_api(env)
    missing = sorted(set(api) - set(TABLE))
    assert not missing, f"public callables without a row in TABLE: {missing}"
    stale = sorted(set(TABLE) - set(api))
    assert not stale, f"rows in TABLE for callables that are not public API: {stale}"
    for name, fn in api.items():
        params = _parameters(fn)
        if params is None:  # a C method: the row itself says its parameters
            continue
        rows = TABLE[name][1]
        without = [p for p in params if p not in rows]
        assert not without, f"{name}: parameters without a row: {without}"
        exempt = [p for p, bad in rows.items() if bad is None]
        assert not exempt or name in EXEMPT, f"{name}: {exempt} have no bad values and no reason in EXEMPT"


def test_every_generation_option_has_a_row():
    options = set(pyllm.GenerationConfig().to_dict())
    assert not options - set(OPTIONS), f"generation options without bad values: {sorted(options - set(OPTIONS))}"


def _cases():
    for name, (_, rows) in TABLE.items():
        for param, bads in rows.items():
            if bads is None:
                continue
            if isinstance(bads, dict):  # **options: each option its own parameter
                for option, values in bads.items():
                    for value in values:
                        yield pytest.param(name, option, value, True, id=f"{name}-{option}-{value!r}")
            else:
                for value in bads:
                    yield pytest.param(name, param, value, False, id=f"{name}-{param}-{value!r}")


def _say(value):
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


@pytest.mark.parametrize("name, param, value, option", list(_cases()))
def test_bad_argument_is_named_with_what_is_accepted(env, name, param, value, option):
    """TypeError or ValueError; an out-of-range token id is an IndexError (as the tokenizer tests
    pin it, like a list index), its message naming the range."""
    fn = TABLE[name][0](env)
    with pytest.raises((TypeError, ValueError, IndexError)) as info:
        fn(**{param: value})
    if isinstance(info.value, IndexError):
        assert "out of range [0, " in str(info.value), str(info.value)
    message = str(info.value)
    assert param in message, f"{name}({param}={_say(value)}): the message does not name {param}: {message!r}"
    assert any(word in message for word in ACCEPTS), \
        f"{name}({param}={_say(value)}): the message does not say what is accepted: {message!r}"
    assert not isinstance(info.value, (KeyError, OverflowError)), type(info.value)
