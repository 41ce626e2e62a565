"""A saved report checked against knfleet's one schema (knfleet.report/v1) before anything reads it.

`knfleet report` reads files a user names: a report cut short, edited by hand or written by something else must be
refused naming the file and the field (exit 2), never end in a traceback half-way through the page. Fields that
older knfleets did not write may be missing; a field that is there must have its type (numbers finite).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from knfleet.errors import InputError, shown
from knfleet.report.records import COLD_PHASES, COLD_TRIGGERS  # the cold-start record's shape (docs/cold-starts.md)


class ReportError(InputError):
    """A file that is not a knfleet report (or not a well-formed one). Exit code 2."""


Check = Callable[[Any], bool]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _or_null(check: Check) -> Check:
    return lambda v: v is None or check(v)


def _string(v: Any) -> bool:
    return isinstance(v, str)


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _seconds(v: Any) -> bool:
    return _number(v) and v >= 0


def _boolean(v: Any) -> bool:
    return isinstance(v, bool)


def _timestamp(v: Any) -> bool:
    return _number(v) and 0 <= v < 253402300800  # up to the year 9999 (what a date can show)


WHAT = {_boolean: "true or false", _number: "a finite number", _integer: "a whole number", _string: "a string",
        _strings: "a list of strings",
        _timestamp: "a Unix time (seconds since 1970, a finite number)",
        _seconds: "a number of seconds (finite, 0 or more)"}


def _kind(check: Check, null: bool) -> str:
    return WHAT[check] + (" or null" if null else "")


REPORT: dict[str, tuple[Check, bool]] = {  # field -> (check, null allowed)
    "kind": (_string, False), "knfleet": (_string, False), "finished": (_timestamp, True),
    "action": (_string, True), "dry_run": (_boolean, False), "inventory": (_string, True), "status": (_string, True),
    "exit_code": (_integer, True), "halted_at_wave": (_integer, True), "max_failed_clusters": (_integer, True),
    "duration_s": (_number, True),
}
CLUSTER: dict[str, tuple[Check, bool]] = {
    "cluster": (_string, False), "status": (_string, False), "host": (_string, False), "wave": (_integer, True),
    "reason": (_string, False), "errors": (_strings, False), "warnings": (_strings, False),
    "changed_operations": (_strings, False), "would_change": (_strings, False), "failed_operations": (_strings, False),
    "drift": (_strings, False), "notes": (_strings, False), "knative_version": (_string, True),
    "reachable": (_boolean, True),
    "duration_s": (_number, True), "api_requests": (_integer, True),
}
STEP: dict[str, tuple[Check, bool]] = {
    "title": (_string, False), "status": (_string, False), "seconds": (_number, False), "objects": (_strings, False),
    "note": (_string, False),
}
SMOKE: dict[str, tuple[Check, bool]] = {
    "service": (_string, False), "ok": (_boolean, False), "status": (_integer, True), "latency_s": (_number, True),
    "cold_start_s": (_number, True), "attempts": (_integer, False), "error": (_string, True),
    "skipped": (_string, True), "via": (_string, True),
}
SERVICE: dict[str, tuple[Check, bool]] = {"service": (_string, False), "ready": (_boolean, False),
                                          "reason": (_string, False)}
CHANGE: dict[str, tuple[Check, bool]] = {  # knfleet diff / --dry: an object's field-level changes
    "object": (_string, False), "stage": (_string, False), "why": (_string, False),
}
OPERATION: dict[str, tuple[Check, bool]] = {  # one RFC 6902 operation with its field and last writer
    "op": (_string, False), "path": (_string, False), "field": (_string, True), "manager": (_string, True),
    "time": (_string, True),
}
ROLLOUT: dict[str, tuple[Check, bool]] = {  # a progressive model rollout
    "service": (_string, False), "outcome": (_string, True), "candidate": (_string, True), "stable": (_string, True),
    "surge": (_boolean, False), "resumed_at": (_number, True), "reason": (_string, True),
}
ROLLOUT_STEP: dict[str, tuple[Check, bool]] = {"percent": (_number, False), "ok": (_boolean, False),
                                               "check": (_string, True)}
FIGURES: dict[str, tuple[Check, bool]] = {"requests": (_number, False), "errors": (_number, False),
                                          "p95_s": (_number, True), "ttft_p95_s": (_number, True)}
REQUIRED = {"step": ("title",), "smoke": ("service",), "service": ("service",), "operation": ("op",)}
# issue 25: a cluster's `cold_starts` (docs/advise.md; the shape is the cold-start record's, records.ColdStart)
COLD_START: dict[str, tuple[Check, bool]] = {
    "service": (_string, False), "revision": (_string, True), "pod": (_string, True), "node": (_string, True),
    "image": (_string, True), "started": (_timestamp, True), "total_s": (_seconds, True),
}


def _list(path: str, where: str, obj: dict[str, Any], key: str) -> list[Any]:
    items = obj.get(key, [])
    if items is None:
        return []
    if not isinstance(items, list):
        raise ReportError(f"{path}: {where}.{key}: {shown(items, 80)} is not allowed; expected a list")
    return items


def _changes(path: str, where: str, o: dict[str, Any]) -> None:
    for i, c in enumerate(_list(path, where, o, "changes")):
        _fields(path, f"{where}.changes[{i}]", c, CHANGE)
        for j, op in enumerate(_list(path, f"{where}.changes[{i}]", c, "patch")):
            _fields(path, f"{where}.changes[{i}].patch[{j}]", op, OPERATION, REQUIRED["operation"])


def _rollouts(path: str, where: str, o: dict[str, Any]) -> None:
    for i, r in enumerate(_list(path, where, o, "rollouts")):
        at = f"{where}.rollouts[{i}]"
        _fields(path, at, r, ROLLOUT)
        for j, st in enumerate(_list(path, at, r, "steps")):
            _fields(path, f"{at}.steps[{j}]", st, ROLLOUT_STEP)
            for tag in ("stable", "candidate"):
                if st.get(tag) is not None:
                    _fields(path, f"{at}.steps[{j}].{tag}", st[tag], FIGURES)


def _cold_starts(path: str, where: str, o: dict[str, Any]) -> None:
    """Each cold-start record: its fields' types, a trigger knfleet writes, phases among the five (seconds or
    null: a phase that could not be told)."""
    for i, c in enumerate(_list(path, where, o, "cold_starts")):
        at = f"{where}.cold_starts[{i}]"
        _fields(path, at, c, COLD_START, ("service", "trigger"))
        if c["trigger"] not in COLD_TRIGGERS:
            raise ReportError(f"{path}: {at}.trigger: {shown(c['trigger'], 80)} is not allowed; expected one of "
                              f"{', '.join(COLD_TRIGGERS)}")
        phases = c.get("phases", {})
        if phases is None:
            continue
        if not isinstance(phases, dict):
            raise ReportError(f"{path}: {at}.phases: {shown(phases, 80)} is not allowed; expected an object")
        for key, v in phases.items():
            if key not in COLD_PHASES:
                raise ReportError(f"{path}: {at}.phases.{key}: not a phase; allowed: {', '.join(COLD_PHASES)}")
            if v is not None and not _seconds(v):
                raise ReportError(f"{path}: {at}.phases.{key}: {shown(v, 80)} is not allowed; expected "
                                  f"{_kind(_seconds, True)}")


def _fields(path: str, where: str, obj: Any, schema: dict[str, tuple[Check, bool]], required: tuple[str, ...] = ()
            ) -> None:
    if not isinstance(obj, dict):
        raise ReportError(f"{path}: {where}: {shown(obj, 80)} is not allowed; expected an object")
    for key in required:
        if key not in obj:
            raise ReportError(f"{path}: {where}.{key}: missing; a knfleet report always has it")
    for key, (check, null) in schema.items():
        if key in obj and not (obj[key] is None and null or obj[key] is not None and check(obj[key])):
            raise ReportError(f"{path}: {where}.{key}: {shown(obj[key], 80)} is not allowed; expected "
                              f"{_kind(check, null)}")


def _smoke(path: str, where: str, s: Any) -> None:
    _fields(path, where, s, SMOKE, REQUIRED["smoke"])
    if s.get("skipped"):
        return
    if "ok" not in s:
        raise ReportError(f"{path}: {where}.ok: missing; a smoke result that was not skipped says whether it passed")
    if s["ok"] and not _number(s.get("latency_s")):
        raise ReportError(f"{path}: {where}.latency_s: {shown(s.get('latency_s'), 80)} is not allowed; a passed "
                          "smoke result has its latency (a finite number of seconds)")


def check(path: str, data: Any) -> None:
    """Raise ReportError naming the file and the first field that does not fit the schema."""
    _fields(path, "report", data, REPORT)
    clusters = data.get("clusters")
    if not isinstance(clusters, dict):
        raise ReportError(f"{path}: clusters: missing or not an object")
    for name, o in clusters.items():
        where = f"clusters.{name}"
        _fields(path, where, o, CLUSTER)
        for key, item, schema in (("steps", "step", STEP), ("services", "service", SERVICE)):
            items = o.get(key, [])
            if not isinstance(items, list):
                raise ReportError(f"{path}: {where}.{key}: {shown(items, 80)} is not allowed; expected a list")
            for i, x in enumerate(items):
                _fields(path, f"{where}.{key}[{i}]", x, schema, REQUIRED[item])
        _changes(path, where, o)
        _rollouts(path, where, o)
        _cold_starts(path, where, o)
        for key in ("smoke", "smoke_after_bake"):
            items = o.get(key, [])
            if not isinstance(items, list):
                raise ReportError(f"{path}: {where}.{key}: {shown(items, 80)} is not allowed; expected a list")
            for i, s in enumerate(items):
                _smoke(path, f"{where}.{key}[{i}]", s)
