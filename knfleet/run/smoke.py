"""Smoke tests: the runbook's chat request to each model service, through an entry point, with its Host header."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

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


def chat(service: str, base_url: str, host: str, model: str, deadline_s: float, was_at_zero: bool,
         session: requests.Session | None = None) -> SmokeResult:
    """POST /v1/chat/completions until it answers 200 with an OpenAI body naming `model`, or the deadline."""
    http = session or requests.Session()
    url = base_url.rstrip("/") + "/v1/chat/completions"
    end = time.monotonic() + deadline_s
    attempts, last = 0, "no attempt"
    while True:
        attempts += 1
        t0 = time.monotonic()
        try:
            resp = http.post(url, json=runbook_request(model), headers={"Host": host},
                             timeout=max(1.0, end - time.monotonic()))
            latency = time.monotonic() - t0
            if resp.status_code == 200:
                try:
                    body = resp.json()
                except ValueError:
                    body = None
                problem = check_body(body, model)
                if problem is None:
                    return SmokeResult(service, True, 200, latency, latency if was_at_zero else None, attempts)
                return SmokeResult(service, False, 200, latency, None, attempts, problem)
            last = f"HTTP {resp.status_code}: {resp.text[:200].strip()}"
            if resp.status_code not in RETRY_STATUSES:
                return SmokeResult(service, False, resp.status_code, latency, None, attempts, last)
        except requests.RequestException as err:
            last = f"{type(err).__name__}: {err}"
        if time.monotonic() >= end:
            return SmokeResult(service, False, None, None, None, attempts, f"no good answer within {deadline_s:.0f}s; "
                                                                            f"last: {last}")
        time.sleep(0.5)
