"""A report (or several, for trends) as one self-contained HTML page: `knfleet report`, `knfleet rollout
--report-html`, `KNFLEET_REPORT_HTML`.

The page is made from the JSON reports only (one schema, knfleet.report.outcome) by a Jinja2 template with
autoescaping; its CSS and SVG are inline and it has no script, so it needs nothing from the network and works
with JavaScript off. This module turns reports into plain values for the template (cells, rows, chart points
with their coordinates already computed), so the layout logic is testable without a browser.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from knfleet import fsio
from knfleet.report import metrics, outcome, validate
from knfleet.report.records import COLD_PHASES, cold_start_line, path_of

# outcome -> colour (background of a cluster's cell); the legend shows them
COLOURS = {
    outcome.CONVERGED: "#2e7d32", outcome.CHANGED: "#1565c0", outcome.IN_SYNC: "#2e7d32",
    outcome.WOULD_CHANGE: "#6a1b9a", outcome.FAILED: "#c62828", outcome.UNREACHABLE: "#c62828",
    outcome.LOCKED: "#e65100", outcome.INCOMPLETE: "#f9a825", outcome.DRIFT: "#e65100",
    outcome.UNTOUCHED: "#757575",
}
OTHER_COLOUR = "#424242"
# one colour per series (cluster + service) in the charts
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f")
PHASES = metrics.PHASES
# cold-start phases (records.COLD_PHASES) -> colour of their part of a stacked bar
PHASE_COLOURS = {"schedule": "#9e9e9e", "pull": "#ef6c00", "start": "#8e24aa", "load": "#1565c0",
                 "first_answer": "#2e7d32"}
BAR_W = 28  # a cold-start bar's width (the latest report's chart)
TREND_BAR_W = 10  # and in the chart over time (one bar per service and cluster beside each other)
# x-axis labels: one <text> per band, a line each for service, cluster and path. A band is as wide as its widest
# label line (by an upper bound of the font's width) plus a gap, so labels never overlap however many there are; a
# line longer than LABEL_MAX_PX is cut with "…" (the whole text is the label's tooltip and in the legend).
LABEL_PX = 11  # font size of the charts' text (the template's CSS uses it)
LINE_PX = 13  # line height of a label's lines
LABEL_GAP = 14  # at least this much between two labels
LABEL_MAX_PX = 190
MIN_BAND = 90  # room for a band's two points (deploy, after the bake)
# em widths, upper bounds for DejaVu Sans (the widest usual sans font; Chromium on Debian renders with it)
NARROW, WIDE = frozenset("ijlftr.,:;/()[]-'|! I"), {"m": 0.98, "w": 0.82, "M": 0.87, "W": 1.0, "@": 1.0, "%": 0.96}


ReportError = validate.ReportError  # a file that is not a (well-formed) knfleet report


@dataclass
class Point:
    """One smoke result in a chart: its latency (a circle) and, when it woke the service, its cold start (a
    diamond beside it). A failed or skipped result has no latency and is drawn hollow on the axis."""

    x: float
    y: float
    cluster: str
    service: str
    phase: str  # deploy | after_bake (in the trend chart: latency | cold-start, the line it belongs to)
    latency: float | None  # seconds
    result: str  # ok | failed | skipped
    colour: str
    label: str  # the tooltip (an SVG <title>)
    cold_start: float | None = None
    cold_y: float | None = None
    when: str = ""


@dataclass
class XLabel:
    """One x-axis label: its centre, its lines (each fitted to LABEL_MAX_PX) and its whole text (the tooltip)."""

    x: float
    lines: list[str]
    title: str


def text_width(text: str, px: float = LABEL_PX) -> float:
    """An upper bound of the rendered width of `text` (no browser here to measure it)."""
    em = 0.0
    for ch in text:
        if ch in WIDE:
            em += WIDE[ch]
        elif ch in NARROW:
            em += 0.40
        elif ch.isupper():
            em += 0.80
        elif ord(ch) > 0x2000:
            em += 1.0
        else:
            em += 0.64
    return em * px


def fit(text: str, most: float = LABEL_MAX_PX) -> str:
    """The text, cut with "…" so that it is at most `most` px wide."""
    if text_width(text) <= most:
        return text
    while text and text_width(text + "…") > most:
        text = text[:-1]
    return text + "…"


def band_for(labels: list[XLabel], least: float = MIN_BAND) -> float:
    """A band (the distance between two label centres) wide enough that no two labels overlap."""
    return max([least] + [text_width(line) + LABEL_GAP for lab in labels for line in lab.lines])


@dataclass
class Segment:
    """One phase of a cold start in its stacked bar."""

    phase: str
    seconds: float
    y: float
    height: float
    colour: str


@dataclass
class Bar:
    """One cold start as a stacked bar: its known phases from the bottom up, in order (unknown ones are named in
    the tooltip and the table, never drawn)."""

    x: float  # left edge
    width: float
    cluster: str
    service: str
    total: float | None
    label: str  # the tooltip: the closing line's text
    segments: list[Segment] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    when: str = ""


@dataclass
class Chart:
    width: int
    height: int
    left: int
    top: int
    plot_w: int
    plot_h: int
    y_max: float
    y_ticks: list[tuple[float, str]] = field(default_factory=list)  # (y coordinate, label)
    x_labels: list[XLabel] = field(default_factory=list)
    line_px: int = LINE_PX
    points: list[Point] = field(default_factory=list)
    lines: list[tuple[str, str, bool]] = field(default_factory=list)  # (svg points, colour, dashed)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (colour, text)
    results: int = 0  # smoke results drawn (one group each)
    bars: list[Bar] = field(default_factory=list)  # cold starts: stacked bars


def load(path: str) -> dict[str, Any]:
    """A saved report, read and checked against the schema (knfleet.report.validate): a file that is not one is
    refused naming the file and the field, before anything renders it."""
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as err:
        raise ReportError(f"{path}: cannot read it: {err.strerror or err}") from None
    except (ValueError, RecursionError) as err:
        raise ReportError(f"{path}: not JSON: {str(err)[:200]}") from None
    if not isinstance(data, dict) or data.get("schema") != outcome.SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ReportError(f"{path}: schema {found!r} is not a knfleet report; expected {outcome.SCHEMA!r} "
                          "(written by KNFLEET_REPORT, knfleet rollout --report or knfleet status --json)")
    validate.check(path, data)
    return data


def normalized(data: dict[str, Any]) -> dict[str, Any]:
    """A report with every field the page reads (reports of other kinds or older knfleets lack some)."""
    base = {"kind": "", "knfleet": "", "finished": None, "status": None, "action": None, "dry_run": False,
            "inventory": None, "duration_s": None, "exit_code": None, "halted_at_wave": None}
    clusters = {name: _cluster(name, o) for name, o in (data.get("clusters") or {}).items()}
    return {**base, **data, "clusters": clusters}


STEP_DEFAULTS = {"title": "", "status": "", "seconds": 0.0, "objects": [], "note": ""}
SMOKE_DEFAULTS = {"service": "", "ok": True, "status": None, "latency_s": None, "cold_start_s": None, "attempts": 0,
                  "error": None, "skipped": None, "via": None}
COLD_DEFAULTS = {"service": "", "revision": "", "pod": "", "node": None, "image": None, "trigger": "", "started": None,
                 "phases": {}, "total_s": None}
SERVICE_DEFAULTS = {"service": "", "ready": False, "reason": ""}


def _cluster(name: str, o: dict[str, Any]) -> dict[str, Any]:
    """A cluster's entry with every field the page reads, in its steps, smoke results and rollouts too (a checked
    report may lack the fields an older knfleet did not write)."""
    out = {**dataclasses.asdict(outcome.ClusterOutcome(name, "")), **o}
    out["steps"] = [{**STEP_DEFAULTS, **s} for s in out.get("steps") or []]
    out["services"] = [{**SERVICE_DEFAULTS, **s} for s in out.get("services") or []]
    for key, _ in PHASES:
        out[key] = [{**SMOKE_DEFAULTS, **s} for s in out.get(key) or []]
    out["rollouts"] = [rollout_fields(r) for r in out.get("rollouts") or []]
    out["cold_starts"] = [{**COLD_DEFAULTS, **c} for c in out.get("cold_starts") or []]
    return out

FIGURES = {"requests": 0, "errors": 0, "p95_s": None, "ttft_p95_s": None}


def rollout_fields(r: dict[str, Any]) -> dict[str, Any]:
    """A progressive rollout with every field the page reads (one cut short by a failure lacks its outcome)."""
    steps = [{"percent": 0, "ok": False, "check": "", **st, "stable": {**FIGURES, **(st.get("stable") or {})},
              "candidate": {**FIGURES, **(st.get("candidate") or {})}} for st in r.get("steps") or []]
    return {"service": "", "outcome": None, "candidate": "", "stable": "", "surge": False, "resumed_at": None,
            "reason": "", **r, "steps": steps}


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f} s"


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "-"


def reason(o: dict[str, Any]) -> str:
    """Why a cluster is where it is: its first error (first line), else the report's reason."""
    errors = o.get("errors") or []
    text = errors[0] if errors else o.get("reason") or ""
    return text.splitlines()[0] if text else ""


