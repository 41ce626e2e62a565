"""Settings from measurements (issue 25): `knfleet advise REPORT...`.

Saved JSON reports (checked by knfleet.report.validate before they get here) hold, per cluster, the cold starts a
run saw (`cold_starts`: total and phases) and the smoke requests it sent. From them, per model service (figures
across clusters, with a line per cluster when there are several), this module derives three Knative settings, each
with its arithmetic in one line:

- `serving.knative.dev/progress-deadline`: the slowest cold start seen x DEADLINE_MARGIN, up to a whole minute;
- `autoscaling.knative.dev/scale-down-delay`: the longest gap between smoke requests (per cluster; one time per
  run: its recorded wake's first answer, else the report's end) that Knative can bridge (at most 1 h), up to a
  whole minute;
- `autoscaling.knative.dev/min-scale` 1 or not: the waiting it avoids (wakes per day x mean wake) against the GPU
  hours it holds (24 h x GPUs per pod x clusters), with the break-even, and a verdict when costs are given.

Pure: values in, values out (docs/advise.md states the rules and the JSON shape).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from knfleet.desired import goduration
from knfleet.desired.progressive import quantile

SCHEMA = "knfleet.advise/v1"
PHASES = ("schedule", "pull", "start", "load", "first_answer")
DEADLINE_MARGIN = 1.5
MAX_SCALE_DOWN_DELAY = 3600  # Knative refuses a scale-down-delay above 1h
DAY, HOUR = 86400.0, 3600.0
NO_COLD_START = "no cold start measured: run with --smoke-cold"
DEADLINE = "serving.knative.dev/progress-deadline"
DELAY = "autoscaling.knative.dev/scale-down-delay"
MIN_SCALE = "autoscaling.knative.dev/min-scale"


@dataclass(frozen=True)
class Assumptions:
    """What the reports cannot say: GPUs per pod, what an hour of each costs, and real traffic's wakes per day."""

    gpus_per_pod: int = 1
    gpu_hour_cost: float | None = None
    wait_hour_cost: float | None = None
    wakes_per_day: float | None = None  # None: the wakes the reports saw, per day of their window


@dataclass(frozen=True)
class ColdStart:
    report: str
    cluster: str
    trigger: str  # wake | new_revision | rollout_step
    total_s: float | None
    phases: dict[str, float | None]
    source: str = "cold_starts"  # or "smoke": an older report's smoke cold_start_s (phases unknown)
    answered: float | None = None  # Unix time of the first answer: started + total_s (a record with both)


@dataclass
class Seen:
    """One model service across the reports."""

    service: str
    clusters: set[str] = field(default_factory=set)
    reports: list[str] = field(default_factory=list)
    cold: list[ColdStart] = field(default_factory=list)
    requests: dict[str, set[float]] = field(default_factory=dict)  # cluster -> times smoke requests reached it

    def saw(self, report: str, cluster: str) -> None:
        self.clusters.add(cluster)
        if report not in self.reports:
            self.reports.append(report)


# --- reading the reports -----------------------------------------------------------------------------------------
def request_time(results: Iterable[dict[str, Any]], cold: list[ColdStart], service: str,
                 finished: float | None) -> float | None:
    """When one run's smoke requests reached a service on one cluster (one time per run: results carry no time of
    their own): the first answer of the wake it recorded, else the report's `finished`; None when no request was
    sent (every result skipped) or no time is known."""
    if not any(r.get("service") == service and not r.get("skipped") for r in results):
        return None
    woke = [c.answered for c in cold if c.trigger == "wake" and c.answered is not None]
    if woke:
        return round(min(woke), 3)
    return None if finished is None else float(finished)


