"""A report as Prometheus metrics, for node_exporter's textfile collector (`KNFLEET_METRICS_FILE`).

The metrics are made from the JSON report (one schema, knfleet.report.outcome), never from anything else, so the
two always agree. Names follow Prometheus' conventions: the `knfleet_` prefix, base units (`_seconds`), counters
ending in `_total`, information as labels of a gauge of 1 (`knfleet_knative_version_info`). The file is written
atomically (a temporary file in the same folder, then a rename), so the collector never reads half a file.

Gauges describe the last run. The counters (`knfleet_cluster_runs_total`, `knfleet_cluster_changed_objects_total`)
go on from the values of the file being replaced; a cluster a rollout did not touch keeps its last run's timestamp.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knfleet import fsio
from knfleet.report import outcome
from knfleet.report.records import COLD_PHASES, path_of

PREFIX = "knfleet_"
# every status a cluster of a run or rollout report can have: an enum-style gauge has a series for each
STATUSES = (outcome.CONVERGED, outcome.CHANGED, outcome.FAILED, outcome.INCOMPLETE, outcome.LOCKED,
            outcome.UNTOUCHED, outcome.WOULD_CHANGE, outcome.IN_SYNC)
PHASES = (("smoke", "deploy"), ("smoke_after_bake", "after_bake"))
LAST_RUN = PREFIX + "cluster_last_run_timestamp_seconds"
RUNS = PREFIX + "cluster_runs_total"
CHANGED_TOTAL = PREFIX + "cluster_changed_objects_total"
_SAMPLE = re.compile(r"^(knfleet_[a-zA-Z0-9_]+)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float | int | bool | None, **labels: str) -> None:
        if value is not None:  # the cluster label first, then the others as given
            self.samples.append((dict(sorted(labels.items(), key=lambda kv: kv[0] != "cluster")), float(value)))


def changed_objects(o: dict[str, Any]) -> list[str]:
    """The objects a cluster's run changed (each once, in step order)."""
    seen: dict[str, None] = {}
    for s in o.get("steps") or []:
        if s.get("status") == "changed":
            seen.update(dict.fromkeys(s.get("objects") or []))
    return list(seen)


def step_seconds(o: dict[str, Any]) -> dict[str, float]:
    """Seconds per step title (a title met twice adds up: one series per step)."""
    out: dict[str, float] = {}
    for s in o.get("steps") or []:
        out[s["title"]] = round(out.get(s["title"], 0.0) + float(s.get("seconds") or 0), 6)
    return out


def ran(o: dict[str, Any]) -> bool:
    return o.get("status") != outcome.UNTOUCHED


