"""What happened on each cluster of a run: errors recorded by knfleet's commands, and the closing lines."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

ERRORS: dict[str, list[str]] = defaultdict(list)


def record_error(host: str, what: str, message: str) -> None:
    ERRORS[host].append(f"{what}: {message}")


def host_lines(state: Any, action: str) -> list[str]:
    """One line per cluster: converged/changed/failed, with the first reason of a failure."""
    lines = []
    for host in state.inventory:
        if not state.is_host_in_limit(host):
            continue
        ops = state.ops.get(host, {})
        changed = failed = pending = 0
        for op_data in ops.values():
            meta = op_data.operation_meta
            if not meta.is_complete():
                pending += 1
                continue
            if meta.did_error():
                failed += 1
            elif meta.did_change():
                changed += 1
        name = host.name.split("/", 1)[-1]
        if host in state.failed_hosts or failed:
            why = ERRORS.get(host.name) or ["an operation failed (see its output above)"]
            first = why[0].splitlines()[0]
            lines.append(f"knfleet: {name}: FAILED ({action}) - {first}")
        elif pending:
            lines.append(f"knfleet: {name}: INCOMPLETE ({action}) - {pending} operation(s) did not run")
        elif changed:
            lines.append(f"knfleet: {name}: {action} done, {changed} operation(s) changed")
        else:
            lines.append(f"knfleet: {name}: {action} done, no change (already converged)")
        lines += smoke_lines(host.name)
    return lines


def dry_lines(state: Any, action: str) -> list[str]:
    """For --dry: per cluster, how many operations would change (nothing was run)."""
    lines = []
    for host in state.inventory:
        if not state.is_host_in_limit(host):
            continue
        ops = state.ops.get(host, {})
        would = [state.get_op_meta(h).names for h, d in ops.items() if d.operation_meta._maybe_is_change]
        name = host.name.split("/", 1)[-1]
        if would:
            lines.append(f"knfleet: {name}: dry run ({action}): {len(would)} operation(s) would change: "
                         + "; ".join(", ".join(n) for n in would))
        else:
            lines.append(f"knfleet: {name}: dry run ({action}): no change needed")
    return lines


SMOKE: dict[str, list[Any]] = defaultdict(list)


def record_smoke(host: str, result: Any) -> None:
    SMOKE[host].append(result)


def smoke_lines(host: str) -> list[str]:
    return [f"    smoke {r.line()}" for r in SMOKE.get(host, [])]
