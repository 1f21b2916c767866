"""Hub ids through huggingface_hub, against a fake Hub on 127.0.0.1 (tests/fake_hub.py).

Every load runs in a child process: huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE
when it is imported. The children share one HF_HOME per test, so a later child sees the cache an
earlier one filled."""
import json
import os

import pytest

from conftest import run_cli, run_isolated
from fake_hub import FakeHub
from llm_models import write_llama
from pyllm.checkpoint import load_safetensors, save_safetensors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _files(directory):
    out = {}
    for name in os.listdir(directory):
        with open(os.path.join(directory, name), "rb") as f:
            out[name] = f.read()
    return out


def _sharded(files):
    """The same checkpoint as an index and two shards (pyllm reads the shards the index names)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        single = os.path.join(tmp, "model.safetensors")
        with open(single, "wb") as f:
            f.write(files["model.safetensors"])
        weights = load_safetensors(single)
        names = sorted(weights)
        shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
                  "model-00002-of-00002.safetensors": names[len(names) // 2:]}
        out = {k: v for k, v in files.items() if k != "model.safetensors"}
        weight_map = {}
        for shard, members in shards.items():
            path = os.path.join(tmp, shard)
            save_safetensors(path, {n: weights[n] for n in members}, metadata={"format": "pt"})
            with open(path, "rb") as f:
                out[shard] = f.read()
            weight_map.update({n: shard for n in members})
        out["model.safetensors.index.json"] = json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
    return out


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, data_dir):
    """A small random LLaMA directory with a tokenizer, and its files."""
    directory = write_llama(tmp_path_factory.mktemp("llama"), data_dir)
    return directory, _files(directory)


@pytest.fixture
def hub(model_files, data_dir):
    directory, files = model_files
    # Files a loader must never fetch: other weight formats and copies beside the ones pyllm reads.
    decoys = {"README.md": b"# a model card\n", "pytorch_model.bin": b"\x80\x02pickle" * 100,
              "original/consolidated.safetensors": b"\0" * 4096, "model-q8.gguf": b"GGUF" + b"\0" * 64}
    stories = os.path.join(data_dir, "stories260K", "stories260K.gguf")
    vocab = os.path.join(data_dir, "llamacpp", "ggml-vocab-llama-spm.gguf")
    with open(stories, "rb") as f:
        stories_bytes = f.read()
    with open(vocab, "rb") as f:
        vocab_bytes = f.read()
    server = FakeHub({
        "tiny/llama": {"main": {**files, **decoys}, "v1": dict(files)},
        "tiny/sharded": {"main": _sharded(files)},
        "tiny/ggufs": {"main": {"stories260K.gguf": stories_bytes, "vocab-only.gguf": vocab_bytes,
                                "README.md": b"two quantizations\n"}},
        "tiny/one-gguf": {"main": {"stories260K.gguf": stories_bytes}},
        "tiny/no-weights": {"main": {"config.json": files["config.json"]}},
        # GGUF repos often carry the original config.json beside their .gguf files
        "tiny/gguf-and-config": {"main": {"config.json": files["config.json"], "a.Q8_0.gguf": stories_bytes,
                                          "a.F32.gguf": stories_bytes}},
    })
    yield server
    server.stop()


def _env(hub, home, **extra):
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0"}
    env.update(extra)
    return env


def _run(code, env):
    kind, message = run_isolated(code, env=env)
    return kind, message


def _ok(code, env):
    kind, message = _run(code, env)
    assert kind is None, f"{kind}: {message}"


_SAME_LOGITS = """
import numpy as np, pyllm
ids = [[1, 403, 260, 29, 511, 7, 88]]  # inside both vocabularies (32000 and 512)
hub = pyllm.Model.from_pretrained({name!r}{extra})
local = pyllm.{local}
a, b = hub(ids), local(ids)
assert a.shape == b.shape and np.array_equal(a, b), "logits differ from the local load"
"""


def test_hub_id_downloads_only_the_files_read_and_loads_as_the_directory(hub, model_files, tmp_path):
    directory, _ = model_files
    env = _env(hub, tmp_path)
    _ok(_SAME_LOGITS.format(name="tiny/llama", extra="", local=f"Model.from_pretrained({directory!r})"), env)
    assert sorted(hub.fetched()) == ["config.json", "generation_config.json", "model.safetensors"]
    assert not any(path.endswith((".bin", ".gguf", "README.md")) for _, path in hub.log)

    # Then offline, the server stopped: the same load from the cache it filled, no request at all.
    hub.stop()
    hub.log.clear()
    _ok(_SAME_LOGITS.format(name="tiny/llama", extra="", local=f"Model.from_pretrained({directory!r})"),
        _env(hub, tmp_path, HF_HUB_OFFLINE="1"))
    _ok(_SAME_LOGITS.format(name="tiny/llama", extra=", local_files_only=True",
                            local=f"Model.from_pretrained({directory!r})"), env)
    assert hub.log == []


def test_tokenizer_and_llm_by_hub_id(hub, model_files, tmp_path):
    directory, _ = model_files
    env = _env(hub, tmp_path)
    _ok(f"""
