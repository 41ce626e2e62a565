"""Is it ready, and if not, why? Pure functions over Kubernetes objects (no cluster needed)."""

from __future__ import annotations

from typing import Any


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return {}


def is_true(obj: dict[str, Any], kind: str) -> bool:
    return condition(obj, kind).get("status") == "True"


def name_of(obj: dict[str, Any]) -> str:
    m = obj.get("metadata") or {}
    return f"{m.get('namespace')}/{m.get('name')}" if m.get("namespace") else str(m.get("name"))


def is_job_pod(pod: dict[str, Any]) -> bool:
    return any(o.get("kind") == "Job" for o in (pod.get("metadata") or {}).get("ownerReferences") or [])


def deployment_available(dep: dict[str, Any]) -> bool:
    st = dep.get("status") or {}
    want = (dep.get("spec") or {}).get("replicas", 1)
    return is_true(dep, "Available") and st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0) \
        and int(st.get("updatedReplicas") or 0) >= want and int(st.get("availableReplicas") or 0) >= min(want, 1)


def pod_ready(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_true(pod, "Ready")


def pod_problem(pod: dict[str, Any], events: list[dict[str, Any]] | None = None) -> str:
    """One line saying why a pod is not Ready: waiting reason, scheduler message, recent warnings."""
    st = pod.get("status") or {}
    bits = [f"phase {st.get('phase', 'Unknown')}"]
    sched = condition(pod, "PodScheduled")
    if sched.get("status") == "False":
        bits.append(f"not scheduled ({sched.get('reason', '')}): {sched.get('message', '')}".strip())
    for cs in [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]:
        state = cs.get("state") or {}
        if "waiting" in state:
            w = state["waiting"]
            bits.append(f"container {cs.get('name')} waiting: {w.get('reason', '')}"
                        + (f" ({w['message']})" if w.get("message") else ""))
        elif "terminated" in state and not cs.get("ready"):
            t = state["terminated"]
            bits.append(f"container {cs.get('name')} terminated: {t.get('reason', '')} exit {t.get('exitCode')}")
        elif not cs.get("ready"):
            bits.append(f"container {cs.get('name')} running but not ready (readiness probe failing)")
    warnings = [e for e in events or [] if e.get("type") == "Warning"
                and (e.get("involvedObject") or {}).get("name") == pod["metadata"]["name"]]
    for e in warnings[-2:]:
        bits.append(f"event {e.get('reason')}: {e.get('message', '').strip()}")
    return f"pod {name_of(pod)}: " + "; ".join(bits)


def deployment_problem(dep: dict[str, Any], pods: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    """Why a Deployment is not Available, down to its pods."""
    st = dep.get("status") or {}
    want = (dep.get("spec") or {}).get("replicas", 1)
    head = (f"deployment {name_of(dep)}: {st.get('readyReplicas', 0) or 0}/{want} ready")
    prog = condition(dep, "Progressing")
    if prog.get("reason") == "ProgressDeadlineExceeded":
        head += f"; {prog.get('reason')}: {prog.get('message', '')}"
    selector = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    mine = [p for p in pods if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())]
    lines = [head]
    lines += ["  " + pod_problem(p, events) for p in mine if not pod_ready(p)]
    if not mine:
        repl = [e for e in events if e.get("type") == "Warning" and (e.get("involvedObject") or {}).get("kind")
                in ("ReplicaSet", "Deployment") and dep["metadata"]["name"] in (e.get("involvedObject") or {}).get(
                    "name", "")]
        lines += [f"  no pods: event {e.get('reason')}: {e.get('message', '').strip()}" for e in repl[-2:]] \
            or ["  no pods created yet"]
    return "\n".join(lines)


def crd_problem(crd: dict[str, Any]) -> str:
    c = condition(crd, "Established")
    names = condition(crd, "NamesAccepted")
    why = c.get("message") or names.get("message") or "no Established condition yet"
    return f"CRD {crd['metadata']['name']} not Established: {why}"


def service_ready(ksvc: dict[str, Any]) -> bool:
    """Knative's IsReady, stricter than `kubectl wait`: Ready=True for *this* generation, and the newest
    revision is the one serving."""
    st = ksvc.get("status") or {}
    return is_true(ksvc, "Ready") and st.get("observedGeneration") == ksvc["metadata"].get("generation") \
        and bool(st.get("latestReadyRevisionName")) \
        and st.get("latestReadyRevisionName") == st.get("latestCreatedRevisionName")


def service_problem(ksvc: dict[str, Any]) -> str:
    """Knative's reason for a service that is not ready, in one line: the most telling condition (a failed
    configuration names the revision's own failure, e.g. the scheduler's "Insufficient nvidia.com/gpu")."""
    st = ksvc.get("status") or {}
    ready = condition(ksvc, "Ready")
    if not ready:
        return f"ksvc {name_of(ksvc)}: no Ready condition yet (is the Knative controller running?)"
    if ready.get("status") == "True" and st.get("observedGeneration") != ksvc["metadata"].get("generation"):
        return (f"ksvc {name_of(ksvc)}: generation {ksvc['metadata'].get('generation')} not observed yet "
                f"(status is for {st.get('observedGeneration')})")
    text = f"ksvc {name_of(ksvc)}: Ready={ready.get('status')}"
    telling = next((c for c in (condition(ksvc, "ConfigurationsReady"), condition(ksvc, "RoutesReady"))
                    if c.get("status") == "False"), None) or ready
    if telling.get("reason"):
        text += f" reason {telling['reason']}"
    if telling.get("message"):
        text += f": {telling['message']}"
    if st.get("latestCreatedRevisionName") != st.get("latestReadyRevisionName"):
        text += (f" (latest created revision {st.get('latestCreatedRevisionName')}, "
                 f"serving {st.get('latestReadyRevisionName') or 'none'})")
    return text
