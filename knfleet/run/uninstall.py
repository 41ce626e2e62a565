"""Uninstall, the runbook's reverse order made safe: refuse when Knative objects knfleet did not make would be lost
(Guard), delete knfleet's Knative Services while Knative's controllers still run their finalizers
(DeleteServices), delete each stage in reverse (Delete), and verify that nothing of Knative remains (Removed),
naming whatever a finalizer holds."""

from __future__ import annotations

import re
import time
from typing import Any

from pyinfra.api import operation

from knfleet.desired import plan as p
from knfleet.errors import NotReadyError, Reason, StuckError
from knfleet.kube import readiness, wait, webhook
from knfleet.kube.client import Cluster, KubeError, ref
from knfleet.run.context import cluster as current_cluster
from knfleet.run.context import command, fail, save_notes, state, unchanged

KSVC = ("serving.knative.dev/v1", "Service")


USER_KINDS, MADE_FOR_SERVICE, STILL_DELETING_KINDS = p.USER_KINDS, p.MADE_FOR_SERVICE, p.STILL_DELETING_KINDS


def foreign_objects(everything: list[dict[str, Any]], selector: str) -> list[str]:
    """Knative objects an uninstall would destroy that knfleet did not create: Services without its label,
    DomainMappings, and Routes or Configurations made directly (not by a Knative Service)."""
    key, _, value = selector.partition("=")
    out = []
    for o in everything:
        kind, meta = o.get("kind"), o["metadata"]
        owned_by_service = any(r.get("kind") == "Service" and r.get("apiVersion", "").startswith("serving.knative.dev")
                               for r in meta.get("ownerReferences") or [])
        if kind == "Service" and (meta.get("labels") or {}).get(key) != value:
            out.append(f"Knative Service {readiness.name_of(o)}")
        elif kind == "DomainMapping":
            out.append(f"DomainMapping {readiness.name_of(o)}")
        elif kind in ("Route", "Configuration") and not owned_by_service:
            out.append(f"{kind} {readiness.name_of(o)} (created directly)")
    return sorted(out)


def made_for(obj: dict[str, Any], refs: list[str]) -> bool:
    """Knative made obj for one of these services ("ns/name"): its serving.knative.dev/service label names it."""
    meta = obj["metadata"]
    return f"{meta.get('namespace')}/{(meta.get('labels') or {}).get('serving.knative.dev/service')}" in refs


def user_objects(cluster: Cluster) -> list[dict[str, Any]]:
    kinds = [k for k in USER_KINDS if cluster.has(*k)]
    cluster.list_many([(*k, None, None) for k in kinds])
    return [o for k in kinds for o in cluster.list(*k)]


@operation()
def guard(step: p.Guard):
    """Refuse to go on when Knative objects knfleet did not make exist (Services, DomainMappings, Routes and
    Configurations made directly): deleting the CRDs would delete them too. `force_uninstall=true` overrides."""
    t0 = time.monotonic()
    cluster = current_cluster()
    if not cluster.has(*KSVC):
        unchanged(step.title, "no Knative Service CRD", t0)
        return
    foreign = foreign_objects(user_objects(cluster), step.selector)
    if not foreign or step.force:
        unchanged(step.title, "no Knative object outside knfleet's" if not foreign else
                  f"force_uninstall: {len(foreign)} Knative object(s) not made by knfleet will be deleted", t0)
        return
    yield fail("uninstall guard", f"Knative objects not made by knfleet exist ({', '.join(foreign)}); deleting "
                                  "Knative would delete them. Remove them first or run with "
                                  "--data force_uninstall=true", Reason.GUARD_REFUSED)


def left_named(items: list[dict[str, Any]], cluster: Cluster | None = None) -> list[str]:
    out = []
    for o in items:
        fins = o["metadata"].get("finalizers") or []
        text = f"{o['kind']} {readiness.name_of(o)}" + (f" (finalizers {fins})" if fins else "")
        if o["kind"] == "Namespace" and cluster is not None:
            text += "".join(f"; {h}" for h in held_in_namespace(cluster, o))
        if o["kind"] == "CustomResourceDefinition" and cluster is not None:
            text += "".join(f"; {h}" for h in held_by_crd(cluster, o))
        out.append(text)
    return out


def holding(objects: list[dict[str, Any]]) -> list[str]:
    """The objects that hold finalizers, each named with them."""
    return [f"{o['kind']} {readiness.name_of(o)} holds finalizers {o['metadata']['finalizers']}" for o in objects
            if o["metadata"].get("finalizers")]


