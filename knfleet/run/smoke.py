"""Smoke tests: the runbook's chat request to each model service, through an entry point, with its Host header."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

SYSTEM = "你是一个有用的助手."
USER = "怎么计算1+1."
RETRY_STATUSES = {404, 502, 503, 504}


def runbook_request(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]}


@dataclass
class SmokeResult:
    service: str
    ok: bool
    status: int | None
    latency_s: float | None
    cold_start_s: float | None
    attempts: int
    error: str | None = None
    skipped: str | None = None  # why no request was sent (say, at zero and not woken: an idle GPU stays free)
    via: str | None = None  # the entry point: kourier-internal (port-forward), smoke_url or smoke_internal_url

    def line(self) -> str:
        return describe(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(r: dict[str, Any]) -> str:
    """One smoke result in a line (also for results read back from a JSON report)."""
    if r.get("skipped"):
        return f"{r['service']}: skipped ({r['skipped']})"
    via = f" (via {r['via']})" if r.get("via") else ""
    if not r["ok"]:
        return f"{r['service']}: FAILED ({r['error']}){via}"
    cold = f", cold start {r['cold_start_s']:.2f}s" if r.get("cold_start_s") is not None else ""
    return f"{r['service']}: {r['status']} in {r['latency_s']:.2f}s{cold}{via}"


def path_of(via: str | None) -> str:
    """The kind of path a result took, for grouping (no pod name or address): kourier-internal, proxy, smoke_url,
    smoke_internal_url; "none" when no request was sent."""
    return (via or "").split(" ", 1)[0] or "none"


def check_body(body: Any, model: str) -> str | None:
    """Why an answer is not an OpenAI chat completion from `model` (None when it is)."""
    if not isinstance(body, dict):
        return "the answer is not a JSON object"
    if body.get("model") != model:
        return f"the answer names model {body.get('model')!r}, expected {model!r}"
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0].get("message"), dict):
        return "the answer has no choices[0].message"
    if not isinstance(body.get("usage"), dict):
        return "the answer has no usage counts"
    return None


def skipped(service: str, why: str) -> SmokeResult:
    return SmokeResult(service, True, None, None, None, 0, skipped=why)


class Unreachable(Exception):
    """No HTTP answer (connection refused, timed out, the exec could not run): worth another attempt."""


Send = Callable[[float], tuple[int, str]]  # one request with this timeout -> (HTTP status, body); or Unreachable
Host = str | Callable[[], str]  # the Host header, or what gives it for each attempt (it may change while retrying)


def host_of(host: Host) -> str:
    return host() if callable(host) else host


def loopback(url: str) -> bool:
    """Whether `url` names this machine (127.0.0.0/8, ::1, localhost): a port-forward's listener."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def over_http(base_url: str, host: Host, model: str, session: requests.Session | None = None) -> Send:
    """The runbook's request sent from this machine to `base_url` (a port-forward, smoke_url, a load balancer).
    A loopback address (the port-forward's listener) is never reached through a proxy: HTTP_PROXY/HTTPS_PROXY/
    ALL_PROXY in the environment would send the request (and the service's answer) to the proxy, which cannot reach
    this machine's loopback anyway."""
    http = session or requests.Session()
    if loopback(base_url):
        http.trust_env = False  # no proxy from the environment (nor .netrc credentials) for this machine's own ports
    url = base_url.rstrip("/") + "/v1/chat/completions"

    def send(timeout: float) -> tuple[int, str]:
        try:
            resp = http.post(url, json=runbook_request(model), headers={"Host": host_of(host)},
                             timeout=timeout)
        except requests.RequestException as err:
            raise Unreachable(f"{type(err).__name__}: {err}") from None
        return resp.status_code, resp.text

    return send


STATUS_MARK = "\n__knfleet_http_status__ "


