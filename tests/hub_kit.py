"""A Hugging Face Hub cache written the way ``hf_hub_download`` / ``snapshot_download`` leave it (not a
test module): ``models--owner--name/blobs/<sha256>``, ``snapshots/<commit>/<path>`` symlinks into the
blobs, ``refs/<branch>`` holding the commit. ``huggingface_hub`` reads it offline (``HF_HUB_OFFLINE=1``)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def commit_id(label: str) -> str:
    """A 40-hex commit id (what the Hub's refs hold), made from a label."""
    return hashlib.sha1(label.encode()).hexdigest()


def add_to_cache(cache: Path, repo_id: str, folder: Path, commit: str, refs: tuple[str, ...] = ("main",)) -> Path:
    """Put every file of ``folder`` into ``cache`` as ``repo_id`` at ``commit``; point ``refs`` at it."""
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    for ref in refs:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


def offline_cache(monkeypatch, cache: Path) -> Path:
    """Point the Hub client at ``cache`` with ``HF_HUB_OFFLINE=1`` (environment, read when called)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


class LocalHub:
    """A Hub endpoint on 127.0.0.1 that speaks the calls a push makes (create repo, validate the card's
    YAML, preupload, commit as ndjson) and keeps what it received: ``created`` repo ids, ``validated``
    cards, ``commits`` (summary and ``{path: bytes}``). ``HfApi(endpoint=hub.url)`` talks to it like to the Hub."""

    commit_oid = commit_id("pushed")

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.created, self.commits, self.validated = [], [], []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, reply = hub.answer(self.path.split("?")[0], body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, body: bytes) -> tuple[int, dict]:
        import base64

        if path == "/api/repos/create":
            request = json.loads(body)
            repo_id = f"{request['organization']}/{request['name']}" if request.get("organization") else request["name"]
            self.created.append(repo_id)
            return 200, {"url": f"{self.url}/{repo_id}"}
        if path == "/api/validate-yaml":  # the Hub checks a README's metadata header before the commit
            self.validated.append(json.loads(body)["content"])
            return 200, {}
        if "/preupload/" in path:
            files = json.loads(body)["files"]
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
        if "/commit/" in path:
            repo_id = path.split("/api/models/")[1].split("/commit/")[0]
            items = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = next(i["value"] for i in items if i["key"] == "header")
            files = {i["value"]["path"]: base64.b64decode(i["value"]["content"]) for i in items if i["key"] == "file"}
            self.commits.append({"summary": header["summary"], "files": files})
            return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{self.commit_oid}", "commitOid": self.commit_oid}
        return 404, {"error": f"not served: {path}"}

    def __enter__(self) -> LocalHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