def _cold_of(path: str, cluster: str, o: dict[str, Any]) -> dict[str, list[ColdStart]]:
    """A cluster's cold starts by service: its `cold_starts`; a service without any there whose smoke request
    woke it (an older report) counts that wait, phases unknown."""
    out: dict[str, list[ColdStart]] = {}
    for c in o.get("cold_starts") or []:
        started, total = c.get("started"), c.get("total_s")
        out.setdefault(c["service"], []).append(ColdStart(
            path, cluster, c["trigger"], total, dict(c.get("phases") or {}),
            answered=started + total if started is not None and total is not None else None))
    for s in [*(o.get("smoke") or []), *(o.get("smoke_after_bake") or [])]:
        if s.get("cold_start_s") is not None and not any(c.trigger == "wake" for c in out.get(s["service"], [])):
            out.setdefault(s["service"], []).append(ColdStart(path, cluster, "wake", s["cold_start_s"], {}, "smoke"))
    return out


def gather(reports: list[tuple[str, dict[str, Any]]]) -> dict[str, Seen]:
    """Per service (namespace/name): the clusters and reports it appears in, its cold starts, and per cluster the
    times smoke requests reached it (one per run: `request_time`)."""
    seen: dict[str, Seen] = {}
    for path, data in reports:
        finished = data.get("finished")
        for cluster, o in (data.get("clusters") or {}).items():
            results = [*(o.get("smoke") or []), *(o.get("smoke_after_bake") or [])]
            cold = _cold_of(path, cluster, o)
            names = {r["service"] for r in results} | set(cold) | {s["service"] for s in o.get("services") or []}
            for name in names:
                s = seen.setdefault(name, Seen(name))
                s.saw(path, cluster)
                s.cold += cold.get(name, [])
                when = request_time(results, cold.get(name, []), name, finished)
                if when is not None:
                    s.requests.setdefault(cluster, set()).add(when)
    return seen


def _measures(data: dict[str, Any]) -> bool:
    """A report that sent smoke requests or recorded a cold start (a status or diff report observes neither)."""
    return any(o.get(k) for o in (data.get("clusters") or {}).values()
               for k in ("smoke", "smoke_after_bake", "cold_starts"))


def window(reports: list[tuple[str, dict[str, Any]]]) -> tuple[float, float] | None:
    """The first and last `finished` of the reports that measure anything (None when none has one)."""
    times = [float(d["finished"]) for _, d in reports if d.get("finished") is not None and _measures(d)]
    return (min(times), max(times)) if times else None


# --- the arithmetic ----------------------------------------------------------------------------------------------
def up_to_minute(seconds: float) -> int:
    """Seconds rounded up to a whole minute (0 stays 0)."""
    return int(math.ceil(round(seconds, 6) / 60.0)) * 60


def deadline_for(slowest_s: float, margin: float = DEADLINE_MARGIN) -> int:
    """The progress deadline for a slowest cold start: slowest x margin, up to a whole minute."""
    return up_to_minute(slowest_s * margin)


def gaps(times: Iterable[float]) -> list[float]:
    """The gaps between consecutive request times."""
    ordered = sorted(set(times))
    return [round(b - a, 3) for a, b in zip(ordered, ordered[1:], strict=False)]


def delay_for(gaps_s: list[float]) -> int | None:
    """The scale-down delay that keeps a revision warm across every gap Knative can bridge (<= 1h): the longest
    such gap up to a whole minute, at most 1h; None when no gap is that short (or there is no gap)."""
    short = [g for g in gaps_s if g <= MAX_SCALE_DOWN_DELAY]
    return min(up_to_minute(max(short)), MAX_SCALE_DOWN_DELAY) if short else None


@dataclass(frozen=True)
class MinScale:
    wakes_per_day: float
    mean_wake_s: float
    wait_hours_per_day: float
    gpu_hours_per_day: float
    break_even: float | None  # GPU hours an hour of waiting must be worth for min-scale 1 to pay; None: no waiting
    verdict: str  # worth it | not worth it | undecided (no costs given)