def curl_command(base_url: str, host: str, model: str, timeout: float) -> list[str]:
    """The runbook's `curl` as run inside a pod: the body, then a marked line with the HTTP status."""
    return ["curl", "-sS", "-m", str(max(1, int(timeout))), "-o", "-", "-w", STATUS_MARK.replace("\n", "\\n")
            + "%{http_code}", "-H", f"Host: {host}", "-H", "Content-Type: application/json",
            "--data-binary", json.dumps(runbook_request(model), ensure_ascii=False),
            base_url.rstrip("/") + "/v1/chat/completions"]


def parse_curl(stdout: str) -> tuple[int, str] | None:
    """(status, body) from curl_command's output; None when curl printed no status line (it got no answer)."""
    body, mark, status = stdout.rpartition(STATUS_MARK)
    if not mark or not status.strip().isdigit() or int(status) == 0:
        return None
    return int(status), body


def over_exec(run: Callable[[list[str], float], Any], base_url: str, host: Host, model: str) -> Send:
    """The runbook's request sent by curl from inside a pod (`run` executes a command there, an ExecResult)."""

    def send(timeout: float) -> tuple[int, str]:
        result = run(curl_command(base_url, host_of(host), model, timeout), timeout + 10)
        answer = parse_curl(result.stdout)
        if answer is None:
            why = (result.stderr.strip() or result.error or f"exit code {result.exit_code}")[:300]
            if result.exit_code == 127 or "executable file not found" in result.error:
                raise RuntimeError(f"the pod has no curl ({why})")
            raise Unreachable(f"curl in the pod: {why}")
        return answer

    return send


def chat(service: str, send: Send, model: str, deadline_s: float, was_at_zero: bool) -> SmokeResult:
    """Send the runbook's chat request until it answers 200 with an OpenAI body naming `model`, or the deadline
    (404/502/503/504 and no answer at all are retried: routes and revisions may still be on their way)."""
    end = time.monotonic() + deadline_s
    attempts, last = 0, "no attempt"
    while True:
        attempts += 1
        t0 = time.monotonic()
        try:
            status, text = send(max(1.0, end - time.monotonic()))
            latency = time.monotonic() - t0
            if status == 200:
                try:
                    body = json.loads(text)
                except ValueError:
                    body = None
                problem = check_body(body, model)
                if problem is None:
                    return SmokeResult(service, True, 200, latency, latency if was_at_zero else None, attempts)
                return SmokeResult(service, False, 200, latency, None, attempts, problem)
            last = f"HTTP {status}: {text[:200].strip()}"
            if status not in RETRY_STATUSES:
                return SmokeResult(service, False, status, latency, None, attempts, last)
        except Unreachable as err:
            last = str(err)
        except RuntimeError as err:  # no point in another attempt
            return SmokeResult(service, False, None, None, None, attempts, str(err))
        if time.monotonic() >= end:
            return SmokeResult(service, False, None, None, None, attempts, f"no good answer within {deadline_s:.0f}s; "
                                                                            f"last: {last}")
        time.sleep(0.5)


def proxy_url(service: dict[str, Any], node_address: str | None) -> str | None:
    """Where the public proxy's Service is reached from outside the cluster: its load balancer's address
    (status.loadBalancer.ingress: ip or hostname) on the Service's port, else a NodePort on `node_address`
    (host data `proxy_node_address`). None when it has neither (ClusterIP, or a load balancer still pending)."""
    spec = service.get("spec") or {}
    ports = spec.get("ports") or []
    port = next((p for p in ports if p.get("name") == "http"), ports[0] if ports else None)
    if port is None:
        return None
    for ingress in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        where = ingress.get("ip") or ingress.get("hostname")
        if where and spec.get("type") == "LoadBalancer":
            return f"http://{_bracket(where)}:{port.get('port', 80)}"
    if node_address and spec.get("type") in ("NodePort", "LoadBalancer") and port.get("nodePort"):
        return f"http://{_bracket(node_address)}:{port['nodePort']}"
    return None


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address