def smoke_failed(o: dict[str, Any]) -> bool:
    return any(not s.get("ok", True) for key, _ in PHASES for s in o.get(key) or [])


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def _ticks(chart: Chart, n: int = 5) -> None:
    for i in range(n + 1):
        v = chart.y_max * i / n
        chart.y_ticks.append((chart.top + chart.plot_h - chart.plot_h * i / n, f"{v:.3g} s"))


def _y(chart: Chart, v: float | None) -> float:
    return round(chart.top + chart.plot_h - chart.plot_h * min(v or 0.0, chart.y_max) / chart.y_max, 2)


def _result(s: dict[str, Any]) -> str:
    return "skipped" if s.get("skipped") else "ok" if s.get("ok") else "failed"


def _tooltip(cluster: str, s: dict[str, Any], phase: str) -> str:
    from knfleet.report.records import describe

    return f"{cluster} · {describe(s)}" + (" (after the bake)" if phase == "after_bake" else "")


def smoke_chart(data: dict[str, Any]) -> Chart:
    """Smoke latency (circles) and cold start (diamonds) of every smoke result, one band per service and cluster:
    one point per result (after a bake, a second one to the right)."""
    clusters = data.get("clusters") or {}
    rows = [(name, phase, s) for name in sorted(clusters) for key, phase in PHASES
            for s in clusters[name].get(key) or []]
    series = sorted({(s["service"], name, path_of(s.get("via"))) for name, _, s in rows})
    values = [v for _, _, s in rows for v in (s.get("latency_s"), s.get("cold_start_s")) if v is not None]
    labels = [XLabel(0, [fit(service.split("/")[-1]), fit(name), fit(f"via {path}")], f"{service} on {name} via {path}")
              for service, name, path in series]
    band = band_for(labels)
    plot_w = max(560, round(band * len(series)))
    band = plot_w / max(len(series), 1)
    lines = max((len(lab.lines) for lab in labels), default=1)
    chart = Chart(width=plot_w + 90, height=20 + 220 + 16 + LINE_PX * (lines - 1) + 10, left=70, top=20,
                  plot_w=plot_w, plot_h=220, y_max=_nice_max(max(values, default=0) * 1.1))
    _ticks(chart)
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    for i, ((service, name, path), label) in enumerate(zip(series, labels, strict=True)):
        label.x = round(chart.left + band * i + band / 2, 2)
        chart.x_labels.append(label)
        chart.legend.append((colour[(service, name, path)], f"{service} on {name} via {path}"))
    for name, phase, s in rows:
        key = (s["service"], name, path_of(s.get("via")))
        i = series.index(key)
        x = round(chart.left + band * i + band / 2 + (-20 if phase == "deploy" else 20) - 6, 2)
        cold = s.get("cold_start_s")
        chart.points.append(Point(x, _y(chart, s.get("latency_s")), name, s["service"], phase, s.get("latency_s"),
                                  _result(s), colour[key], _tooltip(name, s, phase), cold,
                                  None if cold is None else _y(chart, cold)))
    chart.results = len(rows)
    return chart


