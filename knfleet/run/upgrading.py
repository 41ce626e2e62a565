"""The operations of an in-place upgrade (knfleet.desired.upgrade has the rules, pure):

    Version      read the installed version before anything is applied; refuse a downgrade or a skipped minor
                 (nothing changed); on an upgrade, note it (kube-system/knfleet-upgrade: from, to, pending)
    Smoke        (before_upgrade) the model services answer before anything changes
    ... the new release applied in the install order, with the same gates ...
    Obsolete     delete what the old release had and the new one does not
    PostInstall  create serving-post-install-jobs.yaml's Jobs (generateName), wait until they complete (a failure
                 names the Job's reason and its pod's exit), then note the upgrade done

The note makes an interrupted upgrade resumable: a re-run after a failed Job finds the upgrade still pending and
runs the Jobs again; a converged re-run finds it done and changes nothing.
"""

from __future__ import annotations

import time
from typing import Any

from pyinfra.api import operation

from knfleet.desired import plan as p
from knfleet.desired import upgrade
from knfleet.errors import KnfleetError, NotReadyError, Reason
from knfleet.kube import wait
from knfleet.kube.client import Cluster, KubeError, ref
from knfleet.run.context import cluster as current_cluster
from knfleet.run.context import command, fail, record, save_notes, say, state, unchanged, warn

CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
JOB = ("batch/v1", "Job")


def installed(cluster: Cluster) -> upgrade.Installed:
    """The Serving version the cluster's objects say is installed (their app.kubernetes.io/version labels)."""
    # a list in a namespace that does not exist is empty: no need to look for the namespace first
    return upgrade.installed(cluster.list(*CRD), cluster.list("apps/v1", "Deployment", "knative-serving"))


def note(cluster: Cluster) -> dict[str, str]:
    """knfleet's note of an upgrade (from, to, phase), read once per run and kept in the cluster's run state."""
    cs = state()
    if cs.upgrade_note is None:
        cm = cluster.get("v1", "ConfigMap", upgrade.NOTE_NAME, upgrade.NOTE_NS)
        cs.upgrade_note = dict((cm or {}).get("data") or {})
    return cs.upgrade_note


def write_note(cluster: Cluster, data: dict[str, str]) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": upgrade.NOTE_NAME, "namespace": upgrade.NOTE_NS,
                                "labels": {"app.kubernetes.io/managed-by": "knfleet"}},
                   "data": data})
    state().upgrade_note = dict(data)


def upgrading_from(cluster: Cluster, target: str) -> str | None:
    """The version an upgrade to `target` starts from, while one is pending (noted, or about to start); else None."""
    n = note(cluster)
    if n.get("to") == target and n.get("phase") == "pending":
        return n.get("from") or "?"
    have = installed(cluster).version
    if have is not None and have != target and upgrade.check_path(have, target) == "upgrade":
        return have
    return None


# --- Version --------------------------------------------------------------------------------------------------------
def _begin(cluster: Cluster, frm: str, to: str) -> list[str]:
    write_note(cluster, {"from": frm, "to": to, "phase": "pending", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                             time.gmtime())})
    return [f"Knative Serving {frm} -> {to} (noted in ConfigMap/{upgrade.NOTE_NS}/{upgrade.NOTE_NAME})"]


@operation()
def version_check(step: p.Version):
    """Before anything is applied: which Serving release the cluster runs, and whether `knative_version` may follow
    it (one minor at a time, never down). An upgrade is noted (a change); the rest is a look."""
    t0 = time.monotonic()
    cluster = current_cluster()
    try:
        have = installed(cluster)
        pending = note(cluster)
    except KubeError as err:
        yield fail(step.title, f"cannot read the installed Knative version: {err}")
        return
    rec = record()
    try:
        path = upgrade.check_path(have.version, step.target)
    except upgrade.UpgradeRefused as err:
        rec.knative_version = have.describe()
        yield fail(step.title, str(err), Reason.UPGRADE_REFUSED)
        return
    resumed = have.version is not None and pending.get("to") == step.target and pending.get("phase") == "pending"
    if path == "upgrade" or resumed:
        frm = have.version if path == "upgrade" else pending.get("from", "?")
        rec.knative_version = f"{frm} -> {step.target}"
        if not step.jobs:
            yield fail(step.title, f"upgrading Knative Serving {frm} -> {step.target} runs the Jobs of "
                                       f"{upgrade.JOBS_FILE}, which the bundle does not have: put the release's "
                                       f"{upgrade.JOBS_FILE} in the bundle folder. Nothing was changed")
            return
        say(f"Knative Serving {have.describe()} installed: upgrading to {step.target}"
                    + (" (resuming: the Jobs have not completed yet)" if path != "upgrade" else ""))
        if path == "upgrade" and not (resumed and pending.get("from") == frm):
            yield command(step.title, _begin, cluster, frm, step.target)
            return
        unchanged(step.title, f"upgrade {frm} -> {step.target} in progress (resumed)", t0)
        return
    rec.knative_version = have.version or step.target
    unchanged(step.title, f"Knative Serving {have.version} installed, as asked" if have.version
                  else f"no Knative Serving installed: fresh install of {step.target}", t0)


