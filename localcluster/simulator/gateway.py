"""Kourier's gateway (internal entry point) and the public nginx proxy, routing by Host header to a
simulated vLLM server, with the activator's hold-until-ready for services at zero."""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from localcluster.simulator import openai
from localcluster.simulator.knative import Controller

COLD_START_HEADER = "X-Cold-Start-Wait-Seconds"


class Gateway(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, controller: Controller, public: bool, port: int = 0) -> None:
        self.controller = controller
        self.public = public
        super().__init__(("127.0.0.1", port), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Gateway
    protocol_version = "HTTP/1.1"
    server_version = "envoy"
    sys_version = ""

    def version_string(self) -> str:
        return "envoy"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet; the simulator logs what matters
        return

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode(), headers=headers)

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        route = self.server.controller.route_for(host)
        if route is None or (self.server.public and not route.public):
            self._send(404, b"", "text/plain")  # Envoy: no virtual host matches
            return
        if not route.ready or not route.revision:
            self._send(503, b"no healthy upstream", "text/plain")
            return
        ctl = self.server.controller
        ctl.begin(route.revision)
        try:
            t0 = time.monotonic()
            try:
                waited = ctl.activate(route, timeout=route.timeout)
            except TimeoutError as err:
                self._send(503, str(err).encode(), "text/plain")
                return
            extra = {COLD_START_HEADER: f"{waited:.3f}"}
            self._serve_model(method, route.model, route.model_root, body, extra, t0)
        finally:
            ctl.end(route.revision)

    def _serve_model(self, method: str, model: str, root: str, body: bytes, extra: dict[str, str],
                     t0: float) -> None:
        path = self.path.split("?")[0]
        extra["x-envoy-upstream-service-time"] = str(int((time.monotonic() - t0) * 1000))
        if method == "GET" and path == "/health":
            self._send(200, b"", "text/plain", extra)
        elif method == "GET" and path == "/v1/models":
            self._json(200, openai.models(model, root), extra)
        elif method == "POST" and path == "/v1/chat/completions":
            req = openai.parse_chat_request(body, model)
            if isinstance(req, tuple):
                self._json(req[0], req[1], extra)
            elif req.get("stream"):
                self._stream(openai.stream(req, model), extra)
            else:
                self._json(200, openai.completion(req, model), extra)
        else:
            self._json(404, openai.error(404, f"Not Found: {method} {path}", "NotFoundError")[1], extra)

    def _stream(self, chunks, extra: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        for data in chunks:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