import pyllm
tok = pyllm.Tokenizer.from_pretrained("tiny/llama")
ref = pyllm.Tokenizer.from_pretrained({directory!r})
text = "Hello world, how are you?"
assert tok.encode(text) == ref.encode(text) and tok.chat_template == ref.chat_template
""", env)
    assert sorted(hub.fetched()) == ["tokenizer.model", "tokenizer_config.json"]
    hub.log.clear()
    _ok(f"""
import pyllm
hub, local = pyllm.LLM("tiny/llama"), pyllm.LLM({directory!r})
assert hub.generate("Once upon a time", max_new_tokens=8) == local.generate("Once upon a time", max_new_tokens=8)
assert hub.model_dir == "tiny/llama"
""", env)
    # One snapshot for both loaders; the tokenizer files came with the first call.
    assert sorted(hub.fetched()) == ["config.json", "generation_config.json", "model.safetensors"]


def test_revision_reaches_the_hub(hub, model_files, tmp_path):
    directory, _ = model_files
    env = _env(hub, tmp_path)
    _ok(_SAME_LOGITS.format(name="tiny/llama", extra=", revision='v1'", local=f"Model.from_pretrained({directory!r})"),
        env)
    assert ("GET", "/api/models/tiny/llama/revision/v1") in hub.log
    commit = hub.commit("tiny/llama", "v1")
    assert os.path.isdir(tmp_path / "hub" / "models--tiny--llama" / "snapshots" / commit)
    assert all(commit in path for method, path in hub.log if "/resolve/" in path)
    kind, message = _run("import pyllm; pyllm.Model.from_pretrained('tiny/llama', revision='v9')", env)
    assert kind == "FileNotFoundError"
    assert "'v9'" in message and "tiny/llama" in message and hub.url in message


def test_sharded_checkpoint_fetches_the_shards_its_index_names(hub, model_files, tmp_path):
    directory, _ = model_files
    _ok(_SAME_LOGITS.format(name="tiny/sharded", extra="", local=f"Model.from_pretrained({directory!r})"),
        _env(hub, tmp_path))
    assert sorted(hub.fetched()) == ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                                     "model-00002-of-00002.safetensors", "model.safetensors.index.json"]


def test_gguf_repo_needs_filename_when_it_holds_several(hub, data_dir, tmp_path):
    stories = os.path.join(data_dir, "stories260K", "stories260K.gguf")
    env = _env(hub, tmp_path)
    kind, message = _run("import pyllm; pyllm.Model.from_pretrained('tiny/ggufs')", env)
    assert kind == "ValueError"
    assert "stories260K.gguf" in message and "vocab-only.gguf" in message and "filename=" in message
    assert hub.fetched() == []
    _ok(_SAME_LOGITS.format(name="tiny/ggufs", extra=", filename='stories260K.gguf'",
                            local=f"Model.from_gguf({stories!r})"), env)
    _ok(f"""
import numpy as np, pyllm
a = pyllm.Model.from_gguf("tiny/ggufs", filename="stories260K.gguf", local_files_only=True)
b = pyllm.Model.from_gguf({stories!r})
assert np.array_equal(a([1, 2, 3]), b([1, 2, 3]))
t = pyllm.Tokenizer.from_gguf("tiny/ggufs", filename="stories260K.gguf")
assert t.encode("Once upon a time") == pyllm.Tokenizer.from_gguf({stories!r}).encode("Once upon a time")
""", env)
    assert hub.fetched() == ["stories260K.gguf"]
    kind, message = _run("import pyllm; pyllm.Model.from_gguf('tiny/ggufs', filename='vocab-only.gguf')",
                         _env(hub, tmp_path, HF_HUB_OFFLINE="1"))
    assert kind == "FileNotFoundError"  # on the Hub, but offline and never fetched
    assert "vocab-only.gguf" in message and "HF_HUB_OFFLINE=1" in message and str(tmp_path / "hub") in message
    assert hub.fetched() == ["stories260K.gguf"]
    kind, message = _run("import pyllm; pyllm.Model.from_gguf('tiny/ggufs', filename='q4.gguf')", env)
    assert kind == "FileNotFoundError"
    assert "'q4.gguf'" in message and "tiny/ggufs" in message and hub.url in message
    assert "stories260K.gguf" in message  # the files that are there


def test_repo_with_one_gguf_loads_by_name(hub, data_dir, tmp_path):
    stories = os.path.join(data_dir, "stories260K", "stories260K.gguf")
    env = _env(hub, tmp_path)
    _ok(f"""
