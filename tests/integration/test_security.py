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
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from knfleet.cli import module_values
from knfleet.errors import LockedError
from knfleet.kube import readiness
from knfleet.kube.client import Cluster, Conflict, Target
from knfleet.run import lock
from localcluster.cluster import Spec
from tests.conftest import REPO, knative_release_folder
from tests.integration.test_faults import inventory, run, snapshot
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


# --- the installed cluster: a run in group `local` (group_data/local.py's two model services) ----------------------
@pytest.fixture(scope="module")
def installed(kube, tmp_path_factory) -> tuple[Path, Kube]:
    no_lease(kube)
    inv = inventory(tmp_path_factory.mktemp("inv") / "inv.py", kube)
    first = run(inv)
    assert first.returncode == 0, first.stderr[-3000:]
    return inv, kube


def ksvcs(kube: Kube) -> dict[str, dict[str, Any]]:
    return {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in kube.json("get", "ksvc", "-A")["items"]}


OWN = {"knative-qwen7b/knative-qwen7b-svc", "knative-qwen7b/qwen7b-scale-to-zero"}  # group_data/local.py's


def other_inventory(path: Path, kube: Kube, group: str = "other", **data: Any) -> Path:
    """The same cluster in a group without group data of its own: the cluster settings of group `local` (so that
    the two inventories agree on them) as host data, and no `models` unless given."""
    settings = {k: v for k, v in module_values(REPO / "group_data" / "local.py").items() if k != "models"}
    host = {"kubeconfig": str(kube.kubeconfig), "knative_bundle_dir": str(knative_release_folder()),
            "model_wait_timeout": 180, **settings, **data}
    path.write_text(f"{group} = {[(f'@kube/{kube.name}', host)]!r}\n")
    return path


def test_group_data_without_models_prunes_nothing(installed, tmp_path):
    """On main a run whose data has no `models` pruned every Knative Service labelled managed-by=knfleet, in every
    namespace: here the two services another inventory (group `local`) deployed."""
    _, kube = installed
    assert OWN <= set(ksvcs(kube))
    out = run(other_inventory(tmp_path / "other.py", kube))
    assert out.returncode == 0, out.stderr[-3000:]
    assert OWN <= set(ksvcs(kube)), out.stderr[-3000:]
    assert "Delete model services removed from group data" not in out.stdout + out.stderr


def test_an_empty_models_list_removes_only_this_owners_services_and_the_closing_line_says_so(installed, tmp_path):
    """On main `models = []` deleted every service labelled managed-by=knfleet, another owner's too."""
    inv, kube = installed
    team_b = other_inventory(tmp_path / "team_b.py", kube, owner="team-b", smoke=False,
                             models=[{"name": "b-svc", "namespace": "team-b", "gpus": 0}])
    out = run(team_b)
    assert out.returncode == 0, out.stderr[-3000:]
    assert ksvcs(kube)["team-b/b-svc"]["metadata"]["labels"]["knfleet.dev/owner"] == "team-b"
    out = run(inv, "--data", "models=[]")
    assert out.returncode == 0, out.stderr[-3000:]
    left = set(ksvcs(kube))
    assert "team-b/b-svc" in left and not OWN & left, left
    assert "models is an empty list: removing every model service of owner 'default' (2)" in out.stderr, \
        out.stderr[-3000:]
    # team-b empties its own list: its service goes, and the local group's come back with a run of theirs
    assert run(team_b, "--data", "models=[]").returncode == 0
    assert run(inv).returncode == 0
    assert set(ksvcs(kube)) == OWN


HAND_MADE = """
apiVersion: v1
kind: Namespace
metadata: {name: team-h, labels: {team: h}}
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: hand, namespace: team-h}
spec:
  template:
    spec:
      containers: [{image: example.com/hand-made:1}]
"""


