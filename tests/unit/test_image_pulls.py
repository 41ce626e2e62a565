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
