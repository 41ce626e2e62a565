"""What happened on each cluster of a run: errors and smoke results recorded by knfleet's operations,
the closing lines (one per cluster), and the JSON report (`KNFLEET_REPORT=<file>`)."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from knfleet import smoke

ERRORS: dict[str, list[str]] = defaultdict(list)
SMOKE: dict[str, list[Any]] = defaultdict(list)
STARTED = time.time()


def record_error(host: str, what: str, message: str) -> None:
    ERRORS[host].append(f"{what}: {message}")


def record_smoke(host: str, result: Any) -> None:
    SMOKE[host].append(result)


def cluster_results(state: Any, dry: bool = False) -> dict[str, dict[str, Any]]:
    """Per cluster: status (converged | changed | failed | incomplete | would-change), counts, errors, smoke."""
    out: dict[str, dict[str, Any]] = {}
    for host in state.inventory:
        if not state.is_host_in_limit(host):
            continue
        ops = state.ops.get(host, {})
        changed, failed, pending, would = [], [], 0, []
        for op_hash, op_data in ops.items():
            meta = op_data.operation_meta
            names = ", ".join(state.get_op_meta(op_hash).names)
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
        if dry:
            status = "would-change" if would else "in-sync"
        elif host in state.failed_hosts or failed:
            status = "failed"
        elif pending:
            status = "incomplete"
        else:
            status = "changed" if changed else "converged"
        errors = list(ERRORS.get(host.name, []))
        if status == "failed" and not errors:
            errors = [f"operation failed: {failed[0] if failed else 'connect'} (see its output)"]
        out[host.name.split("/", 1)[-1]] = {
            "host": host.name, "status": status, "changed_operations": changed, "would_change": would,
            "failed_operations": failed, "errors": errors,
            "smoke": [r.as_dict() for r in SMOKE.get(host.name, [])],
        }
    return out


def lines(results: dict[str, dict[str, Any]], action: str) -> list[str]:
    text = []
    for name, r in results.items():
        status = r["status"]
        if status == "failed":
            text.append(f"knfleet: {name}: FAILED ({action}) - {r['errors'][0].splitlines()[0]}")
        elif status == "incomplete":
            text.append(f"knfleet: {name}: INCOMPLETE ({action}) - some operations did not run")
        elif status == "would-change":
            text.append(f"knfleet: {name}: dry run ({action}): {len(r['would_change'])} operation(s) would change: "
                        + "; ".join(r["would_change"]))
        elif status == "changed":
            text.append(f"knfleet: {name}: {action} done, {len(r['changed_operations'])} operation(s) changed")
        elif status == "in-sync":
            text.append(f"knfleet: {name}: dry run ({action}): no change needed")
        else:
            text.append(f"knfleet: {name}: {action} done, no change (already converged)")
        text += [f"    smoke {smoke.describe(s)}" for s in r["smoke"]]
    return text


def write_report(path: str, results: dict[str, dict[str, Any]], action: str, dry: bool) -> None:
    report = {"action": action, "dry_run": dry, "started": STARTED, "finished": time.time(),
              "duration_s": round(time.time() - STARTED, 2), "clusters": results}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(p)


def report_path() -> str | None:
    return os.environ.get("KNFLEET_REPORT") or None
