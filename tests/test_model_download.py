"""Models on first use: a hub id that is not cached is downloaded into the Hugging Face cache (size
announced) unless offline. A loopback HTTP server stands in for the hub (HF_ENDPOINT), serving a tiny
saved model; nothing leaves the machine."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from conftest import write_spec
from helpers import models_spec, write_photos
from tiny_models import save_tiny_depth, save_tiny_owlvit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub(models: dict, requests: list):
    """A server answering the few hub routes huggingface_hub uses to download a model."""

    class Hub(http.server.BaseHTTPRequestHandler):
        def _file(self):
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) >= 5 and parts[2] == "resolve":
                folder = models.get(f"{parts[0]}/{parts[1]}")
                path = folder / "/".join(parts[4:]) if folder else None
                return path if path is not None and path.is_file() else None
            return None

        def _info(self):
            for repo, folder in models.items():
                route = self.path.split("?")[0]
                files = sorted(folder.iterdir())
                if route.startswith(f"/api/models/{repo}/tree/"):  # the file listing snapshot_download walks
                    return json.dumps([{"type": "file", "path": p.name, "size": p.stat().st_size,
                                        "oid": hashlib.sha1(p.read_bytes()).hexdigest()} for p in files]).encode()
                if route.startswith(f"/api/models/{repo}"):
                    siblings = [{"rfilename": p.name, "size": p.stat().st_size} for p in files]
                    return json.dumps({"id": repo, "modelId": repo, "sha": COMMIT, "siblings": siblings}).encode()
            return None

        def _headers(self, body: bytes, etag: str | None = None) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Repo-Commit", COMMIT)
            if etag:
                self.send_header("ETag", f'"{etag}"')
            self.end_headers()

        def _answer(self, send_body: bool) -> None:
            requests.append((self.command, self.path))
            info, file = self._info(), self._file()
            if info is not None:
                self._headers(info)
                if send_body:
                    self.wfile.write(info)
            elif file is not None:
                body = file.read_bytes()
                self._headers(body, hashlib.sha256(body).hexdigest())
                if send_body:
                    self.wfile.write(body)
            else:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()

        def do_GET(self):  # noqa: N802 (the http.server API)
            self._answer(True)

        def do_HEAD(self):  # noqa: N802
            self._answer(False)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def hub(tmp_path):
    models = {"tiny-org/depth": save_tiny_depth(tmp_path / "served_depth"),
              "tiny-org/owl": save_tiny_owlvit(tmp_path / "served_owl")}
    requests: list = []
    server = _hub(models, requests)
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


def _build(tmp_path, endpoint: str, *args: str, offline_env: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1")
    env.pop("HF_HUB_OFFLINE", None)
    if offline_env:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", "forge.cli", "build", str(tmp_path / "spec.yaml"),
                           "--db", str(tmp_path / "db"), *args], capture_output=True, text=True, env=env, timeout=600)


def test_a_hub_model_downloads_on_first_use_and_never_offline(tmp_path, hub):
    endpoint, requests = hub
    write_photos(tmp_path / "photos", count=3)
    write_spec(tmp_path, models_spec("tiny-org/depth", "tiny-org/owl"))

    refused = _build(tmp_path, endpoint, "--offline")
    assert refused.returncode == 2 and "this run is offline" in refused.stderr and not requests
    assert _build(tmp_path, endpoint, offline_env=True).returncode == 2 and not requests

    first = _build(tmp_path, endpoint)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "downloading model tiny-org/depth (" in first.stderr and " MiB) into the Hugging Face cache" in first.stderr
    assert any(path.endswith("/model.safetensors") for _, path in requests)
    assert (tmp_path / "hf_home" / "hub" / "models--tiny-org--depth").is_dir()

    requests.clear()
    again = _build(tmp_path, endpoint, "--offline")  # cached now: offline works, and nothing is fetched
    assert again.returncode == 0, again.stderr[-2000:]
    assert "downloading model" not in again.stderr and not requests
