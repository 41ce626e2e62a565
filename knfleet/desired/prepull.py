"""Images pulled before they are needed: one DaemonSet per model service with `prepull` on, and one for the installed
Knative release's queue-proxy image, on the GPU nodes the services may run on. Pure: no cluster.

A GPU revision's cold start is mostly its image pull (a vLLM image is about 10 GB). A DaemonSet puts one pod on
every node the model may run on; its init container runs the model image (so the kubelet pulls it) with a command
that exits at once, then a pause container keeps the pod alive while requesting no GPU. The run waits until every
eligible node has the image (the DaemonSet's pods Ready for its current generation) before the services stage, and
keeps the DaemonSet while the model is deployed, so a node added later pulls the image too.

    knfleet-prepull-<service>      in the service's namespace: the service's image
    knfleet-prepull-queue-proxy    in knative-serving: config-deployment's queue-sidecar-image (on every revision pod)

The nodes: the pod spec of the service's Knative Service (nodeSelector, tolerations, runtimeClassName). A DaemonSet
cannot select nodes by what they can allocate, so a GPU service without a nodeSelector is pre-pulled on the nodes
labelled `nvidia.com/gpu.present=true` (NVIDIA GPU feature discovery's label, set by the GPU operator); give the
model a node_selector when your GPU nodes carry another label.

An image by digest is pulled by digest. An image by tag is pulled by that tag: the kubelet resolves it when it pulls,
and Knative resolves the service's tag to a digest when it makes the revision (unless the registry is in
`registries-skipping-tag-resolving`); should the tag move in between, the revision pulls the new image itself.
"""

from __future__ import annotations

import hashlib
from typing import Any

from knfleet.desired import capacity, mirror, ownership

LABEL = "knfleet.dev/prepull"  # the DaemonSet's and its pods' label: the service's name, or queue-proxy
MODEL_LABEL = "knfleet.dev/model"
QUEUE_PROXY = "queue-proxy"
QUEUE_NAMESPACE = "knative-serving"
PREFIX = "knfleet-prepull-"
# The command that exits at once must work in any image, a distroless one (queue-proxy) too: the first init
# container copies a static busybox into a shared emptyDir, and the image's own init container runs it as `true`.
HELPER_IMAGE = "docker.io/library/busybox:1.36.1-musl"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"  # the kubelet's own sandbox image: usually present on every node
TOOLS = "/knfleet-prepull"
GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")  # knfleet.kube.readiness.GPU_LABEL: the same


# What Pod Security's `restricted` level asks, so the pods run in a namespace that enforces it: nobody's user, no
# privilege, no capability (copying a file into an emptyDir and exiting, or pausing, needs none)
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}}


