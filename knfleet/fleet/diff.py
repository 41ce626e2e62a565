"""`knfleet diff INVENTORY`: what a run would change on each cluster, field by field, and who changed each drifted
field last. Changes nothing.

Per cluster it builds the install plan a run would (knfleet.desired.plan), compares each Apply step's objects with the
cluster as the run does (knfleet.kube.diff: knfleet's notes, then a server-side dry-run apply, field by field with
knfleet.kube.fielddiff) and lists the model services the run would delete (removed from group data). Exit codes, as
`flux diff`: 0 no change, 1 changes, 2 bad input (nothing contacted), 3 a cluster could not be compared.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from knfleet.desired import ownership, plan, prepull, settings
from knfleet.desired import progressive as pr
from knfleet.errors import InputError, Reason
from knfleet.fleet import inventory as inv
from knfleet.kube import diff, fielddiff, readiness
from knfleet.kube.client import Cluster, KubeError
from knfleet.report import outcome, outputs
from knfleet.report.outcome import ClusterOutcome
from knfleet.run.connector import target_of

NO_CHANGE, CHANGES, BAD_INPUT, CLUSTER_ERROR = 0, 1, 2, 3
STATUS = {NO_CHANGE: "in-sync", CHANGES: "changes", CLUSTER_ERROR: "cannot-compare"}  # the report's status


class BadInput(InputError):
    """A cluster's data or kubeconfig cannot be used; nothing was contacted."""


def prepare(c: inv.Cluster) -> tuple[list[plan.Step], Cluster]:
    """The install plan a run would follow on this cluster, and its client (not connected to the API yet)."""
    try:
        d = plan.desired(c.host, settings.Data({**c.data, "action": "install"}))
        cluster = Cluster(target_of(c.name, c.data))
        cluster.connect()  # loads the kubeconfig only
    except InputError as err:
        raise BadInput(f"{c.name}: {err}") from None
    return plan.plan(d), cluster


def removed_services(cluster: Cluster, step: plan.Prune) -> list[diff.Drift]:
    """Model services of this owner that group data no longer has and that knfleet applied: the run deletes them
    (the same rule as the run's prune, knfleet.desired.ownership.prunable)."""
    if not cluster.has(*readiness.KSVC):
        return []
    gone, _left = ownership.prunable(cluster.list(*readiness.KSVC, selector=step.selector), step.keep, step.owner)
    return [diff.Drift(f"Service/{readiness.name_of(o)}", "removed from group data: the run deletes it")
            for o in gone]


def removed_daemonsets(cluster: Cluster, step: plan.PrunePrepull) -> list[diff.Drift]:
    """knfleet's pre-pull DaemonSets no model wants any more: the run deletes them (its own rule,
    knfleet.desired.prepull.unwanted)."""
    gone, _left = prepull.unwanted(cluster.list(*readiness.DAEMONSET, selector=step.selector), step.keep)
    return [diff.Drift(f"DaemonSet/{readiness.name_of(o)}", "no model pre-pulls it any more: the run deletes it")
            for o in gone]


def refused_takeovers(cluster: Cluster, step: plan.Own) -> list[diff.Drift]:
    """Knative Services of the models' names that the run would refuse to take over (its Own step): the run stops
    there, so they are errors here too (exit 3), named with their managers."""
    live = {readiness.name_of(o): o for o in cluster.list(*readiness.KSVC)} if cluster.has(*readiness.KSVC) else {}
    return [diff.Drift(f"Service/{why.split()[2]}", f"the run refuses it: {why}", error=True)
            for why in ownership.takeover_problems(step.services, live, step.owner, step.adopt)]


def rollout_drift(cluster: Cluster, step: plan.Rollout, records: diff.Records) -> list[diff.Drift]:
    """A progressively rolled-out Service: field by field when its stable revision is the desired one, else what
    the run's rollout would do (a new version to roll out, one under way, one rolled back before)."""
    ns, name = step.ref.split("/", 1)
    live = next((o for o in cluster.list(*readiness.KSVC) if o["metadata"]["name"] == name
                 and o["metadata"].get("namespace") == ns), None) if cluster.has(*readiness.KSVC) else None
    same = pr.steady(step.service, live) if live is not None else None
    if same is not None:
        return diff.drift(cluster, (same,), records, learn=False, keep_going=True)
    return [diff.Drift(f"Service/{step.ref}", pr.pending(step.service, live))]


