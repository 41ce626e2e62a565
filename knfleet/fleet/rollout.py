"""`knfleet rollout INVENTORY`: the deploy wave by wave (canary first), halting when a wave breaks.

Each wave is one pyinfra run in this process (pyinfra's API, a fresh state per wave) of deploy.py on the
wave's clusters in parallel; its outcome per cluster comes back as values (knfleet.report.outcome), not
parsed from text. A wave passes when every cluster converged and its smoke tests passed (optionally again
after a bake). Exit codes: 0 all converged; 1 some clusters failed within --max-failed-clusters; 2 halted;
3 could not start (bad input: nothing was touched; or every canary cluster is locked).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from knfleet import fsio
from knfleet.fleet import inventory as inv
from knfleet.report import outcome, outputs
from knfleet.report.outcome import ClusterOutcome

EXIT_OK, EXIT_SOME_FAILED, EXIT_HALTED, EXIT_CANNOT_START = 0, 1, 2, 3


class CannotStart(Exception):
    """A wave's run stopped before touching any cluster (bad input)."""


def say(msg: str) -> None:
    print(f"[rollout {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _progress(label: str) -> Any:
    from pyinfra.api.state import BaseStateCallback

    class Progress(BaseStateCallback):
        def operation_start(self, state: Any, op_hash: str) -> None:  # type: ignore[override]
            say(f"{label}: {', '.join(sorted(state.get_op_meta(op_hash).names))}")
    return Progress()


def run_wave(inventory_file: str, deploy_file: str, hosts: list[str], data: dict[str, Any],
             label: str) -> dict[str, ClusterOutcome]:
    """deploy.py on `hosts` (one pyinfra run, in process); each cluster's outcome. CannotStart on bad input."""
    from pyinfra.api import Config, State
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops
    from pyinfra.api.state import StateStage
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory
    from pyinfra_cli.util import load_deploy_file

    from knfleet.run import deploy, heap

    state = State(check_for_changes=False)
    state.cwd = os.getcwd()
    ctx_state.set(state)
    inventory = make_inventory(inventory_file, override_data=data, cwd=os.getcwd(),
                               group_data_directories=inv.group_data_directories())
    state.init(inventory, Config(), initial_limit=[inventory.get_host(h) for h in hosts])
    deploy.report_of(state, write_files=False)  # no report files (KNFLEET_REPORT…) per wave: the rollout writes them
    state.add_callback_handler(_progress(label))
    try:
        state.set_stage(StateStage.Connect)
        connect_all(state)
        state.set_stage(StateStage.Prepare)
        try:
            load_deploy_file(state, deploy_file)
        except SystemExit as err:
            if err.code == 2:
                raise CannotStart("bad input: no cluster was touched (see the error above)") from None
            raise
        state.set_stage(StateStage.Execute)
        try:
            run_ops(state)
        except PyinfraError:
            pass  # "No hosts remaining!": every cluster of the wave failed; their outcomes say why
    finally:
        state.set_stage(StateStage.Disconnect)
        disconnect_all(state)
    got = outcome.outcomes(state)
    heap.release()  # the next wave's run starts from a heap without this one's (frozen cycles freed)
    return got


def _failed(o: ClusterOutcome | None) -> bool:
    return o is None or not o.ok or o.status not in (outcome.CONVERGED, outcome.CHANGED)


def rollout(inventory: str, bake: float = 0, max_failed: int = 0, state_file: str | None = None,
            resume: bool = False, report_file: str | None = None, data: list[str] | None = None,
            deploy_file: str = "deploy.py", report_html: str | None = None) -> int:
    t_all = time.monotonic()
    try:
        overrides = inv.parse_data(data or [])
        clusters = inv.load(inventory, overrides)
    except inv.InventoryError as err:
        say(f"cannot start: {err}")
        return EXIT_CANNOT_START
    if not Path(deploy_file).is_file():
        say(f"cannot start: no {deploy_file} here (run knfleet rollout from the deploy's folder)")
        return EXIT_CANNOT_START
    state_path = Path(state_file or Path("reports") / f"rollout-{Path(inventory).stem}.state.json")
    saved: dict[str, Any] = {"inventory": inventory, "waves": {}}
    if resume:
        if not state_path.exists():
            say(f"cannot start: --resume but no state file {state_path}")
            return EXIT_CANNOT_START
        try:
            saved = json.loads(state_path.read_text())
            if not isinstance(saved, dict) or not isinstance(saved.get("waves"), dict):
                raise ValueError("not a rollout state")
        except (OSError, ValueError) as err:
            say(f"cannot start: --resume but the state file {state_path} cannot be read ({err}); run without "
                "--resume to start the rollout over (converged clusters report no change)")
            return EXIT_CANNOT_START
    plan = inv.waves(clusters)
    results: dict[str, ClusterOutcome] = {c.name: ClusterOutcome(c.name, outcome.UNTOUCHED, host=c.host, wave=c.wave)
                                          for c in clusters}
    for wave, _members in plan:
        prev = saved["waves"].get(str(wave))
        if prev and prev.get("status") == "passed":
            for name, r in prev["clusters"].items():
                results[name] = ClusterOutcome(**{**r, "wave": wave, "reason": "passed in an earlier run"})
    short = gpu_preflight(clusters)
    if short:
        for line in short:
            say(f"GPU preflight: {line}")
        say("cannot start: the GPU capacity preflight failed (gpu_preflight=warn to go on anyway); no cluster was "
            "touched")
        if report_file:
            outcome.write(report_file, outcome.report(
                "rollout", {n: ClusterOutcome(**{**r.as_dict(), "reason": "not touched: GPU preflight"})
                            for n, r in results.items()}, inventory=inventory, status="cannot-start",
                exit_code=EXIT_CANNOT_START, gpu_preflight=short))
        return EXIT_CANNOT_START
    failures = 0
    halted_at: int | None = None
    say(f"{len(clusters)} cluster(s) in {len(plan)} wave(s): "
        + "; ".join(f"wave {w}: {', '.join(c.name for c in m)}" for w, m in plan))
    for wave, members in plan:
        if saved["waves"].get(str(wave), {}).get("status") == "passed":
            say(f"wave {wave}: passed in an earlier run, skipped")
            continue
        label = f"wave {wave} [{', '.join(c.name for c in members)}]"
        t0 = time.monotonic()
        hosts = [c.host for c in members]
        try:
            got = run_wave(inventory, deploy_file, hosts, overrides, label)
            if bake and not any(_failed(got.get(c.name)) for c in members):
                say(f"{label}: baking {bake:.0f}s, then smoke tests again")
                time.sleep(bake)
                again = run_wave(inventory, deploy_file, hosts, overrides, f"{label} (after bake)")
                for name, o in again.items():
                    if _failed(o):
                        got[name].status = outcome.FAILED
                        got[name].errors = o.errors or ["smoke test failed after the bake"]
                    got[name].smoke_after_bake = o.smoke
        except CannotStart as err:
            say(f"cannot start: {err}")
            return EXIT_CANNOT_START
        wave_failed = []
        for c in members:
            o = got.get(c.name) or ClusterOutcome(c.name, outcome.FAILED, host=c.host,
                                                   errors=["no result from pyinfra (could not connect?)"])
            o.wave = wave
            o.duration_s = round(time.monotonic() - t0, 1)
            results[c.name] = o
            if _failed(o):
                wave_failed.append(c.name)
        failures += len(wave_failed)
        saved["waves"][str(wave)] = {"status": "failed" if wave_failed else "passed",
                                     "clusters": {c.name: results[c.name].as_dict() for c in members}}
        fsio.write_atomic(state_path, json.dumps(saved, indent=2))  # killed while writing: the old state stays
        say(f"{label}: {'FAILED: ' + ', '.join(wave_failed) if wave_failed else 'passed'} "
            f"({time.monotonic() - t0:.1f}s)")
        if failures > max_failed:
            halted_at = wave
            for later, rest in plan:
                if later > wave:
                    for c in rest:
                        results[c.name].reason = f"not touched: rollout halted after wave {wave}"
            break
    canary = plan[0][1]
    if halted_at is not None and halted_at == plan[0][0] and all(results[c.name].status == outcome.LOCKED
                                                                    for c in canary):
        status, code = "cannot-start", EXIT_CANNOT_START
    elif halted_at is not None:
        status, code = "halted", EXIT_HALTED
    elif failures:
        status, code = "some-failed", EXIT_SOME_FAILED
    else:
        status, code = "converged", EXIT_OK
    if code == EXIT_OK:
        state_path.unlink(missing_ok=True)
    print_table(results)
    say(f"rollout {status} (exit {code})" + (f"; fix, then run again with --resume (state {state_path})"
                                              if code == EXIT_HALTED else ""))
    written = outputs.write_all(
        outcome.report("rollout", results, inventory=inventory, status=status, exit_code=code,
                       halted_at_wave=halted_at, max_failed_clusters=max_failed,
                       duration_s=round(time.monotonic() - t_all, 1)),
        json_file=report_file, html_file=report_html, metrics_file=os.environ.get("KNFLEET_METRICS_FILE"))
    for what, path in written:
        say(f"{what} report: {path}")
    sys.stdout.flush()
    return code


def rollback(inventory: str, service: str, limit: list[str] | None = None, data: list[str] | None = None,
             report_file: str | None = None, deploy_file: str = "deploy.py") -> int:
    """`knfleet rollback INVENTORY SERVICE`: the service's previous version back at 100 % on every cluster (or those
    of `limit`), all at once (a rollback is the way out of a bad version: no waves). Exit 0 when every cluster
    rolled back, 1 when some failed, 3 when nothing could start (bad input, no such cluster)."""
    try:
        overrides = inv.parse_data([*(data or []), f"rollback={service}"])
        clusters = inv.load(inventory, overrides)
    except inv.InventoryError as err:
        say(f"cannot start: {err}")
        return EXIT_CANNOT_START
    chosen = [c for c in clusters if not limit or c.name in limit]
    unknown = sorted(set(limit or ()) - {c.name for c in clusters})
    if unknown or not chosen:
        say(f"cannot start: no cluster {', '.join(unknown) or '(none chosen)'} in {inventory}; clusters: "
            f"{', '.join(c.name for c in clusters)}")
        return EXIT_CANNOT_START
    try:
        got = run_wave(inventory, deploy_file, [c.host for c in chosen], overrides, f"rollback {service}")
    except CannotStart as err:
        say(f"cannot start: {err}")
        return EXIT_CANNOT_START
    failed = [c.name for c in chosen if _failed(got.get(c.name))]
    code = EXIT_SOME_FAILED if failed else EXIT_OK
    print_table({c.name: got.get(c.name) or ClusterOutcome(c.name, outcome.FAILED, host=c.host) for c in chosen})
    say(f"rollback of {service}: " + (f"FAILED on {', '.join(failed)}" if failed else "done") + f" (exit {code})")
    if report_file:
        outcome.write(report_file, outcome.report("rollback", got, inventory=inventory, service=service,
                                                  exit_code=code))
    return code


def gpu_preflight(clusters: list[inv.Cluster]) -> list[str]:
    """Before wave 0: each cluster's GPU capacity for its model services (knfleet.desired.capacity), read-only.
    The shortfalls of the clusters whose gpu_preflight is `refuse` (warnings are printed, not returned)."""
    from knfleet.desired import plan, settings
    from knfleet.errors import InputError
    from knfleet.kube.client import Cluster, KubeError
    from knfleet.run.connector import target_of
    from knfleet.run.preflight import gpu_shortfall

    refused = []
    for c in clusters:
        try:
            d = plan.desired(c.host, settings.Data({**c.data, "action": "install"}))
        except InputError:
            continue  # the wave's run reports bad input itself, before touching anything
        needs = plan.gpu_needs(d)
        if not needs or d.settings.run.gpu_preflight == "off":
            continue
        cluster = Cluster(target_of(c.name, c.data))
        try:
            short, text = gpu_shortfall(cluster, needs, d.settings.owner)
        except (KubeError, InputError) as err:
            say(f"GPU preflight: {c.name}: cannot read the nodes ({err}); the wave's run will report it")
            continue
        finally:
            cluster.close()
        if not short:
            say(f"GPU preflight: {text}")
        elif d.settings.run.gpu_preflight == "warn":
            say(f"GPU preflight: warning: {text}")
        else:
            refused.append(text)
    return refused


def print_table(results: dict[str, ClusterOutcome]) -> None:
    rows = [("CLUSTER", "WAVE", "STATUS", "CHANGED", "SMOKE", "REASON")]
    for name, o in sorted(results.items(), key=lambda kv: (kv[1].wave or 0, kv[0])):
        smoke = ", ".join(f"{s['service'].split('/')[-1]} "
                          + ("at zero" if s.get("skipped") else "ok" if s["ok"] else "FAILED")
                          + (f" {s['latency_s']:.2f}s" if s.get("latency_s") is not None else "")
                          for s in o.smoke) or "-"
        reason = (o.errors or [o.reason])[0].splitlines()[0][:70] if (o.errors or o.reason) else ""
        rows.append((name, str(o.wave if o.wave is not None else ""), o.status, str(len(o.changed_operations)),
                     smoke, reason))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
