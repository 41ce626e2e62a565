"""High availability of the control plane (as the Knative Operator's `high-availability.replicas`). Pure.

One number, `ha_replicas`, for Knative Serving's control-plane Deployments and Kourier's: a Deployment an
HorizontalPodAutoscaler scales (activator, webhook, the Kourier gateway) gets the HPA's minReplicas raised to it
(and maxReplicas at least as high), the others (controller, autoscaler, autoscaler-hpa, net-kourier-controller)
get `replicas`. Leader election stays Knative's (its controllers elect leaders per bucket through Leases).
The release's PodDisruptionBudgets keep `minAvailable: 80%`: at 1 to 4 replicas that rounds up to every replica,
so no pod may be evicted and every node drain that would evict one blocks (knative/operator#376, #1701);
`pdb_warnings` says so.
"""

from __future__ import annotations

import copy
import math
from typing import Any

NAMESPACES = ("knative-serving", "kourier-system")


def _hpa_targets(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["metadata"].get("namespace"), o["spec"]["scaleTargetRef"]["name"]) for o in objects
            if o.get("kind") == "HorizontalPodAutoscaler"}


def transform(objects: list[dict[str, Any]], replicas: int | None) -> list[dict[str, Any]]:
    """The objects with the control plane at `replicas` (None: as released)."""
    if not replicas:
        return objects
    scaled = _hpa_targets(objects)
    out = []
    for o in objects:
        ns = (o.get("metadata") or {}).get("namespace")
        if o.get("kind") == "Deployment" and ns in NAMESPACES and (ns, o["metadata"]["name"]) not in scaled:
            o = copy.deepcopy(o)
            o["spec"]["replicas"] = replicas
        elif o.get("kind") == "HorizontalPodAutoscaler" and ns in NAMESPACES:
            o = copy.deepcopy(o)
            o["spec"]["minReplicas"] = max(int(o["spec"].get("minReplicas") or 1), replicas)
            o["spec"]["maxReplicas"] = max(int(o["spec"].get("maxReplicas") or 1), o["spec"]["minReplicas"])
        out.append(o)
    return out


def allowed_disruptions(min_available: Any, replicas: int) -> int:
    """How many pods a PDB lets an eviction take at `replicas` (percentages round up, as the disruption
    controller computes minAvailable)."""
    if isinstance(min_available, str) and min_available.endswith("%"):
        need = math.ceil(replicas * int(min_available[:-1]) / 100)
    else:
        need = int(min_available or 0)
    return max(replicas - need, 0)


def pdb_warnings(objects: list[dict[str, Any]], replicas: int | None) -> list[str]:
    """A warning for each PodDisruptionBudget that allows no eviction at `replicas` (every drain of a node running
    one of its pods then blocks)."""
    if not replicas:
        return []
    out = []
    for o in objects:
        if o.get("kind") != "PodDisruptionBudget" or "minAvailable" not in (o.get("spec") or {}):
            continue
        m = o["spec"]["minAvailable"]
        if allowed_disruptions(m, replicas) == 0:
            first = next(n for n in range(replicas + 1, replicas + 100) if allowed_disruptions(m, n) > 0)
            out.append(f"warning: PodDisruptionBudget {o['metadata'].get('namespace')}/{o['metadata']['name']} "
                       f"(minAvailable {m}) allows no eviction at ha_replicas {replicas}: every node drain that "
                       f"would evict one of its pods blocks (kubectl drain waits for ever). Use ha_replicas >= "
                       f"{first}, or lower the budget")
    return out
