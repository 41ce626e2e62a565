"""Mirrored registries: every image of the release moved to a mirror registry, digests kept. Pure: no cluster.

    image_mirror = "registry.corp.example/knative"
    gcr.io/knative-releases/knative.dev/serving/cmd/controller@sha256:63c9…
      -> registry.corp.example/knative/knative-releases/knative.dev/serving/cmd/controller@sha256:63c9…
    docker.io/envoyproxy/envoy:v1.31.2  -> registry.corp.example/knative/envoyproxy/envoy:v1.31.2
    nginx:1.27.3-alpine                 -> registry.corp.example/knative/library/nginx:1.27.3-alpine

The path below the registry is kept (the layout `crane copy`/`skopeo sync` produce), so two images of the same name
from different projects never collide. Rewritten: every container and init container of Deployments, DaemonSets,
StatefulSets and Jobs (the post-install Jobs too), the queue-proxy image in `config-deployment`
(`queue-sidecar-image`, which Knative injects into every revision pod: knative/operator#918) and in the caching
`Image` object. The rewrite runs on release files whose checksums were verified first (knfleet.desired.bundle).
"""

from __future__ import annotations

import copy
import re
from typing import Any

WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "Job")
_REGISTRY = re.compile(r"^[^/]+[.:][^/]*$|^localhost$")  # a first path part with a dot or port is a registry


def split(image: str) -> tuple[str, str]:
    """(registry, the rest) as Docker reads an image reference: no registry means docker.io, library/ for one name."""
    first, _, rest = image.partition("/")
    if rest and _REGISTRY.match(first):
        return first, rest
    return "docker.io", image if rest else f"library/{image}"


def registry_of(image: str) -> str:
    reg = split(image)[0]
    return "docker.io" if reg in ("index.docker.io", "registry-1.docker.io") else reg


def rewrite_image(image: str, mirror: str) -> str:
    return f"{mirror.rstrip('/')}/{split(image)[1]}"


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") in WORKLOAD_KINDS:
        return ((obj.get("spec") or {}).get("template") or {}).get("spec")
    return None


def images_of(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, image) for every image an object names (the same places rewrite() changes)."""
    out = []
    spec = _pod_spec(obj)
    if spec is None and obj.get("kind") == "Service" and obj.get("apiVersion", "").startswith("serving.knative.dev"):
        spec = ((obj.get("spec") or {}).get("template") or {}).get("spec")
    if spec:
        for key in ("initContainers", "containers"):
            out += [(f"{key}[{c.get('name')}]", c["image"]) for c in spec.get(key) or [] if c.get("image")]
    if obj.get("kind") == "ConfigMap" and (obj.get("data") or {}).get("queue-sidecar-image"):
        out.append(("data.queue-sidecar-image", obj["data"]["queue-sidecar-image"]))
    if obj.get("kind") == "Image" and (obj.get("spec") or {}).get("image"):
        out.append(("spec.image", obj["spec"]["image"]))
    return out


def rewrite(obj: dict[str, Any], mirror: str | None, pull_secrets: tuple[str, ...] = (),
            pin: dict[str, str] | None = None) -> dict[str, Any]:
    """The object with its images pinned (`pin`: image -> image, before mirroring) and moved to `mirror`, and
    `pull_secrets` added to its pod spec."""
    if not (mirror or pull_secrets or pin) or not images_of(obj):
        return obj
    out = copy.deepcopy(obj)

    def new(image: str) -> str:
        image = (pin or {}).get(image, image)
        return rewrite_image(image, mirror) if mirror else image

    spec = _pod_spec(out)
    if spec is not None:
        for key in ("initContainers", "containers"):
            for c in spec.get(key) or []:
                if c.get("image"):
                    c["image"] = new(c["image"])
        if pull_secrets:
            have = [s.get("name") for s in spec.get("imagePullSecrets") or []]
            spec["imagePullSecrets"] = [*(spec.get("imagePullSecrets") or []),
                                        *({"name": s} for s in pull_secrets if s not in have)]
    if out.get("kind") == "ConfigMap" and (out.get("data") or {}).get("queue-sidecar-image"):
        out["data"]["queue-sidecar-image"] = new(out["data"]["queue-sidecar-image"])
    if out.get("kind") == "Image" and (out.get("spec") or {}).get("image"):
        out["spec"]["image"] = new(out["spec"]["image"])
        if pull_secrets:
            out["spec"]["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
    return out


def unreachable(objects: list[dict[str, Any]], registries: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(object, where, image) for every image that points at a registry listed as unreachable."""
    blocked = {("docker.io" if r in ("index.docker.io", "registry-1.docker.io") else r).rstrip("/")
               for r in registries}
    out = []
    for o in objects:
        meta = o.get("metadata") or {}
        name = f"{o.get('kind')}/{meta['namespace'] + '/' if meta.get('namespace') else ''}" \
               f"{meta.get('name') or meta.get('generateName')}"
        for where, image in images_of(o):
            reg = registry_of(image)
            if reg in blocked or any(image.startswith(b + "/") for b in blocked):
                out.append((name, where, image))
    return out


def floating(image: str) -> bool:
    """A tag that moves (`latest`, `v1.31-latest`) and no digest."""
    if "@sha256:" in image:
        return False
    tag = split(image)[1].rpartition(":")[2] if ":" in split(image)[1] else "latest"
    return tag == "latest" or tag.endswith("-latest")