def families(data: dict[str, Any], previous: dict[tuple[str, Labels], float] | None = None) -> list[Family]:
    """The metric families of a run or rollout report; `previous` holds the samples of the file it replaces."""
    prev = previous or {}
    finished = float(data.get("finished") or 0)
    clusters: dict[str, dict[str, Any]] = data.get("clusters") or {}
    f = {name: Family(PREFIX + name, kind, text) for name, kind, text in (
        ("report_timestamp_seconds", "gauge", "When the last knfleet report was written (Unix time)."),
        ("report_info", "gauge", "The last report's kind (run | rollout) and status; always 1."),
        ("rollout_duration_seconds", "gauge", "How long the last rollout took."),
        ("rollout_exit_code", "gauge", "The last rollout's exit code (0 converged, 1 some failed, 2 halted, "
                                       "3 could not start)."),
        ("cluster_last_run_timestamp_seconds", "gauge", "When knfleet last ran on the cluster (Unix time)."),
        ("cluster_outcome", "gauge", "The cluster's outcome in the last report: 1 for its status, 0 for the others."),
        ("cluster_ok", "gauge", "1 when the cluster's last run converged and its smoke tests passed, else 0."),
        ("cluster_wave", "gauge", "The cluster's rollout wave (0 is the canary)."),
        ("cluster_duration_seconds", "gauge", "How long the cluster's last run (its wave, in a rollout) took."),
        ("cluster_last_run_changed_objects", "gauge", "Objects the cluster's last run changed."),
        ("cluster_last_run_changed_operations", "gauge", "Operations that changed something in the last run."),
        ("cluster_api_requests", "gauge", "Requests the cluster's last run made to its API server."),
        ("step_duration_seconds", "gauge", "How long each step of the cluster's last run took."),
        ("smoke_success", "gauge", "1 when the service answered the smoke test's chat request, else 0."),
        ("smoke_skipped", "gauge", "1 when no smoke request was sent to the service (at zero, not woken)."),
        ("smoke_latency_seconds", "gauge", "The answer time of the service's smoke test request."),
        ("smoke_cold_start_seconds", "gauge", "The answer time of a smoke request that woke the service from zero."),
        ("cold_start_phase_seconds", "gauge", "Seconds of each phase of a revision pod's cold start (schedule, pull, "
                                              "start, load, first_answer), as the cluster recorded them."),
        ("cold_start_seconds", "gauge", "A revision pod's cold start: created to first answer (or to Ready)."),
        ("knative_version_info", "gauge", "The Knative Serving version installed on the cluster; always 1."),
        ("model_rollout_step_percent", "gauge", "Traffic on the new version of a progressive model rollout at the end "
                                                "of the last run (100 promoted or first version, 0 rolled back)."),
        ("model_rollout_steps_passed", "gauge", "Steps (the dark check included) the rollout's new version passed."),
        ("model_rollout_check_p95_seconds", "gauge", "p95 answer time of the rollout's check requests at its last "
                                                     "step, per version (stable | candidate)."),
        ("model_rollout_check_ttft_p95_seconds", "gauge", "p95 time to first token of the check requests at the "
                                                          "last step, per version."),
        ("model_rollout_check_error_rate", "gauge", "Share of failed check requests at the last step, per version."),
        ("model_rollout_check_requests", "gauge", "Check requests sent at the last step, per version."),
        ("cluster_runs_total", "counter", "knfleet runs on the cluster, by outcome."),
        ("cluster_changed_objects_total", "counter", "Objects knfleet changed on the cluster, over all runs."),
    )}
    f["report_timestamp_seconds"].add(finished)
    f["report_info"].add(1, kind=str(data.get("kind", "")), status=str(data.get("status") or data.get("action", "")))
    if data.get("kind") == "rollout":
        f["rollout_duration_seconds"].add(data.get("duration_s"))
        f["rollout_exit_code"].add(data.get("exit_code"))
    counted = {labels: v for (name, labels), v in prev.items() if name == RUNS}
    changed_total = {labels: v for (name, labels), v in prev.items() if name == CHANGED_TOTAL}
    for name in sorted(clusters):
        o = clusters[name]
        c = {"cluster": name}
        status = o.get("status", "")
        if ran(o):
            f["cluster_last_run_timestamp_seconds"].add(finished, **c)
            key = (("cluster", name), ("outcome", status))
            counted[key] = counted.get(key, 0.0) + 1
            changed_total[(("cluster", name),)] = changed_total.get((("cluster", name),), 0.0) + len(
                changed_objects(o))
            ok = status in (outcome.CONVERGED, outcome.CHANGED) and all(
                s.get("ok", True) for s in [*(o.get("smoke") or []), *(o.get("smoke_after_bake") or [])])
            f["cluster_ok"].add(ok, **c)
            f["cluster_duration_seconds"].add(o.get("duration_s"), **c)
            f["cluster_last_run_changed_objects"].add(len(changed_objects(o)), **c)
            f["cluster_last_run_changed_operations"].add(len(o.get("changed_operations") or []), **c)
            f["cluster_api_requests"].add(o.get("api_requests"), **c)
        elif (LAST_RUN, (("cluster", name),)) in prev:
            f["cluster_last_run_timestamp_seconds"].add(prev[(LAST_RUN, (("cluster", name),))], **c)
        for s in (*STATUSES, *(() if status in STATUSES else (status,))):
            f["cluster_outcome"].add(s == status, outcome=s, **c)
        f["cluster_wave"].add(o.get("wave"), **c)
        for title, seconds in step_seconds(o).items():
            f["step_duration_seconds"].add(seconds, step=title, **c)
        for key, phase in PHASES:
            for r in o.get(key) or []:
                where = {"service": r["service"], "phase": phase, **c}
                if r.get("skipped"):
                    f["smoke_skipped"].add(1, **where)
                    continue
                where["path"] = path_of(r.get("via"))  # kourier-internal, proxy, smoke_url, smoke_internal_url
                f["smoke_success"].add(bool(r.get("ok")), **where)
                f["smoke_latency_seconds"].add(r.get("latency_s"), **where)
                f["smoke_cold_start_seconds"].add(r.get("cold_start_s"), **where)
        if o.get("knative_version"):
            f["knative_version_info"].add(1, version=o["knative_version"], **c)
        for r in o.get("rollouts") or []:
            rollout_samples(f, r, c)
        cold_start_samples(f, o.get("cold_starts") or [], c)
    for labels, v in sorted(counted.items()):
        f["cluster_runs_total"].add(v, **dict(labels))
    for labels, v in sorted(changed_total.items()):
        f["cluster_changed_objects_total"].add(v, **dict(labels))
    return [fam for fam in f.values() if fam.samples]


