"""Issue 23 (security and ownership review) against real local API servers. Each test failed on main before its fix.

3. the lock: two runs in different PID namespaces on one host name, holders whose clock is minutes off, a release
   racing a takeover, the API server enforcing the Lease's preconditions, a run that loses its lease mid-wait;
4. ownership: no prune without `models`, the owner label and knfleet's field manager checked before a delete, a
   Knative Service knfleet did not create never taken over (unless `adopt`), system namespaces refused, an existing
   namespace not relabelled, uninstall stopping at objects it did not create in the release namespaces;
5. a failing credential plugin fails its cluster only; insecure-skip-tls-verify is a warning of the run.
The parts without a cluster: tests/unit/test_security.py and tests/unit/test_lock.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from knfleet.errors import LockedError
from knfleet.kube import readiness
from knfleet.kube.client import Cluster, Conflict, Target
from knfleet.run import lock
from localcluster.cluster import Spec
from tests.conftest import REPO, knative_release_folder
from tests.kube import Kube, eventually

pytestmark = pytest.mark.integration

PYTHON = str(REPO / ".venv" / "bin" / "python")
PYINFRA = str(REPO / ".venv" / "bin" / "pyinfra")


@pytest.fixture(scope="module")
def kube(pool) -> Kube:
    """One cluster for the whole file (the lock tests need only its API server; the others install on it)."""
    k = pool.start("sec", Spec(ready_delay_ms=300, time_factor=0.05), group="security")
    yield k
    pool.stop(k)


def client(kube: Kube, name: str = "c") -> Cluster:
    return Cluster(Target(name, str(kube.kubeconfig)))


def lease_holder(cluster: Cluster) -> str | None:
    cur = cluster.get(*lock.LEASE, lock.NAME, lock.NAMESPACE)
    return (cur or {}).get("spec", {}).get("holderIdentity")


def no_lease(kube: Kube) -> None:
    kube.run("delete", "lease", lock.NAME, "-n", lock.NAMESPACE, "--ignore-not-found")


# --- 3a. two runs in different PID namespaces on one host name ----------------------------------------------------
# A run holding the lock in a process of its own: prints its holder identity, holds (renewing) until its stdin
# closes, then releases. argv: kubeconfig, lease duration, seconds its wall clock is off (a fake clock).
HOLD = """
import sys
from datetime import timedelta
from knfleet.kube.client import Cluster, Target
from knfleet.run import lock
real, skew = lock._now, timedelta(seconds=float(sys.argv[3]))
lock._now = lambda: real() + skew
cluster = Cluster(Target("c", sys.argv[1]))
holder = lock.new_holder()
lock.acquire(cluster, holder, ttl=int(sys.argv[2]))
renewer = lock.Renewer(cluster, holder, int(sys.argv[2])).start()
print(holder, flush=True)
sys.stdin.read()
renewer.stop()
print("released" if lock.release(cluster, holder) else "not released", flush=True)
"""
# PID 1 of a new PID namespace, which runs the command argv[2:] as the namespace's PID `argv[1] + 1` (a PID free on
# the host, so that on the host side `kill(pid, 0)` finds no such process)
IN_NAMESPACE = """
import subprocess, sys
with open("/proc/sys/kernel/ns_last_pid", "w") as fh:
    fh.write(sys.argv[1])
