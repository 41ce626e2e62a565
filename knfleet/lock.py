"""A per-cluster lock: the Lease kube-system/knfleet-lock, holding the runner's identity and an expiry.

Taken before anything changes a cluster and released at the end of the run. A second run waits up to a
limit, then reports the cluster as locked without touching it. A lock whose holder died (expired) is
taken over, and that is logged.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from knfleet import kubectl
from knfleet.errors import KnfleetError
from knfleet.kubectl import Target

NAMESPACE, NAME = "kube-system", "knfleet-lock"
HOLDER = f"{getpass.getuser()}@{socket.gethostname()}/pid-{os.getpid()}/{uuid.uuid4().hex[:8]}"
HELD: dict[str, Target] = {}


class LockedError(KnfleetError):
    pass


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
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": ttl, "acquireTime": now, "renewTime": now,
                     "leaseTransitions": transitions}}


def expiry(obj: dict[str, Any]) -> datetime:
    spec = obj.get("spec") or {}
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    if not renewed:
        return _now() - timedelta(seconds=1)
    return _parse(renewed) + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0))


def acquire(target: Target, ttl: int = 1800, wait: float = 0, holder: str = HOLDER, log=print) -> str:
    """Take the lock or raise LockedError; returns how it was taken."""
    deadline = time.monotonic() + wait
    while True:
        made = kubectl.run(target, "create", "-f", "-", stdin=json.dumps(lease(holder, ttl)), check=False)
        if made.returncode == 0:
            return f"lock {NAMESPACE}/{NAME} taken by {holder}"
        if "AlreadyExists" not in made.stderr:
            raise LockedError(f"cannot create the lock lease: {made.stderr.strip()}")
        cur = kubectl.get_json(target, "lease", NAME, "-n", NAMESPACE)
        owner = (cur.get("spec") or {}).get("holderIdentity")
        if owner == holder:
            return f"lock already held by this run ({holder})"
        ends = expiry(cur)
        if ends <= _now():
            body = lease(holder, ttl, cur["metadata"]["resourceVersion"],
                         int((cur.get("spec") or {}).get("leaseTransitions") or 0) + 1)
            took = kubectl.run(target, "replace", "-f", "-", stdin=json.dumps(body), check=False)
            if took.returncode == 0:
                msg = f"lock {NAMESPACE}/{NAME} taken over from {owner} (expired at {_micro(ends)})"
                log(msg)
                return msg
            continue  # someone else won the race: look again
        if time.monotonic() >= deadline:
            raise LockedError(f"cluster is locked by {owner} until {_micro(ends)} (lease {NAMESPACE}/{NAME}); "
                              "nothing was changed. Wait, or delete the lease if that run is gone.")
        time.sleep(1.0)


def release(target: Target, holder: str = HOLDER) -> bool:
    proc = kubectl.run(target, "get", "lease", NAME, "-n", NAMESPACE, "-o", "json", check=False)
    if proc.returncode != 0 or (json.loads(proc.stdout).get("spec") or {}).get("holderIdentity") != holder:
        return False
    kubectl.run(target, "delete", "lease", NAME, "-n", NAMESPACE, "--ignore-not-found", check=False)
    return True


def release_all(state: Any = None) -> None:
    for name, target in list(HELD.items()):
        try:
            release(target)
        except Exception:  # noqa: BLE001 - the lock expires by itself
            pass
        HELD.pop(name, None)
