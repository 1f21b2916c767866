"""Model names to local paths: a path that exists is used as it is; any other name that reads as a
Hugging Face Hub id ("org/name") is fetched through huggingface_hub (the ``pyllm[hub]`` extra)
into huggingface_hub's own cache, and only the files pyllm reads for the call.

Nothing here opens a socket itself: ``snapshot_download`` does the fetching, the caching, the
offline mode (``HF_HUB_OFFLINE=1``, ``local_files_only=True``), ``HF_ENDPOINT`` and tokens. Without
huggingface_hub installed a name that is not a local path is an error that says how to get it.

Weights come in a second step once the first has shown how they are stored: model.safetensors,
or the shards its index names, so a repo's other copies of the weights (.bin, .gguf, consolidated
files) are never fetched. A GGUF repo holds many quantizations: ``filename=`` picks one, and
without it a repo with one .gguf file uses that file.
"""
import glob
import json
import os
import re

from ._args import check_bool

__all__ = ["resolve", "INSTALL_HINT", "TOKENIZER_FILES", "MODEL_FILES"]

INSTALL_HINT = 'pip install "pyllm[hub]"'

# The files each loader reads (Tokenizer.from_pretrained, Model.from_pretrained), by repo path.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "chat_template.jinja")
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")
_WEIGHTS = "model.safetensors"
_INDEX = "model.safetensors.index.json"
_KINDS = {"model": MODEL_FILES, "tokenizer": TOKENIZER_FILES, "llm": MODEL_FILES + TOKENIZER_FILES}

# huggingface_hub's rule for repo ids (validate_repo_id): "name" or "namespace/name" of letters,
# digits, "-", "_", "."; no "--" or "..", not starting or ending with "-" or ".", at most 96 chars.
_REPO_ID = re.compile(r"^(?:[\w][\w.-]*/)?[\w][\w.-]*$")
# Names that end like a file name are files that are missing, not Hub ids.
_FILE_SUFFIXES = (".gguf", ".json", ".bin", ".safetensors", ".model", ".pt", ".pth")


def looks_like_hub_id(name):
    """Whether name could be a Hub repo id (and is not written as a path or a file name)."""
    return (isinstance(name, str) and len(name) <= 96 and _REPO_ID.match(name) is not None
            and "--" not in name and ".." not in name and not name.endswith((".", "-"))
            and not name.lower().endswith(_FILE_SUFFIXES))


def _not_found_locally(name, what):
    return f"{what} {name!r} was not found locally (no file or directory {os.path.abspath(name)})"


def resolve(name, kind, revision=None, filename=None, local_files_only=False):
    """The local path for a loader's name argument.

    kind is what the caller reads: "model" (Model.from_pretrained), "tokenizer"
    (Tokenizer.from_pretrained), "llm" (both) or "gguf" (one GGUF file: from_gguf). An existing
    path wins (filename= then names a file inside it); otherwise name is a Hub id, resolved
    through huggingface_hub at revision (None: the default branch). Returns a directory or,
    for a GGUF, the file. FileNotFoundError (or OSError for other Hub failures) says what was
    looked for and where."""
    path = os.fspath(name)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if revision is not None and not isinstance(revision, str):
        raise TypeError(f"revision must be a branch, tag or commit hash string, got {type(revision).__name__}")
    local_files_only = check_bool("local_files_only", local_files_only)
    if os.path.exists(path):
        if filename is not None:
            if not os.path.isdir(path):
                raise ValueError(f"filename={filename!r} names a file inside a directory or a Hub repo, but {path} "
                                 f"is a file: pass the file alone")
            inner = os.path.join(path, os.fspath(filename))
            if not os.path.exists(inner):
                raise FileNotFoundError(f"filename={filename!r} not found in {path} (no file {inner})")
            return inner
        return path
    what = "model" if kind != "tokenizer" else "tokenizer"
    if not looks_like_hub_id(path):
        raise FileNotFoundError(f"{_not_found_locally(path, what)}, and it is not a Hugging Face Hub id "
                                f"('org/name')")
    try:
        import huggingface_hub
        from huggingface_hub import constants  # noqa: F401  (a lazy attribute otherwise)
    except ImportError:
        raise FileNotFoundError(f"{_not_found_locally(path, what)}; to load it as a Hugging Face Hub id, install "
                                f"huggingface_hub: {INSTALL_HINT}") from None
    return _Hub(huggingface_hub, path, revision, local_files_only).resolve(kind, filename)


