"""The client sends a request again when the API server says "try again" (429, 5xx), as client-go does, and
only then: a cluster that does not answer is reported at once, a write is never sent twice after a plain 5xx.

A real HTTP server on a loopback port answers with a script of statuses; the client is knfleet's own, loaded
from a kubeconfig naming that server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from knfleet.kube import client
from knfleet.kube.client import Cluster, KubeError, Target, Unreachable, poll, retry_delay


class Script(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.seen: list[str] = []


class Handler(BaseHTTPRequestHandler):
    server: Script

    def log_message(self, fmt: str, *args: object) -> None:
        return

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.seen.append(f"{self.command} {self.path}")
        status, headers = self.server.answers.pop(0) if self.server.answers else (200, {})
        body = json.dumps({"kind": "Status", "reason": "TooManyRequests" if status == 429 else "",
                           "message": f"answer {status}"} if status >= 300 else {"kind": "NamespaceList",
                                                                                 "items": []}).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer  # noqa: N815


def _kubeconfig(path: Path, server: str) -> str:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return str(path)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Script, Cluster]]:
    monkeypatch.setattr(client.time, "sleep", lambda s: None)  # the delays are retry_delay's, tested below
    srv = Script()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    cluster = Cluster(Target("c", _kubeconfig(tmp_path / "kubeconfig", url), request_timeout=5))
    yield srv, cluster
    cluster.close()
    srv.shutdown()
    srv.server_close()


def test_a_read_answered_429_then_5xx_is_sent_again_until_it_answers(server):
    srv, cluster = server
    srv.answers = [(429, {"Retry-After": "1"}), (503, {}), (504, {}), (200, {})]
    assert cluster.request("GET", "/api/v1/namespaces") == {"kind": "NamespaceList", "items": []}
    assert srv.seen == ["GET /api/v1/namespaces"] * 4
    assert cluster.retried == 3 and cluster.requests == 4


def test_a_read_gives_up_after_the_retries_naming_the_last_answer(server):
    srv, cluster = server
    srv.answers = [(500, {})] * (client.RETRIES + 1) + [(200, {})]
    with pytest.raises(KubeError) as err:
        cluster.request("GET", "/api/v1/namespaces")
    assert err.value.status == 500 and "answer 500" in str(err.value)
    assert len(srv.seen) == client.RETRIES + 1


def test_a_write_answered_with_a_plain_5xx_is_not_sent_twice(server):
    srv, cluster = server
    srv.answers = [(500, {}), (200, {})]
    with pytest.raises(KubeError) as err:
        cluster.request("POST", "/api/v1/namespaces", body={"metadata": {"name": "x"}})
    assert err.value.status == 500
    assert srv.seen == ["POST /api/v1/namespaces"]


def test_a_write_shed_by_priority_and_fairness_is_sent_again(server):
    srv, cluster = server
    srv.answers = [(429, {"Retry-After": "1"}), (503, {"Retry-After": "1"}), (200, {})]
    cluster.request("PATCH", "/api/v1/namespaces/x", body={}, content_type="application/apply-patch+yaml")
    assert srv.seen == ["PATCH /api/v1/namespaces/x"] * 3


def test_refusals_and_client_errors_are_not_retried(server):
    srv, cluster = server
    srv.answers = [(404, {}), (409, {}), (403, {}), (422, {})]
    for _ in range(4):
        with pytest.raises(KubeError):
            cluster.request("GET", "/api/v1/namespaces/x")
    assert len(srv.seen) == 4 and cluster.retried == 0


def test_a_cluster_that_does_not_answer_is_reported_at_once(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cluster = Cluster(Target("c", _kubeconfig(tmp_path / "kc", f"http://127.0.0.1:{port}"), request_timeout=5))
    with pytest.raises(Unreachable):
        cluster.request("GET", "/version")
    assert cluster.retried == 0


def test_a_wait_outlasts_answers_that_say_try_again_but_not_other_errors():
    calls = []

    def flaky() -> tuple[bool, str]:
        calls.append(1)
        if len(calls) < 3:
            raise KubeError("c", "list pods", 503, "ServiceUnavailable", "etcd leader changed")
        return True, "ready"

    assert poll(flaky, timeout=5, interval=0) == "ready" and len(calls) == 3

    def forbidden() -> tuple[bool, str]:
        raise KubeError("c", "list pods", 403, "Forbidden", "no")

    with pytest.raises(KubeError):
        poll(forbidden, timeout=5, interval=0)


@pytest.mark.parametrize(("method", "status", "retry_after", "attempt", "expected"), [
    ("GET", 429, "3", 0, 3.0),
    ("POST", 429, None, 0, 0.5),
    ("POST", 429, "600", 0, 4.0),       # capped: a wait stays bounded by the run's timeouts
    ("PATCH", 503, "1", 2, 1.0),        # 5xx with Retry-After: not processed, any method
    ("PATCH", 503, None, 0, None),      # a write's plain 5xx: its caller decides
    ("DELETE", 500, None, 0, None),
    ("GET", 500, None, 0, 0.5),
    ("GET", 504, None, 3, 4.0),
    ("GET", 504, "soon", 1, 1.0),       # an unreadable Retry-After: the backoff
    ("GET", 501, None, 0, None),
    ("GET", 404, None, 0, None),
])
def test_retry_delay(method, status, retry_after, attempt, expected):
    assert retry_delay(method, status, retry_after, attempt) == expected
