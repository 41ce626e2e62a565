"""Is it ready, and if not, why? One readiness rule per kind (CRD, Deployment, Pod, Knative Service), each
with its explanation, and `evaluate(cluster, check)` that applies them to a cluster's cached lists. The
check-first step of a gate, its wait and `knfleet status` all use these."""

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


def prepull_pod(pod: dict[str, Any]) -> bool:
    """A pod of knfleet's pre-pull DaemonSets (knfleet.desired.prepull): the queue-proxy's lives in knative-serving,
    and its readiness is the pre-pull's wait, not the control plane's."""
    return "knfleet.dev/prepull" in ((pod.get("metadata") or {}).get("labels") or {})


def is_job_pod(pod: dict[str, Any]) -> bool:
    return any(o.get("kind") == "Job" for o in (pod.get("metadata") or {}).get("ownerReferences") or [])


def deployment_available(dep: dict[str, Any]) -> bool:
    st = dep.get("status") or {}
    want = (dep.get("spec") or {}).get("replicas", 1)
    return is_true(dep, "Available") and st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0) \
        and int(st.get("updatedReplicas") or 0) >= want and int(st.get("availableReplicas") or 0) >= min(want, 1)


def pod_ready(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_true(pod, "Ready")


def pod_counts(pod: dict[str, Any]) -> bool:
    """Whether a pod's readiness matters: not a Job's (they complete), not terminating, not finished
    (phase Succeeded or Failed: an evicted pod or one whose node shut down stays Failed, and its ReplicaSet
    has made another)."""
    st = pod.get("status") or {}
    return not is_job_pod(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp") \
        and st.get("phase") not in ("Succeeded", "Failed")


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


def daemonset_ready(ds: dict[str, Any]) -> bool:
    """A DaemonSet's pods are Ready on every node it should run on, for its current generation: the controller saw
    this generation, and desired == updated == ready, none unavailable."""
    st = ds.get("status") or {}
    want = int(st.get("desiredNumberScheduled") or 0)
    return int(st.get("observedGeneration") or 0) >= int(ds["metadata"].get("generation") or 0) \
        and int(st.get("updatedNumberScheduled") or 0) == want and int(st.get("numberReady") or 0) == want \
        and not int(st.get("numberUnavailable") or 0)


def pull_errors(pod: dict[str, Any], events: list[dict[str, Any]]) -> list[str]:
    """The kubelet's image pull errors of a pod: each (init) container waiting on ErrImagePull, ImagePullBackOff,
    InvalidImageName or ErrImageNeverPull with its message, and the pod's warning events about pulls."""
    st = pod.get("status") or {}
    out = []
    for cs in [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]:
        w = (cs.get("state") or {}).get("waiting") or {}
        if w.get("reason") in PULL_REASONS:
            out.append(f"container {cs.get('name')} ({cs.get('image')}) {w['reason']}"
                       + (f": {w['message']}" if w.get("message") else ""))
    name = (pod.get("metadata") or {}).get("name")
    for e in events:
        if e.get("type") == "Warning" and (e.get("involvedObject") or {}).get("name") == name \
                and ("pull" in (e.get("message") or "").lower() or e.get("reason") in ("Failed", "BackOff")):
            out.append(f"event {e.get('reason')}: {(e.get('message') or '').strip()}")
    return list(dict.fromkeys(out))[-3:] if out else []


PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


def daemonset_problem(ds: dict[str, Any], pods: list[dict[str, Any]], events: list[dict[str, Any]]) -> str:
    """Why a DaemonSet is not Ready everywhere, node by node: each pod not Ready (the kubelet's pull errors first),
    and how many nodes have no pod yet."""
    st = ds.get("status") or {}
    want = int(st.get("desiredNumberScheduled") or 0)
    head = (f"daemonset {name_of(ds)}: {int(st.get('numberReady') or 0)}/{want} node(s) Ready, "
            f"{int(st.get('updatedNumberScheduled') or 0)} updated")
    if int(st.get("observedGeneration") or 0) < int(ds["metadata"].get("generation") or 0):
        head += f" (generation {ds['metadata'].get('generation')} not observed yet)"
    selector = ((ds.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    mine = [p for p in pods if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
            and pod_counts(p)]
    lines = [head]
    for p in sorted(mine, key=lambda q: (q.get("spec") or {}).get("nodeName") or ""):
        if pod_ready(p):
            continue
        node = (p.get("spec") or {}).get("nodeName") or "(not scheduled)"
        errors = pull_errors(p, events)
        lines.append(f"  node {node}: " + ("; ".join(errors) if errors else pod_problem(p, events)))
    if len(mine) < want:
        lines.append(f"  {want - len(mine)} node(s) without a pod yet")
    return "\n".join(lines)


def daemonset_short(ds: dict[str, Any], pods: list[dict[str, Any]]) -> str:
    """A DaemonSet's nodes without the image, each with the kubelet's reason in a word (ErrImagePull, ...)."""
    selector = ((ds.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    out = []
    for p in sorted(pods, key=lambda q: (q.get("spec") or {}).get("nodeName") or ""):
        if pod_ready(p) or not pod_counts(p) or not all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items()):
            continue
        st = p.get("status") or {}
        waiting = [((cs.get("state") or {}).get("waiting") or {}).get("reason") for cs in
                   [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]]
        why = next((w for w in waiting if w in PULL_REASONS), None) or next((w for w in waiting if w), None) \
            or "not Ready"
        out.append(f"{(p.get('spec') or {}).get('nodeName') or '(not scheduled)'} {why}")
    want = int((ds.get("status") or {}).get("desiredNumberScheduled") or 0)
    ready = int((ds.get("status") or {}).get("numberReady") or 0)
    return f"{ready}/{want} node(s)" + (f" ({', '.join(out)})" if out else "")


def daemonset_nodes(ds: dict[str, Any], pods: list[dict[str, Any]]) -> list[str]:
    """The nodes where a DaemonSet's pods are Ready."""
    selector = ((ds.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return sorted({(p.get("spec") or {}).get("nodeName") or "" for p in pods if pod_ready(p) and pod_counts(p)
                   and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())} - {""})


def node_problem(node: dict[str, Any]) -> str:
    """Why a node cannot run pods, or "" when it can: Ready not True (a kubelet that stopped posting status shows
    Unknown, "Kubelet stopped posting node status."), or cordoned."""
    ready = condition(node, "Ready")
    name = node["metadata"]["name"]
    if ready.get("status") != "True":
        why = ": ".join(x for x in (ready.get("reason"), ready.get("message")) if x) or "no Ready condition"
        since = f" since {ready['lastTransitionTime']}" if ready.get("lastTransitionTime") else ""
        return f"node {name} NotReady{since} ({why})"
    if (node.get("spec") or {}).get("unschedulable"):
        return f"node {name} cordoned (unschedulable)"
    return ""


def nodes_note(nodes: list[dict[str, Any]]) -> tuple[str, str]:
    """(a short cause for a wait's first line, one line per node) for the nodes that cannot run pods; ("", "")
    when every node can. A wait that gives up says so: a GPU node whose kubelet went away leaves its pods
    Pending or NotReady and Knative's own reason rarely names the node."""
    problems = [(n["metadata"]["name"], node_problem(n)) for n in nodes]
    bad = [t for _, t in problems if t]
    if not bad:
        return "", ""
    names = [name for name, t in problems if t]
    short = f"{len(bad)} of {len(nodes)} node(s) NotReady or cordoned: " + ", ".join(names[:5]) \
        + (" …" if len(names) > 5 else "")
    return short, "\n".join(bad)


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


# --- applying the rules to a cluster ------------------------------------------------------------------------------
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
DEPLOYMENT = ("apps/v1", "Deployment")
DAEMONSET = ("apps/v1", "DaemonSet")
POD = ("v1", "Pod")
EVENT = ("v1", "Event")
KSVC = ("serving.knative.dev/v1", "Service")
NODE = ("v1", "Node")


def evaluate(cluster: Any, check: Any) -> tuple[bool, str]:
    """(ready?, why) for a check of knfleet.desired.plan, from the cluster's (cached) lists."""
    from knfleet.desired import plan  # the check types

    if isinstance(check, plan.CrdsEstablished):
        key, _, value = check.selector.partition("=")  # filtered here: the apply step's list serves the gate too
        crds = [c for c in cluster.list(*CRD) if (c["metadata"].get("labels") or {}).get(key) == value]
        bad = [crd_problem(c) for c in crds if not is_true(c, "Established")]
        if not crds:
            return False, f"no CRD with label {check.selector}"
        return not bad, "\n".join(bad) or f"{len(crds)} CRDs Established"
    if isinstance(check, plan.DeploymentsAvailable):
        deps = cluster.list(*DEPLOYMENT, check.namespace)
        bad = [d for d in deps if not deployment_available(d)]
        if not deps:
            return False, f"no deployments in {check.namespace}"
        if not bad:
            return True, f"{len(deps)} deployments Available in {check.namespace}"
        pods = cluster.list(*POD, check.namespace)
        events = cluster.list(*EVENT, check.namespace)
        return False, "\n".join(deployment_problem(d, pods, events) for d in bad)
    if isinstance(check, plan.ReplicasReady):
        short = [f"deployment {name_of(d)}: {int((d.get('status') or {}).get('readyReplicas') or 0)}/{check.replicas}"
                 " ready" for ns in check.namespaces for d in cluster.list(*DEPLOYMENT, ns)
                 if int((d.get("status") or {}).get("readyReplicas") or 0) < check.replicas]
        return (not short, "\n".join(short) if short else
                f"every Deployment in {', '.join(check.namespaces)} has {check.replicas}+ Ready replicas")
    if isinstance(check, plan.PodsReady):
        problems, finished = [], []
        for ns in check.namespaces:
            all_pods = cluster.list(*POD, ns)
            finished += [f"{name_of(p)} ({(p.get('status') or {}).get('phase')}"
                         + (f": {p['status']['reason']}" if (p.get("status") or {}).get("reason") else "") + ")"
                         for p in all_pods if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                         and not is_job_pod(p)]
            pods = [p for p in all_pods if pod_counts(p) and not prepull_pod(p)]
            bad = [p for p in pods if not pod_ready(p)]
            if bad:
                events = cluster.list(*EVENT, ns)
                problems += [pod_problem(p, events) for p in bad]
            elif not pods:
                problems.append(f"no pods in {ns}")
        note = f" (finished pods left alone: {', '.join(finished)})" if finished else ""
        return not problems, ("\n".join(problems) + note) if problems else f"all pods Ready{note}"
    if isinstance(check, plan.ServicesReady):
        found = {name_of(o): o for o in cluster.list(*KSVC)} if cluster.has(*KSVC) else {}
        problems = []
        for ref in check.refs:
            obj = found.get(ref)
            if obj is None:
                problems.append(f"ksvc {ref}: not found")
            elif not service_ready(obj):
                problems.append(service_problem(obj))
        return not problems, "\n".join(problems) or f"{len(check.refs)} model service(s) Ready"
    if isinstance(check, plan.ImagesPulled):
        return images_pulled(cluster, check.daemonsets)
    if isinstance(check, plan.WebhookServing):
        from knfleet.kube import webhook
        return webhook.serving(cluster)
    raise TypeError(f"unknown check {check!r}")



def images_pulled(cluster: Any, refs: tuple[str, ...]) -> tuple[bool, str]:
    """(every pre-pull DaemonSet Ready on all its nodes?, why): the nodes that have each image, or, node by node,
    what the kubelet says about those that do not (its pull errors)."""
    problems, done, warnings, short = [], [], [], []
    for ref in refs:
        ns, name = ref.split("/", 1)
        ds = next((d for d in cluster.list(*DAEMONSET, ns) if d["metadata"]["name"] == name), None)
        if ds is None:
            problems.append(f"daemonset {ref}: not found")
            short.append(f"{ref} not found")
            continue
        pods = cluster.list(*POD, ns)
        if not daemonset_ready(ds):
            events = cluster.list(*EVENT, ns)
            problems.append(daemonset_problem(ds, pods, events))
            short.append(f"{ref}: " + daemonset_short(ds, pods))
            continue
        nodes = daemonset_nodes(ds, pods)
        left_out = unlabelled_gpu_nodes(ds, cluster.list(*NODE))
        if left_out:
            warnings.append(f"warning: {ref}: GPU node(s) without the label {'='.join(GPU_LABEL)} are not pre-pulled: "
                            f"{', '.join(left_out)} (label them, or give the model a node_selector)")
        if not nodes:
            warnings.append(f"warning: {ref}: no node matches its nodeSelector, GPU label and tolerations: nothing "
                            "was pre-pulled (a node that comes later pulls the image when it joins)")
        done.append(f"{ref} on {len(nodes)} node(s)" + (f" ({', '.join(nodes)})" if nodes else ""))
    if problems:  # the first line for the closing line: each node and the kubelet's reason in a word
        return False, "\n".join(["images not on every eligible node: " + "; ".join(short), *problems])
    return True, "\n".join(["images on every eligible node: " + "; ".join(done), *warnings])


GPU_LABEL = ("nvidia.com/gpu.present", "true")  # knfleet.desired.prepull.GPU_NODE_LABEL


def _matches(term: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(e.get("operator") == "In" and labels.get(e.get("key")) in (e.get("values") or [])
               for e in term.get("matchExpressions") or [])


def unlabelled_gpu_nodes(ds: dict[str, Any], nodes: list[dict[str, Any]]) -> list[str]:
    """The GPU nodes a pre-pull DaemonSet placed by the GPU node label leaves out although its pods' tolerations
    and nodeSelector allow them: they have GPUs but not the label (the model's revisions may still land there)."""
    from knfleet.desired import capacity

    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    terms = ((((spec.get("affinity") or {}).get("nodeAffinity") or {})
              .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
    if not any(e.get("key") == GPU_LABEL[0] for t in terms for e in t.get("matchExpressions") or []):
        return []
    need = capacity.Need("", 1, 1, dict(spec.get("nodeSelector") or {}), tuple(spec.get("tolerations") or ()))
    out = []
    for n in nodes:
        node = capacity.node_of(n)
        if node.gpus > 0 and not any(_matches(t, node.labels) for t in terms) and not capacity.why_not(need, node):
            out.append(node.name)
    return sorted(out)