def min_scale(wakes_per_day: float, mean_wake_s: float, gpus_per_pod: int, clusters: int,
              gpu_hour_cost: float | None = None, wait_hour_cost: float | None = None) -> MinScale:
    """min-scale 1 avoids wakes/day x mean wake seconds of waiting and holds 24 h x GPUs per pod x clusters GPU
    hours a day (an upper bound: hours the pod serves traffic anyway are not extra). It pays when an hour of
    waiting is worth more than gpu hours / wait hours GPU hours; with both costs given, the verdict compares them."""
    wait_h = wakes_per_day * mean_wake_s / HOUR
    gpu_h = 24.0 * gpus_per_pod * clusters
    even = gpu_h / wait_h if wait_h > 0 else None
    if gpu_hour_cost is None or wait_hour_cost is None:
        verdict = "not worth it" if wait_h == 0 else "undecided"
    else:
        verdict = "worth it" if wait_h * wait_hour_cost > gpu_h * gpu_hour_cost else "not worth it"
    return MinScale(wakes_per_day, mean_wake_s, wait_h, gpu_h, even, verdict)


def _r(v: float | None, digits: int = 1) -> float | None:
    return None if v is None else round(v, digits)


def figures(cold: list[ColdStart]) -> dict[str, Any]:
    """Count, p50/p95/max of total_s (nearest rank), the count by trigger, and the slowest phase by its p95."""
    totals = [c.total_s for c in cold if c.total_s is not None]
    by_phase = {p: quantile([c.phases[p] for c in cold if c.phases.get(p) is not None], 0.95) for p in PHASES}
    known = [(v, -i, p) for i, (p, v) in enumerate(by_phase.items()) if v is not None]
    slow = max(known) if known else None
    triggers: dict[str, int] = {}
    for c in cold:
        triggers[c.trigger] = triggers.get(c.trigger, 0) + 1
    return {"count": len(cold), "by_trigger": dict(sorted(triggers.items())),
            "pulled": sum((c.phases.get("pull") or 0) > 0 for c in cold),
            "unknown_total": len(cold) - len(totals), "p50_s": _r(quantile(totals, 0.5)),
            "p95_s": _r(quantile(totals, 0.95)), "max_s": _r(max(totals) if totals else None),
            "slowest_phase": {"phase": slow[2], "p95_s": _r(slow[0])} if slow else None}


# --- per service -------------------------------------------------------------------------------------------------
def _s(v: float | None) -> str:
    return "?" if v is None else f"{v:.1f} s"


def _dur(seconds: float) -> str:
    return goduration.format_seconds(round(seconds))


def deadline_advice(fig: dict[str, Any]) -> dict[str, Any]:
    slowest = fig["max_s"]
    base = {"annotation": DEADLINE, "current": None}
    if slowest is None:
        return {**base, "value": None, "seconds": None,
                "says": "unknown: no cold start with a known total"}
    secs = deadline_for(slowest)
    caution = "" if fig["pulled"] else "; caution: no start here is known to have pulled the image (pull 0 or " \
                                       "unknown): on a node without it the pull comes on top"
    return {**base, "value": f"{secs}s", "seconds": secs,
            "says": f"slowest cold start {slowest:.1f} s x {DEADLINE_MARGIN} = {slowest * DEADLINE_MARGIN:.1f} s, up "
                    f"to a whole minute = {secs} s; current: unknown (reports do not record it; `knfleet lint PATH "
                    f"--reports ...` compares it with your models){caution}"}


