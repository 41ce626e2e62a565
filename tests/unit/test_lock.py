"""The lock's pure rules: which holders provably are gone, how a lease's age is measured, identities.

The lock against real API servers (two PID namespaces on one host name, a holder whose clock is minutes off, a
release racing a takeover, a run that loses its lease mid-wait): tests/integration/test_security.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from knfleet.kube.client import Cluster, Conflict, Target, poll
from knfleet.run import lock


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_holder_on_this_machine_whose_process_is_gone_can_be_taken_over_at_once():
    proc = sleeper()
    holder = lock.Identity.here(proc.pid).holder()  # written while it lived
    assert not lock.gone_here(holder)
    proc.kill()
    proc.wait()
    assert lock.gone_here(holder)


def test_a_killed_holder_not_yet_reaped_is_gone():
    proc = sleeper()
    holder = lock.Identity.here(proc.pid).holder()
    os.kill(proc.pid, signal.SIGKILL)
    while (lock.process_start(proc.pid) or ("", ""))[1] not in ("Z", "X", ""):
        time.sleep(0.01)
    assert lock.gone_here(holder)  # a zombie: dead, only its exit status left
    proc.wait()


def test_a_pid_reused_by_another_process_does_not_keep_a_dead_holder_alive():
    """The PID is there, but its process started at another time: the holder's process is gone."""
    proc = sleeper()
    try:
        me = lock.Identity.here(proc.pid)
        reused = lock.Identity(me.user, me.host, me.pid, me.boot, me.pidns, str(int(me.start) - 1), "abcd1234")
        assert lock.gone_here(reused.holder()) and not lock.gone_here(me.holder())
    finally:
        proc.kill()
        proc.wait()


def test_holders_whose_process_cannot_be_proved_gone_from_here_are_not_gone():
    here = lock.Identity.here()
    proc = sleeper()
    proc.kill()
    proc.wait()
    dead = lock.Identity.here(proc.pid)  # no process: start unknown
    assert dead.start is None
    assert not lock.gone_here(dead.holder())  # no start time: cannot prove which process it was
    ghost = lock.Identity(here.user, here.host, proc.pid, here.boot, here.pidns, "12345", "abcd1234")
    assert lock.gone_here(ghost.holder())  # the same identity in this namespace is provably gone ...
    for other in (  # ... but not in another PID namespace (a container), after a reboot, on another machine
            lock.Identity(here.user, here.host, proc.pid, here.boot, "4026532999", "12345", "abcd1234"),
            lock.Identity(here.user, here.host, proc.pid, "0" * 32, here.pidns, "12345", "abcd1234"),
            lock.Identity(here.user, f"other-{here.host}", proc.pid, here.boot, here.pidns, "12345", "abcd1234")):
        assert not lock.gone_here(other.holder()), other
    assert not lock.gone_here(f"ci@{here.host}/pid-{proc.pid}/abcd1234")  # an older knfleet's identity
    assert not lock.gone_here(lock.new_holder())  # this very process
    assert not lock.gone_here("other-runner@ci")
    assert not lock.gone_here(None)


def test_new_holders_name_this_machine_process_namespace_and_start():
    holder = lock.new_holder()
    m = lock.HOLDER.match(holder)
    assert m and m["host"] == socket.gethostname() and int(m["pid"]) == os.getpid()
    me = lock.parse_holder(holder)
    assert me.boot == lock.boot_id() and me.pidns == lock.pid_namespace()
    assert me.start == lock.process_start(os.getpid())[0]
    assert lock.new_holder() != holder  # a nonce per run


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as a uid without a passwd entry")
def test_a_uid_without_a_name_gets_an_identity_instead_of_a_crash():
    """On main getpass.getuser() raised KeyError for a uid with no passwd entry (as in many containers)."""
    code = ("import os, pwd; from knfleet.run import lock; os.setgid(54321); os.setuid(54321); "  # imported as root
            "h = lock.new_holder(); assert h.startswith('uid-54321@'), h; print(h)")
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME", "LNAME", "USERNAME")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.returncode == 0, out.stderr
    assert "/pid-" in out.stdout


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def lease_version(rv: str, uid: str = "u1", ttl: int = 60) -> dict:
    body = lock.lease("someone", ttl, rv, uid=uid)
    return body


def test_a_lease_is_stale_only_when_seen_unchanged_for_its_duration_on_the_local_clock():
    clock = FakeClock()
    seen = lock.Observer(clock)
    old = lease_version("10")
    old["spec"]["renewTime"] = lock._micro(lock._now() - timedelta(days=365))  # its holder's clock: a year off
    seen.see(old)
    assert not seen.stale(old)  # timestamps say nothing: only what this observer saw
    clock.t += 59.9
    assert not seen.stale(old)
    clock.t += 0.1
    assert seen.stale(old)
    renewed = lease_version("11")  # a renewal: a new version
    seen.see(renewed)
    assert not seen.stale(renewed) and seen.changes == 1
    clock.t += 60
    assert seen.stale(renewed)
    replaced = lease_version("11", uid="u2")  # another Lease of the same name (deleted, made again)
    seen.see(replaced)
    assert not seen.stale(replaced)


