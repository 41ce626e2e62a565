"""Before anything changes a cluster: the API answers, its version and the identity's rights suffice, the GPUs the
model services need are there (the one GPU gate; knfleet.desired.capacity has the arithmetic), and the cluster's
lock is taken."""

from __future__ import annotations

import time
from typing import Any

from pyinfra import host, logger
from pyinfra.api import operation

from knfleet.desired import capacity, models, ownership, releases
from knfleet.desired import plan as p
from knfleet.errors import LockedError, Reason
from knfleet.kube.client import Cluster, CredentialError, KubeError
from knfleet.run import lock
from knfleet.run.context import cluster as current_cluster
from knfleet.run.context import executing, fail, state, unchanged, warn

KSVC = ("serving.knative.dev/v1", "Service")


def missing_rights(cluster: Cluster, rights: tuple[p.Right, ...]) -> list[str]:
    """Which rights the identity lacks (SelfSubjectAccessReviews, concurrently). One review of `*` on `*` first:
    an identity allowed everything (cluster-admin) costs a single request."""
    def review(r: p.Right) -> dict[str, Any]:
        attrs = {"verb": r.verb, "group": r.group, "resource": r.resource, "namespace": r.namespace,
                 "subresource": r.subresource}
        return {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {k: v for k, v in attrs.items() if v}}}

    everything = cluster.create(review(p.Right("*", "*", "*")))
    if (everything.get("status") or {}).get("allowed"):
        return []
    bodies = [review(r) for r in rights]
    answers = cluster.parallel([lambda b=b: cluster.create(b) for b in bodies])
    denied = []
    for right, answer in zip(rights, answers, strict=True):
        if isinstance(answer, KubeError):
            denied.append(f"{right} (access review failed: {answer})")
        elif not (answer.get("status") or {}).get("allowed"):
            denied.append(str(right))
    return denied


@operation()
def preflight(step: p.Preflight):
    """Before anything changes: the API answers, Kubernetes >= the target release's minimum (the plan's step says
    which: 1.30.0 for 1.17, 1.31.0 for 1.18), and the identity has the rights the install needs (one access review
    each, concurrently)."""
    t0 = time.monotonic()
    cluster = current_cluster()
    try:
        version = cluster.version()
    except CredentialError as err:  # the kubeconfig's credential plugin failed: nothing was sent
        yield fail("preflight", str(err), err.code)
        return
    except KubeError as err:
        yield fail("preflight", f"API server not reachable with {cluster.target.kubeconfig}: {err}", err.code)
        return
    too_old = releases.kubernetes_too_old(version, step.min_kubernetes, step.release)
    if too_old:
        yield fail("preflight", too_old, Reason.PREFLIGHT_FAILED)
        return
    if step.rights:
        try:
            denied = missing_rights(cluster, step.rights)
        except KubeError as err:
            yield fail("preflight", f"cannot check the identity's rights: {err}", err.code)
            return
        if denied:
            yield fail("preflight", f"the identity in {cluster.target.kubeconfig} lacks {len(denied)} right(s) this "
                                    f"run needs: {'; '.join(denied)}. Grant them (cluster-admin has them all); "
                                    "nothing was changed", Reason.PREFLIGHT_FAILED)
            return
    unchanged(step.title, f"cluster reachable, Kubernetes {version}" + (", rights ok" if step.rights else ""), t0)


@operation()
def take_lock(step: p.Lock):
    """Take the cluster's lock (Lease kube-system/knfleet-lock) before anything changes it; released when the run
    ends (the connector's disconnect). Bookkeeping, not a change of the cluster's desired state."""
    t0 = time.monotonic()
    if not executing():
        host.noop("the lock is taken when the run executes")
        return
    cs = state()
    cluster = current_cluster()
    holder = cs.lock_holder or lock.new_holder()
    try:
        how = lock.acquire(cluster, holder, ttl=step.ttl, wait=step.wait,
                           log=lambda m: logger.warning(f"{host.print_prefix}{m}"))
    except LockedError as err:
        cs.record.locked_by = str(err)
        yield fail("lock", str(err), Reason.LOCKED)
        return
    except KubeError as err:
        yield fail("lock", f"cannot take the lock: {err}", err.code)
        return
    cs.lock_holder = holder
    if cs.renewer is None:
        cs.renewer = lock.Renewer(cluster, holder, step.ttl).start()
    unchanged(step.title, how, t0)


# --- GPU capacity: the one gate -----------------------------------------------------------------------------------
def gpu_shortfall(cluster: Cluster, needs: tuple[capacity.Need, ...], owner: str = ownership.DEFAULT_OWNER,
                  ) -> tuple[list[capacity.Shortfall], str]:
    """The services whose GPU pods do not fit in what this cluster's nodes have free (their own pods left out of
    what is taken), and the report line."""
    nodes = [capacity.node_of(n) for n in cluster.list("v1", "Node")]
    own = {(n.service.split("/", 1)[0], n.service.split("/", 1)[-1]) for n in needs}
    if cluster.has(*KSVC):  # this owner's other services: the run prunes them (their GPUs are its to free)
        key, _, value = models.MANAGED.partition("=")
        own |= {(o["metadata"].get("namespace"), o["metadata"]["name"]) for o in cluster.list(*KSVC)
                if (o["metadata"].get("labels") or {}).get(key) == value and ownership.owner_of(o) == owner}
    held = capacity.used(cluster.list("v1", "Pod"), own)
    short = capacity.shortfalls(list(needs), capacity.free(nodes, held))
    return short, capacity.report(cluster.name, list(needs), nodes, short, held)


@operation()
def gpu_capacity(step: p.Capacity):
    """Before any change: the GPUs the model services need against what the nodes have free; refuse (exit with the
    shortfall per service) or, with gpu_preflight=warn, warn."""
    t0 = time.monotonic()
    cluster = current_cluster()
    try:
        short, text = gpu_shortfall(cluster, step.needs, step.owner)
    except KubeError as err:
        yield fail(step.title, f"cannot read the nodes: {err}", err.code)
        return
    if short and step.mode == "refuse":
        yield fail(step.title, f"not enough GPUs: {text}. Add GPU nodes, lower initial/min scale, or set "
                               "gpu_preflight=warn; nothing was changed", Reason.CAPACITY_SHORTFALL)
        return
    if short:
        warn(f"warning: not enough GPUs: {text}")
    unchanged(step.title, text, t0)

