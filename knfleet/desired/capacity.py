"""GPU capacity preflight: do a cluster's nodes have the GPUs its model services need? Pure: no cluster.

A service needs, per pod, its GPU limit (`nvidia.com/gpu`), for max(initial scale, min scale) pods, plus one more
pod for the next revision's rollout (Knative keeps the old revision serving until the new one is Ready, so a
template change needs a spare GPU). Each pod may only go to a node whose labels match the service's nodeSelector
and whose NoSchedule/NoExecute taints its tolerations tolerate; pods are placed largest first on the eligible node
with the most GPUs left (first-fit decreasing). Pods that find no room are the shortfall, reported per service.
Compared with what is free: what the nodes can allocate minus what other pods hold (the services' own running pods
are part of the need, so a converged cluster passes as it did before, and a cluster whose GPUs other workloads
took fails before any change instead of waiting until a timeout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GPU = "nvidia.com/gpu"
MODES = ("refuse", "warn", "off")


@dataclass(frozen=True)
class Need:
    service: str
    gpus_per_pod: int
    pods: int  # at initial/min scale, plus one for the rollout
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()

    @property
    def gpus(self) -> int:
        return self.gpus_per_pod * self.pods


@dataclass(frozen=True)
class Node:
    name: str
    gpus: int
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Shortfall:
    service: str
    needed: int  # GPUs
    placed: int  # GPUs that found room
    eligible_nodes: int
    left_out: tuple[str, ...] = ()  # GPU nodes its pods may not go to, each with why (see why_not)

    def __str__(self) -> str:
        where = f"{self.eligible_nodes} eligible GPU node(s)" if self.eligible_nodes else \
            "no node with enough GPUs per pod matches its nodeSelector and tolerations"
        out = "; GPU nodes left out: " + ", ".join(self.left_out[:4]) + (" …" if len(self.left_out) > 4 else "") \
            if self.left_out else ""
        return f"{self.service} needs {self.needed} GPU(s), {self.needed - self.placed} short ({where}{out})"


def _int(value: Any) -> int:
    try:
        return int(str(value or 0))
    except ValueError:
        return 0


def _annotation_int(annotations: dict[str, str], key: str, default: int) -> int:
    try:
        return int(str(annotations.get(f"autoscaling.knative.dev/{key}", default)))
    except ValueError:
        return default


def need_of(ksvc: dict[str, Any], initial_scale_default: int = 1) -> Need:
    """A rendered Knative Service's GPU need (pods at max(initial, min) scale plus one for the rollout)."""
    meta = ksvc["metadata"]
    tmpl = ksvc["spec"]["template"]
    annotations = (tmpl.get("metadata") or {}).get("annotations") or {}
    spec = tmpl.get("spec") or {}
    per_pod = sum(max(_int(((c.get("resources") or {}).get("limits") or {}).get(GPU)),
                      _int(((c.get("resources") or {}).get("requests") or {}).get(GPU)))
                  for c in spec.get("containers") or [])
    scale = max(_annotation_int(annotations, "initial-scale", initial_scale_default),
                _annotation_int(annotations, "min-scale", 0))
    return Need(f"{meta.get('namespace')}/{meta['name']}", per_pod, scale + 1, dict(spec.get("nodeSelector") or {}),
                tuple(spec.get("tolerations") or ()))