def delay_advice(s: Seen) -> dict[str, Any]:
    per = {c: gaps(t) for c, t in sorted(s.requests.items())}
    found = sorted(g for gs in per.values() for g in gs)
    over = [g for g in found if g > MAX_SCALE_DOWN_DELAY]
    secs = delay_for(found)
    base = {"annotation": DELAY, "gaps_s": found, "over_limit": len(over)}
    if not found:
        return {**base, "value": None, "seconds": None,
                "says": "no gap seen: fewer than two runs sent smoke requests to it on one cluster"}
    shown = ", ".join(_dur(g) for g in found)
    if secs is None:
        return {**base, "value": None, "seconds": None,
                "says": f"gaps between smoke requests: {shown}; every gap is over 1h (Knative's limit): no delay "
                        "bridges them; keep the default (0s) or see min-scale"}
    longest = max(g for g in found if g <= MAX_SCALE_DOWN_DELAY)
    rest = f"; {len(over)} gap(s) over 1h, which no delay bridges" if over else ""
    return {**base, "value": f"{secs}s", "seconds": secs,
            "says": f"gaps between smoke requests: {shown}; the longest within 1h (Knative's limit) is "
                    f"{_dur(longest)}, up to a whole minute = {secs} s (a pod holds its GPUs that long after its "
                    f"last request){rest}"}


def scale_advice(s: Seen, days: float | None, a: Assumptions) -> dict[str, Any]:
    wakes = [c.total_s for c in s.cold if c.trigger == "wake" and c.total_s is not None]
    base = {"annotation": MIN_SCALE, "gpus_per_pod": a.gpus_per_pod, "clusters": len(s.clusters)}
    if not wakes:
        return {**base, "value": None, "verdict": "unknown",
                "says": "no wake measured (only a service woken from zero cold-starts because of scale to zero)"}
    mean = sum(wakes) / len(wakes)
    if a.wakes_per_day is not None:
        rate, how = a.wakes_per_day, f"{a.wakes_per_day:g} wakes/day (--wakes-per-day)"
    elif days:
        rate = len(wakes) / days
        how = f"{len(wakes)} wake(s) in {days:.2f} day(s) = {rate:.2f}/day"
    else:
        return {**base, "value": None, "verdict": "unknown", "mean_wake_s": _r(mean),
                "says": "wakes per day unknown: the reports span no time (give several reports or --wakes-per-day)"}
    m = min_scale(rate, mean, a.gpus_per_pod, len(s.clusters), a.gpu_hour_cost, a.wait_hour_cost)
    value = {"worth it": "1", "not worth it": "0"}.get(m.verdict)
    cost = f"24 h x {a.gpus_per_pod} GPU(s) x {len(s.clusters)} cluster(s) = {m.gpu_hours_per_day:.1f} GPU h/day"
    avoided = f"{how} x mean wake {mean:.1f} s = {m.wait_hours_per_day:.3f} h of waiting/day"
    if m.break_even is None:
        judged = "no waiting to avoid"
    elif m.verdict == "undecided":
        judged = f"pays when 1 h of waiting is worth more than {m.break_even:.1f} GPU h (give --gpu-hour-cost and " \
                 "--wait-hour-cost for a verdict)"
    else:
        avoided_cost = m.wait_hours_per_day * (a.wait_hour_cost or 0)
        spent = m.gpu_hours_per_day * (a.gpu_hour_cost or 0)
        judged = f"{avoided_cost:.2f} of waiting avoided vs {spent:.2f} of GPU time spent per day: {m.verdict}"
    return {**base, "value": value, "verdict": m.verdict, "wakes_per_day": _r(m.wakes_per_day, 3),
            "mean_wake_s": _r(mean), "wait_hours_per_day": _r(m.wait_hours_per_day, 4),
            "gpu_hours_per_day": _r(m.gpu_hours_per_day, 2), "break_even_gpu_hours": _r(m.break_even, 2),
            "says": f"avoids {avoided}; costs {cost}; {judged}"}


def service_advice(s: Seen, days: float | None, a: Assumptions) -> dict[str, Any]:
    fig = figures(s.cold)
    clusters = sorted(s.clusters)
    fig["per_cluster"] = {c: {k: v for k, v in figures([x for x in s.cold if x.cluster == c]).items()
                              if k in ("count", "pulled", "p50_s", "p95_s", "max_s")} for c in clusters}
    return {"service": s.service, "clusters": clusters, "reports": list(s.reports),
            "note": None if s.cold else NO_COLD_START, "cold_starts": fig,
            "progress_deadline": deadline_advice(fig) if s.cold else None,
            "scale_down_delay": delay_advice(s),
            "min_scale": scale_advice(s, days, a) if s.cold else None}


