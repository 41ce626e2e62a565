"""A per-cluster lock: the Lease kube-system/knfleet-lock, holding the runner's identity and an expiry.

Taken before anything changes a cluster and released when the run ends (the connector's disconnect, which
pyinfra calls in a `finally`). A second run waits up to a limit, then reports the cluster as locked without
touching it. A lock whose holder died (expired) is taken over, and that is logged with the previous holder.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from knfleet.errors import LockedError
from knfleet.kube.client import Cluster, Conflict

NAMESPACE, NAME = "kube-system", "knfleet-lock"
LEASE = ("coordination.k8s.io/v1", "Lease")


def new_holder() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}/pid-{os.getpid()}/{uuid.uuid4().hex[:8]}"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(t: str) -> datetime:
    return datetime.strptime(t.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")


def lease(holder: str, ttl: int, resource_version: str | None = None, transitions: int = 0) -> dict[str, Any]:
    now = _micro(_now())
    meta: dict[str, Any] = {"name": NAME, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "knfleet"}}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": LEASE[0], "kind": LEASE[1], "metadata": meta,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": ttl, "acquireTime": now, "renewTime": now,
                     "leaseTransitions": transitions}}


def expiry(obj: dict[str, Any]) -> datetime:
    spec = obj.get("spec") or {}
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    if not renewed:
        return _now() - timedelta(seconds=1)
    return _parse(renewed) + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))


def acquire(cluster: Cluster, holder: str, ttl: int = 1800, wait: float = 0,
            log: Callable[[str], None] = print) -> str:
    """Take the lock or raise LockedError; returns how it was taken."""
    deadline = time.monotonic() + wait
    while True:
        try:
            cluster.create(lease(holder, ttl))
            return f"lock {NAMESPACE}/{NAME} taken by {holder}"
        except Conflict:
            pass
        cur = cluster.get(*LEASE, NAME, NAMESPACE)
        if cur is None:
            continue  # released meanwhile: try again
        owner = (cur.get("spec") or {}).get("holderIdentity")
        if owner == holder:
            return f"lock already held by this run ({holder})"
        ends = expiry(cur)
        if ends <= _now():
            body = lease(holder, ttl, cur["metadata"]["resourceVersion"],
                         int((cur.get("spec") or {}).get("leaseTransitions") or 0) + 1)
            try:
                cluster.replace(body)
            except Conflict:
                continue  # someone else won the race: look again
            msg = f"lock {NAMESPACE}/{NAME} taken over from {owner} (expired at {_micro(ends)})"
            log(msg)
            return msg
        if time.monotonic() >= deadline:
            raise LockedError(f"cluster is locked by {owner} until {_micro(ends)} (lease {NAMESPACE}/{NAME}); "
                              "nothing was changed. Wait, or delete the lease if that run is gone.")
        time.sleep(1.0)


def release(cluster: Cluster, holder: str) -> bool:
    """Delete the lease if this run holds it."""
    cur = cluster.get(*LEASE, NAME, NAMESPACE)
    if cur is None or (cur.get("spec") or {}).get("holderIdentity") != holder:
        return False
    cluster.delete(*LEASE, NAME, NAMESPACE)
    return True
