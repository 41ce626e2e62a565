"""Issue 6 acceptance: waves with halt and resume, failure allowance, the cluster lock, status and drift."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from knfleet.kube import readiness
from knfleet.kube.client import Cluster, Target
from knfleet.run import lock
from localcluster.cluster import Spec
from tests.conftest import REPO, knative_release_folder
from tests.integration.test_deploy import pyinfra
from tests.kube import Kube, eventually

pytestmark = pytest.mark.integration


def write_inventory(path: Path, clusters: list[Kube], waves: list[int]) -> Path:
    hosts = []
    for kube, wave in zip(clusters, waves, strict=True):
        d = kube.cluster.dir
        hosts.append((f"@kube/{kube.name}", {
            "kubeconfig": str(kube.kubeconfig), "rollout_wave": wave,
            "knative_bundle_dir": str(knative_release_folder()),
            "smoke_url": (d / "public.url").read_text().strip(),
            "smoke_internal_url": (d / "internal.url").read_text().strip(),
        }))
    # The group is named `local`, so group_data/local.py gives these clusters their models.
    path.write_text(f"local = {hosts!r}\n")
    return path


def knfleet(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / ".venv" / "bin" / "knfleet"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, PYINFRA_PROGRESS="off"))


@pytest.fixture(scope="module")
def three(pool, tmp_path_factory):
    spec = Spec(ready_delay_ms=300, time_factor=0.05)
    clusters = [pool.start("roll", spec, group="rollout") for _ in range(3)]
    inv = write_inventory(tmp_path_factory.mktemp("inv") / "fleet.py", clusters, [0, 1, 1])
    yield inv, clusters
    for c in clusters:
        pool.stop(c)


def test_halt_after_a_failed_canary_then_resume(three, tmp_path):
    inv, (canary, b, c) = three
    state, report = tmp_path / "state.json", tmp_path / "report.json"
    canary.cluster.stop_component("kube-apiserver")
    try:
        run = knfleet("rollout", str(inv), "--state", str(state), "--report", str(report))
        assert run.returncode == 2, run.stdout + run.stderr
        for other in (b, c):
            assert not other.exists("namespace", "knative-serving")  # later waves untouched
        rep = json.loads(report.read_text())
        assert rep["status"] == "halted" and rep["halted_at_wave"] == 0
        assert set(rep["clusters"]) == {canary.name, b.name, c.name}
        assert rep["clusters"][canary.name]["status"] == "failed"
        assert "not reachable" in rep["clusters"][canary.name]["errors"][0]
        for other in (b, c):
            assert rep["clusters"][other.name]["status"] == "untouched"
            assert "halted after wave 0" in rep["clusters"][other.name]["reason"]
    finally:
        canary.cluster.restart_component("kube-apiserver")
    resumed = knfleet("rollout", str(inv), "--resume", "--state", str(state), "--report", str(report))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    rep = json.loads(report.read_text())
    assert rep["status"] == "converged"
    for kube in (canary, b, c):
        r = rep["clusters"][kube.name]
        assert r["status"] in ("converged", "changed")
        assert {s["service"] for s in r["smoke"]} == {"knative-qwen7b/knative-qwen7b-svc",
                                                      "knative-qwen7b/qwen7b-scale-to-zero"}
        assert all(s["ok"] and s["latency_s"] is not None for s in r["smoke"])


def test_rollout_of_a_converged_fleet_reports_each_cluster_with_smoke_results(three, tmp_path):
    inv, clusters = three
    report = tmp_path / "report.json"
    run = knfleet("rollout", str(inv), "--report", str(report), "--bake", "1")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "wave 0" in run.stdout and "wave 1" in run.stdout and "CLUSTER" in run.stdout
    rep = json.loads(report.read_text())
    for kube in clusters:
        r = rep["clusters"][kube.name]
        assert r["status"] == "converged" and len(r["smoke"]) == 2 and len(r["smoke_after_bake"]) == 2


def test_failures_within_the_allowance_complete_the_others(three, tmp_path):
    inv, (a, b, c) = three
    c.cluster.stop_component("kube-apiserver")
    try:
        run = knfleet("rollout", str(inv), "--max-failed-clusters", "1", "--state", str(tmp_path / "s.json"),
                      "--report", str(tmp_path / "r.json"), "--data", "knative_domain=wave.example")
        assert run.returncode == 1, run.stdout + run.stderr
        rep = json.loads((tmp_path / "r.json").read_text())
        assert rep["status"] == "some-failed"
        assert rep["clusters"][c.name]["status"] == "failed"
        for ok in (a, b):
            assert rep["clusters"][ok.name]["status"] == "changed"
            assert "wave.example" in ok.json("get", "configmap", "config-domain", "-n", "knative-serving")["data"]
    finally:
        c.cluster.restart_component("kube-apiserver")


def test_a_locked_cluster_is_reported_and_not_touched_and_an_expired_lock_is_taken_over(three, pool, tmp_path):
    _, (a, _, _) = three
    cluster = Cluster(Target(a.name, str(a.kubeconfig)))
    lock.acquire(cluster, "other-runner@ci", ttl=600)
    root = pool.root_for("rollout")
    before = a.json("get", "configmap", "config-domain", "-n", "knative-serving")["metadata"]["resourceVersion"]
    report = tmp_path / "locked.json"
    run = pyinfra(root, "-y", "--limit", f"@kube/{a.name}", "--data", "knative_domain=locked.example", report=report)
    assert run.returncode != 0
    locked = json.loads(report.read_text())["clusters"][a.name]
    assert locked["status"] == "locked" and locked["failures"][0]["reason"] == "Locked", locked
    assert "locked by other-runner@ci" in locked["failures"][0]["message"]
    assert a.json("get", "configmap", "config-domain", "-n", "knative-serving")["metadata"]["resourceVersion"] == before
    # A dead holder: its lease expired, so the next run takes it over and says so.
    a.run("delete", "lease", "knfleet-lock", "-n", "kube-system")
    lock.acquire(cluster, "crashed-runner@ci", ttl=1)
    time.sleep(2)
    run = pyinfra(root, "-y", "--limit", f"@kube/{a.name}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "taken over from crashed-runner@ci" in run.stderr
    assert not a.exists("lease", "knfleet-lock", "-n", "kube-system")  # released at the end of the run


RESTRICTED = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: restricted-deployer, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: restricted-deployer}
rules:
# Everything a cluster-admin may do, except the verbs escalate and bind, and nothing on leases
# (coordination.k8s.io is not listed).
- apiGroups: ["", apps, rbac.authorization.k8s.io, apiextensions.k8s.io, admissionregistration.k8s.io,
              serving.knative.dev, networking.internal.knative.dev, autoscaling.internal.knative.dev,
              caching.internal.knative.dev, authorization.k8s.io, policy, autoscaling]
  resources: ["*"]
  verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: restricted-deployer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: restricted-deployer}
subjects: [{kind: ServiceAccount, name: restricted-deployer, namespace: default}]
"""