def cold_start_samples(f: dict[str, Family], items: list[dict[str, Any]], c: dict[str, str]) -> None:
    """Each revision's cold start (the last one the run saw of that revision: one series per revision), its phases
    that are known and its total."""
    last = {(str(i.get("service")), str(i.get("revision"))): i for i in items}
    for (service, revision), item in sorted(last.items()):
        where = {"service": service, "revision": revision, **c}
        phases = item.get("phases") or {}
        for phase in COLD_PHASES:
            f["cold_start_phase_seconds"].add(phases.get(phase), phase=phase, **where)
        f["cold_start_seconds"].add(item.get("total_s"), **where)


def rollout_samples(f: dict[str, Family], r: dict[str, Any], c: dict[str, str]) -> None:
    """One progressive rollout's figures: where its traffic ended, the steps passed, the last step's checks."""
    where = {"service": str(r.get("service", "")), **c}
    steps = r.get("steps") or []
    reached = {"promoted": 100, "first version": 100, "rolled back": 0, "rolled back by hand": 0}.get(
        str(r.get("outcome")), steps[-1]["percent"] if steps else 0)
    f["model_rollout_step_percent"].add(reached, **where)
    f["model_rollout_steps_passed"].add(sum(1 for s in steps if s.get("ok")), **where)
    if steps:
        for version in ("stable", "candidate"):
            figs, per = steps[-1].get(version) or {}, {**where, "version": version}
            f["model_rollout_check_p95_seconds"].add(figs.get("p95_s"), **per)
            f["model_rollout_check_ttft_p95_seconds"].add(figs.get("ttft_p95_s"), **per)
            f["model_rollout_check_error_rate"].add(figs.get("error_rate"), **per)
            f["model_rollout_check_requests"].add(figs.get("requests"), **per)


def _escape_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _unescape_label(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def _number(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def render(fams: list[Family]) -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    out: list[str] = []
    for fam in fams:
        out.append(f"# HELP {fam.name} {fam.help.replace(chr(92), chr(92) * 2)}")
        out.append(f"# TYPE {fam.name} {fam.kind}")
        for labels, value in fam.samples:
            text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            out.append(f"{fam.name}{{{text}}} {_number(value)}" if text else f"{fam.name} {_number(value)}")
    return "\n".join(out) + "\n"


def parse_previous(text: str) -> dict[tuple[str, Labels], float]:
    """The samples of a file this module wrote (to carry counters and last-run timestamps on)."""
    out: dict[tuple[str, Labels], float] = {}
    # "\n" only: the exposition format ends lines with it, and a label value may hold "\r", U+2028 or other
    # characters str.splitlines() would also break at (the counters would then start again from nothing)
    for line in text.split("\n"):
        m = _SAMPLE.fullmatch(line)
        if not m:
            continue
        labels = tuple(sorted((k, _unescape_label(v)) for k, v in _LABEL.findall(m.group(2) or "")))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            continue
    return out


def text(data: dict[str, Any], previous_text: str = "") -> str:
    return render(families(data, parse_previous(previous_text)))


def write(path: str, data: dict[str, Any]) -> None:
    """Write the metrics of a report to `path` atomically (a temporary file beside it, created exclusively under a
    random name without a .prom suffix, which the collector ignores; then a rename)."""
    p = Path(path)
    try:
        previous = p.read_bytes().decode("utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        previous = ""
    fsio.write_atomic(p, text(data, previous), mode=0o644)
