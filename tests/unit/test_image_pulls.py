"""The local clusters' simulated image pulls: pull times per image and the kubelet's message formats."""

from __future__ import annotations

from localcluster.runner.images import LARGE_PULL_MS, LARGE_TEST_IMAGE, go_duration, pod_images, pull_ms, repository


def test_repository_strips_tag_and_digest_not_a_registry_port():
    assert repository("reg:5000/a/b:v1") == "reg:5000/a/b"
    assert repository("reg:5000/a/b@sha256:abc") == "reg:5000/a/b"
    assert repository("vllm/vllm-openai:v0.6.4@sha256:abc") == "vllm/vllm-openai"
    assert repository("reg:5000/a/b") == "reg:5000/a/b"


def test_go_duration_prints_as_the_kubelet_does():
    assert go_duration(2.0) == "2s"
    assert go_duration(2.5004) == "2.5s"
    assert go_duration(65.25) == "1m5.25s"
    assert go_duration(0.35) == "350ms"


def test_pull_time_per_image_exact_then_repository_then_default():
    config = {"default_ms": 700, "images": {"a/b:v1": 100, "a/c": 200}}
    assert pull_ms("a/b:v1", config, 2000) == 100
    assert pull_ms("a/b:v2", config, 2000) == 700
    assert pull_ms("a/c:v9", config, 2000) == 200
    assert pull_ms("x/y", {}, 2000) == 2000
    assert pull_ms(LARGE_TEST_IMAGE, {}, 2000) == LARGE_PULL_MS
    assert pull_ms(LARGE_TEST_IMAGE, {"images": {LARGE_TEST_IMAGE: 5}}, 2000) == 5
    assert pull_ms("x/y", {"default_ms": -1}, 2000) == 2000


def test_pod_images_in_the_kubelets_order():
    pod = {"spec": {"initContainers": [{"name": "i", "image": "init"}],
                    "containers": [{"name": "user-container", "image": "model"},
                                   {"name": "queue-proxy", "image": "qp"}]}}
    assert pod_images(pod) == [("spec.initContainers{i}", "i", "init"),
                               ("spec.containers{user-container}", "user-container", "model"),
                               ("spec.containers{queue-proxy}", "queue-proxy", "qp")]


class FakeCore:
    """What the puller writes, recorded (the API calls a kubelet's image manager would cause)."""

    def __init__(self, nodes: dict[str, list[dict]]) -> None:
        self.nodes, self.events, self.annotated = nodes, [], []

    def create_namespaced_event(self, namespace, body):
        self.events.append((body["involvedObject"]["name"], body["reason"], body["message"]))

    def patch_namespaced_pod(self, name, namespace, body):
        self.annotated.append(name)

    def read_node_status(self, name, _preload_content=True):
        import json as j
        from types import SimpleNamespace

        return SimpleNamespace(data=j.dumps({"status": {"images": self.nodes[name]}}).encode())

    def patch_node_status(self, name, body):
        self.nodes[name] = body["status"]["images"]


def a_pod(name: str, image: str, node: str = "kwok-gpu-1") -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "uid": name}, "spec": {
        "nodeName": node, "containers": [{"name": "main", "image": image}]}, "status": {"podIP": "10.0.0.5"}}


def a_node(name: str, images: list[str], kubelet: str = "fake") -> dict:
    return {"metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": kubelet}},
            "status": {"images": [{"names": [i], "sizeBytes": 1} for i in images]}}


def test_the_puller_pulls_once_per_node_then_finds_the_image_present(tmp_path):
    from localcluster.runner.images import Puller

    core = FakeCore({"kwok-gpu-1": []})
    puller = Puller(core, tmp_path, default_ms=0)
    puller.tick([a_pod("first", "m:v1")], [a_node("kwok-gpu-1", [])])
    assert core.events == [("first", "Pulling", 'Pulling image "m:v1"'), ("first", "Pulled", core.events[1][2])]
    assert core.events[1][2].startswith('Successfully pulled image "m:v1" in ') and "Image size: " in core.events[1][2]
    assert core.annotated == ["first"] and core.nodes["kwok-gpu-1"][0]["names"] == ["m:v1"]
    # the watch has not shown the node's new image yet: the puller knows it all the same
    puller.tick([a_pod("first", "m:v1"), a_pod("second", "m:v1")], [a_node("kwok-gpu-1", [])])
    assert core.events[2:] == [("second", "Pulled", 'Container image "m:v1" already present on machine')]
    assert core.annotated == ["first", "second"]


def test_a_failing_registry_and_a_stopped_kubelet(tmp_path):
    from localcluster.runner.images import Puller

    core = FakeCore({"kwok-gpu-1": [], "kwok-gpu-2": []})
    puller = Puller(core, tmp_path, default_ms=0)
    pods = [a_pod("bad", "registry.invalid/x:v1"), a_pod("off", "m:v1", node="kwok-gpu-2")]
    nodes = [a_node("kwok-gpu-1", []), a_node("kwok-gpu-2", [], kubelet="kubelet-stopped")]
    puller.tick(pods, nodes)
    puller.tick(pods, nodes)
    assert core.events == [("bad", "Pulling", 'Pulling image "registry.invalid/x:v1"')]  # never Pulled
    assert core.annotated == []
    # an image removed from the node's status.images (as after image garbage collection) is pulled again
    core2 = FakeCore({"kwok-gpu-1": []})
    p2 = Puller(core2, tmp_path, default_ms=0)
    p2.tick([a_pod("one", "m:v1")], [a_node("kwok-gpu-1", ["m:v1"])])
    assert core2.events == [("one", "Pulled", 'Container image "m:v1" already present on machine')]
    p2.tick([a_pod("two", "m:v1")], [a_node("kwok-gpu-1", [])])
    assert [e[1] for e in core2.events[1:]] == ["Pulling", "Pulled"]
