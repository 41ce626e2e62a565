"""`knfleet status INVENTORY`: per cluster, changing nothing: reachable, Knative version, drift (every object
knfleet manages compared as a run would, knfleet.kube.diff, read-only), each model service Ready or not with
Knative's reason. Same checks and same report schema as a run."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from knfleet.desired import manifests, plan, settings, upgrade
from knfleet.desired import progressive as pr
from knfleet.errors import InputError
from knfleet.fleet import inventory as inv
from knfleet.kube import diff, readiness
from knfleet.kube.client import Cluster, KubeError
from knfleet.report import outcome
from knfleet.report.outcome import ClusterOutcome
from knfleet.run.connector import target_of


def cluster_status(c: inv.Cluster) -> ClusterOutcome:
    out = ClusterOutcome(c.name, outcome.UNREACHABLE, host=c.host, wave=c.wave, reachable=False)
    try:
        d = plan.desired(c.host, settings.Data({**c.data, "action": "install"}))
        cluster = Cluster(target_of(c.name, c.data))
        cluster.connect()
    except InputError as err:
        out.status, out.errors = outcome.FAILED, [f"cannot render the desired state: {err}"]
        return out
    try:
        cluster.version()
        out.reachable = True
        ns = cluster.get("v1", "Namespace", "knative-serving")
        have = upgrade.installed(cluster.list("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
                                 cluster.list("apps/v1", "Deployment", "knative-serving") if ns else [])
        out.knative_version = have.describe() if have.version else None
        if have.version and have.version != d.settings.knative_version:
            out.drift.append(f"version: Knative Serving {have.describe()} installed, group data asks "
                             f"{d.settings.knative_version}")
        records = diff.Records.load(cluster)
        refs = tuple(m.ref for m in d.models)
        found = {readiness.name_of(o): o for o in cluster.list(*readiness.KSVC)} \
            if refs and cluster.has(*readiness.KSVC) else {}
        for stage in d.stages:
            objects, rolled = [], []
            for o in stage.objects:
                if stage.name == "services" and plan.progressive_service(d, o):
                    rolled.append(o)
                else:
                    objects.append(o)
            drifted = diff.drift(cluster, tuple(objects), records, learn=False)
            out.drift += [f"{stage.name}: {x}" for x in drifted]
            out.changes += diff.describe(stage.name, drifted)[1]  # field by field, with the last writers
            out.drift += [f"{stage.name}: {x}" for o in rolled for x in rollout_drift(cluster, o, found, records)]
        for m in d.models:
            ref, obj = m.ref, found.get(m.ref)
            source = {"source": m.source} if isinstance(m, manifests.ManifestService) else {}
            if obj is None:
                out.services.append({"service": ref, "ready": False, "reason": "missing (deleted?)", **source})
            else:
                ok = readiness.service_ready(obj)
                out.services.append({"service": ref, "ready": ok, "reason": "" if ok else
                                     readiness.service_problem(obj), **versions_of(obj), **source})
    except KubeError as err:
        out.errors = [f"API server not reachable or refused a read: {err}"]
        out.status = outcome.UNREACHABLE if not out.reachable else outcome.FAILED
        return out
    finally:
        cluster.close()
    healthy = not out.drift and all(s["ready"] for s in out.services)
    out.status = outcome.IN_SYNC if healthy else outcome.DRIFT
    return out


def rollout_drift(cluster: Cluster, service: dict, found: dict, records: diff.Records) -> list[str]:
    """A progressively rolled-out Service: in sync when its stable revision is the desired one and the rest of it
    matches; otherwise what a run would do (roll out, go on with a rollout, or refuse a version rolled back)."""
    ref = readiness.name_of(service)
    live = found.get(ref)
    if live is None:
        return [f"Service/{ref} (missing)"]
    same = pr.steady(service, live)
    if same is not None:
        return [str(x) for x in diff.drift(cluster, (same,), records, learn=False)]
    return [f"Service/{ref} ({pr.pending(service, live)})"]


def versions_of(live: dict) -> dict:
    """A Service's tagged revisions and rollout phase, for a progressively rolled-out one ({} for the others)."""
    st = pr.state_of(live)
    if st is None:
        return {}
    stable, previous, candidate = pr.versions(live)
    return {"stable": stable, "previous": previous, "candidate": candidate, "rollout": st.phase}


def summarize(drift: list[str], most: int = 6) -> list[str]:
    """Drift lines for people: a stage whose objects are all missing is one line, long lists are cut."""
    by_stage: dict[str, list[str]] = {}
    for x in drift:
        by_stage.setdefault(x.split(":", 1)[0], []).append(x)
    out: list[str] = []
    for stage, lines in by_stage.items():
        if len(lines) > most and all(x.endswith("(missing)") for x in lines):
            out.append(f"{stage}: not installed ({len(lines)} objects missing)")
        else:
            out += lines[:most] + ([f"{stage}: … and {len(lines) - most} more"] if len(lines) > most else [])
    return out


def status(inventory: str, as_json: bool = False) -> int:
    try:
        clusters = inv.load(inventory)
    except inv.InventoryError as err:
        print(f"knfleet status: {err}")
        return 2
    with ThreadPoolExecutor(max_workers=min(8, len(clusters))) as pool:
        results = {c.name: r for c, r in zip(clusters, pool.map(cluster_status, clusters), strict=True)}
    if as_json:
        print(json.dumps(outcome.report("status", results, inventory=inventory), indent=2))
    else:
        for r in results.values():
            state = {outcome.IN_SYNC: "in sync", outcome.DRIFT: "DRIFT", outcome.UNREACHABLE: "UNREACHABLE"}.get(
                r.status, r.status.upper())
            print(f"{r.cluster}: {state}; knative {r.knative_version or '-'}"
                  + (f"; {r.errors[0]}" if r.errors else ""))
            for x in summarize(r.drift):
                print(f"    drift {x}")
            for s in r.services:
                tagged = "".join(f", {t} {s[t]}" for t in ("stable", "candidate", "previous") if s.get(t))
                print(f"    ksvc {s['service']}: {'Ready' if s['ready'] else 'NOT READY ' + s['reason']}"
                      + (f" (rollout {s['rollout']}{tagged})" if s.get("rollout") else "")
                      + (f" [from {s['source']}]" if s.get("source") else ""))
    return 0 if all(r.status == outcome.IN_SYNC for r in results.values()) else 1