def node_of(obj: dict[str, Any]) -> Node:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    return Node(meta["name"], _int((status.get("allocatable") or {}).get(GPU)), dict(meta.get("labels") or {}),
                tuple(t for t in spec.get("taints") or () if t.get("effect") in ("NoSchedule", "NoExecute"))
                if not spec.get("unschedulable") else ({"key": "node.kubernetes.io/unschedulable",
                                                        "effect": "NoSchedule"},))


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """Kubernetes' rule (k8s.io/api/core/v1 Toleration.ToleratesTaint)."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    if toleration.get("operator", "Equal") == "Exists":
        return True
    return bool(toleration.get("key")) and (toleration.get("value") or "") == (taint.get("value") or "")


def why_not(need: Need, node: Node) -> str:
    """Why a service's pods may not go to a node ("" when they may): the first nodeSelector label it lacks, or the
    first taint they do not tolerate (a node whose kubelet stopped carries node.kubernetes.io/unreachable, a
    cordoned one node.kubernetes.io/unschedulable)."""
    for k, v in need.node_selector.items():
        if node.labels.get(k) != v:
            return f"{node.name} (no label {k}={v})"
    for taint in node.taints:
        if not any(tolerates(t, taint) for t in need.tolerations):
            value = f"={taint['value']}" if taint.get("value") else ""
            return f"{node.name} (taint {taint.get('key')}{value}:{taint.get('effect')} not tolerated)"
    return ""


def eligible(need: Need, node: Node) -> bool:
    return not why_not(need, node)


def shortfalls(needs: list[Need], nodes: list[Node]) -> list[Shortfall]:
    """Place every GPU pod (largest first) on an eligible node with room; the services whose pods do not all fit."""
    left = {n.name: n.gpus for n in nodes}
    placed = {need.service: 0 for need in needs}
    pods = sorted(((need, i) for need in needs if need.gpus_per_pod > 0 for i in range(need.pods)),
                  key=lambda x: (-x[0].gpus_per_pod, x[0].service, x[1]))
    for need, _ in pods:
        fits = [n for n in nodes if eligible(need, n) and left[n.name] >= need.gpus_per_pod]
        if fits:
            best = max(fits, key=lambda n: (left[n.name], n.name))
            left[best.name] -= need.gpus_per_pod
            placed[need.service] += need.gpus_per_pod
    return [Shortfall(need.service, need.gpus, placed[need.service],
                      sum(eligible(need, n) and n.gpus >= need.gpus_per_pod for n in nodes),
                      tuple(w for w in (why_not(need, n) for n in nodes if n.gpus > 0) if w))
            for need in needs if need.gpus_per_pod > 0 and placed[need.service] < need.gpus]


def report(cluster: str, needs: list[Need], nodes: list[Node], short: list[Shortfall],
           held: dict[str, int] | None = None) -> str:
    total = sum(n.gpus for n in needs)
    have = sum(n.gpus for n in nodes)
    taken = sum((held or {}).values())
    head = (f"{cluster}: model services need {total} GPU(s) (initial/min scale plus one pod each for a rollout); "
            f"nodes can allocate {have}" + (f", {taken} held by other pods" if taken else ""))
    return head + ("" if not short else ": " + "; ".join(str(s) for s in short))


# --- what is free now: allocatable minus what running pods request ---------------------------------------------------
def pod_gpus(pod: dict[str, Any]) -> int:
    """The GPUs a pod holds on its node: the larger of its containers' sum and its largest init container (the
    scheduler's rule), while it is bound and not finished."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0

    def gpus(c: dict[str, Any]) -> int:
        res = c.get("resources") or {}
        return max(_int((res.get("limits") or {}).get(GPU)), _int((res.get("requests") or {}).get(GPU)))
    return max(sum(gpus(c) for c in spec.get("containers") or []),
               max((gpus(c) for c in spec.get("initContainers") or []), default=0))


def used(pods: list[dict[str, Any]], leave_out: set[tuple[str, str]] = frozenset()) -> dict[str, int]:
    """GPUs held per node by the pods, leaving out those Knative runs for these services ((namespace, name):
    their own pods are part of what they need, not competition)."""
    out: dict[str, int] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (meta.get("namespace"), (meta.get("labels") or {}).get("serving.knative.dev/service")) in leave_out:
            continue
        n = pod_gpus(pod)
        if n:
            node = pod["spec"]["nodeName"]
            out[node] = out.get(node, 0) + n
    return out


def free(nodes: list[Node], held: dict[str, int]) -> list[Node]:
    """The nodes with what they have left: allocatable minus what pods hold."""
    return [Node(n.name, max(0, n.gpus - held.get(n.name, 0)), n.labels, n.taints) for n in nodes]


def free_report(nodes: list[Node], left: list[Node], need: Need) -> str:
    """Per GPU node the service may use: free of allocatable; the others with why not."""
    parts = []
    for n, f in zip(nodes, left, strict=True):
        if n.gpus <= 0:
            continue
        why = why_not(need, n)
        parts.append(f"{n.name}: {f.gpus} of {n.gpus} free" + (f" (not eligible: {why.split(' (', 1)[-1]}"
                                                               if why else ""))
    return "; ".join(parts) or "no GPU node"
