"""`knfleet status INVENTORY`: per cluster, changing nothing: reachable, Knative version, drift (server-side
dry-run diff of every object knfleet manages), each model service Ready or not with Knative's reason."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from knfleet import fleet, kubectl, plan, readiness, settings
from knfleet.facts import ManifestDiff
from knfleet.kubectl import KubectlError, Target


def cluster_status(c: fleet.Cluster) -> dict[str, Any]:
    out: dict[str, Any] = {"cluster": c.name, "reachable": False, "knative_version": None, "in_sync": None,
                           "drift": [], "services": [], "error": None}
    data = settings.Data({**c.data, "action": "install"})
    try:
        target, _, paths, models = plan.prepare(c.host, data)
    except Exception as err:  # noqa: BLE001 - bad data: report, change nothing
        out["error"] = f"cannot render the desired state: {err}"
        return out
    ver = kubectl.run(target, "version", "-o", "json", "--request-timeout=10s", check=False)
    if ver.returncode != 0:
        out["error"] = f"API server not reachable: {(ver.stderr or ver.stdout).strip().splitlines()[-1:]}"
        return out
    out["reachable"] = True
    ns = kubectl.run(target, "get", "namespace", "knative-serving", "-o", "json", check=False)
    if ns.returncode == 0:
        out["knative_version"] = (json.loads(ns.stdout)["metadata"].get("labels") or {}).get(
            "app.kubernetes.io/version")
    for stage, path in paths.items():
        proc = kubectl.run(target, *kubectl.diff_args(path), check=False)
        res = ManifestDiff().process([*(proc.stdout + proc.stderr).splitlines(), f"__rc={proc.returncode}"])
        if not res["in_sync"]:
            out["drift"] += [f"{stage}: {o}" for o in res["objects"]] or [f"{stage}: {res['error'] or 'differs'}"]
    out["in_sync"] = not out["drift"]
    out["services"] = services(target, [m.ref for m in models])
    return out


def services(target: Target, refs: list[str]) -> list[dict[str, Any]]:
    try:
        found = {readiness.name_of(o): o for o in kubectl.get_json(target, "ksvc", "-A")["items"]}
    except (KubectlError, ValueError):
        found = {}
    rows = []
    for ref in refs:
        obj = found.get(ref)
        if obj is None:
            rows.append({"service": ref, "ready": False, "reason": "missing (deleted?)"})
        else:
            ok = readiness.service_ready(obj)
            rows.append({"service": ref, "ready": ok, "reason": "" if ok else readiness.service_problem(obj)})
    return rows


def status(inventory: str, as_json: bool = False) -> int:
    clusters = fleet.load(inventory)
    with ThreadPoolExecutor(max_workers=min(8, len(clusters))) as pool:
        results = list(pool.map(cluster_status, clusters))
    if as_json:
        print(json.dumps({"clusters": results}, indent=2))
    else:
        for r in results:
            state = ("UNREACHABLE" if not r["reachable"] else "in sync" if r["in_sync"] else "DRIFT")
            print(f"{r['cluster']}: {state}; knative {r['knative_version'] or '-'}"
                  + (f"; {r['error']}" if r["error"] else ""))
            for d in r["drift"]:
                print(f"    drift {d}")
            for s in r["services"]:
                print(f"    ksvc {s['service']}: {'Ready' if s['ready'] else 'NOT READY ' + s['reason']}")
    healthy = all(r["reachable"] and r["in_sync"] and all(s["ready"] for s in r["services"]) for r in results)
    return 0 if healthy else 1