def held_by_crd(cluster: Cluster, crd: dict[str, Any]) -> list[str]:
    """What keeps a CRD being deleted: its objects that hold finalizers (the CRD's own customresourcecleanup
    finalizer waits for every object of it to go)."""
    meta, spec = crd["metadata"], crd.get("spec") or {}
    if not meta.get("deletionTimestamp") or "customresourcecleanup.apiextensions.k8s.io" not in (
            meta.get("finalizers") or []):
        return []
    version = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), None)
    kind = (spec.get("names") or {}).get("kind")
    if not version or not kind:
        return []
    try:
        return holding(cluster.list(f"{spec['group']}/{version}", kind))
    except KubeError:
        return []


CONTENT_REMAINING = re.compile(r"(?P<plural>[a-z0-9-]+)\.(?P<group>[a-z0-9.-]*) has \d+ resource instances")


def held_in_namespace(cluster: Cluster, ns: dict[str, Any]) -> list[str]:
    """What keeps a terminating namespace: the objects in it that hold finalizers (found from the namespace
    controller's NamespaceContentRemaining condition), else the controller's own words."""
    ns_name = ns["metadata"]["name"]
    conditions = {c.get("type"): c.get("message") or "" for c in (ns.get("status") or {}).get("conditions") or []
                  if c.get("status") == "True"}
    held: list[str] = []
    for m in CONTENT_REMAINING.finditer(conditions.get("NamespaceContentRemaining", "")):
        for res in cluster.discovery().values():
            if res.plural == m["plural"] and res.group == m["group"] and res.namespaced:
                try:
                    objs = cluster.list(res.api_version, res.kind, ns_name)
                except KubeError:
                    continue
                held += holding(objs)
                break
    if not held and conditions.get("NamespaceFinalizersRemaining"):
        held.append(conditions["NamespaceFinalizersRemaining"])
    return held


def still_deleting(cluster: Cluster) -> list[dict[str, Any]]:
    """Knative objects whose deletion has begun and not ended: marked for deletion (a controller's finalizer still
    to run) or made for a Knative owner that is gone (the garbage collector is about to delete them). Their
    controllers must still run when they go: an uninstall killed while it waited for them leaves them behind."""
    kinds = [k for k in STILL_DELETING_KINDS if cluster.has(*k)]
    cluster.list_many([(*k, None, None) for k in kinds])
    objects = [o for k in kinds for o in cluster.list(*k)]
    uids = {o["metadata"].get("uid") for o in objects}
    return [o for o in objects if o["metadata"].get("deletionTimestamp") or any(
        r.get("apiVersion", "").split("/")[0].endswith("knative.dev") and r.get("uid") not in uids
        for r in o["metadata"].get("ownerReferences") or [])]


