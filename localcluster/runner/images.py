"""The kubelet's image pulls on the local clusters' kwok nodes: events, pull times, and the images a node holds.

For every pod kwok runs (not the pod runner's real processes), once kwok's `pod-create` stage gave it an IP, the
puller does what a kubelet's image manager does, container by container (init containers first, in order):

- the image is on the node already (the node's `status.images`, or pulled there before by any pod): a `Pulled`
  event `Container image "x" already present on machine`, no wait;
- else a `Pulling` event `Pulling image "x"`, the image's pull time (see below), then a `Pulled` event
  `Successfully pulled image "x" in 2s (2s including waiting). Image size: N bytes.` and the image is added to the
  node's `status.images`.

Then it annotates the pod `PULLED_ANNOTATION`; kwok's `pod-running` stage waits for that annotation (the
containers run), and `pod-ready` adds the cluster's ready delay (the model load) before the pod is Ready.
Images of the reserved failing registry (registry.invalid/) get their `Pulling` event and never finish: kwok's
`pod-image-pull-backoff` stage writes the failure.

Pull times: `image-pulls.json` in the cluster folder (written by LocalCluster.set_image_pulls, read on every
tick): {"default_ms": 2000, "images": {"<image>": <ms>}}; an image matches by its exact reference or by its
repository (the reference without tag and digest). LARGE_TEST_IMAGE pulls for LARGE_PULL_MS unless that file
says otherwise; every other image for the cluster's default (Spec.pull_delay_ms).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PULLED_ANNOTATION = "localcluster.knfleet.local/images-pulled"
PULLS_FILE = "image-pulls.json"
DEFAULT_PULL_MS = 2000
LARGE_TEST_IMAGE = "registry.knfleet.local/models/vllm-large:test"
LARGE_PULL_MS = 20000
FAILING_REGISTRY = "registry.invalid/"
BYTES_PER_SECOND = 200 * 1000 * 1000  # the simulated registry's speed: what the Pulled event's image size says


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def repository(image: str) -> str:
    """The image reference without its digest and tag (`reg:5000/a/b:v1@sha256:..` -> `reg:5000/a/b`)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration prints it (truncated to milliseconds): 2s, 2.5s, 1m5.25s, 350ms."""
    ms = int(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}m{secs}" if minutes else secs


def pull_ms(image: str, config: dict[str, Any], default_ms: int) -> int:
    """The pull time of `image`: the config's entry for it (exact, then repository), else its default."""
    images = config.get("images") if isinstance(config.get("images"), dict) else {}
    for key in (image, repository(image)):
        if isinstance(images.get(key), (int, float)) and images[key] >= 0:
            return int(images[key])
    if image == LARGE_TEST_IMAGE:
        return LARGE_PULL_MS
    value = config.get("default_ms")
    return int(value) if isinstance(value, (int, float)) and value >= 0 else default_ms


def pod_images(pod: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field path, container name, image) in the kubelet's order: init containers, then containers."""
    spec = pod.get("spec") or {}
    return ([(f"spec.initContainers{{{c['name']}}}", c["name"], c.get("image", ""))
             for c in spec.get("initContainers") or []]
            + [(f"spec.containers{{{c['name']}}}", c["name"], c.get("image", ""))
               for c in spec.get("containers") or []])


def node_images(node: dict[str, Any]) -> set[str]:
    return {n for i in (node.get("status") or {}).get("images") or [] for n in i.get("names") or []}


@dataclass
class Pull:
    """One pod's pulls in progress: the images left (field path, name, image) and the current one's end."""

    uid: str
    namespace: str
    name: str
    node: str
    left: list[tuple[str, str, str]]
    until: float | None = None  # monotonic end of the current pull
    started: float = 0.0
    stuck: bool = False  # a failing registry: never finishes
    done: list[str] = field(default_factory=list)


