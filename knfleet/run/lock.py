"""A per-cluster lock that lives with its run: the Lease kube-system/knfleet-lock, as client-go's leader election
does it.

Taken before anything changes a cluster, renewed every third of its duration (`lock_ttl`, default 60 s) while
the run lives (`Renewer`), and released when the run ends (the connector's disconnect, which pyinfra calls in a
`finally`). A second run waits up to a limit (`lock_wait`), then reports the cluster as locked without touching
it. Every takeover is logged with the previous holder.

What makes it safe (client-go's rules, knfleet's identities):
- **Expiry is measured on the observer's own monotonic clock**, from the moment it last saw the Lease change (its
  resourceVersion), never by comparing the holder's renewTime with the local wall clock: machines whose clocks
  disagree by minutes still agree on who holds the lock. A lease whose timestamps look expired is watched for one
  lease duration before it is taken over (even with lock_wait 0); one that changes meanwhile is alive.
- **A holder's identity is unique across machines, containers and PID reuse**: user, host name, boot id, PID
  namespace, PID and the process's start time. A lease is taken over at once only when that identity proves its
  process gone: same host name, boot and PID namespace, and no process with that PID and start time (a zombie
  counts as gone). A holder in another container on the same host name, or of an older knfleet, is judged by the
  lease duration alone.
- **Every write of the Lease has preconditions**: a takeover and a renewal update it with its resourceVersion and
  uid; a release deletes it with both, so it never deletes a Lease another run took over meanwhile.
- **A run that lost its lease stops before its next write**: the Renewer is the client's guard (consulted before
  every write and every look of a wait); the lease counts as lost when another holder is in it, it was deleted, or
  no renewal got through within two thirds of its duration (client-go's renew deadline), which is before any
  other run can have seen it unchanged for a whole duration.
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
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from knfleet.errors import LockedError, Reason
from knfleet.kube.client import Cluster, Conflict, KubeError
from knfleet.run import stopping

NAMESPACE, NAME = "kube-system", "knfleet-lock"
LEASE = ("coordination.k8s.io/v1", "Lease")
RENEW_DEADLINE = 2 / 3  # of the lease duration: a holder that could not renew for this long stops (client-go: 10 of 15)


class LockLost(KubeError, LockedError):
    """This run no longer holds the cluster's lock: it stops before its next write (a KubeError, so every caller that
    handles a failed request fails the cluster with it)."""

    code = Reason.LOCK_LOST

    def __init__(self, cluster: str, why: str, what: str) -> None:
        super().__init__(cluster, what, 0, "LockLost",
                         f"this run lost the cluster's lock ({why}); stopped before {what}, nothing more was changed")

    def __str__(self) -> str:
        return self.message


# --- who holds it ------------------------------------------------------------------------------------------------
def _user() -> str:
    """The user's name; `uid-N` for a uid without one (containers often run as a uid with no passwd entry, where
    getpass.getuser() raises)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError, ImportError):
        name = ""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or f"uid-{os.getuid()}"


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace").strip()
    except OSError:
        return None


def boot_id() -> str | None:
    """This kernel's boot id (Linux), shared by every container on the machine, new after each reboot."""
    found = _read("/proc/sys/kernel/random/boot_id")
    return found.replace("-", "") if found and re.fullmatch(r"[0-9a-f-]{32,36}", found) else None


def pid_namespace() -> str | None:
    """The inode of this process's PID namespace (Linux): containers have their own, so their PIDs mean nothing
    here."""
    try:
        link = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    m = re.fullmatch(r"pid:\[(\d+)\]", link)
    return m[1] if m else None