def test_a_knative_service_knfleet_did_not_create_is_not_taken_over_unless_adopted(installed):
    """On main the forced server-side apply took a hand-made service of a model's name over (and a later prune could
    delete it); the model's existing namespace got knfleet's labels applied."""
    inv, kube = installed
    kube.apply(HAND_MADE)
    before = kube.json("get", "ksvc", "hand", "-n", "team-h")
    model = {"name": "hand", "namespace": "team-h", "gpus": 0}
    models = json.dumps([{}, {"name": "qwen7b-scale-to-zero", "autoscaling": {"min_scale": 0}}, model])
    out = run(inv, "--data", f"models={models}", "--data", "smoke=false")
    assert out.returncode != 0, out.stderr[-3000:]
    assert ("Knative Service team-h/hand exists and knfleet did not create it (managed by kubectl-client-side-apply"
            in out.stderr), out.stderr[-3000:]
    assert "adopt: true" in out.stderr
    after = kube.json("get", "ksvc", "hand", "-n", "team-h", "--show-managed-fields")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]  # (Knative writes its status)
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "example.com/hand-made:1"
    assert "knfleet" not in [m["manager"] for m in after["metadata"]["managedFields"]]
    adopt = json.dumps([{}, {"name": "qwen7b-scale-to-zero", "autoscaling": {"min_scale": 0}},
                        {**model, "adopt": True}])
    out = run(inv, "--data", f"models={adopt}", "--data", "smoke=false")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "adopting Knative Service team-h/hand" in out.stderr
    taken = kube.json("get", "ksvc", "hand", "-n", "team-h", "--show-managed-fields")
    assert taken["metadata"]["labels"]["knfleet.dev/owner"] == "default"
    assert "knfleet" in [m["manager"] for m in taken["metadata"]["managedFields"]]
    ns = kube.json("get", "namespace", "team-h", "--show-managed-fields")["metadata"]
    assert ns["labels"].get("app.kubernetes.io/managed-by") != "knfleet" and ns["labels"]["team"] == "h"
    assert "knfleet" not in [m["manager"] for m in ns.get("managedFields") or []]
    assert run(inv).returncode == 0  # back to group data's models: the adopted service is knfleet's, and pruned
    assert set(ksvcs(kube)) == OWN
    kube.run("delete", "namespace", "team-h", "--timeout=120s")


def test_a_failing_credential_plugin_fails_its_cluster_only_and_an_unchecked_certificate_is_a_warning(
        installed, tmp_path):
    """On main the plugin's failure was only logged, with its stderr (here a token), and the requests went out
    anonymous; insecure-skip-tls-verify was used without a word."""
    _, kube = installed
    cfg = yaml.safe_load(kube.kubeconfig.read_text())
    skip = json.loads(json.dumps(cfg))
    skip["clusters"][0]["cluster"].pop("certificate-authority-data")
    skip["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    (tmp_path / "skip.kubeconfig").write_text(yaml.safe_dump(skip))
    plugin = tmp_path / "get-token"
    plugin.write_text("#!/bin/sh\necho 'session expired; old token eyJhbGciOi-PLUGIN-SECRET' >&2\nexit 3\n")
    plugin.chmod(0o755)
    sso = json.loads(json.dumps(cfg))
    sso["users"] = [{"name": sso["users"][0]["name"], "user": {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin), "interactiveMode": "Never"}}}]
    (tmp_path / "sso.kubeconfig").write_text(yaml.safe_dump(sso))
    bundle = str(knative_release_folder())
    hosts = [("@kube/skip-verify", {"kubeconfig": str(tmp_path / "skip.kubeconfig"), "knative_bundle_dir": bundle}),
             ("@kube/sso", {"kubeconfig": str(tmp_path / "sso.kubeconfig"), "knative_bundle_dir": bundle})]
    inv = tmp_path / "two.py"
    inv.write_text(f"local = {hosts!r}\n")
    report = tmp_path / "run.json"
    out = run(inv, env={"KNFLEET_REPORT": str(report)})
    text = out.stdout + out.stderr
    assert "PLUGIN-SECRET" not in text and "PLUGIN-SECRET" not in report.read_text()
    assert f"knfleet: sso: FAILED (install) - preflight: the credential plugin {str(plugin)!r}" in text, text[-3000:]
    assert "(exit code 3)" in text
    assert "knfleet: skip-verify: install done" in text, text[-3000:]
    rep = json.loads(report.read_text())["clusters"]
    assert any("insecure-skip-tls-verify is set" in w for w in rep["skip-verify"]["warnings"]), rep["skip-verify"]
    assert "insecure-skip-tls-verify is set" in out.stderr