def test_expiry_by_the_holders_timestamps_is_the_last_renewal_plus_the_duration():
    body = lock.lease("me", 60)
    assert lock.expiry(body) - lock._parse(body["spec"]["renewTime"]) == timedelta(seconds=60)
    body["spec"]["renewTime"] = lock._micro(lock._now() - timedelta(seconds=61))
    assert lock.expiry(body) < lock._now()
    body["spec"]["renewTime"] = "not a time"
    assert lock.expiry(body) < lock._now()


def test_a_run_that_lost_its_lease_stops_its_waits_and_writes():
    """The Renewer is the client's guard: past the renew deadline without a renewal, a wait stops at its next look
    and a write is not sent (no request reaches any server: the guard raises first)."""
    clock = FakeClock()
    cluster = Cluster(Target("c", "/nonexistent-kubeconfig"))
    renewer = lock.Renewer(cluster, "me", 6, clock=clock)
    renewer._renewed = clock()
    cluster.guard = renewer.check
    looks = []

    def check() -> tuple[bool, str]:
        looks.append(1)
        clock.t += 1.0  # each look, a second passes on the local clock; no renewal gets through
        return False, "waiting"

    with pytest.raises(lock.LockLost) as err:
        poll(check, timeout=3600, interval=0, cluster=cluster)
    assert len(looks) == 4  # 6 s * 2/3: stopped at the first look past the renew deadline, not after an hour
    assert "lost the cluster's lock" in str(err.value) and "a wait" in str(err.value)
    with pytest.raises(lock.LockLost):
        cluster.request("PATCH", "/api/v1/namespaces/x", body={})
    cluster.guard = None


def test_sigterm_stops_a_run_before_its_next_write_wait_or_step_and_leaves_its_other_clients_alone():
    """The Job controller ends a shard's pod with SIGTERM when its wave's failure budget is spent. Before, the run
    went on until it was killed mid-step, its lock held, its clusters half-applied without a word. Now SIGTERM asks
    it to stop: its waits stop at the next look, no write is sent, a step fails as `Stopped`; a client under no run's
    lock (the management cluster's, which writes the shard's result) is not stopped."""
    import os
    import signal
    from types import SimpleNamespace

    from knfleet.report.records import ClusterRun
    from knfleet.run import context, stopping
    from knfleet.run.context import ClusterState

    clock = FakeClock()
    cluster = Cluster(Target("c", "/nonexistent-kubeconfig"))
    renewer = lock.Renewer(cluster, "me", 60, clock=clock)
    renewer._renewed = clock()
    cluster.guard = renewer.check
    before = signal.getsignal(signal.SIGTERM)
    looks = []

    def check() -> tuple[bool, str]:
        looks.append(1)
        if len(looks) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return False, "waiting"

    try:
        stopping.on_sigterm()
        with pytest.raises(stopping.Stopped) as err:
            poll(check, timeout=3600, interval=0, cluster=cluster)
        assert len(looks) == 2 and "asked to stop (signal SIGTERM)" in str(err.value) and "a wait" in str(err.value)
        assert err.value.code.value == "Stopped"
        with pytest.raises(stopping.Stopped):
            cluster.request("PATCH", "/api/v1/namespaces/x", body={})
        other = Cluster(Target("m", "/nonexistent-kubeconfig"))
        other.check_guard("a write")  # no guard: not stopped
        run = ClusterState(ClusterRun(cluster="c", host="@kube/c"))
        run.cluster = cluster
        logged: list[str] = []
        fake = SimpleNamespace(connector=SimpleNamespace(run=run),
                               log_styled=lambda text, **kw: logged.append(text))
        step = context.command("Kourier (kourier.yaml)", lambda: ["would have applied"])
        assert step.function(None, fake) is False
        assert [f.reason for f in run.record.failures] == ["Stopped"]
        assert "stopped before Kourier (kourier.yaml)" in run.record.failures[0].message
    finally:
        signal.signal(signal.SIGTERM, before)
        stopping.reset()
        cluster.guard = None


def test_a_run_asked_to_stop_stops_waiting_for_anothers_lock_and_its_smoke_retries():
    """Review finding: the two long waits that are not the waiter's (taking a lock another run holds, the smoke
    test's retries) went on after SIGTERM until the pod was killed, its result unwritten."""
    from knfleet.run import smoke, stopping

    class Held:
        name = "c"

        def create(self, body: object, guarded: bool = True) -> None:
            raise Conflict("c", "create lease", 409, "AlreadyExists", "exists")

        def get(self, *args: object) -> dict:
            return lease_version("7")

    clock = FakeClock()
    waits = []

    def sleep(s: float) -> None:
        waits.append(s)
        clock.t += s
        if len(waits) == 3:
            stopping.request("signal SIGTERM")

    try:
        with pytest.raises(stopping.Stopped) as err:
            lock.acquire(Held(), "me", ttl=60, wait=3600, clock=clock, sleep=sleep)  # type: ignore[arg-type]
        assert len(waits) == 3 and "taking the lock" in str(err.value)
        sent = []

        def send(timeout: float) -> tuple[int, str]:
            sent.append(timeout)
            return 503, "no route yet"

        got = smoke.chat("ns/qwen", send, "qwen", deadline_s=3600, was_at_zero=False)
        assert len(sent) == 1 and not got.ok and "asked to stop (signal SIGTERM)" in (got.error or "")
    finally:
        stopping.reset()