def delete_all_services(cluster: Cluster, step: p.DeleteServices, refs: list[str], foreign: list[dict[str, Any]],
                     pending: list[dict[str, Any]]) -> list[str]:
    ok, why = webhook.serving(cluster)
    if not ok:
        try:
            wait.until(cluster, lambda: webhook.serving(cluster), step.timeout)
        except NotReadyError as err:
            raise NotReadyError(f"Knative's webhook answers (it admits deletes of Knative objects) failed: {err}",
                                code=Reason.WEBHOOK_NOT_READY) from None
    for r in refs:
        cluster.delete(*KSVC, r.split("/", 1)[1], r.split("/", 1)[0])
    for o in foreign:
        cluster.delete(o["apiVersion"], o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
    kinds = [k for k in MADE_FOR_SERVICE if cluster.has(*k)]

    def gone() -> tuple[bool, str]:  # one cluster-wide list per kind, shared by still_deleting and _user_objects
        left: list[str] = left_named(still_deleting(cluster))
        made = [o for k in kinds for o in cluster.list(*k)]
        left += left_named([o for o in made if step.force or made_for(o, refs)])
        left += left_named([o for o in cluster.list(*KSVC) if readiness.name_of(o) in refs])
        if step.force:
            left += left_named(user_objects(cluster))
        return not left, "still present: " + ", ".join(sorted(set(left)))
    try:
        wait.until(cluster, gone, step.timeout)
    except NotReadyError as err:
        raise StuckError(str(err)) from None
    return ([f"Service/{r} (deleted)" for r in refs]
            + [f"{o['kind']}/{readiness.name_of(o)} (deleted)" for o in foreign]
            + [f"{o['kind']}/{readiness.name_of(o)} (its deletion finished)" for o in pending])


@operation()
def delete_services(step: p.DeleteServices):
    """Delete the Knative Services knfleet made (with `force`: every Knative Service, DomainMapping, Route and
    Configuration) and wait until they and everything Knative made for them are gone (found by
    serving.knative.dev/service: Revisions do not carry the Service's own labels), while the controllers still run
    so that their finalizers complete. Knative objects an earlier, interrupted run left being deleted are waited
    for too. Knative's webhook admits these deletes: it must answer first."""
    t0 = time.monotonic()
    cluster = current_cluster()
    if not cluster.has(*KSVC):
        unchanged(step.title, "no Knative Service CRD: nothing to delete", t0)
        return
    refs = sorted(readiness.name_of(o) for o in cluster.list(*KSVC, selector=step.selector)
                  if not o["metadata"].get("deletionTimestamp"))
    foreign = []
    if step.force:
        key, _, value = step.selector.partition("=")
        foreign = [o for o in user_objects(cluster)
                   if not (o["kind"] == "Service" and (o["metadata"].get("labels") or {}).get(key) == value)
                   and not any(r.get("kind") == "Service" for r in o["metadata"].get("ownerReferences") or [])
                   and not o["metadata"].get("deletionTimestamp")]
    pending = still_deleting(cluster)
    if not refs and not foreign and not pending:
        unchanged(step.title, "no Knative Services to delete", t0)
        return
    yield command(step.title, delete_all_services, cluster, step, refs, foreign, pending)


def delete_stage(cluster: Cluster, step: p.Delete, objects: list[dict[str, Any]]) -> list[str]:
    notes = state().records()
    for o in reversed(objects):
        cluster.delete(o["apiVersion"], o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
        notes.forget(o)
    try:
        wait.until_gone(cluster, objects, step.timeout, explain=lambda left: left_named(left, cluster))
    except NotReadyError as err:
        raise StuckError(str(err)) from None
    save_notes(cluster)
    return [f"{ref(o)} (deleted)" for o in objects]


@operation()
def delete(step: p.Delete):
    """Delete what a stage declares, only what exists, and wait until it is gone."""
    t0 = time.monotonic()
    cluster = current_cluster()
    existing = wait.present(cluster, list(step.objects))
    if not existing:
        unchanged(step.title, f"{step.stage}: nothing to delete", t0)
        return
    yield command(step.title, delete_stage, cluster, step, existing)


KNATIVE_FINALIZED = (("serving.knative.dev/v1", "Route"), ("networking.internal.knative.dev/v1alpha1", "Ingress"),
                     ("serving.knative.dev/v1beta1", "DomainMapping"),
                     ("networking.internal.knative.dev/v1alpha1", "Certificate"),
                     ("serving.knative.dev/v1", "Configuration"), ("serving.knative.dev/v1", "Service"))
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")


def leftovers(cluster: Cluster) -> list[str]:
    """Knative CRDs, objects holding a finalizer, webhook configurations and namespaces still present."""
    cluster.discovery(refresh=True)  # CRDs may just have gone
    left: list[str] = []
    for c in cluster.list(*CRD):
        if c["metadata"]["name"].endswith(".knative.dev"):
            fin = c["metadata"].get("finalizers") or []
            left.append(f"CRD {c['metadata']['name']}" + (f" (finalizers {fin})" if fin else ""))
    for k in KNATIVE_FINALIZED:
        if cluster.has(*k):
            left += holding(cluster.list(*k))
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        left += [f"{kind} {w['metadata']['name']}" for w in cluster.list(webhook.ADMISSION, kind)
                 if "knative" in w["metadata"]["name"]]
    for obj in cluster.list("v1", "Namespace"):
        ns = obj["metadata"]["name"]
        if ns in p.NAMESPACES:
            left.append(f"namespace {ns} ({(obj.get('status') or {}).get('phase', '?')}"
                        + (f", finalizers {obj['spec'].get('finalizers')}" if obj.get("spec") else "") + ")"
                        + "".join(f"; {h}" for h in held_in_namespace(cluster, obj)))
    return left


def wait_clean(cluster: Cluster, timeout: int) -> list[str]:
    try:
        wait.until(cluster, lambda: (not (left := leftovers(cluster)), "\n".join(left)), timeout, interval=2)
    except NotReadyError as err:
        raise StuckError(f"uninstall left objects behind (remove their finalizers by hand if they stay): {err}") \
            from None
    return []


@operation()
def removed(step: p.Removed):
    """No Knative CRD, webhook configuration or namespace remains; name what is stuck if any does."""
    t0 = time.monotonic()
    cluster = current_cluster()
    cluster.invalidate()
    try:
        if not leftovers(cluster):
            unchanged(step.title, "nothing of Knative remains", t0)
            return
    except KubeError:
        pass
    yield command(step.title, wait_clean, cluster, step.timeout)