# --- 3d. a run that loses its lease while it waits ----------------------------------------------------------------
def test_a_run_that_loses_its_lease_while_it_waits_stops_at_once(installed):
    """Knative's webhook is held, so the run waits at the knative-serving gate; meanwhile another holder takes the
    Lease. On main the run went on waiting until the gate gave up (its wait_timeout) and only the next operation
    noticed; now the wait stops at its next look and the run fails naming the lost lock, writing nothing more."""
    inv, kube = installed
    cluster = client(kube)
    kube.cluster.set_faults({"knative-serving/webhook": "hold"})
    proc = None
    try:
        eventually(lambda: not readiness.deployment_available(
            kube.json("get", "deployment", "webhook", "-n", "knative-serving")), 60, what="the webhook unavailable")
        proc = run(inv, "--data", "lock_ttl=6", "--data", "wait_timeout=60", popen=True)
        holder = eventually(lambda: (h := lease_holder(cluster)) and f"/pid-{proc.pid}/" in h and h, 120,
                            what="the run holding the lock")
        kube.run("patch", "lease", lock.NAME, "-n", lock.NAMESPACE, "--type=merge", "-p",
                 '{"spec": {"holderIdentity": "thief@ci"}}')  # another run takes the lease
        before = snapshot(kube)
        out, err = proc.communicate(timeout=600)
        after = snapshot(kube)
        assert kube.json("get", "deployment", "webhook", "-n", "knative-serving")["status"].get(
            "availableReplicas") in (None, 0), "the webhook came back: the test proves nothing"
    finally:
        kube.cluster.set_faults({})
        if proc is not None and proc.poll() is None:  # the test failed before the run ended: no orphan left
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, err[-3000:]
    closing = next(x for x in err.splitlines() if x.startswith(f"knfleet: {kube.name}: "))
    assert "lost the cluster's lock" in closing and "not ready after" not in closing, closing
    assert holder in err or "thief@ci" in err
    assert lease_holder(cluster) == "thief@ci"  # its release did not delete the thief's lease
    assert after == before  # nothing written after the lease was lost
    no_lease(kube)
    eventually(lambda: readiness.deployment_available(
        kube.json("get", "deployment", "webhook", "-n", "knative-serving")), 120, what="the webhook back")


# --- 4d. uninstall and what else lives in the release namespaces (last: it removes the installation) ---------------
def test_uninstall_stops_at_objects_it_did_not_create_in_the_release_namespaces(installed):
    """On main an uninstall deleted the release namespaces with whatever else users had put in them."""
    inv, kube = installed
    kube.run("create", "configmap", "user-data", "-n", "knative-serving", "--from-literal=keep=me")
    kube.run("create", "secret", "generic", "team-tls", "-n", "knative-nginx", "--from-literal=key=k")
    out = run(inv, "--data", "action=uninstall")
    assert out.returncode != 0, out.stderr[-3000:]
    assert "the release namespaces hold 2 object(s) knfleet did not create" in out.stderr, out.stderr[-3000:]
    assert "ConfigMap knative-serving/user-data (managed by kubectl-create)" in out.stderr
    assert "Secret knative-nginx/team-tls (managed by kubectl-create)" in out.stderr
    assert "uninstall_foreign=delete" in out.stderr
    assert kube.exists("configmap", "user-data", "-n", "knative-serving")
    assert kube.exists("ksvc", "knative-qwen7b-svc", "-n", "knative-qwen7b")  # nothing deleted
    out = run(inv, "--data", "action=uninstall", "--data", "uninstall_foreign=delete")
    assert out.returncode == 0, out.stderr[-3000:]
    for ns in ("knative-serving", "kourier-system", "knative-nginx"):
        assert not kube.exists("namespace", ns)