def _error_class(hf, name):
    """huggingface_hub's exception class of that name (its module moved across versions), or a
    class nothing raises."""
    import importlib
    for module in ("huggingface_hub.errors", "huggingface_hub.utils"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type):
            return cls
    return type(name, (Exception,), {})


class _Hub:
    """One repo id at one revision, and the messages that say where it was looked for."""

    def __init__(self, hf, repo_id, revision, local_files_only):
        self.hf = hf
        self.repo_id = repo_id
        self.revision = revision
        self.local_files_only = bool(local_files_only)
        self.endpoint = hf.constants.ENDPOINT
        self.cache_dir = hf.constants.HF_HUB_CACHE
        self.offline = self.local_files_only or bool(getattr(hf.constants, "HF_HUB_OFFLINE", False))

    # -- messages ---------------------------------------------------------------------------

    def _what(self, files):
        rev = repr(self.revision) if self.revision else "the default branch"
        return f"Hub repo {self.repo_id!r} (revision: {rev}; files looked for: {', '.join(files)})"

    def _where(self):
        return (f"the local path {os.path.abspath(self.repo_id)} (absent), the Hub endpoint {self.endpoint}, "
                f"the cache {self.cache_dir}")

    def _offline_reason(self):
        if self.local_files_only:
            return "local_files_only=True"
        return "HF_HUB_OFFLINE=1"

    # -- fetching ---------------------------------------------------------------------------

    def _refusal(self, error, files, revision):
        """The pyllm exception for a huggingface_hub error that means the repo, the revision or
        the access is missing, or None for the others (a connection that failed, ...)."""
        hf = self.hf
        if isinstance(error, _error_class(hf, "GatedRepoError")):
            return PermissionError(f"{self._what(files)}: the repo is gated (its terms must be accepted on the Hub, "
                                   f"then log in with `hf auth login`); looked in {self._where()}")
        if isinstance(error, _error_class(hf, "RepositoryNotFoundError")):
            return FileNotFoundError(f"{self._what(files)}: no such repo (or it is private) at {self.endpoint}; "
                                     f"looked in {self._where()}")
        if isinstance(error, _error_class(hf, "RevisionNotFoundError")):
            return FileNotFoundError(f"{self._what(files)}: the repo has no revision {revision!r} at "
                                     f"{self.endpoint}; looked in {self._where()}")
        return None

    def _snapshot(self, files, revision=None):
        """snapshot_download of exactly these repo paths; the snapshot folder."""
        revision = revision or self.revision
        try:
            return self.hf.snapshot_download(self.repo_id, revision=revision,
                                             allow_patterns=[glob.escape(f) for f in files],
                                             local_files_only=self.local_files_only)
        except Exception as e:
            refusal = self._refusal(e, files, revision)
            if refusal is not None:
                raise refusal from e
            if not isinstance(e, _error_class(self.hf, "LocalEntryNotFoundError")):
                raise
            if self.offline:
                reason = f"the Hub is not asked ({self._offline_reason()})"
            else:
                reason = f"the Hub could not be reached ({type(e.__cause__ or e).__name__})"
            raise FileNotFoundError(f"{self._what(files)}: not in the cache {self.cache_dir} (or only in part) and "
                                    f"{reason}; looked in {self._where()}") from e

    def _listing(self, folder=None):
        """(the repo's file paths, None) from the Hub, or when it cannot be reached (those in the
        cached snapshot folder: the files fetched before, why the Hub was not asked)."""
        reason = f"the Hub is not asked ({self._offline_reason()})"
        if not self.offline:
            try:
                return self.hf.HfApi().list_repo_files(self.repo_id, revision=self.revision), None
            except Exception as e:
                refusal = self._refusal(e, ["*.gguf"], self.revision)
                if refusal is not None:
                    raise refusal from e
                # the Hub unreachable: what the cache holds is all there is
                reason = f"the Hub could not be reached ({type(e).__name__})"
        folder = folder or self._cached_folder()
        if folder is None or not os.path.isdir(folder):
            return [], reason
        return [os.path.relpath(os.path.join(root, f), folder).replace(os.sep, "/")
                for root, _, names in os.walk(folder) for f in names], reason

    def _cached_folder(self):
        """The snapshot folder the cache holds for this revision (huggingface_hub's cache layout:
        refs/<revision> names the commit, snapshots/<commit> holds the files), or None."""
        from huggingface_hub.file_download import repo_folder_name
        storage = os.path.join(self.cache_dir, repo_folder_name(repo_id=self.repo_id, repo_type="model"))
        revision = self.revision or "main"
        commit = revision
        if not re.fullmatch(r"[0-9a-f]{40}", revision):
            try:
                with open(os.path.join(storage, "refs", revision)) as f:
                    commit = f.read().strip()
            except OSError:
                return None
        return os.path.join(storage, "snapshots", commit)

    def _gguf_file(self, filename, folder=None, wanted=()):
        """The local path of one GGUF file of the repo (filename None: its only .gguf file; wanted:
        the files looked for before, which the repo lacks)."""
        if filename is None:
            listing, cache_only = self._listing(folder)
            ggufs = sorted(f for f in listing if f.lower().endswith(".gguf"))
            if not ggufs:
                lacks = f" (nor {' or '.join(wanted)})" if wanted else ""
                where = f"the cache holds no GGUF file of it and {cache_only}" if cache_only else "the repo has no GGUF file"
                raise FileNotFoundError(f"{self._what(list(wanted) + ['*.gguf'])}: {where}{lacks}; "
                                        f"looked in {self._where()}")
            if len(ggufs) > 1:
                raise ValueError(f"Hub repo {self.repo_id!r} holds {len(ggufs)} GGUF files: {', '.join(ggufs)}; "
                                 f"pass filename= to pick one")
            filename = ggufs[0]
        filename = os.fspath(filename)
        folder = self._snapshot([filename])
        path = os.path.join(folder, filename)
        if not os.path.isfile(path):
            listing, cache_only = self._listing(folder)
            ggufs = sorted(f for f in listing if f.lower().endswith(".gguf"))
            if cache_only:
                lacks = f"{filename!r} is not in the cache and {cache_only}"
                listed = f"; the GGUF files cached: {', '.join(ggufs)}" if ggufs else ""
            else:
                lacks = f"the repo has no file {filename!r}"
                listed = f"; its GGUF files: {', '.join(ggufs)}" if ggufs else ""
            raise FileNotFoundError(f"{self._what([filename])}: {lacks}{listed}; looked in {self._where()}")
        return path

    def _weights(self, folder):
        """Fetch the safetensors weights into the snapshot folder: the shards the index names,
        else model.safetensors."""
        index = os.path.join(folder, _INDEX)
        if os.path.isfile(index):
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f).get("weight_map")
            if not isinstance(weight_map, dict):
                return  # the checkpoint reader names the damaged index
            files = sorted({s for s in weight_map.values() if isinstance(s, str)})
        else:
            files = [_WEIGHTS]
        # The folder's name is the commit: the second call then needs no new revision lookup.
        commit = os.path.basename(folder)
        self._snapshot(files, commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None)
        absent = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
        if absent:
            listing, cache_only = self._listing(folder)
            if cache_only:
                raise FileNotFoundError(f"{self._what(absent)}: not in the cache and {cache_only}; "
                                        f"looked in {self._where()}")
            ggufs = sorted(f for f in listing if f.lower().endswith(".gguf"))
            hint = f"; it holds GGUF files, load one with filename=: {', '.join(ggufs)}" if ggufs else ""
            raise FileNotFoundError(f"{self._what(absent)}: the repo has no {', '.join(absent)} (pyllm reads "
                                    f"safetensors weights: model.safetensors or the shards of {_INDEX}){hint}; "
                                    f"looked in {self._where()}")

    def resolve(self, kind, filename):
        if kind == "gguf" or filename is not None:
            return self._gguf_file(filename)
        folder = self._snapshot(_KINDS[kind])
        if kind in ("model", "llm"):
            if not os.path.isfile(os.path.join(folder, "config.json")):
                # a GGUF repo: its only .gguf, or say which exist
                return self._gguf_file(None, folder, ["config.json"])
            self._weights(folder)
        elif not any(os.path.isfile(os.path.join(folder, f)) for f in ("tokenizer.json", "tokenizer.model")):
            return self._gguf_file(None, folder, ["tokenizer.json", "tokenizer.model"])
        return folder
