"""What a Prometheus server scrapes from the simulated data plane, under the names the real parts use: vLLM's
time-to-first-token histogram (`vllm:time_to_first_token_seconds`, with the `namespace` and `revision` labels a
scrape of the revision's pods gives) and Knative's queue-proxy request count per revision and response code class
(`revision_app_request_count`). Served on /metrics of a port of its own (the cluster folder's metrics.url)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def _labels(pairs: dict[str, str]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in sorted(pairs.items())) + "}"


class Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ttft: dict[tuple[str, str, str], list[float]] = {}  # (namespace, revision, model) -> bucket counts, sum
        self.requests: dict[tuple[str, str, str, int], int] = {}  # (namespace, revision, service, code) -> count

    def first_token(self, namespace: str, revision: str, model: str, seconds: float) -> None:
        with self.lock:
            h = self.ttft.setdefault((namespace, revision, model), [0.0] * (len(TTFT_BUCKETS) + 2))
            for i, le in enumerate(TTFT_BUCKETS):
                if seconds <= le:
                    h[i] += 1
            h[-2] += 1  # +Inf (the count)
            h[-1] += seconds

    def request(self, namespace: str, revision: str, service: str, code: int) -> None:
        with self.lock:
            key = (namespace, revision, service, code)
            self.requests[key] = self.requests.get(key, 0) + 1

    def text(self) -> str:
        out = ["# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
               "# TYPE vllm:time_to_first_token_seconds histogram"]
        with self.lock:
            for (ns, rev, model), h in sorted(self.ttft.items()):
                base = {"namespace": ns, "revision": rev, "model_name": model}
                for i, le in enumerate(TTFT_BUCKETS):
                    out.append(f"vllm:time_to_first_token_seconds_bucket{_labels({**base, 'le': repr(le)})} {h[i]:g}")
                out.append(f"vllm:time_to_first_token_seconds_bucket{_labels({**base, 'le': '+Inf'})} {h[-2]:g}")
                out.append(f"vllm:time_to_first_token_seconds_count{_labels(base)} {h[-2]:g}")
                out.append(f"vllm:time_to_first_token_seconds_sum{_labels(base)} {h[-1]:g}")
            out += ["# HELP revision_app_request_count The number of requests that are routed to user-container",
                    "# TYPE revision_app_request_count counter"]
            for (ns, rev, svc, code), n in sorted(self.requests.items()):
                out.append("revision_app_request_count" + _labels({
                    "namespace_name": ns, "revision_name": rev, "service_name": svc, "configuration_name": svc,
                    "response_code": str(code), "response_code_class": f"{code // 100}xx"}) + f" {n}")
        return "\n".join(out) + "\n"


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, fmt: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:  # noqa: N802
        body = self.server.registry.text().encode() if self.path.split("?")[0] == "/metrics" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
