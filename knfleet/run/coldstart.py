"""Cold-start phases of a revision pod, read from what the cluster records (docs/cold-starts.md).

`phases_of` is pure (a pod as the API returns it, its events, the time of the first answer -> ColdStart); `observe`
reads the pods of a revision and their events through knfleet's Kubernetes layer. The milestones:

    created    metadata.creationTimestamp
    scheduled  condition PodScheduled True (lastTransitionTime)
    pulled     the kubelet's Pulled event of the model container (its image present: pulled = scheduled)
    running    the model container's state.running.startedAt
    ready      condition Ready True (lastTransitionTime): the readiness probe passed, the model is loaded
    answered   the first answer of the smoke or check request (this machine's clock), when one was sent

Each phase is the time between two consecutive milestones (schedule, pull, start, load, first_answer); a phase one
of whose milestones is missing is None, never guessed. Kubernetes writes these times to the second, so each phase
is exact to about a second.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from knfleet.kube.client import Cluster, KubeError
from knfleet.report.records import COLD_PHASES, ColdStart

REVISION_LABEL = "serving.knative.dev/revision"
SERVICE_LABEL = "serving.knative.dev/service"
QUEUE_PROXY = "queue-proxy"
PRESENT = re.compile(r"^Container image \".*\" already present on machine")


def timestamp(value: Any) -> float | None:
    """Unix seconds of a Kubernetes time (RFC 3339, `Z` or an offset, fractions allowed); None when missing or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def model_container(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The model's container: the first that is not Knative's queue-proxy."""
    return next((c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") != QUEUE_PROXY), None)


def condition_time(pod: dict[str, Any], kind: str) -> float | None:
    c = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)
    return timestamp(c.get("lastTransitionTime")) if c and c.get("status") == "True" else None


def event_time(event: dict[str, Any]) -> float | None:
    """When an event first happened: eventTime (events.k8s.io), else firstTimestamp, else lastTimestamp."""
    for key in ("eventTime", "firstTimestamp", "lastTimestamp"):
        t = timestamp(event.get(key))
        if t is not None:
            return t
    return None


def container_events(events: list[dict[str, Any]], pod: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The kubelet's events about one container of this pod (this pod's uid when the event names one), oldest first."""
    uid = (pod.get("metadata") or {}).get("uid")
    path = f"spec.containers{{{name}}}"
    mine = [e for e in events if (e.get("involvedObject") or {}).get("fieldPath") == path
            and (not uid or not (e.get("involvedObject") or {}).get("uid") or e["involvedObject"]["uid"] == uid)]
    return sorted(mine, key=lambda e: event_time(e) or 0.0)


def running_since(pod: dict[str, Any], name: str) -> float | None:
    st = next((s for s in (pod.get("status") or {}).get("containerStatuses") or [] if s.get("name") == name), None)
    return timestamp(((st or {}).get("state") or {}).get("running", {}).get("startedAt")) if st else None


def pulled(events: list[dict[str, Any]], scheduled: float | None, running: float | None) -> tuple[float | None, bool]:
    """(when the model image was there, whether it was present already). Present: a Pulled event saying so, or no
    Pulling event at all and the container running; then it was there when the pod was scheduled."""
    done = next((e for e in events if e.get("reason") == "Pulled"), None)
    if done is not None and PRESENT.match(done.get("message") or ""):
        return scheduled, True
    if done is not None:
        return event_time(done), False
    if running is not None and not any(e.get("reason") == "Pulling" for e in events):
        return scheduled, True
    return None, False


def gap(a: float | None, b: float | None) -> float | None:
    """b - a in seconds (rounded to ms); None when either is unknown or b is before a (clocks that disagree)."""
    if a is None or b is None or b < a:
        return None
    return round(b - a, 3)


def phases_of(pod: dict[str, Any], events: list[dict[str, Any]], service: str, trigger: str,
              answered: float | None = None) -> ColdStart:
    """The cold start of one pod from its object and its events (`answered`: Unix time of the first answer)."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    ctr = model_container(pod) or {}
    created = timestamp(meta.get("creationTimestamp"))
    scheduled = condition_time(pod, "PodScheduled")
    running = running_since(pod, ctr.get("name", ""))
    pulled_at, present = pulled(container_events(events, pod, ctr.get("name", "")), scheduled, running)
    ready = condition_time(pod, "Ready")
    phases = dict(zip(COLD_PHASES, (
        gap(created, scheduled),
        0.0 if present else gap(scheduled, pulled_at),
        gap(pulled_at, running),
        gap(running, ready),
        gap(ready, answered)), strict=True))
    end = answered if answered is not None else ready
    return ColdStart(service=service, revision=(meta.get("labels") or {}).get(REVISION_LABEL, ""),
                     pod=meta.get("name", ""), node=spec.get("nodeName"), image=ctr.get("image"), trigger=trigger,
                     started=created, phases=phases, total_s=gap(created, end))


def revision_pods(cluster: Cluster, namespace: str, revision: str, since: float) -> list[dict[str, Any]]:
    """The revision's pods created at or after `since` (Unix seconds; creation times are whole seconds)."""
    pods = cluster.read_now("v1", "Pod", namespace, selector=f"{REVISION_LABEL}={revision}")
    return [p for p in pods if (timestamp(p["metadata"].get("creationTimestamp")) or 0.0) >= int(since)]


def observe(cluster: Cluster, service: str, revision: str, trigger: str, since: float,
            answered: float | None = None) -> list[ColdStart]:
    """The cold starts of `revision`'s pods created since `since`, read now (pods and their events). A pod that is
    not Ready yet is left out (it has not finished starting); nothing when the cluster cannot be read."""
    namespace = service.split("/", 1)[0]
    out = []
    try:
        for pod in revision_pods(cluster, namespace, revision, since):
            if condition_time(pod, "Ready") is None:
                continue
            events = cluster.read_now("v1", "Event", namespace,
                                      fields=f"involvedObject.uid={pod['metadata']['uid']}")
            out.append(phases_of(pod, events, service, trigger, answered))
    except KubeError:
        return out
    return sorted(out, key=lambda c: (c.started or 0.0, c.pod))


def new_revisions(cluster: Cluster, refs: tuple[str, ...], since: float) -> list[ColdStart]:
    """The cold starts of the pods of each service's latest ready revision when that revision was created since
    `since` (this run): a new revision's first pods."""
    out: list[ColdStart] = []
    for ref in refs:
        namespace, name = ref.split("/", 1)
        try:
            svc = cluster.get("serving.knative.dev/v1", "Service", name, namespace) or {}
            revision = (svc.get("status") or {}).get("latestReadyRevisionName")
            rev = cluster.get("serving.knative.dev/v1", "Revision", revision, namespace) if revision else None
        except KubeError:
            continue
        created = timestamp(((rev or {}).get("metadata") or {}).get("creationTimestamp"))
        if revision and created is not None and created >= int(since):
            out += observe(cluster, ref, revision, "new_revision", created)
    return out

