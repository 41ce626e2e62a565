"""Issue 25, local clusters: the simulated kubelets pull images as a real kubelet records it (Pulling/Pulled events,
node status.images), and a pod is Ready only after its pulls and the model load."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from localcluster.cluster import Spec
from localcluster.runner.images import LARGE_TEST_IMAGE, PULLED_ANNOTATION
from tests.kube import eventually

pytestmark = pytest.mark.integration

IMAGE = "registry.knfleet.local/test/pulls:v1"


@pytest.fixture(scope="module")
def kube(pool):
    k = pool.start("pulls", Spec(cpu_nodes=1, gpu_nodes=0, ready_delay_ms=1000, simulator=False), group="pulls")
    yield k
    pool.stop(k)


def pod(name: str, image: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                       "spec": {"nodeName": "kwok-cpu-1", "containers": [{"name": "main", "image": image}]}})


def events(kube, name: str) -> list[dict]:
    items = kube.json("get", "events", "-n", "default", "--field-selector", f"involvedObject.name={name}")["items"]
    return [e for e in items if e.get("source", {}).get("component") == "kubelet"]


def ready_at(p: dict) -> datetime | None:
    c = next((c for c in p["status"].get("conditions") or [] if c["type"] == "Ready" and c["status"] == "True"), None)
    return datetime.fromisoformat(c["lastTransitionTime"].replace("Z", "+00:00")) if c else None


def test_a_pull_then_already_present_and_ready_after_the_pull(kube):
    kube.cluster.set_image_pulls({IMAGE: 3.0})
    kube.run("apply", "-f", "-", stdin=pod("first", IMAGE))
    first = eventually(lambda: (p := kube.json("get", "pod", "first", "-n", "default")) and ready_at(p) and p,
                       timeout=60, what="pod first Ready")
    evs = events(kube, "first")
    reasons = [(e["reason"], e["message"]) for e in evs]
    assert ("Pulling", f'Pulling image "{IMAGE}"') in reasons
    pulled = [m for r, m in reasons if r == "Pulled"]
    assert len(pulled) == 1 and pulled[0].startswith(f'Successfully pulled image "{IMAGE}" in 3') and \
        "including waiting). Image size: " in pulled[0], pulled
    assert all(e["involvedObject"]["fieldPath"] == "spec.containers{main}" for e in evs)
    assert PULLED_ANNOTATION in first["metadata"]["annotations"]
    # Ready comes after the pull and the load (1 s ready delay after the container runs)
    pulled_at = datetime.fromisoformat(next(e for e in evs if e["reason"] == "Pulled")["lastTimestamp"]
                                       .replace("Z", "+00:00"))
    started = datetime.fromisoformat(first["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
                                     .replace("Z", "+00:00"))
    assert pulled_at <= started <= ready_at(first)
    node = kube.json("get", "node", "kwok-cpu-1")
    assert any(IMAGE in i["names"] for i in node["status"]["images"])

    kube.run("apply", "-f", "-", stdin=pod("second", IMAGE))
    eventually(lambda: ready_at(kube.json("get", "pod", "second", "-n", "default")), timeout=60,
               what="pod second Ready")
    reasons = [(e["reason"], e["message"]) for e in events(kube, "second")]
    assert reasons == [("Pulled", f'Container image "{IMAGE}" already present on machine')]


def test_an_image_marked_present_on_the_node_is_not_pulled(kube):
    image = "registry.knfleet.local/test/preloaded:v1"
    node = kube.json("get", "node", "kwok-cpu-1")
    images = node["status"].get("images") or []
    patch = {"status": {"images": images + [{"names": [image], "sizeBytes": 1}]}}
    kube.run("patch", "node", "kwok-cpu-1", "--subresource=status", "--type=merge", "-p", json.dumps(patch))
    kube.run("apply", "-f", "-", stdin=pod("preloaded", image))
    eventually(lambda: ready_at(kube.json("get", "pod", "preloaded", "-n", "default")), timeout=60,
               what="pod preloaded Ready")
    assert [e["reason"] for e in events(kube, "preloaded")] == ["Pulled"]


def test_the_large_test_image_is_not_ready_before_its_pull_ends(kube):
    kube.cluster.set_image_pulls({LARGE_TEST_IMAGE: 6.0})
    kube.run("apply", "-f", "-", stdin=pod("large", LARGE_TEST_IMAGE))
    eventually(lambda: [e for e in events(kube, "large") if e["reason"] == "Pulling"], timeout=30,
               what="Pulling event")
    p = kube.json("get", "pod", "large", "-n", "default")
    assert ready_at(p) is None and p["status"]["containerStatuses"][0]["state"].get("waiting")
    eventually(lambda: ready_at(kube.json("get", "pod", "large", "-n", "default")), timeout=60,
               what="pod large Ready")
    assert any(e["reason"] == "Pulled" and " in 6" in e["message"] for e in events(kube, "large"))