def locked_down() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def tiny() -> dict[str, dict[str, str]]:
    """The resources of every pre-pull container: next to nothing, and never a GPU."""
    return {"requests": {"cpu": "1m", "memory": "8Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}}


# an image that sets NVIDIA_VISIBLE_DEVICES=all (vLLM's do) would see every GPU of the node without requesting one
NO_GPU_ENV = [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}]


def daemonset_name(service: str, owner: str = ownership.DEFAULT_OWNER) -> str:
    """knfleet-prepull-<service>; the queue-proxy's carries the owner (each inventory sharing a cluster has its own).
    Kept within 63 characters (a hash of the rest when longer)."""
    name = PREFIX + service if service != QUEUE_PROXY or owner == ownership.DEFAULT_OWNER \
        else f"{PREFIX}{QUEUE_PROXY}-{owner}"
    if len(name) <= 63:
        return name
    return f"{name[:54].rstrip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def by_digest(image: str) -> bool:
    return "@sha256:" in image


def pod_spec_of(ksvc: dict[str, Any]) -> dict[str, Any]:
    return ((ksvc.get("spec") or {}).get("template") or {}).get("spec") or {}


def gpus_per_pod(ksvc: dict[str, Any]) -> int:
    return capacity.need_of(ksvc).gpus_per_pod


def node_term(ksvc: dict[str, Any]) -> dict[str, Any]:
    """One nodeSelectorTerm: the service's nodeSelector, or, for a GPU service without one, the GPU node label."""
    selector = dict(pod_spec_of(ksvc).get("nodeSelector") or {})
    if not selector and gpus_per_pod(ksvc) > 0:
        selector = dict([GPU_NODE_LABEL])
    return {"matchExpressions": [{"key": k, "operator": "In", "values": [v]} for k, v in sorted(selector.items())]}


def _labels(owner: str, what: str, model: str | None) -> dict[str, str]:
    out = {ownership.MANAGED_BY: "knfleet", ownership.OWNER: owner, LABEL: what}
    if model:
        out[MODEL_LABEL] = model
    return out


def _daemonset(name: str, namespace: str, labels: dict[str, str], images: list[str], pod: dict[str, Any],
               helper: str, pause: str) -> dict[str, Any]:
    mount = [{"name": "knfleet-prepull", "mountPath": TOOLS}]
    pulls = [{"name": "image" if len(images) == 1 else f"image-{i}", "image": image, "imagePullPolicy": "IfNotPresent",
              "command": [f"{TOOLS}/true"], "env": [dict(e) for e in NO_GPU_ENV], "resources": tiny(),
              "securityContext": locked_down(), "volumeMounts": mount} for i, image in enumerate(images, 1)]
    spec = {
        **pod,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 1,
        "securityContext": {**POD_SECURITY, "seccompProfile": dict(POD_SECURITY["seccompProfile"])},
        "volumes": [{"name": "knfleet-prepull", "emptyDir": {"sizeLimit": "16Mi"}}],
        "initContainers": [
            {"name": "tools", "image": helper, "imagePullPolicy": "IfNotPresent",
             "command": ["cp", "/bin/busybox", f"{TOOLS}/true"], "resources": tiny(), "securityContext": locked_down(),
             "volumeMounts": mount},
            *pulls,
        ],
        "containers": [{"name": "pause", "image": pause, "imagePullPolicy": "IfNotPresent", "resources": tiny(),
                        "securityContext": locked_down()}],
    }
    selector = {LABEL: labels[LABEL], ownership.OWNER: labels[ownership.OWNER]}  # one owner's never takes another's
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "annotations": {"knfleet.dev/prepull-image": " ".join(images)}},
        "spec": {
            "selector": {"matchLabels": selector},
            # every node pulls a new image at once (a rollout that waits for one node after another takes hours)
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
            "template": {"metadata": {"labels": labels}, "spec": spec},
        },
    }


def _helpers(image_mirror: str | None) -> tuple[str, str]:
    if not image_mirror:
        return HELPER_IMAGE, PAUSE_IMAGE
    return mirror.rewrite_image(HELPER_IMAGE, image_mirror), mirror.rewrite_image(PAUSE_IMAGE, image_mirror)


def for_service(ksvc: dict[str, Any], owner: str, image_mirror: str | None = None) -> dict[str, Any]:
    """The DaemonSet that pre-pulls a model service's images (each of its containers') on the nodes its pods may run on:
    the same nodeSelector, tolerations and runtimeClassName as the service's pod spec (and its imagePullSecrets);
    the GPU node label when the service asks for GPUs and names no nodeSelector."""
    meta, pod = ksvc["metadata"], pod_spec_of(ksvc)
    images = list(dict.fromkeys(c["image"] for c in pod.get("containers") or [] if c.get("image")))
    spec: dict[str, Any] = {k: pod[k] for k in ("nodeSelector", "tolerations", "runtimeClassName",
                                                "imagePullSecrets") if pod.get(k)}
    if not pod.get("nodeSelector") and gpus_per_pod(ksvc) > 0:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [node_term(ksvc)]}}}
    return _daemonset(daemonset_name(meta["name"], owner), meta["namespace"],
                      _labels(owner, meta["name"], meta["name"]), images, spec, *_helpers(image_mirror))