# --- Obsolete -------------------------------------------------------------------------------------------------------
def _live_release(cluster: Cluster, step: p.Obsolete) -> list[dict[str, Any]]:
    """The objects labelled as Knative's release in the kinds and namespaces the release uses."""
    keys = set()
    for api, kind in step.kinds:
        if not cluster.has(api, kind):
            continue
        namespaced = cluster.resource(api, kind).namespaced
        namespaces = {(o.get("metadata") or {}).get("namespace") for o in step.desired
                      if o["apiVersion"] == api and o["kind"] == kind} if namespaced else {None}
        keys |= {(api, kind, ns, f"{upgrade.NAME_LABEL}={upgrade.RELEASE_NAME}") for ns in namespaces}
    keys_sorted = sorted(keys, key=lambda k: (k[0], k[1], k[2] or ""))
    cluster.list_many(keys_sorted)
    return [o for k in keys_sorted for o in cluster.list(*k)]


def delete_obsolete(cluster: Cluster, gone: list[dict[str, Any]], timeout: int) -> list[str]:
    notes = state().records()
    for o in gone:
        cluster.delete(o["apiVersion"], o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
        notes.forget(o)
    wait.until_gone(cluster, gone, timeout)
    save_notes(cluster)
    return [f"{ref(o)} (deleted: release {o['metadata']['labels'].get(upgrade.VERSION_LABEL)})" for o in gone]


@operation()
def obsolete(step: p.Obsolete):
    """While upgrading: delete the objects knfleet applied for the old release that the new one does not have
    (Knative's CRDs are never deleted: reported instead)."""
    t0 = time.monotonic()
    cluster = current_cluster()
    try:
        frm = upgrading_from(cluster, step.target)
        if frm is None:
            unchanged(step.title, "no upgrade in progress", t0)
            return
        gone, kept = upgrade.obsolete(_live_release(cluster, step), list(step.desired), step.target)
    except (KubeError, upgrade.UpgradeRefused) as err:
        yield fail(step.title, f"cannot look for objects of the old release: {err}")
        return
    for k in kept:
        warn(f"kept {k}")
    if not gone:
        unchanged(step.title, f"release {step.target} keeps every object of {frm}", t0)
        return
    say(f"not in release {step.target}: {', '.join(ref(o) for o in gone)}")
    yield command(step.title, delete_obsolete, cluster, gone, step.timeout)


# --- PostInstall ----------------------------------------------------------------------------------------------------
def _pod_exit(cluster: Cluster, job: dict[str, Any]) -> str:
    """The last exit of the Job's newest pod: what the person fixing it needs first."""
    pods = cluster.list("v1", "Pod", job["metadata"]["namespace"], f"job-name={job['metadata']['name']}")
    for pod in sorted(pods, key=lambda x: x["metadata"].get("creationTimestamp") or "", reverse=True):
        for st in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (st.get("state") or {}).get("terminated") or (st.get("lastState") or {}).get("terminated")
            if term:
                return (f"pod {pod['metadata']['name']} container {st['name']} exited {term.get('exitCode')} "
                        f"({term.get('reason', '')}{': ' + term['message'] if term.get('message') else ''})")
            waiting = (st.get("state") or {}).get("waiting")
            if waiting:
                return f"pod {pod['metadata']['name']} container {st['name']} {waiting.get('reason')}"
    return "no pod has run"


def _run_jobs(cluster: Cluster, step: p.PostInstall, frm: str) -> list[str]:
    created = [cluster.create(j) for j in step.jobs]
    names = [f"{j['metadata']['namespace']}/{j['metadata']['name']}" for j in created]
    say(f"created Job(s) {', '.join(names)}; waiting for them to complete")
    failed: list[str] = []

    def done() -> tuple[bool, str]:
        waiting = []
        for j in created:
            live = cluster.get(*JOB, j["metadata"]["name"], j["metadata"]["namespace"])
            if live is None:
                failed.append(f"Job {j['metadata']['name']} disappeared before it completed")
                return True, ""
            state, why = upgrade.job_outcome(live)
            if state == "failed":
                failed.append(f"Job {j['metadata']['namespace']}/{j['metadata']['name']} failed: {why}; "
                              f"{_pod_exit(cluster, live)}")
                return True, ""
            if state == "running":
                waiting.append(f"Job {j['metadata']['name']}: {why}; {_pod_exit(cluster, live)}")
        return not waiting, "\n".join(waiting)
    try:
        wait.until(cluster, done, step.timeout, interval=0.5)
    except NotReadyError as err:
        raise NotReadyError(f"the post-install Jobs did not complete: {err}") from None
    if failed:
        raise KnfleetError(f"upgrade {frm} -> {step.target}: " + "; ".join(failed)
                           + ". The upgrade stays pending: fix the cause and run again (the Jobs run again)",
                           code=Reason.JOB_FAILED)
    write_note(cluster, {**note(cluster), "phase": "done", "jobs": ", ".join(f"{n} complete" for n in names),
                         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return [f"Job/{n} (created, complete)" for n in names]


@operation()
def post_install(step: p.PostInstall):
    """While upgrading: create the release's post-install Jobs (they use generateName: created, never applied),
    wait until each completes (failing with the Job's reason and its pod's exit), then note the upgrade done."""
    t0 = time.monotonic()
    cluster = current_cluster()
    try:
        frm = upgrading_from(cluster, step.target)
    except (KubeError, upgrade.UpgradeRefused) as err:
        yield fail(step.title, f"cannot read the upgrade's state: {err}")
        return
    if frm is None:
        unchanged(step.title, "no upgrade in progress: no Job to run", t0)
        return
    yield command(step.title, _run_jobs, cluster, step, frm)