def process_start(pid: int) -> tuple[str, str] | None:
    """(start time in clock ticks since boot, state letter) of a process of this PID namespace; None when there is
    none."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat or ")" not in stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3, starttime field 22
    if len(fields) < 20:
        return None
    return fields[19], fields[0]


@dataclass(frozen=True)
class Identity:
    """A run's identity: unique across machines (host name, boot id), containers (PID namespace) and PID reuse
    (the process's start time)."""

    user: str
    host: str
    pid: int
    boot: str | None
    pidns: str | None
    start: str | None
    nonce: str = ""

    @classmethod
    def here(cls, pid: int | None = None) -> Identity:
        pid = os.getpid() if pid is None else pid
        started = process_start(pid)
        return cls(_user(), socket.gethostname(), pid, boot_id(), pid_namespace(), started[0] if started else None,
                   uuid.uuid4().hex[:8])

    def holder(self) -> str:
        return (f"{self.user}@{self.host}/pid-{self.pid}/boot-{self.boot or '-'}/pidns-{self.pidns or '-'}/"
                f"start-{self.start or '-'}/{self.nonce}")


HOLDER = re.compile(r"^(?P<user>[^@]*)@(?P<host>[^/]+)/pid-(?P<pid>\d+)/(?:boot-(?P<boot>[^/]+)/pidns-(?P<pidns>[^/]+)"
                    r"/start-(?P<start>[^/]+)/)?(?P<nonce>.*)$")


def parse_holder(holder: str | None) -> Identity | None:
    """A holder identity as knfleet writes it (None for anything else: another tool, a hand-made lease)."""
    m = HOLDER.match(holder or "")
    if not m:
        return None
    known = {k: (None if m[k] in (None, "-") else m[k]) for k in ("boot", "pidns", "start")}
    return Identity(m["user"], m["host"], int(m["pid"]), known["boot"], known["pidns"], known["start"], m["nonce"])


def new_holder() -> str:
    return Identity.here().holder()


def gone_here(owner: str | None) -> bool:
    """Whether a holder provably ran on this machine, in this PID namespace, as a process that no longer exists:
    same host name, boot id and PID namespace, and no live process with its PID and start time (the PID is free,
    reused by another process, or a zombie). Anything less (another machine or container, an identity without
    boot id, PID namespace or start time) proves nothing: that lease is judged by its duration."""
    them = parse_holder(owner)
    if them is None or them.host != socket.gethostname():
        return False
    if None in (them.boot, them.pidns, them.start):
        return False  # an older knfleet's identity: its PID may be another namespace's
    if them.boot != boot_id() or them.pidns != pid_namespace():
        return False  # another machine of that name, another container, or before a reboot: cannot tell from here
    found = process_start(them.pid)
    if found is None:
        return True  # no such process
    start, state = found
    return start != them.start or state in ("Z", "X")  # the PID now runs another process, or it is dead


# --- the Lease --------------------------------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(timezone.utc)


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(t: str) -> datetime:
    return datetime.strptime(t.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")


def lease(holder: str, ttl: int, resource_version: str | None = None, transitions: int = 0,
          uid: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """The Lease of a holder; with the current resourceVersion and uid when it replaces one (both preconditions)."""
    stamp = _micro(now or _now())
    meta: dict[str, Any] = {"name": NAME, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "knfleet"}}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if uid:
        meta["uid"] = uid
    return {"apiVersion": LEASE[0], "kind": LEASE[1], "metadata": meta,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": ttl, "acquireTime": stamp, "renewTime": stamp,
                     "leaseTransitions": transitions}}


def expiry(obj: dict[str, Any]) -> datetime:
    """When the lease ends by its holder's own timestamps (renewTime + duration). Shown in messages and used as a
    hint only: the holder's clock may disagree with this machine's; takeovers go by `Observer`."""
    spec = obj.get("spec") or {}
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    try:
        return _parse(renewed) + timedelta(seconds=duration_of(obj))
    except (TypeError, ValueError):
        return _now() - timedelta(seconds=1)


def duration_of(obj: dict[str, Any], default: int = 60) -> int:
    raw = (obj.get("spec") or {}).get("leaseDurationSeconds")
    return raw if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0 else default


class Observer:
    """What a contender has seen of the Lease, on its own monotonic clock (client-go's observedRecord and
    observedTime): the record's version and when it was first seen. A lease is stale when it has not changed for
    its whole duration as measured here; no wall clock is compared with another machine's."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.version: tuple[str, str] | None = None
        self.since = 0.0
        self.changes = 0  # changes seen after the first look: the holder is alive

    def see(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        version = (str(meta.get("uid")), str(meta.get("resourceVersion")))
        if version != self.version:
            if self.version is not None:
                self.changes += 1
            self.version, self.since = version, self.clock()

    def unchanged_for(self) -> float:
        return self.clock() - self.since

    def stale(self, obj: dict[str, Any]) -> bool:
        return self.version is not None and self.unchanged_for() >= duration_of(obj)


def acquire(cluster: Cluster, holder: str, ttl: int = 60, wait: float = 0,
            log: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep, wall: Callable[[], datetime] | None = None) -> str:
    """Take the lock or raise LockedError; returns how it was taken.

    A lease held by another run is taken over when its holder's process provably is gone (`gone_here`), or when
    this run has seen it unchanged for its whole duration on its own monotonic clock. A lease whose timestamps
    (by this machine's clock) look expired is watched that long even beyond `wait`, unless it changes: then its
    holder is alive and this run reports the cluster locked (after `wait`)."""
    wall = wall or (lambda: _now())  # this machine's clock: only for the Lease's timestamps and the "looks dead" hint
    deadline = clock() + wait
    seen = Observer(clock)
    while True:
        stopping.check(cluster.name, "taking the lock")  # asked to stop (SIGTERM) while waiting for another run
        try:
            cluster.create(lease(holder, ttl, now=wall()), guarded=False)
            return f"lock {NAMESPACE}/{NAME} taken by {holder}"
        except Conflict:
            pass
        cur = cluster.get(*LEASE, NAME, NAMESPACE)
        if cur is None:
            continue  # released meanwhile: try again
        spec, meta = cur.get("spec") or {}, cur.get("metadata") or {}
        owner = spec.get("holderIdentity")
        if owner == holder:
            return f"lock already held by this run ({holder})"
        seen.see(cur)
        dead_here = gone_here(owner)
        if dead_here or seen.stale(cur):
            transitions = spec.get("leaseTransitions")
            body = lease(holder, ttl, meta.get("resourceVersion"),
                         (transitions if isinstance(transitions, int) else 0) + 1, meta.get("uid"), now=wall())
            try:
                cluster.replace(body, guarded=False)  # preconditions: that version of that Lease, or Conflict
            except Conflict:
                continue  # someone else won the race, or the holder renewed: look again
            why = "its process on this machine is gone" if dead_here else (
                f"not renewed for {seen.unchanged_for():.0f}s as seen from here, its duration being "
                f"{duration_of(cur)}s")
            msg = f"lock {NAMESPACE}/{NAME} taken over from {owner} ({why})"
            log(msg)
            return msg
        limit = deadline
        if not seen.changes and expiry(cur) <= wall():
            limit = max(deadline, seen.since + duration_of(cur) + 1)  # looks dead: watch it for one duration
        if clock() >= limit:
            raise LockedError(f"cluster is locked by {owner} (lease {NAMESPACE}/{NAME}, duration "
                              f"{duration_of(cur)}s, last renewed {spec.get('renewTime')} by its holder's clock); "
                              "nothing was changed. Wait (host data lock_wait), or delete the lease if that run is "
                              "gone.")
        sleep(min(1.0, max(0.05, limit - clock())))


class Renewer:
    """Keeps a taken lease alive: every ttl/3 seconds its renewTime is moved on (an update with the lease's
    resourceVersion and uid, so a lease someone else took over is never overwritten); after a failed renewal it
    tries again sooner. `lost` says why the run no longer holds it (another holder, the lease deleted, or no
    renewal got through within RENEW_DEADLINE of its duration); `check`, the cluster's guard while the Renewer
    runs, raises LockLost then."""

    def __init__(self, cluster: Cluster, holder: str, ttl: int, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] | None = None) -> None:
        self.cluster, self.holder, self.ttl = cluster, holder, ttl
        self.clock, self.wall = clock, wall or (lambda: _now())
        self.interval = max(ttl / 3.0, 0.5)
        self.deadline = ttl * RENEW_DEADLINE
        self.lost: str | None = None
        self.renewals = 0
        self._renewed = clock()  # when the last renewal that got through was sent (the lease was just taken)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"knfleet-lock-{cluster.name}", daemon=True)

    def start(self) -> Renewer:
        self._renewed = self.clock()
        self.cluster.guard = self.check
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.cluster.guard == self.check:
            self.cluster.guard = None
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def check(self, what: str = "the next step") -> None:
        """Raise LockLost when this run may no longer write: the lease is lost, or no renewal got through within
        the renew deadline (other runs may soon see it unchanged for a whole duration)."""
        if self.lost is None and self.clock() - self._renewed >= self.deadline:
            self.lost = (f"the lease {NAMESPACE}/{NAME} could not be renewed for {self.clock() - self._renewed:.0f}s "
                         f"of its {self.ttl}s")
        if self.lost is not None:
            raise LockLost(self.cluster.name, self.lost, what)
        stopping.check(self.cluster.name, what)

    def renew(self) -> None:
        """One renewal (also called by the loop); sets `lost` when the lease is no longer this run's."""
        sent = self.clock()
        cur = self.cluster.get(*LEASE, NAME, NAMESPACE)
        owner = (cur.get("spec") or {}).get("holderIdentity") if cur else None
        if owner != self.holder:
            self.lost = f"the lease {NAMESPACE}/{NAME} " + (f"is held by {owner}" if cur else "was deleted")
            return
        cur["spec"]["renewTime"] = _micro(self.wall())
        try:
            self.cluster.replace(cur, invalidate=False, guarded=False)  # with its resourceVersion and uid
        except Conflict:
            return  # changed meanwhile (taken over?): the next look says
        self._renewed = sent
        self.renewals += 1

    def _loop(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait) and self.lost is None:
            try:
                self.renew()
                wait = self.interval if self.clock() - self._renewed < self.interval else self.interval / 4
            except Exception:  # noqa: BLE001 - tried again sooner; check() decides when it is too late
                wait = max(self.interval / 4, 0.25)


def release(cluster: Cluster, holder: str) -> bool:
    """Delete the lease if this run holds it, with the version read as preconditions: a lease another run took
    over in between (a new resourceVersion) is left alone."""
    cur = cluster.get(*LEASE, NAME, NAMESPACE)
    if cur is None or (cur.get("spec") or {}).get("holderIdentity") != holder:
        return False
    meta = cur.get("metadata") or {}
    try:
        return cluster.delete(*LEASE, NAME, NAMESPACE, uid=meta.get("uid"),
                              resource_version=meta.get("resourceVersion"), guarded=False)
    except Conflict:
        return False  # taken over between the read and the delete: it is the new holder's