import pyllm
a, b = pyllm.LLM("tiny/one-gguf"), pyllm.LLM({stories!r})
assert a.generate("Once upon a time", max_new_tokens=12) == b.generate("Once upon a time", max_new_tokens=12)
""", env)
    assert hub.fetched() == ["stories260K.gguf"]
    # Offline the listing comes from the cache: the one file fetched before.
    hub.log.clear()
    _ok("import pyllm; pyllm.Model.from_pretrained('tiny/one-gguf')", _env(hub, tmp_path, HF_HUB_OFFLINE="1"))
    assert hub.log == []


def test_missing_repo_file_and_cache_say_what_and_where(hub, tmp_path):
    env = _env(hub, tmp_path)
    kind, message = _run("import pyllm; pyllm.Model.from_pretrained('tiny/absent')", env)
    assert kind == "FileNotFoundError"
    assert "'tiny/absent'" in message and hub.url in message and str(tmp_path / "hub") in message
    assert "config.json" in message and os.path.join(REPO_PARENT, "tiny", "absent") in message

    kind, message = _run("import pyllm; pyllm.Model.from_gguf('tiny/absent')", env)  # listing its .gguf files
    assert kind == "FileNotFoundError"
    assert "'tiny/absent'" in message and "no such repo" in message and hub.url in message

    kind, message = _run("import pyllm; pyllm.Model.from_pretrained('tiny/no-weights')", env)
    assert kind == "FileNotFoundError"
    assert "'tiny/no-weights'" in message and "model.safetensors" in message and hub.url in message

    kind, message = _run("import pyllm; pyllm.Model.from_pretrained('tiny/gguf-and-config')", env)
    assert kind == "FileNotFoundError"
    assert "model.safetensors" in message and "filename=" in message and "a.F32.gguf, a.Q8_0.gguf" in message
    assert not any(name.endswith(".gguf") for name in hub.fetched())

    kind, message = _run("import pyllm; pyllm.Tokenizer.from_pretrained('tiny/no-weights')", env)
    assert kind == "FileNotFoundError"
    assert "tokenizer.json" in message and "tokenizer.model" in message and "'tiny/no-weights'" in message

    # Offline with nothing cached: the cache that was looked in, and why the Hub was not asked.
    hub.log.clear()
    kind, message = _run("import pyllm; pyllm.LLM('tiny/llama')", _env(hub, tmp_path / "empty", HF_HUB_OFFLINE="1"))
    assert kind == "FileNotFoundError"
    assert "HF_HUB_OFFLINE=1" in message and str(tmp_path / "empty" / "hub") in message and "'tiny/llama'" in message
    kind, message = _run("import pyllm; pyllm.Model.from_gguf('tiny/ggufs')", _env(hub, tmp_path / "empty", HF_HUB_OFFLINE="1"))
    assert kind == "FileNotFoundError"
    assert "the cache holds no GGUF file" in message and "HF_HUB_OFFLINE=1" in message and "'tiny/ggufs'" in message
    assert hub.log == []


# The working directory of the children (conftest.run_isolated): where a relative name is looked for.
REPO_PARENT = os.path.dirname(REPO)

_NO_HUB = """
import socket, sys
sys.modules["huggingface_hub"] = None  # as if it were not installed
opened = []
real_connect = socket.socket.connect
def connect(self, address):
    opened.append(address)
    return real_connect(self, address)
socket.socket.connect = connect
import pyllm
try:
    {call}
except FileNotFoundError as e:
    assert opened == [], f"a socket was opened: {{opened}}"
    raise
