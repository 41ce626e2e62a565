"""The data plane: Kourier's gateways and the public nginx proxy, routing by Host header along the Knative
Ingresses (as Envoy would), with the activator's hold for revisions at zero, to a simulated vLLM server.

The internal entry point stands for `kourier-internal` (every host), the public one for the knative-nginx
proxy in front of `kourier` (ExternalIP rules only).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from localcluster.simulator import metrics, openai
from localcluster.simulator.autoscaler import Autoscaler
from localcluster.simulator.kourier import Rule

COLD_START_HEADER = "X-Cold-Start-Wait-Seconds"


class Routes:
    """The latest routing table and revisions, swapped in by the reconcile loop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.table: dict[str, list[Rule]] = {}
        self.revisions: dict[tuple[str, str], dict[str, Any]] = {}

    def update(self, table: dict[str, list[Rule]], revisions: dict[tuple[str, str], dict[str, Any]]) -> None:
        with self.lock:
            self.table, self.revisions = table, revisions

    def lookup(self, host: str, external_only: bool) -> tuple[list[Rule], dict[tuple[str, str], dict[str, Any]]]:
        with self.lock:
            rules = [r for r in self.table.get(host, []) if r.external or not external_only]
            return rules, self.revisions


class Counters:
    """Requests per revision (shared by both gateways): which of them a revision's error rate fails."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[tuple[str, str], int] = {}

    def next(self, namespace: str, revision: str) -> int:
        with self.lock:
            n = self.seen.get((namespace, revision), 0) + 1
            self.seen[(namespace, revision)] = n
            return n


class Gateway(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, routes: Routes, autoscaler: Autoscaler, public: bool, port: int = 0,
                 registry: metrics.Registry | None = None, counters: Counters | None = None) -> None:
        self.routes = routes
        self.autoscaler = autoscaler
        self.public = public
        self.registry = registry or metrics.Registry()
        self.counters = counters or Counters()
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
        path = urlsplit(self.path).path or "/"  # origin-form, or absolute-form as sent to a proxy (RFC 9112 3.2)
        rules, revisions = self.server.routes.lookup(host, external_only=self.server.public)
        chosen = None
        for rule in rules:
            p = rule.path_for(path, {k.lower(): v for k, v in self.headers.items()})
            if p is not None:
                chosen = p.pick()
                break
        if chosen is None:
            self._send(404, b"", "text/plain")  # Envoy: no virtual host / route matches
            return
        rev = revisions.get((chosen.namespace, chosen.revision))
        if rev is None:
            self._send(503, b"no healthy upstream", "text/plain")
            return
        spec = rev.get("spec") or {}
        timeout = float(spec.get("timeoutSeconds") or 300)
        containers = spec.get("containers") or []
        model = openai.served_model_name(containers)
        root = openai._flag([*(containers[0].get("args") or [])], "--model") if containers else None
        scaler = self.server.autoscaler
        scaler.begin(chosen.namespace, chosen.revision)
        try:
            t0 = time.monotonic()
            try:
                waited = scaler.activate(chosen.namespace, chosen.revision, timeout)
            except TimeoutError as err:
                self._send(503, str(err).encode(), "text/plain")
                return
            extra = {COLD_START_HEADER: f"{waited:.3f}", **dict(chosen.headers)}
            labels = (chosen.namespace, chosen.revision,
                      ((rev.get("metadata") or {}).get("labels") or {}).get("serving.knative.dev/service", ""))
            behaviour = openai.Behaviour(containers[0].get("env") if containers else None)
            self._serve_model(method, path, model, root or model, body, extra, t0, behaviour, labels)
        finally:
            scaler.end(chosen.namespace, chosen.revision)

    def _serve_model(self, method: str, path: str, model: str, root: str, body: bytes, extra: dict[str, str],
                     t0: float, behaviour: openai.Behaviour, labels: tuple[str, str, str]) -> None:
        extra["x-envoy-upstream-service-time"] = str(int((time.monotonic() - t0) * 1000))
        ns, revision, service = labels
        registry = self.server.registry
        if method == "GET" and path == "/health":
            self._send(200, b"", "text/plain", extra)
        elif method == "GET" and path == "/v1/models":
            self._json(200, openai.models(model, root), extra)
        elif method == "POST" and path == "/v1/chat/completions":
            req = openai.parse_chat_request(body, model)
            if isinstance(req, tuple):
                registry.request(ns, revision, service, req[0])
                self._json(req[0], req[1], extra)
                return
            if behaviour.fails(self.server.counters.next(ns, revision)):
                registry.request(ns, revision, service, 500)
                self._json(500, openai.error(500, "simulated failure (KNFLEET_SIM_ERROR_RATE)",
                                             "InternalServerError")[1], extra)
                return
            time.sleep(behaviour.latency_s)  # before the first token
            registry.first_token(ns, revision, model, time.monotonic() - t0)
            registry.request(ns, revision, service, 200)
            if req.get("stream"):
                self._stream(openai.stream(req, model, behaviour.answer), extra)
            else:
                self._json(200, openai.completion(req, model, behaviour.answer), extra)
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
