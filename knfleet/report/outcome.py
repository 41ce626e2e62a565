"""What happened on each cluster, as values: the outcome built from the record a run keeps per cluster
(knfleet.report.records) and pyinfra's state after the run, the closing lines, and the one JSON schema shared
by the run report (`KNFLEET_REPORT`), the rollout report and `knfleet status --json` (docs/run.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from knfleet import __version__
from knfleet.report.records import ClusterRun, cold_start_line, describe, rollout_lines

SCHEMA = "knfleet.report/v1"
# status of a cluster after a run
CONVERGED, CHANGED, FAILED, INCOMPLETE, LOCKED = "converged", "changed", "failed", "incomplete", "locked"
WOULD_CHANGE, IN_SYNC, UNTOUCHED, UNREACHABLE, DRIFT = "would-change", "in-sync", "untouched", "unreachable", "drift"
BAD = (FAILED, INCOMPLETE, LOCKED, UNREACHABLE, DRIFT)


@dataclass
class ClusterOutcome:
    """One cluster in a report (run, rollout or status). Fields that do not apply stay empty."""

    cluster: str
    status: str
    host: str = ""
    wave: int | None = None
    reason: str = ""
    errors: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)  # {step, reason (knfleet.errors.Reason), message}
    warnings: list[str] = field(default_factory=list)
    changed_operations: list[str] = field(default_factory=list)
    would_change: list[str] = field(default_factory=list)
    failed_operations: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    smoke: list[dict[str, Any]] = field(default_factory=list)
    smoke_after_bake: list[dict[str, Any]] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)  # per object: {object, stage, why, patch: [RFC 6902]}
    services: list[dict[str, Any]] = field(default_factory=list)
    rollouts: list[dict[str, Any]] = field(default_factory=list)  # progressive model rollouts: steps, figures, outcome
    cold_starts: list[dict[str, Any]] = field(default_factory=list)  # records.ColdStart: phases of each pod start
    notes: list[str] = field(default_factory=list)  # said in the closing lines (e.g. models = []: every service gone)
    knative_version: str | None = None
    reachable: bool | None = None
    duration_s: float | None = None
    api_requests: int | None = None

    @property
    def failure_reason(self) -> str | None:
        """The first failure's typed reason (knfleet.errors.Reason), None when nothing failed."""
        if self.failures:
            return self.failures[0].get("reason")
        return "Locked" if self.status == LOCKED else None

    @property
    def ok(self) -> bool:
        return self.status not in BAD and all(s.get("ok", True) for s in [*self.smoke, *self.smoke_after_bake])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _version_after(found: str | None, status: str) -> str | None:
    """The version a cluster runs after the run: the target of an upgrade that converged, else what was found
    (None when the run never read it)."""
    if found and status in (CONVERGED, CHANGED):
        return found.split("->")[-1].strip()
    return found


def outcomes(state: Any, dry: bool = False) -> dict[str, ClusterOutcome]:
    """Per cluster, from pyinfra's state after a run and each connector's record."""
    out: dict[str, ClusterOutcome] = {}
    for host in state.inventory:
        if not state.is_host_in_limit(host):
            continue
        run = getattr(host.connector, "run", None)  # knfleet.run.context.ClusterState
        record: ClusterRun | None = run.record if run is not None else None
        changed, failed, would, pending = [], [], [], 0
        for op_hash, op_data in state.ops.get(host, {}).items():
            meta = op_data.operation_meta
            names = ", ".join(sorted(state.get_op_meta(op_hash).names))
            if dry:
                if meta._maybe_is_change:
                    would.append(names)
                continue
            if not meta.is_complete():
                pending += 1
            elif meta.did_error():
                failed.append(names)
            elif meta.did_change():
                changed.append(names)
        errors = list(record.errors) if record else []
        failures = [f.as_dict() for f in record.failures] if record else []
        if record and record.locked_by:
            status = LOCKED
        elif dry:
            status = WOULD_CHANGE if would else IN_SYNC
        elif host in state.failed_hosts or failed or errors:
            status = FAILED
        elif pending:
            status = INCOMPLETE
        else:
            status = CHANGED if changed else CONVERGED
        if status == FAILED and not errors:
            errors = [f"operation failed: {failed[0] if failed else 'could not connect'} (see its output)"]
            failures = [{"step": failed[0] if failed else "connect", "reason": "Failed", "message": errors[0]}]
        name = host.name.split("/", 1)[-1]
        out[name] = ClusterOutcome(
            cluster=name, host=host.name, status=status, errors=errors, failures=failures,
            rollouts=list(record.rollouts) if record else [],
            cold_starts=[c.as_dict() for c in record.cold_starts] if record else [],
            notes=list(record.notes) if record else [],
            warnings=list(record.warnings) if record else [],
            changed_operations=changed, would_change=would, failed_operations=failed,
            steps=[asdict(s) for s in record.steps] if record else [],
            smoke=[r.as_dict() for r in record.smoke] if record else [],
            duration_s=round(time.time() - record.started, 2) if record else None,
            api_requests=record.api_requests if record else None,
            changes=list(record.changes) if record else [],
            # what the cluster runs: after a converged run the version it was brought to, else what was found
            knative_version=_version_after(record.knative_version, status) if record else None,
        )
    return out


def line(o: ClusterOutcome, action: str) -> list[str]:
    """The closing line(s) of one cluster."""
    status = o.status
    if status in (FAILED, LOCKED):
        text = [f"knfleet: {o.cluster}: {'LOCKED' if status == LOCKED else 'FAILED'} ({action}) - "
                f"{o.errors[0].splitlines()[0] if o.errors else o.reason}"]
    elif status == INCOMPLETE:
        text = [f"knfleet: {o.cluster}: INCOMPLETE ({action}) - some operations did not run"]
    elif status == WOULD_CHANGE:
        text = [f"knfleet: {o.cluster}: dry run ({action}): {len(o.would_change)} operation(s) would change: "
                + "; ".join(o.would_change)]
    elif status == CHANGED:
        text = [f"knfleet: {o.cluster}: {action} done, {len(o.changed_operations)} operation(s) changed"]
    elif status == IN_SYNC:
        text = [f"knfleet: {o.cluster}: dry run ({action}): no change needed"]
    else:
        text = [f"knfleet: {o.cluster}: {action} done, no change (already converged)"]
    return text + [f"    {n}" for n in o.notes] + [f"    {line}" for r in o.rollouts for line in rollout_lines(r)] \
        + [f"    smoke {describe(s)}" for s in o.smoke] + [f"    {cold_start_line(c)}" for c in o.cold_starts]


def lines(results: dict[str, ClusterOutcome], action: str) -> list[str]:
    return [t for o in results.values() for t in line(o, action)]


def report(kind: str, results: dict[str, ClusterOutcome], **extra: Any) -> dict[str, Any]:
    """A report in knfleet's one schema: kind (run | rollout | status), when, and the clusters by name."""
    return {"schema": SCHEMA, "kind": kind, "knfleet": __version__, "finished": time.time(), **extra,
            "clusters": {name: o.as_dict() for name, o in results.items()}}


def write(path: str, data: dict[str, Any]) -> None:
    from knfleet import fsio  # a temporary file created exclusively, then a rename

    fsio.write_atomic(path, json.dumps(data, indent=2))


def read(path: str) -> dict[str, ClusterOutcome]:
    data = json.loads(Path(path).read_text())
    return {name: ClusterOutcome(**o) for name, o in (data.get("clusters") or {}).items()}