def test_an_identity_without_escalate_or_leases_is_stopped_at_preflight_with_every_missing_right(three, tmp_path):
    _, (a, _, _) = three
    a.apply(RESTRICTED)
    token = a.run("create", "token", "restricted-deployer", "-n", "default", "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(a.kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    kubeconfig = tmp_path / "restricted.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "restricted",
        "clusters": [{"name": "c", "cluster": cluster}], "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "restricted", "context": {"cluster": "c", "user": "u"}}]}))
    inv = tmp_path / "restricted.py"
    host = {"kubeconfig": str(kubeconfig), "knative_bundle_dir": str(knative_release_folder()), "smoke": False}
    inv.write_text(f"local = {[(f'@kube/{a.name}', host)]!r}\n")
    before = {k: a.json("get", *k.split())["metadata"]["resourceVersion"] for k in (
        "configmap config-domain -n knative-serving", "deployment controller -n knative-serving")}
    run = subprocess.run([str(REPO / ".venv" / "bin" / "pyinfra"), str(inv), "deploy.py", "-y", "--data",
                          "knative_domain=restricted.example"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYINFRA_PROGRESS="off"), stdin=subprocess.DEVNULL)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out[-2000:]
    assert "Preflight" in out and "right(s) this run needs" in out, out[-3000:]
    for missing in ("escalate clusterroles.rbac.authorization.k8s.io", "bind clusterroles.rbac.authorization.k8s.io",
                    "create leases.coordination.k8s.io in kube-system",
                    "update leases.coordination.k8s.io in kube-system"):
        assert missing in out, out[-3000:]
    assert "create configmaps in knative-serving" not in out  # allowed rights are not listed
    after = {k: a.json("get", *k.split())["metadata"]["resourceVersion"] for k in before}
    assert after == before
    assert not a.exists("lease", "knfleet-lock", "-n", "kube-system")
    doc = knfleet("doctor", str(inv))
    assert doc.returncode == 1, doc.stdout + doc.stderr
    line = next(x for x in doc.stdout.splitlines() if x.startswith(a.name + " "))
    assert line.split()[1] == "FAIL" and "the identity lacks" in line and "escalate clusterroles" in line, line
    a.run("delete", "-f", "-", stdin=RESTRICTED)


def test_doctor_reports_every_reachable_cluster_ready_and_changes_nothing(three):
    inv, clusters = three
    before = [c.json("get", "configmap", "config-domain", "-n", "knative-serving")["metadata"]["resourceVersion"]
              for c in clusters]
    doc = knfleet("doctor", str(inv))
    assert doc.returncode == 0, doc.stdout + doc.stderr
    for c in clusters:
        line = next(x for x in doc.stdout.splitlines() if x.startswith(c.name + " "))
        assert line.split()[1] == "ok" and "Kubernetes v1.32" in line and "rights" in line, line
    assert [c.json("get", "configmap", "config-domain", "-n", "knative-serving")["metadata"]["resourceVersion"]
            for c in clusters] == before


def test_a_run_longer_than_its_lease_keeps_the_lock_by_renewing_it(three, pool):
    """lock_ttl 4 s, and a run made to last longer: Knative's webhook is held (its process stopped, the pod not
    Ready), so the run waits at the knative-serving gate until the test lets the webhook start again 8 s after
    the run took the lock. A probe reading the lease all along never sees it expired (takeable) or held by
    another, and sees it renewed; the run then converges."""
    _, (a, _, _) = three
    cluster = Cluster(Target(a.name, str(a.kubeconfig)))
    assert pyinfra(pool.root_for("rollout"), "-y", "--limit", f"@kube/{a.name}").returncode == 0
    a.cluster.set_faults({"knative-serving/webhook": "hold"})
    eventually(lambda: not readiness.deployment_available(
        a.json("get", "deployment", "webhook", "-n", "knative-serving")), 60, what="the webhook unavailable")
    seen: list[tuple[str, str, str, bool]] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            cur = cluster.get(*lock.LEASE, lock.NAME, lock.NAMESPACE)
            if cur:
                spec = cur["spec"]
                seen.append((spec["holderIdentity"], spec["acquireTime"], spec["renewTime"],
                             lock.expiry(cur) <= lock._now()))
                if len(seen) == 1:
                    threading.Timer(8.0, lambda: a.cluster.set_faults({})).start()
            time.sleep(0.2)

    watcher = threading.Thread(target=probe)
    watcher.start()
    try:
        run = pyinfra(pool.root_for("rollout"), "-y", "--limit", f"@kube/{a.name}", "--data", "lock_ttl=4")
    finally:
        done.set()
        watcher.join()
        a.cluster.set_faults({})
    assert run.returncode == 0, run.stderr[-2000:]
    assert seen, "the probe never saw the lease"
    holders = {h for h, _, _, _ in seen}
    assert len(holders) == 1 and "/pid-" in holders.pop()
    assert not [s for s in seen if s[3]], "the lease was seen expired while its run lived"
    acquired = lock._parse(seen[0][1])
    last_renewal = max(lock._parse(r) for _, _, r, _ in seen)
    assert (last_renewal - acquired).total_seconds() > 4, "the run was not longer than its lease: test proves nothing"
    assert len({r for _, _, r, _ in seen}) >= 3
    assert not a.exists("lease", "knfleet-lock", "-n", "kube-system")


def test_a_run_killed_with_sigkill_is_followed_by_a_run_that_converges(three, pool):
    """The killed run's lease (default duration 60 s) names a process of this machine that is gone: the next run
    takes it over at once, says so, and converges."""
    _, (a, _, _) = three
    root = pool.root_for("rollout")
    cluster = Cluster(Target(a.name, str(a.kubeconfig)))
    env = dict(os.environ, KNFLEET_LOCAL=str(root.parent), PYINFRA_PROGRESS="off")
    argv = [str(REPO / ".venv" / "bin" / "pyinfra"), "inventories/local.py", "deploy.py", "-y",
            "--limit", f"@kube/{a.name}", "--data", "knative_domain=killed.example"]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    holder = None
    deadline = time.monotonic() + 120
    while holder is None and proc.poll() is None and time.monotonic() < deadline:
        cur = cluster.get(*lock.LEASE, lock.NAME, lock.NAMESPACE)
        if cur and f"/pid-{proc.pid}/" in cur["spec"]["holderIdentity"]:
            holder = cur["spec"]["holderIdentity"]
        else:
            time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert holder, "the run never took the lock"
    left = cluster.get(*lock.LEASE, lock.NAME, lock.NAMESPACE)
    assert left and left["spec"]["holderIdentity"] == holder and lock.expiry(left) > lock._now()
    run = pyinfra(root, "-y", "--limit", f"@kube/{a.name}", "--data", "knative_domain=killed.example")
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"taken over from {holder} (its process on this machine is gone)" in run.stderr
    assert "killed.example" in a.json("get", "configmap", "config-domain", "-n", "knative-serving")["data"]
    assert not a.exists("lease", "knfleet-lock", "-n", "kube-system")


def test_status_flags_drift_and_shows_a_clean_cluster_in_sync(three):
    inv, (a, b, _) = three
    clean = knfleet("rollout", str(inv))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    b.run("patch", "configmap", "config-autoscaler", "-n", "knative-serving", "--type=merge",
          "-p", '{"data":{"stable-window":"30s"}}')
    b.run("delete", "ksvc", "qwen7b-scale-to-zero", "-n", "knative-qwen7b")
    st = knfleet("status", str(inv), "--json")
    assert st.returncode == 1
    rep = json.loads(st.stdout)
    assert rep["kind"] == "status" and rep["schema"] == "knfleet.report/v1"
    rows = rep["clusters"]
    assert rows[a.name]["status"] == "in-sync" and rows[a.name]["knative_version"] == "1.17.0"
    assert rows[b.name]["status"] == "drift"
    drift = rows[b.name]["drift"]
    assert "config: ConfigMap/knative-serving/config-autoscaler" in drift
    assert "services: Service/knative-qwen7b/qwen7b-scale-to-zero (missing)" in drift
    missing = [s for s in rows[b.name]["services"] if s["service"] == "knative-qwen7b/qwen7b-scale-to-zero"]
    assert missing and not missing[0]["ready"]
    table = knfleet("status", str(inv))
    assert f"{a.name}: in sync" in table.stdout and f"{b.name}: DRIFT" in table.stdout
