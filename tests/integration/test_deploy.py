"""Issue 4 acceptance: `pyinfra inventories/local.py deploy.py` installs, converges and uninstalls."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from localcluster import procs
from tests.conftest import REPO
from tests.kube import Kube

pytestmark = pytest.mark.integration

TIMINGS: dict[str, float] = {}


def pyinfra(group_root: Path, *args: str, timeout: float = 900, report: Path | None = None,
            ) -> subprocess.CompletedProcess[str]:
    """Run the real CLI against the clusters of one state folder (what KNFLEET_LOCAL selects); with `report`, the
    run writes its JSON report there."""
    env = dict(os.environ, KNFLEET_LOCAL=str(group_root.parent), PYINFRA_PROGRESS="off",
               **({"KNFLEET_REPORT": str(report)} if report else {}))
    argv = [str(REPO / ".venv" / "bin" / "pyinfra"), "inventories/local.py", "deploy.py", *args]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def failure(report: Path, cluster: str) -> dict:
    """A cluster's first failure in a run's JSON report: {step, reason (knfleet.errors.Reason), message}."""
    o = json.loads(report.read_text())["clusters"][cluster]
    assert o["failures"], o
    return o["failures"][0]


def changed_ops(result: subprocess.CompletedProcess[str]) -> list[str]:
    data = json.loads(result.stdout)
    return [op["name"] for op in data["results"]["operations"] if op["success"]]


@pytest.fixture(scope="module")
def fleet(pool) -> tuple[Path, Kube, Kube]:
    a = pool.start("fleet", group="deploy")
    b = pool.start("fleet", group="deploy")
    yield pool.root_for("deploy"), a, b
    pool.stop(a)
    pool.stop(b)


def _pods_ready(kube: Kube, ns: str, app_label: str, value: str) -> bool:
    pods = kube.json("get", "pods", "-n", ns, "-l", f"{app_label}={value}")["items"]
    return bool(pods) and all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])) for p in pods)


def test_first_run_installs_everything_on_both_clusters(fleet):
    root, a, b = fleet
    t0 = time.monotonic()
    run = pyinfra(root, "-y")
    TIMINGS["first"] = time.monotonic() - t0
    assert run.returncode == 0, run.stdout + run.stderr
    for kube in (a, b):
        for app in ("activator", "autoscaler", "controller", "webhook", "net-kourier-controller"):
            assert _pods_ready(kube, "knative-serving", "app", app), f"{kube.name}: {app} not Ready"
        assert _pods_ready(kube, "kourier-system", "app", "3scale-kourier-gateway")
        assert _pods_ready(kube, "knative-nginx", "app.kubernetes.io/name", "knative-nginx")

        def cm(name: str, kube: Kube = kube) -> dict:
            return kube.json("get", "configmap", name, "-n", "knative-serving")["data"]
        assert cm("config-network")["ingress-class"] == "kourier.ingress.networking.knative.dev"
        assert "127.0.0.1.nip.io" in cm("config-domain")
        auto = cm("config-autoscaler")
        assert auto["stable-window"] == "60s" and auto["enable-scale-to-zero"] == "true"
        assert cm("config-features")["kubernetes.podspec-tolerations"] == "enabled"
        assert kube.json("get", "service", "kourier", "-n", "kourier-system")["spec"]["type"] == "LoadBalancer"
    for kube in (a, b):
        assert f"knfleet: {kube.name}: install done" in run.stderr


def test_second_run_changes_nothing(fleet):
    root, _, _ = fleet
    t0 = time.monotonic()
    run = pyinfra(root, "-y", "--json")
    TIMINGS["second"] = time.monotonic() - t0
    assert run.returncode == 0, run.stderr
    assert changed_ops(run) == []
    # Recorded for the README (measured, never asserted).
    print(f"\nfirst run {TIMINGS.get('first', 0):.1f}s, second run {TIMINGS['second']:.1f}s")


def test_dry_run_lists_a_changed_setting_and_changes_nothing(fleet):
    root, a, _ = fleet
    run = pyinfra(root, "--dry", "--data", "knative_domain=example.org")
    assert run.returncode == 0, run.stderr
    out = run.stdout + run.stderr
    assert "ConfigMap/knative-serving/config-domain" in out
    assert "would change: Knative Serving | Knative configuration" in out
    assert "example.org" not in a.json("get", "configmap", "config-domain", "-n", "knative-serving")["data"]


def test_changing_one_setting_changes_only_what_depends_on_it(fleet):
    root, a, b = fleet
    run = pyinfra(root, "-y", "--json", "--data", "kourier_service_type=NodePort")
    assert run.returncode == 0, run.stderr
    assert changed_ops(run) == ["Kourier | Kourier (kourier.yaml)"]
    assert a.json("get", "service", "kourier", "-n", "kourier-system")["spec"]["type"] == "NodePort"
    back = pyinfra(root, "-y", "--json")
    assert changed_ops(back) == ["Kourier | Kourier (kourier.yaml)"]


def test_hand_edited_keys_of_other_managers_are_left_alone(fleet):
    root, a, _ = fleet
    a.run("patch", "configmap", "config-autoscaler", "-n", "knative-serving", "--type=merge",
          "-p", '{"data":{"max-scale-up-rate":"500"}}')
    run = pyinfra(root, "-y", "--json", "--limit", f"@kube/{a.name}")
    assert changed_ops(run) == []
    data = a.json("get", "configmap", "config-autoscaler", "-n", "knative-serving")["data"]
    assert data["max-scale-up-rate"] == "500"


def test_checksum_mismatch_stops_before_any_cluster_changes(fleet, shared_knative, tmp_path):
    root, a, _ = fleet
    bad = tmp_path / "bundle"
    shutil.copytree(shared_knative, bad)
    (bad / "kourier.yaml").chmod(0o644)
    with open(bad / "kourier.yaml", "a") as f:
        f.write("\n# tampered\n")
    before = a.json("get", "configmap", "config-domain", "-n", "knative-serving")["metadata"]["resourceVersion"]
    run = pyinfra(root, "-y", "--data", f"knative_bundle_dir={bad}", "--data", "knative_domain=tampered.example")
    assert run.returncode != 0
    assert "kourier.yaml" in run.stderr and "checksum mismatch" in run.stderr
    assert "nothing was changed on any cluster" in run.stderr
    after = a.json("get", "configmap", "config-domain", "-n", "knative-serving")["metadata"]["resourceVersion"]
    assert before == after


def test_bad_setting_names_the_field_value_and_allowed(fleet):
    root, _, _ = fleet
    run = pyinfra(root, "-y", "--data", "kourier_service_type=Ingress")
    assert run.returncode != 0
    assert "kourier_service_type" in run.stderr and "'Ingress'" in run.stderr and "LoadBalancer" in run.stderr


def test_one_cluster_down_the_other_converges_and_the_run_fails_naming_it(fleet, tmp_path):
    root, a, b = fleet
    state = b.cluster.load_state()
    procs.stop(state.pids["kube-apiserver"], state.markers["kube-apiserver"])
    report = tmp_path / "run.json"
    try:
        run = pyinfra(root, "-y", "--data", "knative_domain=changed.example", report=report)
        assert run.returncode != 0, run.stderr
        assert failure(report, b.name)["reason"] == "Unreachable", run.stderr
        assert json.loads(report.read_text())["clusters"][a.name]["status"] == "changed", run.stderr
        assert "changed.example" in a.json("get", "configmap", "config-domain", "-n", "knative-serving")["data"]
    finally:
        b.cluster.down()


def test_uninstall_removes_everything_and_twice_is_a_no_op(pool):
    kube = pool.start("uninst", group="uninstall")
    root = pool.root_for("uninstall")
    assert pyinfra(root, "-y").returncode == 0
    run = pyinfra(root, "-y", "--data", "action=uninstall")
    assert run.returncode == 0, run.stdout + run.stderr
    crds = [c["metadata"]["name"] for c in kube.json("get", "crd")["items"]]
    assert not [c for c in crds if c.endswith("knative.dev")]
    hooks = kube.run("get", "validatingwebhookconfigurations,mutatingwebhookconfigurations", "-o", "name").stdout
    assert "knative" not in hooks
    for ns in ("knative-serving", "kourier-system", "knative-nginx"):
        assert not kube.exists("namespace", ns)
    again = pyinfra(root, "-y", "--json", "--data", "action=uninstall")
    assert again.returncode == 0, again.stderr
    assert changed_ops(again) == []
    pool.stop(kube)


def test_uninstall_refuses_to_delete_unmanaged_knative_services(pool, shared_knative):
    kube = pool.start("guard", group="guard")
    root = pool.root_for("guard")
    assert pyinfra(root, "-y").returncode == 0
    kube.run("create", "namespace", "team-a")
    kube.apply("""
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: theirs, namespace: team-a}
spec:
  template:
    spec:
      containers: [{image: example.com/app:1}]
""")
    run = pyinfra(root, "-y", "--data", "action=uninstall")
    assert run.returncode != 0
    assert "team-a/theirs" in run.stderr
    assert kube.exists("ksvc", "theirs", "-n", "team-a")
    assert kube.exists("namespace", "knative-serving")
    pool.stop(kube)
