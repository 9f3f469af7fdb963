"""Loopback servers for hub tests: a plain file server and a minimal Hugging Face hub (resolve, and the
create-repo / preupload / commit endpoints `HfApi.upload_folder` calls, which publish what is uploaded)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def serve(routes: dict[str, bytes], hf: bool = False, *, claimed_sizes: dict[str, int] | None = None,
          trickle: dict[str, float] | None = None):
    """Serve `routes` (URL path -> bytes) on 127.0.0.1; yields the base URL. With `hf`, answer like the hub.

    Hostile servers: `claimed_sizes` (path -> bytes) is the size HEAD answers for a path, whose GET then sends
    its whole body with no Content-Length; `trickle` (path -> seconds) sends that path's body 1 KB at a time,
    pausing between pieces."""
    requests: list[str] = []
    claimed_sizes, trickle = claimed_sizes or {}, trickle or {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self, body: bool) -> None:
            requests.append(f"{self.command} {self.path}")
            data = routes.get(self.path.split("?")[0])
            if data is None:
                self.send_response(404)
                if hf:
                    self.send_header("X-Error-Code", "EntryNotFound")
                self.end_headers()
                return
            self.send_response(200)
            if hf:
                # the commit a revision resolves to: a 40-hex revision is itself, a branch resolves to zeros
                rev = self.path.split("?")[0].split("/resolve/", 1)[-1].split("/", 1)[0]
                self.send_header("X-Repo-Commit", rev if re.fullmatch("[0-9a-f]{40}", rev) else "0" * 40)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            claimed = claimed_sizes.get(self.path.split("?")[0])
            if not (body and claimed is not None):
                self.send_header("Content-Length", str(len(data) if claimed is None else claimed))
            self.end_headers()
            if not body:
                return
            pause = trickle.get(self.path.split("?")[0])
            step = 1000 if pause else max(len(data), 1)
            try:
                for i in range(0, len(data), step):
                    self.wfile.write(data[i:i + step])
                    self.wfile.flush()
                    if pause:
                        time.sleep(pause)
            except OSError:  # the client gave up (as it should with a hostile server)
                pass

        def do_HEAD(self) -> None:
            self._reply(False)

        def do_GET(self) -> None:
            self._reply(True)

        def _json(self, obj: object) -> None:
            body = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            requests.append(f"{self.command} {self.path}")
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?")[0]
            if not hf:
                self.send_response(405)
                self.end_headers()
            elif path == "/api/repos/create":
                spec = json.loads(body)
                repo = f"{spec.get('organization') or 'user'}/{spec['name']}" if "/" not in spec["name"] else spec["name"]
                self._json({"url": f"http://{self.headers['Host']}/{repo}", "name": repo})
            elif path == "/api/validate-yaml":  # the card's YAML header: accepted
                self._json({"errors": [], "warnings": []})
            elif "/preupload/" in path:
                files = json.loads(body)["files"]
                self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
            elif "/commit/" in path:  # /api/models/{org}/{name}/commit/{revision}: NDJSON header, then files
                repo = path[len("/api/models/"):].split("/commit/")[0]
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        value = item["value"]
                        routes[f"/{repo}/resolve/main/{value['path']}"] = base64.b64decode(value["content"])
                self._json({"commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{'1' * 40}", "commitOid": "1" * 40,
                            "pullRequestUrl": None})
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", requests
    finally:
        server.shutdown()
        server.server_close()


def checkpoint_routes(directory: Path, prefix: str) -> dict[str, bytes]:
    return {f"{prefix}/{p.name}": p.read_bytes() for p in directory.iterdir() if p.is_file()}


def load_release_from_fake_hub(repo: str, folder: Path, files: tuple[str, ...], code: str, cache: Path,
                               revision: str | None = None):
    """Serve `files` of `folder` as hub repo `repo` at `revision` (a pinned commit: only there; None: the main
    branch) and run `code` in a fresh process against it (huggingface_hub reads HF_ENDPOINT at import).
    Returns (completed process, the requests the server saw)."""
    import os
    import subprocess
    import sys

    routes = {f"/{repo}/resolve/{revision or 'main'}/{f}": (folder / f).read_bytes() for f in files}
    with serve(routes, hf=True) as (base, requests):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             cwd=Path(__file__).parent.parent,
                             env={**os.environ, "HF_ENDPOINT": base, "ZOO_CACHE": str(cache), "HF_HUB_OFFLINE": "0"})
    return out, requests