class Puller:
    """The image pulls of one cluster's kwok pods (see the module doc). `tick` is called with the current pods and
    nodes (from watch caches); it writes events, node images and the pod annotation through `core`."""

    def __init__(self, core: Any, cluster_dir: Path, default_ms: int = DEFAULT_PULL_MS,
                 skip: Callable[[dict[str, Any]], bool] = lambda _: False,
                 log: Callable[[str], None] = print) -> None:
        self.core, self.dir, self.default_ms, self.skip, self.log = core, cluster_dir, default_ms, skip, log
        self.pulls: dict[str, Pull] = {}
        self.finished: set[str] = set()  # pods annotated, until the watch shows the annotation (or the pod goes)
        self.present: dict[str, set[str]] = {}  # node -> images pulled there (also written to status.images)

    def config(self) -> dict[str, Any]:
        try:
            data = json.loads((self.dir / PULLS_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def tick(self, pods: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> None:
        config = self.config()
        on_node = {n["metadata"]["name"]: node_images(n) for n in nodes}
        live: set[str] = set()
        self.finished &= {p["metadata"]["uid"] for p in pods
                          if PULLED_ANNOTATION not in (p["metadata"].get("annotations") or {})}
        for pod in pods:
            meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
            if (meta["uid"] in self.finished or meta.get("deletionTimestamp") or not status.get("podIP")
                    or not spec.get("nodeName") or PULLED_ANNOTATION in (meta.get("annotations") or {})
                    or self.skip(pod)):
                continue
            live.add(meta["uid"])
            if meta["uid"] not in self.pulls:
                self.pulls[meta["uid"]] = Pull(meta["uid"], meta["namespace"], meta["name"], spec["nodeName"],
                                               pod_images(pod))
        for uid in list(self.pulls):
            if uid not in live:
                self.pulls.pop(uid)
        for pull in list(self.pulls.values()):
            try:
                self._advance(pull, config, on_node)
            except Exception as err:  # noqa: BLE001 - the apiserver may be briefly away: next tick again
                self.log(f"image pull of {pull.namespace}/{pull.name}: {err}")

    def has(self, node: str, image: str, on_node: dict[str, set[str]]) -> bool:
        return image in self.present.get(node, set()) or image in on_node.get(node, set())

    def _advance(self, pull: Pull, config: dict[str, Any], on_node: dict[str, set[str]]) -> None:
        now = time.monotonic()
        while pull.left and not pull.stuck:
            path, _, image = pull.left[0]
            if pull.until is not None:
                if now < pull.until:
                    return
                took = now - pull.started
                self._event(pull, path, "Pulled", f"Successfully pulled image {json.dumps(image)} in "
                            f"{go_duration(took)} ({go_duration(took)} including waiting). Image size: "
                            f"{int(took * BYTES_PER_SECOND)} bytes.")
                self._add_to_node(pull.node, image, int(took * BYTES_PER_SECOND), on_node)
                pull.until = None
                pull.left.pop(0)
                continue
            if self.has(pull.node, image, on_node):
                self._event(pull, path, "Pulled", f"Container image {json.dumps(image)} already present on machine")
                pull.left.pop(0)
                continue
            self._event(pull, path, "Pulling", f"Pulling image {json.dumps(image)}")
            if image.startswith(FAILING_REGISTRY):
                pull.stuck = True
                return
            pull.started, pull.until = now, now + pull_ms(image, config, self.default_ms) / 1000
            if pull.until > now:
                return
        if not pull.left:
            self.core.patch_namespaced_pod(pull.name, pull.namespace, {"metadata": {"annotations": {
                PULLED_ANNOTATION: now_iso()}}})
            self.pulls.pop(pull.uid, None)
            self.finished.add(pull.uid)

    def _event(self, pull: Pull, path: str, reason: str, message: str) -> None:
        stamp = now_iso()
        self.core.create_namespaced_event(pull.namespace, {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{pull.name}.{uuid.uuid4().hex[:16]}", "namespace": pull.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pull.name, "namespace": pull.namespace,
                               "uid": pull.uid, "fieldPath": path},
            "reason": reason, "message": message, "type": "Normal", "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "source": {"component": "kubelet", "host": pull.node},
            "reportingComponent": "kubelet", "reportingInstance": pull.node})

    def _add_to_node(self, node: str, image: str, size: int, on_node: dict[str, set[str]]) -> None:
        self.present.setdefault(node, set()).add(image)
        have = on_node.setdefault(node, set())
        if image in have:
            return
        have.add(image)
        current = self.core.read_node_status(node, _preload_content=False)
        images = (json.loads(current.data).get("status") or {}).get("images") or []
        if any(image in (i.get("names") or []) for i in images):
            return
        self.core.patch_node_status(node, {"status": {"images": images + [{"names": [image], "sizeBytes": size}]}})
