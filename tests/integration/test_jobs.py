"""Issue 26 acceptance, on the real local control plane: `knfleet jobs --apply` on a management cluster (a local
cluster, no Knative) runs the fleet with the real kube-controller-manager's Job and CronJob controllers; the pod
runner runs the pods of knfleet's image as local processes (localcluster/runner/podspec.py).

Four target clusters in two waves of two shards (shard size 1): t0, t1 in wave 0 (the canary), t2, t3 in wave 1.
Names below are the contract's (knfleet.fleet.jobs): fleet `fleet` (the inventory's stem), namespace `knfleet`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from knfleet.kube import readiness
from knfleet.kube.client import Cluster, Target
from knfleet.run import lock
from localcluster.cluster import Spec
from tests.integration.test_rollout import knfleet, write_inventory
from tests.kube import Kube, eventually

pytestmark = pytest.mark.integration

NS = "knfleet"
FLEET = "fleet"
IMAGE = "knfleet:0.1.0"


# --- fixtures --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mgmt(pool) -> Iterator[Kube]:
    """The management cluster: the real Job and CronJob controllers, kwok nodes; no Knative, no data plane."""
    kube = pool.start("mgmt", Spec(cpu_nodes=1, gpu_nodes=0, ready_delay_ms=100, simulator=False), group="jobs")
    yield kube
    pool.stop(kube)


@pytest.fixture(scope="module")
def targets(pool, tmp_path_factory) -> Iterator[tuple[Path, list[Kube]]]:
    """Four target clusters (started two at a time), waves [0, 0, 1, 1]; the inventory's stem names the fleet."""
    spec = Spec(ready_delay_ms=300, time_factor=0.05)
    with ThreadPoolExecutor(max_workers=2) as ex:
        clusters = list(ex.map(lambda _: pool.start("tgt", spec, group="jobs"), range(4)))
    inv = write_inventory(tmp_path_factory.mktemp("jobs") / f"{FLEET}.py", clusters, [0, 0, 1, 1])
    yield inv, clusters
    with ThreadPoolExecutor(max_workers=4) as ex:  # each waits for its processes' grace periods: at once
        list(ex.map(pool.stop, clusters))