sys.exit(subprocess.run(sys.argv[2:]).returncode)
"""


def hold(argv0: list[str], kube: Kube, ttl: int, skew_s: float = 0) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*argv0, PYTHON, "-c", HOLD, str(kube.kubeconfig), str(ttl), str(skew_s)], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    holder = proc.stdout.readline().strip()
    if not holder:
        proc.kill()
        raise AssertionError(f"the holder did not start: {proc.communicate(timeout=30)[1][-2000:]}")
    return proc, holder


def let_go(proc: subprocess.Popen) -> str:
    out, err = proc.communicate("", timeout=60)
    assert proc.returncode == 0, err[-2000:]
    return out.strip()


def free_host_pid() -> int:
    for pid in range(int(Path("/proc/sys/kernel/pid_max").read_text()) - 2, 1000, -1):
        if not os.path.exists(f"/proc/{pid}") and not os.path.exists(f"/proc/{pid + 1}"):
            return pid
    raise AssertionError("no free PID")


def can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not can_unshare(), reason="needs `unshare --pid --fork --mount-proc` (root)")
def test_a_live_holder_in_another_pid_namespace_on_the_same_host_name_is_not_taken_over(kube):
    """Containers (and CI runners) share host names across PID namespaces. On main a holder whose host name matched
    and whose PID `kill(pid, 0)` did not find here was judged dead and taken over at once, while it lived in its
    own namespace."""
    cluster = client(kube)
    no_lease(kube)
    pid = free_host_pid()
    proc, holder = hold(["unshare", "--pid", "--fork", "--mount-proc", PYTHON, "-c", IN_NAMESPACE, str(pid - 1)],
                        kube, 60)
    try:
        assert f"@{os.uname().nodename}/pid-{pid}/" in holder, holder  # this host name, a PID not in use here
        assert not os.path.exists(f"/proc/{pid}"), "the PID is in use here too: the test proves nothing"
        with pytest.raises(LockedError, match="locked by"):
            lock.acquire(cluster, lock.new_holder(), ttl=60, wait=0)
        assert lease_holder(cluster) == holder
    finally:
        released = let_go(proc)
    assert released == "released"
    assert lease_holder(cluster) is None


# --- 3b. a holder whose clock is minutes off --------------------------------------------------------------------
def test_a_holder_whose_clock_is_minutes_behind_keeps_the_lock_while_it_renews(kube, monkeypatch):
    """On main expiry was the holder's renewTime plus the duration compared with the local clock: a holder whose
    clock was behind by more than the duration was "expired" for everyone else and taken over while it lived."""
    cluster = client(kube)
    no_lease(kube)
    proc, holder = hold([], kube, 3, skew_s=-300)  # its clock five minutes behind; it renews every second
    try:
        with pytest.raises(LockedError):
            lock.acquire(cluster, "contender@ci", ttl=3, wait=0)
        assert lease_holder(cluster) == holder
        real = lock._now
        monkeypatch.setattr(lock, "_now", lambda: real() + timedelta(minutes=5))  # a contender's clock ahead
        with pytest.raises(LockedError):
            lock.acquire(cluster, "contender@ci", ttl=3, wait=0)
        monkeypatch.setattr(lock, "_now", real)
        assert lease_holder(cluster) == holder
    finally:
        released = let_go(proc)
    assert released == "released"


def test_a_dead_holder_is_taken_over_after_its_duration_whatever_its_clock_said(kube, monkeypatch):
    """A holder on another machine that stopped renewing: its lease is watched for one duration on this machine's
    own clock and taken over, whether its timestamps lie minutes in the past or in the future (on main the
    future one counted as valid until then: every run waiting reported the cluster locked)."""
    cluster = client(kube)
    real = lock._now
    for skew in (timedelta(minutes=-5), timedelta(minutes=5)):
        no_lease(kube)
        monkeypatch.setattr(lock, "_now", lambda skew=skew: real() + skew)
        lock.acquire(cluster, "crashed@elsewhere", ttl=2)
        monkeypatch.setattr(lock, "_now", real)
        taken = lock.acquire(cluster, "next@ci", ttl=3, wait=6, log=lambda _m: None)
        assert "taken over from crashed@elsewhere" in taken, taken
        assert lock.release(cluster, "next@ci")


# --- 3c. preconditions ------------------------------------------------------------------------------------------
def test_a_release_racing_a_takeover_never_deletes_the_new_holders_lease(kube):
    """On main release read the Lease, then deleted it without a precondition: when another run took it over in
    between, the release deleted the new holder's Lease (and a third run could then take the cluster too)."""
    first, second = client(kube, "first"), client(kube, "second")
    no_lease(kube)
    holder = lock.new_holder()
    lock.acquire(first, holder, ttl=2)  # and then its run stops renewing: stuck, say, in a long request
    real_get = first.get
    took: list[str] = []

    def get_then_taken_over(*args: Any) -> Any:
        found = real_get(*args)
        if args[:2] == lock.LEASE and not took:  # release has read the Lease; another run takes it over now
            took.append(lock.acquire(second, "second-run@ci", ttl=60, wait=15, log=lambda _m: None))
        return found

    first.get = get_then_taken_over
    assert lock.release(first, holder) is False
    assert took and "taken over from" in took[0]
    assert lease_holder(second) == "second-run@ci"
    assert lock.release(second, "second-run@ci")


def test_the_api_server_enforces_the_preconditions_of_lease_writes(kube):
    """The takeover, renewal and release rest on these answers of the real API server: a write naming an older
    resourceVersion or another uid is refused (Conflict)."""
    cluster = client(kube)
    no_lease(kube)
    lock.acquire(cluster, "a@ci", ttl=60)
    cur = cluster.get(*lock.LEASE, lock.NAME, lock.NAMESPACE)
    rv, uid = cur["metadata"]["resourceVersion"], cur["metadata"]["uid"]
    cluster.replace(lock.lease("a@ci", 60, rv, 0, uid), guarded=False)  # the current version: accepted
    with pytest.raises(Conflict):
        cluster.replace(lock.lease("b@ci", 60, rv, 1, uid), guarded=False)  # an older version
    now = cluster.get(*lock.LEASE, lock.NAME, lock.NAMESPACE)["metadata"]["resourceVersion"]
    with pytest.raises(Conflict):
        cluster.replace(lock.lease("b@ci", 60, now, 1, "00000000-0000-0000-0000-000000000000"), guarded=False)
    with pytest.raises(Conflict):
        cluster.delete(*lock.LEASE, lock.NAME, lock.NAMESPACE, uid=uid, resource_version=rv, guarded=False)
    with pytest.raises(Conflict):
        cluster.delete(*lock.LEASE, lock.NAME, lock.NAMESPACE, uid="00000000-0000-0000-0000-000000000000",
                       guarded=False)
    assert lease_holder(cluster) == "a@ci"
    assert lock.release(cluster, "a@ci") and lease_holder(cluster) is None
