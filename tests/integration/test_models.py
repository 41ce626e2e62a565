"""Issue 5 acceptance: model services from group data — lint, deploy, smoke test, prune."""

from __future__ import annotations

import json
import re
import time

import pytest

from localcluster.cluster import Spec
from tests.integration.test_deploy import changed_ops, pyinfra

pytestmark = pytest.mark.integration

QWEN = {}  # the runbook's example: every default
SLEEPY = {"name": "qwen7b-scale-to-zero", "autoscaling": {"initial_scale": 1, "min_scale": 0, "max_scale": 2}}


def models_arg(*items: dict) -> str:
    return "models=" + json.dumps(list(items))


@pytest.fixture(scope="module")
def cluster(pool):
    # time factor 0.05: the scale-to-zero idle window (60s stable + 30s grace) is 4.5s
    kube = pool.start("models", Spec(ready_delay_ms=500, time_factor=0.05), group="models")
    yield pool.root_for("models"), kube
    pool.stop(kube)


def test_converges_knative_proxy_and_two_models_smoke_tests_pass(cluster):
    root, kube = cluster
    first = pyinfra(root, "-y", "--data", models_arg(QWEN, SLEEPY))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for name in ("knative-qwen7b-svc", "qwen7b-scale-to-zero"):
        obj = kube.json("get", "ksvc", name, "-n", "knative-qwen7b")
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "knfleet"
        assert obj["status"]["url"] == f"http://{name}.knative-qwen7b.127.0.0.1.nip.io"
    assert re.search(r"smoke knative-qwen7b/knative-qwen7b-svc: 200 in \d+\.\d+s", first.stderr)
    assert re.search(r"smoke knative-qwen7b/qwen7b-scale-to-zero: 200 in \d+\.\d+s", first.stderr)
    # Let the min-scale 0 service go idle and scale to zero. A converge (smoke when-warm, the default for a
    # service that can scale to zero) reports it at zero and does not wake it: the idle GPU stays free.
    deployment = ("deployment", "qwen7b-scale-to-zero-00001-deployment", "-n", "knative-qwen7b")
    deadline = time.monotonic() + 60
    while kube.json("get", *deployment)["status"].get("readyReplicas"):
        assert time.monotonic() < deadline, "the min-scale 0 service never scaled to zero"
        time.sleep(0.5)
    second = pyinfra(root, "-y", "--json", "--data", models_arg(QWEN, SLEEPY))
    assert second.returncode == 0, second.stderr[-3000:]
    assert changed_ops(second) == []
    assert "smoke knative-qwen7b/qwen7b-scale-to-zero: skipped (at zero, not woken" in second.stderr, \
        second.stderr[-2000:]
    assert kube.json("get", *deployment)["spec"]["replicas"] == 0  # no request reached it
    # Asked to (rollout --smoke-cold sets smoke_cold), the run wakes it and measures the cold start.
    third = pyinfra(root, "-y", "--json", "--data", models_arg(QWEN, SLEEPY), "--data", "smoke_cold=true")
    assert third.returncode == 0, third.stderr[-3000:]
    cold = re.search(r"smoke knative-qwen7b/qwen7b-scale-to-zero: 200 in (\d+\.\d+)s, cold start (\d+\.\d+)s",
                     third.stderr)
    assert cold, third.stderr[-2000:]
    assert float(cold.group(2)) > 0
    print(f"\n{cold.group(0)}")


def test_invalid_values_stop_the_run_before_any_change(cluster):
    root, kube = cluster
    before = kube.json("get", "ksvc", "-n", "knative-qwen7b")["items"]
    for bad, field, allowed in (
        ({"target_utilization_percentage": 150}, "target-utilization-percentage", "allowed 1 to 100"),
        ({"scale_down_delay": "5"}, "scale-down-delay", "missing unit"),
    ):
        run = pyinfra(root, "-y", "--data", models_arg(QWEN, {**SLEEPY, "autoscaling": {**SLEEPY["autoscaling"],
                                                                                          **bad}}))
        assert run.returncode != 0
        assert "knative-qwen7b/qwen7b-scale-to-zero" in run.stderr and field in run.stderr and allowed in run.stderr
        assert "nothing was changed on any cluster" in run.stderr
    after = kube.json("get", "ksvc", "-n", "knative-qwen7b")["items"]
    assert [o["metadata"]["generation"] for o in after] == [o["metadata"]["generation"] for o in before]


def test_too_many_gpus_fails_with_unschedulable(cluster):
    root, _ = cluster
    greedy = {"name": "greedy", "namespace": "gpu-test", "gpus": 99}
    run = pyinfra(root, "-y", "--data", models_arg(QWEN, SLEEPY, greedy), "--data", "model_wait_timeout=15")
    assert run.returncode != 0
    assert "ksvc gpu-test/greedy" in run.stderr and "Unschedulable" in run.stderr
    assert "Insufficient nvidia.com/gpu" in run.stderr
    assert "more GPUs than any node has (at most 2 per node): gpu-test/greedy asks for 99" in run.stderr


def test_removed_service_is_deleted_and_unmanaged_one_survives(cluster):
    root, kube = cluster
    kube.apply("""
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: hand-made, namespace: knative-qwen7b}
spec:
  template:
    spec:
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
      containers: [{image: vllm/vllm-openai:v0.6.3, args: [--served-model-name, other]}]
""")
    run = pyinfra(root, "-y", "--data", models_arg(QWEN))
    assert run.returncode == 0, run.stderr[-3000:]
    names = {o["metadata"]["name"] for o in kube.json("get", "ksvc", "-A")["items"]}
    assert "qwen7b-scale-to-zero" not in names and "greedy" not in names
    assert {"knative-qwen7b-svc", "hand-made"} <= names
