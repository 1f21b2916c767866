"""A Hugging Face Hub stand-in on 127.0.0.1 for the Hub tests: the endpoints huggingface_hub's
snapshot_download calls, and a log of every request, so a test sees what was fetched.

- ``GET /api/models/{repo}[/revision/{rev}]``: the repo's info (id, sha, siblings);
- ``GET /api/models/{repo}/tree/{rev}``: its files (type, path, size, oid);
- ``HEAD`` and ``GET /{repo}/resolve/{rev}/{path}``: a file with the headers hf_hub_download
  checks (X-Repo-Commit, ETag, Content-Length).

Errors carry the X-Error-Code the real Hub sends (RepoNotFound, RevisionNotFound, EntryNotFound),
which huggingface_hub turns into its exception classes.
"""
import hashlib
import http.server
import json
import threading
import urllib.parse


class FakeHub:
    """repos: {repo_id: {revision: {path: bytes}}}; each revision gets a commit hash of its own."""

    def __init__(self, repos):
        self.repos = {}
        for repo_id, revisions in repos.items():
            self.repos[repo_id] = {rev: (hashlib.sha1(f"{repo_id}@{rev}".encode()).hexdigest(), files)
                                   for rev, files in revisions.items()}
        self.log = []  # (method, path with query) of every request, in order
        self._lock = threading.Lock()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._serve(self, head=True)

            def do_GET(self):
                hub._serve(self, head=False)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def commit(self, repo_id, revision="main"):
        return self.repos[repo_id][revision][0]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def fetched(self):
        """Repo paths fetched by GET .../resolve/... (file downloads), in order."""
        out = []
        for method, path in self.log:
            parts = urllib.parse.urlsplit(path).path.split("/resolve/", 1)
            if method == "GET" and len(parts) == 2:
                out.append(urllib.parse.unquote(parts[1].split("/", 1)[1]))
        return out

    # -- serving ------------------------------------------------------------------------------

    def _find(self, repo_id, rev):
        """(error code or None, commit, files) of a repo at a branch name or a commit hash."""
        revisions = self.repos.get(repo_id)
        if revisions is None:
            return "RepoNotFound", None, None
        for name, (commit, files) in revisions.items():
            if rev in (name, commit):
                return None, commit, files
        return "RevisionNotFound", None, None

    def _serve(self, handler, head):
        with self._lock:
            self.log.append((handler.command, handler.path))
        path = urllib.parse.urlsplit(handler.path).path
        if path.startswith("/api/models/"):
            return self._api(handler, path[len("/api/models/"):])
        if "/resolve/" in path:
            repo_id, rest = path.lstrip("/").split("/resolve/", 1)
            rev, _, name = rest.partition("/")
            return self._file(handler, urllib.parse.unquote(repo_id), urllib.parse.unquote(rev),
                              urllib.parse.unquote(name), head)
        self._send(handler, 404, b"", {"X-Error-Code": "RepoNotFound"})

    def _api(self, handler, rest):
        parts = [urllib.parse.unquote(p) for p in rest.split("/")]
        repo_id, tail = "/".join(parts[:2]), parts[2:]
        rev = tail[1] if len(tail) >= 2 else "main"
        error, commit, files = self._find(repo_id, rev)
        if error:
            return self._send(handler, 404, json.dumps({"error": error}).encode(), {"X-Error-Code": error})
        if tail and tail[0] == "tree":
            body = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for name, data in sorted(files.items())]
        else:
            body = {"id": repo_id, "modelId": repo_id, "sha": commit, "private": False, "downloads": 0, "likes": 0,
                    "tags": [],
                    "siblings": [{"rfilename": name} for name in sorted(files)]}
        self._send(handler, 200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _file(self, handler, repo_id, rev, name, head):
        error, commit, files = self._find(repo_id, rev)
        if error:
            return self._send(handler, 404, b"", {"X-Error-Code": error}, head)
        if name not in files:
            return self._send(handler, 404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, head)
        data = files[name]
        self._send(handler, 200, data, {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                                        "Content-Type": "application/octet-stream"}, head)

    @staticmethod
    def _send(handler, status, body, headers, head=False):
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)