def compare(name: str, steps: list[plan.Step], cluster: Cluster) -> ClusterOutcome:
    """Every Apply step's objects and the prune, read-only (nothing is learnt or noted)."""
    out = ClusterOutcome(name, outcome.UNREACHABLE, reachable=False)
    try:
        cluster.version()
        out.reachable = True
        records = diff.Records.load(cluster)
        for step in steps:
            if isinstance(step, plan.Apply):
                found = diff.drift(cluster, step.objects, records, learn=False, keep_going=True)
                stage = step.stage
            elif isinstance(step, plan.Prune):
                found, stage = removed_services(cluster, step), "services"
            elif isinstance(step, plan.PrunePrepull):
                found, stage = removed_daemonsets(cluster, step), "prepull"
            elif isinstance(step, plan.Rollout):
                found, stage = rollout_drift(cluster, step, records), "services"
            elif isinstance(step, plan.Own):
                found, stage = refused_takeovers(cluster, step), "services"
            else:
                continue
            out.drift += [f"{stage}: {x}" for x in found]
            for x in (x for x in found if x.error):
                out.errors.append(f"{stage}: {x.ref} {x.why}")
                code = Reason.OWNERSHIP_REFUSED if x.why.startswith("the run refuses it") else Reason.API_ERROR
                out.failures.append({"step": stage, "reason": code.value, "message": f"{x.ref} {x.why}"})
            out.changes += diff.describe(stage, found)[1]
    except KubeError as err:
        out.errors = [f"API server not reachable or refused a request: {err}" if not out.reachable
                      else f"cannot compare with the cluster: {err}"]
        out.failures = [{"step": "diff", "reason": err.code.value, "message": out.errors[0]}]
        out.status = outcome.UNREACHABLE if not out.reachable else outcome.FAILED
        return out
    finally:
        cluster.close()
    out.status = outcome.DRIFT if out.changes else outcome.IN_SYNC
    return out


def text(o: ClusterOutcome) -> list[str]:
    """A cluster's changes for people: the cluster, each object (a stage missing entirely is one line), each field
    with its last writer."""
    if not o.changes:
        return []
    errors = sum(1 for c in o.changes if c["why"].startswith("cannot be compared"))
    out = [f"{o.cluster}: {len(o.changes) - errors} object(s) would change"
           + (f", {errors} could not be compared" if errors else "")]
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for c in o.changes:
        by_stage.setdefault(c["stage"], []).append(c)
    for stage, objects in by_stage.items():
        out += [f"  {line}" for line in fielddiff.stage_lines(stage, objects)]
    return out


def exit_code(results: dict[str, ClusterOutcome]) -> int:
    if any(not r.reachable or r.errors for r in results.values()):
        return CLUSTER_ERROR
    return CHANGES if any(r.changes for r in results.values()) else NO_CHANGE


def run(inventory: str, as_json: bool = False, report: str | None = None, report_html: str | None = None) -> int:
    try:
        clusters = inv.load(inventory)
        prepared = {c.name: prepare(c) for c in clusters}
    except (inv.InventoryError, InputError) as err:
        print(f"knfleet diff: error: {err}\nknfleet diff: no cluster was contacted.", file=sys.stderr)
        return BAD_INPUT
    with ThreadPoolExecutor(max_workers=min(8, len(clusters))) as pool:
        done = pool.map(lambda c: compare(c.name, *prepared[c.name]), clusters)
        results = {c.name: r for c, r in zip(clusters, done, strict=True)}
    for c in clusters:
        results[c.name].host, results[c.name].wave = c.host, c.wave
    code = exit_code(results)
    data = outcome.report("diff", results, inventory=inventory, exit_code=code, status=STATUS[code])
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        for r in results.values():
            for line in text(r):
                print(line)
    for r in results.values():
        for e in r.errors:
            print(f"knfleet diff: {r.cluster}: {e}", file=sys.stderr)
    for what, path in outputs.write_all(data, json_file=report, html_file=report_html):
        print(f"knfleet diff: {what} report: {path}", file=sys.stderr)
    return code
