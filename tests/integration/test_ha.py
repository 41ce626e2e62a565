"""Issue 12 acceptance: ha_replicas 2 runs the control plane (the real Knative webhook and controller among it) at 2
Ready pods each, and warns where the release's PodDisruptionBudgets would block every node drain. On Knative 1.17.1
(issue 22): each of the four processes is 1.17.1's own build."""

from __future__ import annotations

import pytest

from tests.integration.test_deploy import changed_ops, pyinfra
from tests.integration.test_models import QWEN, models_arg
from tests.integration.test_upgrade import SHARED
from tests.kube import control_plane_modules, eventually

pytestmark = pytest.mark.integration

RELEASE = ("--data", "knative_version=1.17.1")  # a release other than the default, run by its own build

CONTROL_PLANE = (("knative-serving", "activator"), ("knative-serving", "autoscaler"),
                 ("knative-serving", "controller"), ("knative-serving", "webhook"),
                 ("knative-serving", "net-kourier-controller"), ("kourier-system", "3scale-kourier-gateway"))


@pytest.fixture(scope="module")
def cluster(pool, shared_knative):
    if not (SHARED / "v1.17.1" / "serving-core.yaml").is_file():
        pytest.skip(f"no Knative 1.17.1 release files at {SHARED / 'v1.17.1'}")
    kube = pool.start("ha", group="ha")
    yield pool.root_for("ha"), kube
    pool.stop(kube)


def test_two_replicas_of_the_control_plane_and_the_pdb_warning(cluster):
    root, kube = cluster
    run = pyinfra(root, "-y", *RELEASE, "--data", "ha_replicas=2", "--data", models_arg(QWEN))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    for ns, name in CONTROL_PLANE:
        dep = kube.json("get", "deploy", name, "-n", ns)
        assert dep["status"].get("readyReplicas") == 2, (name, dep["status"])
    for ns, name in (("knative-serving", "activator"), ("knative-serving", "webhook"),
                     ("kourier-system", "3scale-kourier-gateway")):
        assert kube.json("get", "hpa", name, "-n", ns)["spec"]["minReplicas"] == 2
    # the webhook and the controller are two real processes each; Knative's leader election shares the work
    log = (root / kube.name / "runner.log").read_text() if (root / kube.name / "runner.log").exists() else ""
    pods = kube.json("get", "pods", "-n", "knative-serving", "-l", "app=controller")["items"]
    assert len([p for p in pods if p["status"]["containerStatuses"][0].get("containerID", "")
                .startswith("knfleet-runner://")]) == 2, log[-2000:]
    modules = eventually(lambda: control_plane_modules(kube), 60, what="Ready webhook and controller processes")
    assert len(modules) == 4 and set(modules.values()) == {"v0.44.1"}, modules
    eventually(lambda: len([x for x in kube.json("get", "leases", "-n", "knative-serving")["items"]
                            if x["metadata"]["name"].startswith("controller.")]) > 0, what="controller leases")
    for pdb in ("knative-serving/activator-pdb", "knative-serving/webhook-pdb",
                "kourier-system/3scale-kourier-gateway-pdb"):
        assert f"PodDisruptionBudget {pdb} (minAvailable 80%) allows no eviction at ha_replicas 2" in run.stderr, \
            run.stderr[-3000:]
    assert "smoke knative-qwen7b/knative-qwen7b-svc: 200" in run.stderr
    again = pyinfra(root, "-y", "--json", *RELEASE, "--data", "ha_replicas=2", "--data", models_arg(QWEN))
    assert again.returncode == 0 and changed_ops(again) == [], again.stderr[-2000:]
    # at 5 the budgets allow an eviction: no warning
    five = pyinfra(root, "-y", "--dry", *RELEASE, "--data", "ha_replicas=5", "--data", models_arg(QWEN))
    assert "allows no eviction" not in five.stderr