# --- helpers ---------------------------------------------------------------------------------------------------------
def jobs_apply(inv: Path, mgmt: Kube, *extra: str) -> subprocess.CompletedProcess[str]:
    run = knfleet("jobs", str(inv), "--management-kubeconfig", str(mgmt.kubeconfig), "--apply", "--image", IMAGE,
                  "--shard-size", "1", *extra, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def job(mgmt: Kube, name: str) -> dict[str, Any] | None:
    got = mgmt.run("get", "job", name, "-n", NS, "-o", "json", check=False)
    return json.loads(got.stdout) if got.returncode == 0 else None


def finished(j: dict[str, Any] | None) -> str | None:
    """'Complete' or 'Failed' once the Job controller says so."""
    for c in ((j or {}).get("status") or {}).get("conditions") or []:
        if c["type"] in ("Complete", "Failed") and c["status"] == "True":
            return c["type"]
    return None


def pods_of(mgmt: Kube, job_name: str) -> list[dict[str, Any]]:
    return mgmt.json("get", "pods", "-n", NS, "-l", f"batch.kubernetes.io/job-name={job_name}")["items"]


def pod_logs(mgmt: Kube, job_name: str) -> str:
    """What the knfleet processes of a Job's pods printed (the runner's log of each container)."""
    out = []
    for log in sorted((mgmt.cluster.dir / "logs" / "pods").glob(f"{NS}_{job_name}-*.log")):
        out.append(f"== {log.name}\n{log.read_text()[-4000:]}")
    return "\n".join(out)


def wait_job(mgmt: Kube, name: str, timeout: float) -> str:
    try:
        return eventually(lambda: finished(job(mgmt, name)), timeout, interval=1, what=f"Job {name} finished")
    except AssertionError as err:
        raise AssertionError(f"{err}\n{pod_logs(mgmt, name)}") from None


def configmap(kube: Kube, name: str, ns: str = NS) -> dict[str, Any] | None:
    got = kube.run("get", "configmap", name, "-n", ns, "-o", "json", check=False)
    return json.loads(got.stdout) if got.returncode == 0 else None


def knative_ready(kube: Kube) -> bool:
    deps = kube.json("get", "deployments", "-n", "knative-serving")["items"]
    return bool(deps) and all(readiness.deployment_available(d) for d in deps)


def converged_by_knfleet(kube: Kube) -> None:
    """Knative Ready, knfleet's notes there (kube-system/knfleet-state), its lock released."""
    assert knative_ready(kube), kube.name
    assert configmap(kube, "knfleet-state", "kube-system"), f"{kube.name}: no knfleet-state notes"
    assert not kube.exists("lease", "knfleet-lock", "-n", "kube-system"), f"{kube.name}: lock not released"


def knfleets_objects(kube: Kube) -> dict[str, tuple[str, list[Any]]]:
    """Every object knfleet wrote on the cluster (its field manager in managedFields) -> (resourceVersion, knfleet's
    managedFields entries); plus its notes. Objects a controller also writes (Deployments' status) change their
    resourceVersion without knfleet: for those, knfleet's own entries (operation, time, fields) say who wrote."""
    kinds = kube.run("api-resources", "--verbs=list", "-o", "name").stdout.split()
    skip = {"events", "events.events.k8s.io", "leases.coordination.k8s.io", "endpoints",
            "endpointslices.discovery.k8s.io", "pods", "replicasets.apps", "nodes", "componentstatuses"}
    out: dict[str, tuple[str, list[Any]]] = {}
    items = kube.json("get", ",".join(k for k in kinds if k not in skip), "-A")["items"]
    for obj in items:
        meta = obj["metadata"]
        mine = [m for m in meta.get("managedFields") or [] if m.get("manager") == "knfleet"]
        if mine or meta["name"] in ("knfleet-state", "knfleet-upgrade"):
            key = f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"
            out[key] = (meta["resourceVersion"], mine)
    return out


def only_controller_changes(before: dict, after: dict) -> list[str]:
    """Objects knfleet wrote between the two snapshots: gone, new, or knfleet's managedFields entries changed."""
    both = set(before) & set(after)
    changed = sorted(set(before) ^ set(after))
    changed += sorted(k for k in both if before[k][1] != after[k][1])
    # kinds no controller writes: their resourceVersion alone says
    changed += sorted(k for k in both if k.split("/")[0] in UNSHARED and before[k][0] != after[k][0])
    return changed


UNSHARED = ("ConfigMap", "Secret", "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")


class LeaseWatch:
    """A watch of the Leases in kube-system (`kubectl get leases -w`), established before it returns (a sentinel
    Lease is seen through it): every take, renewal and release of knfleet's lock from then on."""

    SENTINEL = "jobs-test-watch-sentinel"

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.out = kube.cluster.dir / f"lease-watch-{time.time_ns()}.txt"
        self.file = open(self.out, "wb")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(  # noqa: S603 - kubectl of the test's cluster
            [kube.kubectl_bin, f"--kubeconfig={kube.kubeconfig}", "get", "leases", "-n", "kube-system",
             "--watch-only", "--output-watch-events", "-o", "json"], stdout=self.file, stderr=subprocess.STDOUT)
        kube.run("delete", "lease", self.SENTINEL, "-n", "kube-system", "--ignore-not-found")
        kube.apply(yaml.safe_dump({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                   "metadata": {"name": self.SENTINEL, "namespace": "kube-system"}}))
        eventually(lambda: self.SENTINEL in self.out.read_text(), 30, what=f"{kube.name}: the lease watch")

    def stop(self) -> list[tuple[str, str]]:
        """The lock's events seen: (type, holderIdentity). Stops the watch (again: a no-op)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # our own child, by its Popen
            self.proc.wait(timeout=10)
        self.file.close()
        events = [json.loads(line) for line in self.out.read_text().splitlines() if line.startswith("{")]
        return [(e["type"], e["object"]["spec"].get("holderIdentity", "")) for e in events
                if e["object"]["metadata"]["name"] == "knfleet-lock"]


def runner_pid(mgmt: Kube, pod_prefix: str) -> tuple[str, int]:
    """The PID of the knfleet process behind a pod, from the runner's records (runner.json)."""
    data = json.loads((mgmt.cluster.dir / "runner.json").read_text())
    found = [(k, v["pid"]) for k, v in data.items() if k.startswith(f"{NS}/{pod_prefix}") and v.get("pid")
             and "(stopping)" not in k]
    assert len(found) == 1, data
    return found[0]


# --- the runner alone: a Job of knfleet's image under the real Job controller ---------------------------------------
GOOD = """apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: ok, namespace: default, annotations: {knfleet.dev/smoke: never}}
spec:
  template:
    spec:
      containers:
      - image: registry.example/app@sha256:0000000000000000000000000000000000000000000000000000000000000000
"""
BAD = GOOD.replace("containers:", "containerz:")


def lint_job(name: str) -> str:
    """An Indexed Job of 2: index i lints $(SVCS)/svc-<i>.yaml (a ConfigMap volume with items and modes) and a path
    relative to the image's WORKDIR; podFailurePolicy fails an index on exit code 1 (lint errors) without retrying
    it, so the Job's status shows exactly what the containers' exit codes were."""
    return yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-svcs", "namespace": NS},
         "data": {"good": GOOD, "bad": BAD}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS},
         "spec": {"completionMode": "Indexed", "completions": 2, "parallelism": 2, "backoffLimitPerIndex": 1,
                  "podFailurePolicy": {"rules": [{"action": "FailIndex", "onExitCodes": {
                      "containerName": "knfleet", "operator": "In", "values": [1]}}]},
                  "template": {"spec": {
                      "restartPolicy": "Never",
                      "volumes": [
                          {"name": "svcs", "configMap": {"name": f"{name}-svcs", "defaultMode": 0o444, "items": [
                              {"key": "good", "path": "svc-0.yaml"},
                              {"key": "bad", "path": "svc-1.yaml", "mode": 0o400}]}},
                          {"name": "maybe", "secret": {"secretName": "absent", "optional": True}}],
                      "containers": [{
                          "name": "knfleet", "image": IMAGE, "command": ["knfleet"], "workingDir": "/knfleet",
                          "args": ["lint", "$(SVCS)/svc-$(JOB_COMPLETION_INDEX).yaml", "inventories/example.py"],
                          "env": [{"name": "SVCS", "value": "/etc/svcs"}],
                          "volumeMounts": [{"name": "svcs", "mountPath": "/etc/svcs", "readOnly": True},
                                           {"name": "maybe", "mountPath": "/etc/maybe", "readOnly": True}]}]}}}},
    ])