def advise(reports: list[tuple[str, dict[str, Any]]], a: Assumptions = Assumptions()) -> dict[str, Any]:
    """The advice for every service the reports name, in the stable JSON shape docs/advise.md describes."""
    span = window(reports)
    days = (span[1] - span[0]) / DAY if span else None
    return {"schema": SCHEMA, "reports": [p for p, _ in reports],
            "window": {"first": span[0], "last": span[1], "days": _r(days, 3)} if span else None,
            "assumptions": {"deadline_margin": DEADLINE_MARGIN, "gpus_per_pod": a.gpus_per_pod,
                            "gpu_hour_cost": a.gpu_hour_cost, "wait_hour_cost": a.wait_hour_cost,
                            "wakes_per_day": a.wakes_per_day},
            "services": [service_advice(s, days, a) for _, s in sorted(gather(reports).items())]}


def slowest(reports: list[tuple[str, dict[str, Any]]]) -> dict[str, tuple[float, str, str]]:
    """Per service: its slowest cold start's total seconds, cluster and report file (for `knfleet lint`)."""
    out: dict[str, tuple[float, str, str]] = {}
    for name, s in gather(reports).items():
        for c in s.cold:
            if c.total_s is not None and (name not in out or c.total_s > out[name][0]):
                out[name] = (c.total_s, c.cluster, c.report)
    return out


# --- text ----------------------------------------------------------------------------------------------------------
def _cold_line(fig: dict[str, Any]) -> str:
    triggers = ", ".join(f"{n} {t}" for t, n in fig["by_trigger"].items())
    unknown = f", {fig['unknown_total']} without a total" if fig["unknown_total"] else ""
    slow = fig["slowest_phase"]
    phase = f"slowest phase {slow['phase']} (p95 {_s(slow['p95_s'])})" if slow else "phases unknown"
    return (f"cold starts: {fig['count']} ({triggers}{unknown}); total p50 {_s(fig['p50_s'])}, p95 "
            f"{_s(fig['p95_s'])}, max {_s(fig['max_s'])}; {phase}")


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def text(advice: dict[str, Any]) -> str:
    """The advice as lines for people."""
    w = advice["window"]
    when = f", {_when(w['first'])} to {_when(w['last'])} ({w['days']:.2f} day(s))" if w else \
        ", none with a finish time"
    out = [f"knfleet advise: {len(advice['reports'])} report(s){when}; assumed {advice['assumptions']['gpus_per_pod']}"
           f" GPU(s) per pod"]
    for s in advice["services"]:
        out.append("")
        out.append(f"{s['service']} (cluster(s) {', '.join(s['clusters'])}; in {len(s['reports'])} report(s))")
        if s["note"]:
            out.append(f"  {s['note']}")
        else:
            out.append(f"  {_cold_line(s['cold_starts'])}")
            if len(s["clusters"]) > 1:
                out += [f"    on {c}: {f['count']}, p50 {_s(f['p50_s'])}, p95 {_s(f['p95_s'])}, max {_s(f['max_s'])}"
                        for c, f in s["cold_starts"]["per_cluster"].items()]
            d = s["progress_deadline"]
            out.append(f"  progress-deadline {d['value'] or '(no advice)'}: {d['says']}")
        d = s["scale_down_delay"]
        out.append(f"  scale-down-delay {d['value'] or '(no advice)'}: {d['says']}")
        if s["min_scale"]:
            out.append(f"  min-scale 1: {s['min_scale']['verdict']}: {s['min_scale']['says']}")
    return "\n".join(out) + "\n"