def trend_chart(reports: list[dict[str, Any]]) -> Chart:
    """Smoke latency (solid) and cold start (dashed) of each service on each cluster, run after run."""
    n = len(reports)
    labels = [XLabel(0, [time.strftime("%m-%d", time.gmtime(r.get("finished"))),
                         time.strftime("%H:%M", time.gmtime(r.get("finished")))], when(r.get("finished")))
              for r in reports]
    plot_w = max(480, round(band_for(labels, 60) * (n - 1)))
    step = plot_w / max(n - 1, 1)
    vals = [v for r in reports for o in r["clusters"].values() for key, _ in PHASES for s in o.get(key) or []
            for v in (s.get("latency_s"), s.get("cold_start_s")) if v is not None]
    chart = Chart(width=plot_w + 130, height=20 + 220 + 16 + LINE_PX + 10, left=70, top=20, plot_w=plot_w,
                  plot_h=220, y_max=_nice_max(max(vals, default=0) * 1.1))
    _ticks(chart)
    for i, label in enumerate(labels):
        label.x = round(chart.left + step * i, 2)
        chart.x_labels.append(label)
    series = sorted({(s["service"], name, path_of(s.get("via"))) for r in reports
                     for name, o in r["clusters"].items() for s in o.get("smoke") or []})
    for k, (service, name, path) in enumerate(series):
        c = PALETTE[k % len(PALETTE)]
        chart.legend.append((c, f"{service} on {name} via {path}"))
        for measure, field_name, dashed in (("latency", "latency_s", False), ("cold-start", "cold_start_s", True)):
            pts: list[tuple[float, float]] = []
            for i, r in enumerate(reports):
                o = r["clusters"].get(name) or {}
                s = next((s for s in o.get("smoke") or []
                          if s["service"] == service and path_of(s.get("via")) == path), None)
                if s is None or s.get(field_name) is None:
                    continue
                x, y = round(chart.left + step * i, 2), _y(chart, s[field_name])
                pts.append((x, y))
                chart.points.append(Point(x, y, name, service, measure, s[field_name], _result(s), c,
                                          _tooltip(name, s, "deploy"), when=when(r.get("finished"))))
            if len(pts) > 1:
                chart.lines.append((" ".join(f"{x},{y}" for x, y in pts), c, dashed))
    return chart


