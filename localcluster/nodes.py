"""kwok nodes of a local cluster (CPU and GPU) and kwok's pod lifecycle stages."""

from __future__ import annotations

from pathlib import Path

import yaml

from localcluster.runner.binaries import KNFLEET_IMAGE_TEST, KWOK_IMAGE_TEST

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_LABEL = "nvidia.com/gpu.present"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
STAGES = Path(__file__).with_name("kwok") / "pod-stages.yaml"


def pod_ports(internal_port: int, public_port: int) -> dict[tuple[str, int], int]:
    """(namespace, container port) of the gateways' pods -> the simulated gateway's port on 127.0.0.1: Kourier's
    (8081: kourier-internal's target, 8080: the external listener) and the knative-nginx proxy's (8080). What
    kwok's port-forwards lead to, and what the simulated load balancers relay to."""
    return {("kourier-system", 8081): internal_port, ("kourier-system", 8080): public_port,
            ("knative-nginx", 8080): public_port}


def kwok_config(ready_delay_ms: int, internal_port: int = 0, public_port: int = 0) -> str:
    """kwok's --config: our pod stages, with the cluster's ready delay (node stages: kwok's defaults); the
    port-forwards kwok's server answers for the gateways' pods (pod_ports); and exec in the knative-nginx
    proxy's pods, run by kwok on this machine with the pod's view of the cluster network given by http_proxy:
    every URL (say http://kourier-internal.kourier-system.svc.cluster.local) leads to kourier-internal's gateway,
    as the pod's cluster DNS and Service routing would."""
    if ready_delay_ms < 0:
        raise ValueError(f"ready_delay_ms must be >= 0, got {ready_delay_ms}")
    text = (STAGES.read_text().replace("__READY_DELAY_MS__", str(int(ready_delay_ms)))
            .replace("__RUNNER_IMAGES__", KWOK_IMAGE_TEST).replace("__KNFLEET_IMAGE__", KNFLEET_IMAGE_TEST))
    if not internal_port:
        return text
    by_ns: dict[str, list[dict]] = {}
    for (ns, port), target in pod_ports(internal_port, public_port).items():
        by_ns.setdefault(ns, []).append({"ports": [port], "target": {"address": "127.0.0.1", "port": target}})
    docs: list[dict] = [
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterPortForward", "metadata": {"name": f"gateways-{ns}"},
         "spec": {"selector": {"matchNamespaces": [ns]}, "forwards": forwards}}
        for ns, forwards in by_ns.items()]
    pod_network = f"http://127.0.0.1:{internal_port}"
    docs.append(
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterExec", "metadata": {"name": "public-proxy"},
         "spec": {"selector": {"matchNamespaces": ["knative-nginx"]}, "execs": [
             {"containers": ["nginx"], "local": {"workDir": "/tmp", "envs": [
                 {"name": "http_proxy", "value": pod_network}, {"name": "HTTP_PROXY", "value": pod_network},
                 {"name": "no_proxy", "value": ""}, {"name": "NO_PROXY", "value": ""}]}}]}})
    return text.rstrip() + "\n---\n" + yaml.safe_dump_all(docs, sort_keys=False)


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
