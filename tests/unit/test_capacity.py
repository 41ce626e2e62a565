"""GPU capacity preflight (knfleet.desired.capacity): pure placement of GPU pods on nodes."""

from __future__ import annotations

import pytest

from knfleet.desired import capacity, models, settings

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def node(name: str, gpus: int, labels: dict | None = None, taints: tuple = (GPU_TAINT,)) -> capacity.Node:
    return capacity.Node(name, gpus, labels or {}, taints)


def need(model: dict) -> capacity.Need:
    return capacity.need_of(models.render_service(models.from_data([model])[0]))


def test_need_is_initial_or_min_scale_plus_a_rollout_pod_with_the_gpu_toleration():
    n = need({"name": "a", "gpus": 2, "autoscaling": {"initial_scale": 1, "min_scale": 3, "max_scale": 4}})
    assert (n.gpus_per_pod, n.pods, n.gpus) == (2, 4, 8)
    assert any(t.get("key") == "nvidia.com/gpu" for t in n.tolerations)
    assert need({"name": "b"}).gpus == 2  # the runbook's example: 1 GPU, initial scale 1, + 1


def test_taints_and_node_selectors_decide_where_pods_may_go():
    tolerant = need({"name": "a", "gpus": 1})
    intolerant = capacity.Need("ns/b", 1, 1)
    picky = capacity.Need("ns/c", 1, 1, {"pool": "a100"}, ({"operator": "Exists"},))
    plain = node("n1", 4)
    assert capacity.eligible(tolerant, plain) and not capacity.eligible(intolerant, plain)
    assert not capacity.eligible(picky, plain) and capacity.eligible(picky, node("n2", 4, {"pool": "a100"}))
    assert capacity.tolerates({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}, GPU_TAINT)
    assert not capacity.tolerates({"key": "nvidia.com/gpu", "value": "other"}, GPU_TAINT)


def test_shortfall_per_service_and_packing_across_services():
    nodes = [node("g1", 2), node("g2", 2), node("cpu", 0, taints=())]
    a, b = need({"name": "a", "gpus": 1}), need({"name": "b", "gpus": 2})  # 2 + 4 GPUs on 4
    short = capacity.shortfalls([a, b], nodes)
    assert [str(s) for s in short] == ["knative-qwen7b/a needs 2 GPU(s), 2 short (2 eligible GPU node(s))"]
    assert capacity.shortfalls([a], nodes) == []
    # a pod needing more than any node has never fits, however many GPUs the cluster has in all
    assert capacity.shortfalls([capacity.Need("x/big", 3, 1, {}, ({"operator": "Exists"},))], nodes)[0].placed == 0
    none = capacity.shortfalls([capacity.Need("x/sel", 1, 1, {"pool": "h100"})], nodes)
    assert "no node with enough GPUs per pod matches its nodeSelector" in str(none[0])
    line = capacity.report("c1", [a, b], nodes, short)
    assert line.startswith("c1: model services need 6 GPU(s)") and "nodes can allocate 4" in line


def test_cordoned_nodes_count_for_nothing():
    cordoned = capacity.node_of({"metadata": {"name": "g"}, "spec": {"unschedulable": True},
                                 "status": {"allocatable": {"nvidia.com/gpu": "8"}}})
    assert capacity.shortfalls([need({"name": "a"})], [cordoned])


def test_a_shortfall_names_the_gpu_nodes_left_out_and_why():
    lost = capacity.node_of({"metadata": {"name": "gpu-1"}, "spec": {"taints": [
        GPU_TAINT, {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]},
        "status": {"allocatable": {"nvidia.com/gpu": "2"}}})
    cordoned = capacity.node_of({"metadata": {"name": "gpu-2"}, "spec": {"unschedulable": True},
                                 "status": {"allocatable": {"nvidia.com/gpu": "2"}}})
    nodes = [lost, cordoned, node("gpu-3", 2, {"pool": "l4"}), node("cpu-1", 0, taints=())]
    assert capacity.shortfalls([need({"name": "a", "node_selector": {"pool": "l4"}})], nodes) == []
    picky = need({"name": "b", "gpus": 2, "node_selector": {"pool": "h100"}})
    text = str(capacity.shortfalls([need({"name": "a"}), picky], nodes[:2])[0])
    assert text == ("knative-qwen7b/a needs 2 GPU(s), 2 short (no node with enough GPUs per pod matches its "
                    "nodeSelector and tolerations; GPU nodes left out: gpu-1 (taint "
                    "node.kubernetes.io/unreachable:NoSchedule not tolerated), gpu-2 (taint "
                    "node.kubernetes.io/unschedulable:NoSchedule not tolerated))")
    assert capacity.why_not(picky, nodes[2]) == "gpu-3 (no label pool=h100)"
    assert capacity.why_not(need({"name": "a", "node_selector": {"pool": "l4"}}), nodes[2]) == ""
    assert capacity.shortfalls([need({"name": "a"})], [node("gpu-4", 2)]) == []


def test_gpu_preflight_setting():
    assert settings.from_data(settings.Data({})).run.gpu_preflight == "refuse"
    assert settings.from_data(settings.Data({"gpu_preflight": "warn"})).run.gpu_preflight == "warn"
    with pytest.raises(settings.SettingsError, match="gpu_preflight: 'maybe' is not allowed; use one of refuse, warn"):
        settings.from_data(settings.Data({"gpu_preflight": "maybe"}))