def test_knfleets_image_runs_as_local_processes_under_the_real_job_controller(mgmt):
    mgmt.run("create", "namespace", NS, check=False)
    mgmt.apply(lint_job("lint"))
    assert wait_job(mgmt, "lint", 180) == "Failed"
    j = job(mgmt, "lint")
    st = j["status"]
    assert st.get("completedIndexes") == "0" and st.get("failedIndexes") == "1", st
    pods = {p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]: p for p in pods_of(mgmt, "lint")}
    assert sorted(pods) == ["0", "1"], "index 1 was retried although its exit code fails the index"
    ok, bad = (pods[i]["status"] for i in ("0", "1"))
    assert ok["phase"] == "Succeeded" and ok["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    assert bad["phase"] == "Failed" and bad["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 1
    assert ok["containerStatuses"][0]["containerID"].startswith("knfleet-runner://")
    logs = pod_logs(mgmt, "lint")
    vols = mgmt.cluster.dir / "pods"
    assert "missing: a Knative Service runs at least one container" in logs, logs  # svc-1.yaml: the bad one
    assert "0 error(s)" in logs and "inventories/example.py: no such file" not in logs, logs
    bad_name = pods["1"]["metadata"]["name"]
    f = vols / f"{NS}_{bad_name}" / "volumes" / "svcs" / "svc-1.yaml"
    assert f.read_text() == BAD and oct(f.stat().st_mode & 0o777) == oct(0o400)
    assert (vols / f"{NS}_{bad_name}" / "volumes" / "maybe").is_dir()  # optional and absent: an empty volume
    mgmt.run("delete", "job", "lint", "-n", NS, "--cascade=foreground", "--wait=false")


# --- the acceptance: rollouts from the management cluster ------------------------------------------------------------
def rollout_state(mgmt: Kube, name: str) -> dict[str, Any]:
    cm = configmap(mgmt, f"knfleet-{FLEET}-rollout-{name}-state")
    assert cm, f"no state ConfigMap for rollout {name}"
    return cm["data"]


def test_a_wave_whose_cluster_fails_halts_before_the_next_waves_job_is_created(mgmt, targets):
    """t0 (canary) is locked by another holder (lock_wait 0): LOCKED, its shard exits 1. The wave Job's
    maxFailedIndexes is 0, so the Job controller fails the Job at once and stops t1's shard if it still runs (a
    real Job's behaviour: its cluster is then failed, "no result"). The coordinator records the halt and exits 2,
    the podFailurePolicy fails its Job without a retry; wave 1's Job is never created, t2 and t3 never touched."""
    inv, (t0, t1, t2, t3) = targets
    held = Cluster(Target(t0.name, str(t0.kubeconfig)))
    lock.acquire(held, "other-runner@ci", ttl=600)
    try:
        jobs_apply(inv, mgmt, "--rollout", "halt", "--no-converge")
        coordinator = f"knfleet-{FLEET}-rollout-halt"
        assert wait_job(mgmt, coordinator, 900) == "Failed", pod_logs(mgmt, coordinator)
        assert finished(job(mgmt, f"knfleet-{FLEET}-halt-w0")) == "Failed"
        assert job(mgmt, f"knfleet-{FLEET}-halt-w1") is None, "wave 1's Job was created after a failed wave"
        (pod,) = pods_of(mgmt, coordinator)  # exit 2 is FailJob: no second coordinator pod
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 2
        data = rollout_state(mgmt, "halt")
        state = json.loads(data["state.json"])
        assert state["halted_at"] == 0 and state["waves"]["0"]["status"] == "failed", state
        report = json.loads(data["report.json"])
        assert sorted(report["clusters"]) == sorted(k.name for k in (t0, t1, t2, t3))  # each exactly once
        assert report["status"] == "halted" and report["halted_at_wave"] == 0, report
        assert report["clusters"][t0.name]["status"] == "locked", report["clusters"][t0.name]
        assert report["clusters"][t1.name]["wave"] == 0
        for later in (t2, t3):
            assert report["clusters"][later.name]["status"] == "untouched"
            assert not later.exists("namespace", "knative-serving")  # never touched
        assert not t0.exists("namespace", "knative-serving")  # locked: not touched
    finally:
        t0.run("delete", "lease", "knfleet-lock", "-n", "kube-system", check=False)


def test_the_canary_converges_a_killed_coordinator_resumes_without_redoing_a_finished_wave(mgmt, targets):
    inv, clusters = targets
    watches = {c.name: LeaseWatch(c) for c in clusters}  # every take of each cluster's lock from now on
    try:
        rollout_with_a_killed_coordinator(mgmt, inv, clusters, watches)
    finally:
        for w in watches.values():
            w.stop()


def rollout_with_a_killed_coordinator(mgmt: Kube, inv: Path, clusters: list[Kube],
                                      watches: dict[str, LeaseWatch]) -> None:
    t0, t1, t2, t3 = clusters
    jobs_apply(inv, mgmt, "--rollout", "main", "--no-converge")
    coordinator, w0, w1 = (f"knfleet-{FLEET}-rollout-main", f"knfleet-{FLEET}-main-w0", f"knfleet-{FLEET}-main-w1")
    t_start = time.monotonic()
    # the canary wave's Indexed Job converges its clusters (checked on them)
    assert wait_job(mgmt, w0, 900) == "Complete", pod_logs(mgmt, coordinator)
    canary_s = time.monotonic() - t_start
    for c in (t0, t1):
        converged_by_knfleet(c)
    before = {c.name: knfleets_objects(c) for c in (t0, t1)}
    assert all(before.values())
    # the coordinator killed mid-wave: once it has created wave 1's Job and waits for it
    w1_job = eventually(lambda: job(mgmt, w1), 300, interval=0.5, what="wave 1's Job")
    assert not finished(w1_job)
    w0_uid, w1_uid = job(mgmt, w0)["metadata"]["uid"], w1_job["metadata"]["uid"]
    (first_pod,) = [p for p in pods_of(mgmt, coordinator) if p["status"].get("phase") == "Running"]
    key, pid = runner_pid(mgmt, first_pod["metadata"]["name"])
    os.kill(pid, signal.SIGKILL)
    # restarted by its Job (a new pod), it resumes: waits for the existing wave 1 Job and finishes the rollout
    assert wait_job(mgmt, coordinator, 900) == "Complete", pod_logs(mgmt, coordinator)
    events = {name: w.stop() for name, w in watches.items()}
    pods = sorted(pods_of(mgmt, coordinator), key=lambda p: p["metadata"]["creationTimestamp"])
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    killed = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert pods[0]["metadata"]["name"] == first_pod["metadata"]["name"] and killed["exitCode"] == 137, killed
    assert pods[1]["status"]["phase"] == "Succeeded"
    # no finished shard ran again: the wave Jobs are the ones created before the kill, one pod per index
    assert job(mgmt, w0)["metadata"]["uid"] == w0_uid and job(mgmt, w1)["metadata"]["uid"] == w1_uid
    assert len(pods_of(mgmt, w0)) == 2 and len(pods_of(mgmt, w1)) == 2
    # nothing on the finished wave's clusters was written again: their lock was taken by one run only (wave 0's
    # shard, released once; a second run would hold it under another identity), knfleet's objects as they were
    for c in clusters:
        holders = {h for _, h in events[c.name]}
        released = [h for t, h in events[c.name] if t == "DELETED"]
        assert len(holders) == 1 and released == list(holders), (c.name, events[c.name])
    for c in (t0, t1):
        assert only_controller_changes(before[c.name], knfleets_objects(c)) == [], c.name
    for c in (t2, t3):
        converged_by_knfleet(c)
    # the merged report: every cluster exactly once
    data = rollout_state(mgmt, "main")
    report = json.loads(data["report.json"])
    assert sorted(report["clusters"]) == sorted(c.name for c in clusters)
    assert all(r["status"] in ("converged", "changed") for r in report["clusters"].values()), report["clusters"]
    assert json.loads(data["state.json"])["halted_at"] is None
    print(f"canary wave {canary_s:.0f}s, whole rollout {time.monotonic() - t_start:.0f}s")


# --- the scheduled converge ------------------------------------------------------------------------------------------
def test_the_cronjobs_converge_runs_on_schedule_and_never_twice_at_once(mgmt, targets):
    """Schedule every minute. t3's lock is held by another holder and the shards wait up to 240 s for it
    (lock_wait), so the first run lasts past the next schedule time: the CronJob controller starts no second Job
    (concurrencyPolicy Forbid: event JobAlreadyActive). Released, the held shard converges and the run completes."""
    inv, clusters = targets
    t3 = clusters[3]
    held = Cluster(Target(t3.name, str(t3.kubeconfig)))
    cron = f"knfleet-{FLEET}-converge"
    lock.acquire(held, "other-runner@ci", ttl=600)
    try:
        jobs_apply(inv, mgmt, "--schedule", "* * * * *", "--data", "lock_wait=240")
        assert mgmt.json("get", "cronjob", cron, "-n", NS)["spec"]["concurrencyPolicy"] == "Forbid"

        def cron_jobs() -> list[dict[str, Any]]:
            return [j for j in mgmt.json("get", "jobs", "-n", NS)["items"]
                    if any(o["kind"] == "CronJob" and o["name"] == cron
                           for o in j["metadata"].get("ownerReferences") or [])]

        (first,) = eventually(cron_jobs, 150, interval=1, what="the CronJob's first Job")
        first_name = first["metadata"]["name"]
        # across the next schedule time: the first run still active, no second Job, the controller says why
        eventually(lambda: any(e["reason"] == "JobAlreadyActive" for e in mgmt.json(
            "get", "events", "-n", NS, "--field-selector", f"involvedObject.name={cron}")["items"]),
            150, interval=2, what="the CronJob skipping a run (JobAlreadyActive)")
        assert [j["metadata"]["name"] for j in cron_jobs()] == [first_name]
        assert not finished(job(mgmt, first_name))
        active = mgmt.json("get", "cronjob", cron, "-n", NS)["status"].get("active") or []
        assert [a["name"] for a in active] == [first_name]
    finally:
        t3.run("delete", "lease", "knfleet-lock", "-n", "kube-system", check=False)
    try:
        assert wait_job(mgmt, first_name, 600) == "Complete", pod_logs(mgmt, first_name)
        results = [configmap(mgmt, f"knfleet-{FLEET}-{first_name}-r{i}") for i in range(4)]
        seen = {}
        for cm in results:
            assert cm, "a converge shard wrote no result"
            seen.update(json.loads(cm["data"]["outcome.json"])["clusters"])
        assert sorted(seen) == sorted(c.name for c in clusters)
        assert all(o["status"] in ("converged", "changed") for o in seen.values()), seen
        for c in clusters:
            converged_by_knfleet(c)
    finally:
        mgmt.run("patch", "cronjob", cron, "-n", NS, "--type=merge", "-p", '{"spec":{"suspend":true}}', check=False)
