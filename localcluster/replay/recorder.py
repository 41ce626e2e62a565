"""The recorder: an HTTPS proxy in front of a real cluster's kube-apiserver that forwards every request with the
cluster's admin credentials and appends each exchange to a JSON lines file.

    python -m localcluster.replay record --kubeconfig K --out recording.jsonl --folder F

writes F/kubeconfig (the proxy's URL, its own CA, a bearer token) and F/ready when it listens. Upgrades
(port-forward, exec) are not proxied: the bench runs with smoke=false.
"""

from __future__ import annotations

import base64
import http.client
import secrets
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from localcluster.replay import certs
from localcluster.replay.recording import KEPT_HEADERS, Exchange

HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "authorization", "content-length"}


def upstream_context(kubeconfig: Path, workdir: Path) -> tuple[str, ssl.SSLContext]:
    """(host:port, TLS context with the kubeconfig's CA and client certificate) of the kubeconfig's current context."""
    doc = yaml.safe_load(kubeconfig.read_text())
    ctx_name = doc["current-context"]
    ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
    tls = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    cert, key = workdir / "upstream.crt", workdir / "upstream.key"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))
    key.chmod(0o600)
    tls.load_cert_chain(str(cert), str(key))
    return cluster["server"].removeprefix("https://").rstrip("/"), tls


class Recorder:
    def __init__(self, kubeconfig: Path, out: Path, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.out = folder, out
        self.upstream, self.upstream_tls = upstream_context(kubeconfig, folder)
        self.token = secrets.token_hex(16)
        self.lock = threading.Lock()
        self.count = 0
        self._local = threading.local()
        self.out.write_text("")

    def connection(self) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPSConnection(self.upstream, context=self.upstream_tls, timeout=60)
        return conn

    def forward(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, bytes]:
        for attempt in (0, 1):
            conn = self.connection()
            try:
                conn.request(method, target, body=body or None, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.headers, resp.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def record(self, ex: Exchange) -> None:
        with self.lock:
            with self.out.open("a", encoding="utf-8") as fh:
                fh.write(ex.to_json() + "\n")
            self.count += 1


def handler_for(rec: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _any(self) -> None:
            if self.headers.get("Authorization") != f"Bearer {rec.token}":
                self._send(401, {"Content-Type": "application/json"}, b'{"kind":"Status","code":401}')
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            status, rh, data = rec.forward(self.command, self.path, headers, body)
            kept = {h: rh[h] for h in KEPT_HEADERS if rh.get(h)}
            rec.record(Exchange(self.command, self.path, status, data, body, kept))
            self._send(status, kept, data)

        def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any  # noqa: N815 - http.server's names

    return Handler


def serve(kubeconfig: Path, out: Path, folder: Path) -> None:
    """Listen on 127.0.0.1 (a free port) until killed; F/kubeconfig and F/ready say how to reach it."""
    rec = Recorder(kubeconfig, out, folder)
    ca = certs.ensure(folder)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(rec))
    httpd.daemon_threads = True
    httpd.socket = ca.server_context().wrap_socket(httpd.socket, server_side=True)
    port = httpd.server_address[1]
    certs.write_kubeconfig(folder / "kubeconfig", "recorded", f"https://127.0.0.1:{port}", ca.cert_pem, rec.token)
    (folder / "ready").write_text(str(port))
    httpd.serve_forever()