def for_queue_proxy(image: str, services: list[dict[str, Any]], owner: str, image_mirror: str | None = None,
                    pull_secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The DaemonSet that pre-pulls the release's queue-proxy image on the nodes any of `services` may run on: one
    nodeSelectorTerm per service (Kubernetes ORs them), every service's tolerations, and the runtime class when they
    all name the same one."""
    terms, tolerations = [], []
    for s in services:
        term = node_term(s)
        if term not in terms:
            terms.append(term)
        for t in pod_spec_of(s).get("tolerations") or []:
            if t not in tolerations:
                tolerations.append(t)
    spec: dict[str, Any] = {}
    if all(t["matchExpressions"] for t in terms):  # a term without expressions matches every node: no affinity
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": terms}}}
    if tolerations:
        spec["tolerations"] = tolerations
    runtimes = {pod_spec_of(s).get("runtimeClassName") for s in services}
    if len(runtimes) == 1 and None not in runtimes:
        spec["runtimeClassName"] = runtimes.pop()
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
    return _daemonset(daemonset_name(QUEUE_PROXY, owner), QUEUE_NAMESPACE, _labels(owner, QUEUE_PROXY, None), [image],
                      spec, *_helpers(image_mirror))


def queue_image(config_objects: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> str | None:
    """config-deployment's queue-sidecar-image as the install applies it (mirrored when image_mirror is set)."""
    for o in config_objects:
        meta = o.get("metadata") or {}
        if o.get("kind") == "ConfigMap" and meta.get("name") == "config-deployment" \
                and meta.get("namespace") == QUEUE_NAMESPACE:
            return (o.get("data") or {}).get("queue-sidecar-image") or None
    return None


def objects(services: list[dict[str, Any]], queue: str | None, owner: str, image_mirror: str | None = None,
            pull_secrets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The pre-pull DaemonSets of these model services (those with prepull on), and the queue-proxy's (none when no
    service pre-pulls)."""
    if not services:
        return []
    out = [for_service(s, owner, image_mirror) for s in services]
    if queue:
        out.append(for_queue_proxy(queue, services, owner, image_mirror, pull_secrets))
    return out


def selector(owner: str | None) -> str:
    """The label selector of knfleet's pre-pull DaemonSets (of one owner; None: of every owner)."""
    base = f"{ownership.MANAGED_BY}=knfleet,{LABEL}"
    return base if owner is None else f"{base},{ownership.OWNER}={owner}"


def unwanted(live: list[dict[str, Any]], keep: tuple[str, ...]) -> tuple[list[dict[str, Any]], list[str]]:
    """Of the DaemonSets carrying knfleet's pre-pull labels: those to delete (applied by knfleet, not kept, not being
    deleted already) and, named, those left alone (labels copied or hand-made: knfleet's field manager never applied
    them)."""
    gone, left = [], []
    for o in live:
        ref = ownership.name_of(o)
        if ref in keep or (o.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if ownership.applied_by_knfleet(o):
            gone.append(o)
        else:
            left.append(f"DaemonSet {ref} (carries knfleet's pre-pull labels but knfleet did not apply it)")
    return sorted(gone, key=ownership.name_of), sorted(left)


def eligible_nodes(ksvc: dict[str, Any], nodes: list[dict[str, Any]]) -> list[str]:
    """The nodes a service's pods may run on by what the scheduler checks (GPUs per pod allocatable, nodeSelector,
    taints): what its pre-pull DaemonSet should cover."""
    need = capacity.need_of(ksvc)
    out = []
    for n in nodes:
        node = capacity.node_of(n)
        if node.gpus >= need.gpus_per_pod and not capacity.why_not(need, node):
            out.append(node.name)
    return sorted(out)


def image_note(image: str) -> str:
    """How an image is pre-pulled, in a few words (said by the run and `--dry`)."""
    return "by digest" if by_digest(image) else (
        "by tag (pin a digest to be sure the revision starts from exactly this image)")
