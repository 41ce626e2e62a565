"""What a run records, as plain values: each step, each smoke answer, each failure with its typed reason. The run
(knfleet.run) fills a `ClusterRun` per cluster; the report (outcome, metrics, HTML) reads these values and
nothing of the run's code."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from knfleet.errors import Reason


@dataclass
class StepRecord:
    title: str
    status: str  # ok | changed | failed
    seconds: float
    objects: list[str] = field(default_factory=list)  # the objects it changed (or would)
    note: str = ""


@dataclass
class Failure:
    """One failed step: its title, the typed reason and the message (the first line is the closing line's)."""

    step: str
    reason: str  # a knfleet.errors.Reason value
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def skipped(service: str, why: str) -> SmokeResult:
    return SmokeResult(service, True, None, None, None, 0, skipped=why)


def describe(r: dict[str, Any]) -> str:
    """One smoke result in a line (also for results read back from a JSON report)."""
    if r.get("skipped"):
        return f"{r['service']}: skipped ({r['skipped']})"
    via = f" (via {r['via']})" if r.get("via") else ""
    if not r["ok"]:
        return f"{r['service']}: FAILED ({r['error']}){via}"
    cold = f", cold start {r['cold_start_s']:.2f}s" if r.get("cold_start_s") is not None else ""
    return f"{r['service']}: {r['status']} in {r['latency_s']:.2f}s{cold}{via}"


COLD_PHASES = ("schedule", "pull", "start", "load", "first_answer")  # in this order (docs/cold-starts.md)
COLD_TRIGGERS = ("wake", "new_revision", "rollout_step")


@dataclass
class ColdStart:
    """One revision pod's start, phase by phase, as the cluster recorded it (knfleet.run.coldstart reads it). Phases
    are seconds, None where the cluster's records cannot tell (never guessed); total_s is created -> first answer
    (or -> Ready when no request was sent). The JSON shape of docs/cold-starts.md."""

    service: str  # namespace/name of the Knative Service
    revision: str
    pod: str
    node: str | None
    image: str | None  # the model container's image
    trigger: str  # COLD_TRIGGERS
    started: float | None  # Unix time the pod was created
    phases: dict[str, float | None]
    total_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seconds(value: float | None) -> str:
    return "? s" if value is None else f"{value:.1f} s"


def cold_start_line(d: dict[str, Any]) -> str:
    """One cold start in a line (also for one read back from a JSON report):
    `cold start ns/svc (rev on node, wake) 412.9 s: schedule 3.0 s, pull 214.0 s, ... first answer 0.4 s`."""
    phases = d.get("phases") or {}
    parts = ", ".join(f"{k.replace('_', ' ')} {_seconds(phases.get(k))}" for k in COLD_PHASES if k in phases)
    return (f"cold start {d.get('service')} ({d.get('revision')} on {d.get('node') or '?'}, {d.get('trigger')}) "
            f"{_seconds(d.get('total_s'))}: {parts}")


def path_of(via: str | None) -> str:
    """The kind of path a result took, for grouping (no pod name or address): kourier-internal, proxy, smoke_url,
    smoke_internal_url; "none" when no request was sent."""
    return (via or "").split(" ", 1)[0] or "none"


def rollout_lines(r: dict[str, Any]) -> list[str]:
    """A progressive rollout in closing lines: one per step reached (the new version's figures first), then its
    outcome (`rollout knative-qwen7b/qwen: 25 % ok (p95 0.41 s vs 0.39 s, errors 0/20 vs 0/20)`)."""
    from knfleet.desired import progressive as pr

    out = []
    for s in r.get("steps") or []:
        figs = [pr.Figures(**{k: v for k, v in (s.get(tag) or {}).items() if k in pr.Figures.__dataclass_fields__})
                for tag in ("stable", "candidate")]
        out.append(f"rollout {r['service']}: {s['percent']} % {'ok' if s.get('ok') else 'FAILED'} "
                   f"({pr.summary(*figs)})")
    if r.get("outcome"):
        what = {"promoted": f"promoted {r.get('stable')} (previous {r.get('previous')} at 0 %)",
                "first version": f"first version {r.get('stable')} is stable",
                "rolled back": f"rolled back {r.get('candidate')} at {r.get('reached')} %: {r.get('reason')}; "
                               f"{r.get('stable')} keeps 100 %"}.get(r["outcome"], r["outcome"])
        out.append(f"rollout {r['service']}: {what}")
    return out


@dataclass
class ClusterRun:
    """The record of one cluster's run, filled by the operations, read by the report."""

    cluster: str
    host: str
    steps: list[StepRecord] = field(default_factory=list)
    smoke: list[SmokeResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rollouts: list[dict[str, Any]] = field(default_factory=list)  # progressive model rollouts (desired.progressive)
    cold_starts: list[ColdStart] = field(default_factory=list)  # revision pods seen starting (run.coldstart)
    notes: list[str] = field(default_factory=list)  # what the closing lines must say besides the outcome
    locked_by: str | None = None
    started: float = field(default_factory=time.time)
    api_requests: int = 0  # requests the run made to this cluster's API (knfleet.kube.client counts them)
    knative_version: str | None = None  # the Serving version found on the cluster ("1.17.0 -> 1.17.2": upgrading)
    changes: list[dict[str, Any]] = field(default_factory=list)  # objects that differ, field by field (fielddiff)

    def keep_changes(self, stage: str, objects: list[dict[str, Any]]) -> None:
        """A stage's field-level changes (the operation may look twice: before and when executing; the last wins)."""
        self.changes = [c for c in self.changes if c.get("stage") != stage] + objects

    def step(self, title: str, status: str, started: float, objects: list[str] | None = None,
             note: str = "") -> None:
        self.steps.append(StepRecord(title, status, round(time.monotonic() - started, 3), list(objects or []), note))

    def error(self, what: str, message: str, code: Reason = Reason.FAILED) -> None:
        self.errors.append(f"{what}: {message}")
        self.failures.append(Failure(what, Reason(code).value, message))

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)