def cold_known(c: dict[str, Any]) -> float:
    """The seconds a cold start's bar is tall: the sum of its known phases."""
    return sum(v for v in (c.get("phases") or {}).values() if v is not None)


def cold_bar(chart: Chart, x: float, width: float, cluster: str, c: dict[str, Any], when_: str = "") -> Bar:
    """A cold start's stacked bar, its phases from the plot's bottom up in the order of records.COLD_PHASES."""
    phases = c.get("phases") or {}
    bar = Bar(round(x, 2), width, cluster, c.get("service", ""), c.get("total_s"),
              f"{cluster} · {cold_start_line(c)}", when=when_)
    bottom = chart.top + chart.plot_h
    for phase in COLD_PHASES:
        v = phases.get(phase)
        if v is None:
            bar.unknown.append(phase)
            continue
        height = round(chart.plot_h * min(v, chart.y_max) / chart.y_max, 2)
        bottom = round(bottom - height, 2)
        bar.segments.append(Segment(phase, v, bottom, height, PHASE_COLOURS[phase]))
    return bar


def cold_series(o_by_cluster: dict[str, dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(service, cluster) -> the last cold start recorded of that service on that cluster."""
    return {(c.get("service", ""), name): c for name in sorted(o_by_cluster)
            for c in o_by_cluster[name].get("cold_starts") or []}


def cold_chart(data: dict[str, Any]) -> Chart:
    """The latest report's cold starts: a stacked bar per service and cluster (its last one), phase by phase."""
    last = cold_series(data.get("clusters") or {})
    series = sorted(last)
    labels = [XLabel(0, [fit(svc.split("/")[-1]), fit(name)], f"{svc} on {name}") for svc, name in series]
    band = band_for(labels, BAR_W + 30)
    plot_w = max(420, round(band * len(series)))
    band = plot_w / max(len(series), 1)
    chart = Chart(width=plot_w + 90, height=20 + 220 + 16 + LINE_PX + 10, left=70, top=20, plot_w=plot_w,
                  plot_h=220, y_max=_nice_max(max((cold_known(c) for c in last.values()), default=0) * 1.1))
    _ticks(chart)
    for i, ((svc, name), label) in enumerate(zip(series, labels, strict=True)):
        label.x = round(chart.left + band * i + band / 2, 2)
        chart.x_labels.append(label)
        chart.bars.append(cold_bar(chart, label.x - BAR_W / 2, BAR_W, name, last[(svc, name)]))
    chart.legend = [(colour, phase.replace("_", " ")) for phase, colour in PHASE_COLOURS.items()]
    return chart


def cold_trend_chart(reports: list[dict[str, Any]]) -> Chart | None:
    """Cold starts run after run: at each report, a stacked bar per service and cluster (side by side, in the order
    of the legend); None when no report has any."""
    series = sorted({k for r in reports for k in cold_series(r["clusters"])})
    if not series:
        return None
    labels = [XLabel(0, [time.strftime("%m-%d", time.gmtime(r.get("finished"))),
                         time.strftime("%H:%M", time.gmtime(r.get("finished")))], when(r.get("finished")))
              for r in reports]
    group = len(series) * (TREND_BAR_W + 3)
    band = max(band_for(labels, 60), group + 16)
    plot_w = max(480, round(band * len(reports)))
    band = plot_w / len(reports)
    tallest = max((cold_known(c) for r in reports for c in cold_series(r["clusters"]).values()), default=0)
    chart = Chart(width=plot_w + 90, height=20 + 220 + 16 + LINE_PX + 10, left=70, top=20, plot_w=plot_w,
                  plot_h=220, y_max=_nice_max(tallest * 1.1))
    _ticks(chart)
    for i, (r, label) in enumerate(zip(reports, labels, strict=True)):
        label.x = round(chart.left + band * i + band / 2, 2)
        chart.x_labels.append(label)
        last = cold_series(r["clusters"])
        for k, key in enumerate(series):
            if key in last:
                x = label.x - group / 2 + k * (TREND_BAR_W + 3)
                chart.bars.append(cold_bar(chart, x, TREND_BAR_W, key[1], last[key], when(r.get("finished"))))
    chart.legend = [(colour, phase.replace("_", " ")) for phase, colour in PHASE_COLOURS.items()]
    return chart


def looked_only(data: dict[str, Any]) -> bool:
    """A report of a look that changed nothing (`knfleet diff`, `knfleet status`, a `--dry` run): its `changes` are
    what would change."""
    return data.get("kind") in ("diff", "status") or bool(data.get("dry_run"))


def cells(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid's rows: one per wave (a plain run's clusters share one row), each with its clusters' cells."""
    rows: dict[Any, list[dict[str, Any]]] = {}
    for name, o in sorted((data.get("clusters") or {}).items(), key=lambda kv: (kv[1].get("wave") or 0, kv[0])):
        status = o.get("status", "")
        rows.setdefault(o.get("wave"), []).append({
            "name": name, "status": status, "colour": COLOURS.get(status, OTHER_COLOUR),
            "bad": status in outcome.BAD or smoke_failed(o), "reason": reason(o),
            "smoke_failed": smoke_failed(o), "changed": len(metrics.changed_objects(o)),
            "differ": len(o.get("changes") or []) if looked_only(data) else 0,
            "smoke": [(s["service"], _result(s)) for s in o.get("smoke") or []],
        })
    out = []
    for wave, members in rows.items():
        ran = [(data["clusters"][m["name"]].get("duration_s")) for m in members]
        secs = [d for d in ran if d is not None]
        label = "clusters" if wave is None else f"wave {wave}" + (" (canary)" if wave == 0 else "")
        out.append({"wave": wave, "label": label, "seconds": max(secs) if secs else None, "cells": members,
                    "halted": data.get("halted_at_wave") is not None and wave == data.get("halted_at_wave")})
    return out


def field_changes(o: dict[str, Any]) -> list[dict[str, Any]]:
    """A cluster's changed objects (the report's `changes`), each with one row per field: the readable path, the
    live and desired values as the text output shows them (hidden ones as `(changed)`), and the last writer."""
    from knfleet.kube import fielddiff

    out = []
    for obj in o.get("changes") or []:
        rows = []
        for op in obj.get("patch") or []:
            text = fielddiff.op_text(op)
            field_name = op.get("field") or op.get("path", "")
            rows.append({"field": field_name, "change": text[len(field_name) + 2:], "op": op.get("op", ""),
                         "writer": fielddiff.writer_text(op.get("manager"), op.get("time"))})
        out.append({"object": obj.get("object", ""), "stage": obj.get("stage", ""), "why": obj.get("why", ""),
                    "rows": rows})
    return out


def details(data: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, o in sorted((data.get("clusters") or {}).items(), key=lambda kv: (kv[1].get("wave") or 0, kv[0])):
        steps = o.get("steps") or []
        longest = max((float(s.get("seconds") or 0) for s in steps), default=0) or 1.0
        out.append({
            "name": name, "o": o, "colour": COLOURS.get(o.get("status", ""), OTHER_COLOUR), "reason": reason(o),
            "changed": metrics.changed_objects(o),
            "steps": [{**s, "pct": round(100 * float(s.get("seconds") or 0) / longest, 1)} for s in steps],
            "smoke": [(phase, s) for key, phase in PHASES for s in o.get(key) or []],
            "cold_starts": [(c, cold_start_line(c)) for c in o.get("cold_starts") or []],
            "field_changes": field_changes(o),
        })
    return out


def history(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Outcome of each cluster in each report (oldest first) and each report's duration."""
    names = sorted({n for r in reports for n in r["clusters"]})
    runs = []
    for r in reports:
        row = []
        for n in names:
            o = r["clusters"].get(n)
            row.append(None if o is None else {"status": o.get("status", ""), "reason": reason(o),
                                               "colour": COLOURS.get(o.get("status", ""), OTHER_COLOUR)})
        secs = [o.get("duration_s") for o in r["clusters"].values() if o.get("duration_s") is not None]
        runs.append({"when": when(r.get("finished")), "kind": r.get("kind", ""),
                     "status": r.get("status") or r.get("action") or "", "cells": row,
                     "duration_s": r.get("duration_s") if r.get("duration_s") is not None else max(secs, default=None)})
    return {"clusters": names, "runs": runs}


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("knfleet.report", "templates"),
                              autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(reports: list[dict[str, Any]]) -> str:
    """The page of the latest report (by `finished`), with trends when there are several."""
    if not reports:
        raise ReportError("no report to render")
    ordered = sorted((normalized(r) for r in reports), key=lambda r: r.get("finished") or 0)
    latest = ordered[-1]
    return _env().get_template("report.html.j2").render(
        r=latest, finished=when(latest.get("finished")), rows=cells(latest), clusters=details(latest),
        chart=smoke_chart(latest), trend=trend_chart(ordered) if len(ordered) > 1 else None,
        cold=cold_chart(latest), cold_trend=cold_trend_chart(ordered) if len(ordered) > 1 else None,
        cold_trend_order=", ".join(f"{svc.split('/')[-1]} on {name}"
                                   for svc, name in sorted({k for r in ordered for k in cold_series(r["clusters"])})),
        history=history(ordered) if len(ordered) > 1 else None, colours=COLOURS, count=len(ordered),
        label_px=LABEL_PX, fmt_s=fmt_s)


def write(path: str, reports: list[dict[str, Any]]) -> None:
    """The page, written atomically (a temporary file beside it, then a rename)."""
    fsio.write_atomic(path, render(reports))
