"""A per-cluster lock that lives with its run: the Lease kube-system/knfleet-lock, as leader election does it.

Taken before anything changes a cluster, renewed every third of its duration (`lock_ttl`, default 60 s) while
the run lives (`Renewer`), and released when the run ends (the connector's disconnect, which pyinfra calls in a
`finally`). A second run waits up to a limit (`lock_wait`), then reports the cluster as locked without touching
it. A live holder is never taken over; a lease not renewed within its duration (its run died or lost the
cluster) is, and so is at once a lease whose holder ran on this machine as a process that is gone. Every
takeover is logged with the previous holder. A run that loses its lease (renewals failing for a whole duration,
or another holder in it) stops before its next change.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
import threading
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


HOLDER = re.compile(r"^[^@]*@(?P<host>[^/]+)/pid-(?P<pid>\d+)/")


def gone_here(owner: str | None) -> bool:
    """Whether a holder ran on this machine as a process that no longer exists (its lease can be taken at once)."""
    m = HOLDER.match(owner or "")
    if not m or m["host"] != socket.gethostname():
        return False
    pid = int(m["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def acquire(cluster: Cluster, holder: str, ttl: int = 60, wait: float = 0,
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
        dead_here = gone_here(owner)
        if ends <= _now() or dead_here:
            body = lease(holder, ttl, cur["metadata"]["resourceVersion"],
                         int((cur.get("spec") or {}).get("leaseTransitions") or 0) + 1)
            try:
                cluster.replace(body)
            except Conflict:
                continue  # someone else won the race: look again
            why = "its process on this machine is gone" if dead_here else f"not renewed, expired at {_micro(ends)}"
            msg = f"lock {NAMESPACE}/{NAME} taken over from {owner} ({why})"
            log(msg)
            return msg
        if time.monotonic() >= deadline:
            raise LockedError(f"cluster is locked by {owner} until {_micro(ends)} (lease {NAMESPACE}/{NAME}); "
                              "nothing was changed. Wait, or delete the lease if that run is gone.")
        time.sleep(1.0)


class Renewer:
    """Keeps a taken lease alive: every ttl/3 seconds its renewTime is moved on (an update with the lease's
    resourceVersion, so a lease someone else took over is never overwritten). `lost` says why the run no longer
    holds it (another holder, the lease deleted, or no renewal got through for a whole duration)."""

    def __init__(self, cluster: Cluster, holder: str, ttl: int) -> None:
        self.cluster, self.holder, self.ttl = cluster, holder, ttl
        self.interval = max(ttl / 3.0, 0.5)
        self.lost: str | None = None
        self.renewals = 0
        self._renewed = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"knfleet-lock-{cluster.name}", daemon=True)

    def start(self) -> Renewer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def renew(self) -> None:
        """One renewal (also called by the loop); sets `lost` when the lease is no longer this run's."""
        cur = self.cluster.get(*LEASE, NAME, NAMESPACE)
        owner = (cur.get("spec") or {}).get("holderIdentity") if cur else None
        if owner != self.holder:
            self.lost = f"the lease {NAMESPACE}/{NAME} " + (f"is held by {owner}" if cur else "was deleted")
            return
        cur["spec"]["renewTime"] = _micro(_now())
        self.cluster.replace(cur, invalidate=False)
        self._renewed = time.monotonic()
        self.renewals += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval) and self.lost is None:
            try:
                self.renew()
            except Exception as err:  # noqa: BLE001 - the next tick tries again; the deadline below decides
                if time.monotonic() - self._renewed >= self.ttl:
                    self.lost = f"the lease {NAMESPACE}/{NAME} could not be renewed for {self.ttl}s ({err})"


def release(cluster: Cluster, holder: str) -> bool:
    """Delete the lease if this run holds it."""
    cur = cluster.get(*LEASE, NAME, NAMESPACE)
    if cur is None or (cur.get("spec") or {}).get("holderIdentity") != holder:
        return False
    cluster.delete(*LEASE, NAME, NAMESPACE)
    return True
