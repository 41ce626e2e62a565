"""kwok nodes of a local cluster (CPU and GPU) and kwok's pod lifecycle stages."""

from __future__ import annotations

from pathlib import Path

import yaml

from localcluster.runner.binaries import KWOK_IMAGE_TEST

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_LABEL = "nvidia.com/gpu.present"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
STAGES = Path(__file__).with_name("kwok") / "pod-stages.yaml"


def kwok_config(ready_delay_ms: int, internal_port: int = 0, public_port: int = 0) -> str:
    """kwok's --config: our pod stages, with the cluster's ready delay (node stages: kwok's defaults), and the
    port-forwards kwok's server answers for the gateways' pods: Kourier's (8081: kourier-internal's target, 8080:
    the external listener) and the knative-nginx proxy's (8080) lead to the simulated gateways on 127.0.0.1."""
    if ready_delay_ms < 0:
        raise ValueError(f"ready_delay_ms must be >= 0, got {ready_delay_ms}")
    text = (STAGES.read_text().replace("__READY_DELAY_MS__", str(int(ready_delay_ms)))
            .replace("__RUNNER_IMAGES__", KWOK_IMAGE_TEST))
    if not internal_port:
        return text
    forwards = [
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterPortForward", "metadata": {"name": "kourier-gateway"},
         "spec": {"selector": {"matchNamespaces": ["kourier-system"]}, "forwards": [
             {"ports": [8081], "target": {"address": "127.0.0.1", "port": internal_port}},
             {"ports": [8080], "target": {"address": "127.0.0.1", "port": public_port}}]}},
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterPortForward", "metadata": {"name": "public-proxy"},
         "spec": {"selector": {"matchNamespaces": ["knative-nginx"]}, "forwards": [
             {"ports": [8080], "target": {"address": "127.0.0.1", "port": public_port}}]}},
    ]
    return text.rstrip() + "\n---\n" + yaml.safe_dump_all(forwards, sort_keys=False)


def _node(name: str, kind: str, cpu: str, memory: str, extra: dict[str, str], labels: dict[str, str],
          taints: list[dict[str, str]]) -> dict:
    resources = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "500Gi", **extra}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "type": "kwok", "knfleet.local/node-kind": kind, **labels,
            },
        },
        "spec": {"taints": taints} if taints else {},
        "status": {"allocatable": dict(resources), "capacity": dict(resources)},
    }


def render_nodes(cpu_nodes: int, gpu_nodes: int, gpus_per_node: int) -> str:
    """The Node objects: `cpu-N` (16 CPU, 64Gi) and `gpu-N` (32 CPU, 256Gi, `gpus_per_node` GPUs, tainted)."""
    if cpu_nodes < 0 or gpu_nodes < 0 or gpus_per_node < 1:
        raise ValueError(
            f"node counts must be >= 0 and gpus_per_node >= 1 (got cpu={cpu_nodes}, gpu={gpu_nodes}, "
            f"gpus_per_node={gpus_per_node})"
        )
    docs = [_node(f"kwok-cpu-{i}", "cpu", "16", "64Gi", {}, {}, []) for i in range(1, cpu_nodes + 1)]
    docs += [
        _node(f"kwok-gpu-{i}", "gpu", "32", "256Gi", {GPU_RESOURCE: str(gpus_per_node)},
              {GPU_LABEL: "true", "nvidia.com/gpu.count": str(gpus_per_node)}, [dict(GPU_TAINT)])
        for i in range(1, gpu_nodes + 1)
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)
