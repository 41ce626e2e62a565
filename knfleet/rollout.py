"""`knfleet rollout INVENTORY`: the deploy wave by wave (canary first), halting when a wave breaks.

Each wave runs `pyinfra INVENTORY deploy.py -y --limit <its clusters>` (clusters of a wave in parallel);
a wave passes when every cluster converged and its smoke tests passed (optionally again after a bake).
Exit codes: 0 all converged; 1 some clusters failed within --max-failed-clusters; 2 halted; 3 could not start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from knfleet import fleet

EXIT_OK, EXIT_SOME_FAILED, EXIT_HALTED, EXIT_CANNOT_START = 0, 1, 2, 3
REPO = Path(__file__).resolve().parent.parent


def _say(msg: str) -> None:
    print(f"[rollout {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_deploy(inventory: str, clusters: list[fleet.Cluster], data: list[str], label: str) -> tuple[int, dict, str]:
    """One pyinfra run limited to `clusters`; returns (exit code, per-cluster results, stderr tail)."""
    pyinfra = str(Path(sys.executable).with_name("pyinfra"))
    with tempfile.TemporaryDirectory(prefix="knfleet-wave-") as tmp:
        report = Path(tmp) / "report.json"
        argv = [pyinfra, inventory, str(REPO / "deploy.py"), "-y"]
        for c in clusters:
            argv += ["--limit", c.host]
        for d in data:
            argv += ["--data", d]
        env = dict(os.environ, KNFLEET_REPORT=str(report), PYINFRA_PROGRESS="off")
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                stdin=subprocess.DEVNULL)
        tail: list[str] = []
        assert proc.stderr is not None
        for line in proc.stderr:
            tail = (tail + [line.rstrip()])[-40:]
            if line.startswith("--> Starting operation:"):
                _say(f"{label}: {line.split(':', 1)[1].strip()}")
            elif line.startswith("knfleet: ") or "smoke " in line:
                _say(f"{label}: {line.strip()}")
        code = proc.wait()
        results = json.loads(report.read_text())["clusters"] if report.exists() else {}
    return code, results, "\n".join(tail)


def _failed(r: dict[str, Any]) -> bool:
    return r.get("status") not in ("converged", "changed") or any(not s.get("ok") for s in r.get("smoke", []))


def rollout(inventory: str, bake: float = 0, max_failed: int = 0, state_file: str | None = None,
            resume: bool = False, report_file: str | None = None, data: list[str] | None = None) -> int:
    data = data or []
    try:
        clusters = fleet.load(inventory)
    except fleet.InventoryError as err:
        _say(f"cannot start: {err}")
        return EXIT_CANNOT_START
    state_path = Path(state_file or REPO / "reports" / f"rollout-{Path(inventory).stem}.state.json")
    state: dict[str, Any] = {"inventory": inventory, "waves": {}}
    if resume:
        if not state_path.exists():
            _say(f"cannot start: --resume but no state file {state_path}")
            return EXIT_CANNOT_START
        state = json.loads(state_path.read_text())
    plan = fleet.waves(clusters)
    results: dict[str, dict[str, Any]] = {c.name: {"wave": c.wave, "status": "not-started", "errors": [],
                                                   "smoke": []} for c in clusters}
    for wave, _members in plan:
        prev = state["waves"].get(str(wave))
        if prev and prev.get("status") == "passed":
            for name, r in prev["clusters"].items():
                results[name] = {**r, "wave": wave, "resumed": "passed earlier"}
    failures = 0
    halted_at: int | None = None
    t_all = time.monotonic()
    _say(f"{len(clusters)} cluster(s) in {len(plan)} wave(s): "
         + "; ".join(f"wave {w}: {', '.join(c.name for c in m)}" for w, m in plan))
    for wave, members in plan:
        if state["waves"].get(str(wave), {}).get("status") == "passed":
            _say(f"wave {wave}: passed in an earlier run, skipped")
            continue
        label = f"wave {wave} [{', '.join(c.name for c in members)}]"
        t0 = time.monotonic()
        code, got, tail = run_deploy(inventory, members, data, label)
        if code != 0 and not got and "nothing was changed on any cluster" in tail:
            _say(f"cannot start: bad input, no cluster was touched:\n{tail}")
            return EXIT_CANNOT_START
        if bake and not any(_failed(got.get(c.name, {"status": "failed"})) for c in members):
            _say(f"{label}: baking {bake:.0f}s, then smoke tests again")
            time.sleep(bake)
            _, again, _ = run_deploy(inventory, members, data, f"{label} (after bake)")
            for name, r in again.items():
                got.setdefault(name, r)["smoke_after_bake"] = r.get("smoke", [])
                if _failed(r):
                    got[name]["status"] = "failed"
                    got[name]["errors"] = r.get("errors") or ["smoke test failed after the bake"]
        wave_failed = []
        for c in members:
            r = got.get(c.name) or {"status": "failed", "errors": [f"no result from pyinfra (exit {code}): "
                                                                   f"{tail.splitlines()[-1] if tail else ''}"],
                                    "smoke": []}
            r = {**r, "wave": wave, "duration_s": round(time.monotonic() - t0, 1)}
            if any("locked by" in e for e in r.get("errors", [])):
                r["status"] = "locked"
            results[c.name] = r
            if _failed(r):
                wave_failed.append(c.name)
        failures += len(wave_failed)
        state["waves"][str(wave)] = {"status": "failed" if wave_failed else "passed",
                                     "clusters": {c.name: results[c.name] for c in members}}
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps(state, indent=2))
        _say(f"{label}: {'FAILED: ' + ', '.join(wave_failed) if wave_failed else 'passed'} "
             f"({time.monotonic() - t0:.1f}s)")
        if failures > max_failed:
            halted_at = wave
            for later, rest in plan:
                if later > wave:
                    for c in rest:
                        results[c.name]["reason"] = f"not touched: rollout halted after wave {wave}"
            break
    if halted_at is not None and all(results[c.name]["status"] == "locked" for c in plan[0][1]) \
            and plan[0][0] == halted_at:
        status, code = "cannot-start", EXIT_CANNOT_START
    elif halted_at is not None:
        status, code = "halted", EXIT_HALTED
    elif failures:
        status, code = "some-failed", EXIT_SOME_FAILED
    else:
        status, code = "converged", EXIT_OK
    if code == EXIT_OK:
        state_path.unlink(missing_ok=True)
    report = {"inventory": inventory, "status": status, "exit_code": code, "halted_at_wave": halted_at,
              "max_failed_clusters": max_failed, "duration_s": round(time.monotonic() - t_all, 1),
              "clusters": results}
    print_table(results)
    _say(f"rollout {status} (exit {code})" + (f"; fix, then run again with --resume (state {state_path})"
                                               if code == EXIT_HALTED else ""))
    if report_file:
        Path(report_file).parent.mkdir(parents=True, exist_ok=True)
        Path(report_file).write_text(json.dumps(report, indent=2))
    return code


def print_table(results: dict[str, dict[str, Any]]) -> None:
    rows = [("CLUSTER", "WAVE", "STATUS", "CHANGED", "SMOKE", "REASON")]
    for name, r in sorted(results.items(), key=lambda kv: (kv[1].get("wave", 0), kv[0])):
        smoke = ", ".join(f"{s['service'].split('/')[-1]} {'ok' if s['ok'] else 'FAILED'}"
                          + (f" {s['latency_s']:.2f}s" if s.get("latency_s") is not None else "")
                          for s in r.get("smoke", [])) or "-"
        reason = (r.get("errors") or [r.get("reason", "")])[0].splitlines()[0][:70] if (
            r.get("errors") or r.get("reason")) else ""
        rows.append((name, str(r.get("wave", "")), r.get("status", ""), str(len(r.get("changed_operations", []))),
                     smoke, reason))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