"""


@pytest.mark.parametrize("call", ["pyllm.Model.from_pretrained('tiny/llama')", "pyllm.Tokenizer.from_pretrained('tiny/llama')",
                                  "pyllm.LLM('tiny/llama')", "pyllm.Model.from_gguf('tiny/ggufs', filename='a.gguf')"])
def test_without_huggingface_hub_nothing_touches_the_network(hub, tmp_path, call):
    kind, message = _run(_NO_HUB.format(call=call), _env(hub, tmp_path))
    assert kind == "FileNotFoundError"
    assert 'pip install "pyllm[hub]"' in message and "not found locally" in message
    assert os.path.join(REPO_PARENT, "tiny") in message
    assert hub.log == []


def test_local_path_wins_over_a_hub_id(hub, model_files, tmp_path, monkeypatch):
    """A directory named like a repo id is loaded from disk; the Hub is never asked."""
    directory, files = model_files
    local = tmp_path / "tiny" / "llama"
    local.mkdir(parents=True)
    for name, data in files.items():
        (local / name).write_bytes(data)
    kind, message = run_isolated(f"""
import os, numpy as np, pyllm
os.chdir({str(tmp_path)!r})
a = pyllm.Model.from_pretrained("tiny/llama")
b = pyllm.Model.from_pretrained({directory!r})
assert np.array_equal(a([1, 2, 3]), b([1, 2, 3]))
pyllm.Tokenizer.from_pretrained("tiny/llama")
""", env=_env(hub, tmp_path / "home"))
    assert kind is None, message
    assert hub.log == []


@pytest.mark.parametrize("name", ["./missing-model", "/no/such/dir", "models/llama.gguf", "a/b/c"])
def test_names_that_are_not_hub_ids_are_missing_paths(hub, tmp_path, name):
    kind, message = _run(f"import pyllm; pyllm.Model.from_pretrained({name!r})", _env(hub, tmp_path))
    assert kind == "FileNotFoundError"
    assert "not found locally" in message and "not a Hugging Face Hub id" in message
    assert hub.log == []


def test_bad_argument_types_are_named(hub, tmp_path):
    kind, message = _run("import pyllm; pyllm.Model.from_pretrained(42)", _env(hub, tmp_path))
    assert kind == "TypeError" and "model_dir" in message and "int" in message
    kind, message = _run("import pyllm; pyllm.Model.from_pretrained('tiny/llama', revision=3)", _env(hub, tmp_path))
    assert kind == "TypeError" and "revision" in message
    kind, message = _run("import pyllm; pyllm.Model.from_gguf('tiny/ggufs', filename=3)", _env(hub, tmp_path))
    assert kind == "TypeError" and "filename" in message
    assert hub.fetched() == []


def test_cli_takes_a_hub_id(hub, tmp_path):
    code, out, err = run_cli(["generate", "-m", "tiny/llama", "--max-new-tokens", "4", "Once"], env=_env(hub, tmp_path))
    assert code == 0, err
    assert sorted(set(hub.fetched())) == ["config.json", "generation_config.json", "model.safetensors",
                                          "tokenizer.model", "tokenizer_config.json"]
    hub.log.clear()
    code, out, err = run_cli(["tokenize", "-m", "tiny/llama", "Once"], env=_env(hub, tmp_path / "other"))
    assert code == 0, err
    assert sorted(hub.fetched()) == ["tokenizer.model", "tokenizer_config.json"]  # no weights for tokenize
    code, out, err = run_cli(["info", "-m", "tiny/llama"], env=_env(hub, tmp_path, HF_HUB_OFFLINE="1"))
    assert code == 0, err
    assert str(tmp_path / "hub" / "models--tiny--llama" / "snapshots") in out
    code, out, err = run_cli(["info", "-m", "tiny/absent"], env=_env(hub, tmp_path))
    assert code == 3 and "'tiny/absent'" in err and "no such repo" in err


def test_lm_eval_backend_takes_a_hub_id(hub, model_files, tmp_path):
    """lm-eval's `pretrained=` and `revision=` as for its hf backend: the same scores as the directory."""
    directory, _ = model_files
    _ok(f"""
from pyllm.lm_eval import PyllmLM
from lm_eval.api.instance import Instance
def scores(lm):
    reqs = [Instance("loglikelihood", {{}}, ("Once upon a", " time"), 0)]
    return lm.loglikelihood(reqs)
by_id, local = PyllmLM("tiny/llama", revision="v1"), PyllmLM({directory!r})
assert scores(by_id) == scores(local), (scores(by_id), scores(local))
assert by_id.pretrained == "tiny/llama"
""", _env(hub, tmp_path))
    assert ("GET", "/api/models/tiny/llama/revision/v1") in hub.log
    assert sorted(hub.fetched()) == ["config.json", "generation_config.json", "model.safetensors",
                                     "tokenizer.model", "tokenizer_config.json"]
