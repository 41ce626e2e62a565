"""Issue 12 acceptance: a fleet whose model services need more GPUs than one cluster has stops at the GPU capacity
preflight (before wave 0), with the shortfall per service, and no cluster is touched."""

from __future__ import annotations

import json

import pytest

from localcluster.cluster import Spec
from tests.integration.test_rollout import knfleet, write_inventory

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(pool, tmp_path_factory):
    big = pool.start("gpus", Spec(ready_delay_ms=300), group="capacity")  # 2 GPU nodes x 2 GPUs
    small = pool.start("gpus", Spec(ready_delay_ms=300, gpu_nodes=1, gpus_per_node=1), group="capacity")
    inv = write_inventory(tmp_path_factory.mktemp("inv") / "fleet.py", [big, small], [0, 1])
    yield inv, big, small
    pool.stop(big)
    pool.stop(small)


def test_rollout_stops_at_the_gpu_preflight_and_touches_no_cluster(fleet, tmp_path):
    inv, big, small = fleet
    # group_data/local.py's two services need 1 GPU x (initial scale 1 + 1 rollout pod) each: 4 GPUs
    run = knfleet("rollout", str(inv), "--report", str(tmp_path / "r.json"), "--state", str(tmp_path / "s.json"))
    assert run.returncode == 3, run.stdout[-3000:] + run.stderr[-2000:]
    out = run.stdout
    assert f"GPU preflight: {big.name}: model services need 4 GPU(s)" in out and "nodes can allocate 4" in out
    assert f"GPU preflight: {small.name}: model services need 4 GPU(s) (initial/min scale plus one pod each for " \
           "a rollout); nodes can allocate 1: " in out, out[-3000:]
    assert "knative-qwen7b/knative-qwen7b-svc needs 2 GPU(s), 1 short (1 eligible GPU node(s))" in out
    assert "knative-qwen7b/qwen7b-scale-to-zero needs 2 GPU(s), 2 short (1 eligible GPU node(s))" in out
    assert "no cluster was touched" in out
    for kube in (big, small):
        assert not kube.exists("namespace", "knative-serving")
        assert not kube.exists("lease", "knfleet-lock", "-n", "kube-system")
    # gpu_preflight=warn: the preflight warns and the rollout goes on; the small cluster then fails where Knative
    # holds the pods Pending, which the preflight had predicted
    report = tmp_path / "r2.json"
    warned = knfleet("rollout", str(inv), "--data", "gpu_preflight=warn", "--data", "model_wait_timeout=10",
                     "--state", str(tmp_path / "s2.json"), "--report", str(report))
    assert f"GPU preflight: warning: {small.name}: model services need 4 GPU(s)" in warned.stdout, \
        warned.stdout[-2000:]
    assert warned.returncode == 2, warned.stdout[-3000:]  # halted at wave 1 (the small cluster)
    assert big.exists("namespace", "knative-serving") and small.exists("namespace", "knative-serving")
    failure = json.loads(report.read_text())["clusters"][small.name]["failures"][0]
    assert failure["reason"] == "NotReady" and failure["step"].startswith("Model services Ready"), failure
