"""The simulator's pure logic: model names, autoscaling decisions, routing, revision failures."""

from __future__ import annotations

import json

import pytest
import yaml

from localcluster.nodes import kwok_config, render_nodes
from localcluster.simulator import autoscale, openai
from localcluster.simulator.knative import (
    Revision,
    domain_for,
    ingress_class,
    revision_deployment,
    revision_failure,
    service_urls,
)


@pytest.mark.parametrize(("args", "name"), [
    (["--model", "Qwen/Qwen2.5-7B-Instruct", "--served-model-name", "qwen7b"], "qwen7b"),
    (["--model=Qwen/Qwen2.5-7B-Instruct"], "Qwen/Qwen2.5-7B-Instruct"),
    (["serve", "meta-llama/Llama-3-8B", "--port", "8000"], "meta-llama/Llama-3-8B"),
    ([], "model"),
])
def test_served_model_name(args, name):
    assert openai.served_model_name([{"args": args}]) == name


def test_chat_request_errors_are_openai_shaped():
    status, body = openai.parse_chat_request(b"{oops", "qwen7b")
    assert status == 400 and body["object"] == "error" and body["type"] == "BadRequestError"
    status, body = openai.parse_chat_request(json.dumps({"model": "other", "messages": [{"role": "user",
                                                                                         "content": "x"}]}).encode(),
                                             "qwen7b")
    assert status == 404 and "other" in body["message"]


def test_stream_ends_with_done():
    chunks = list(openai.stream({"messages": [{"role": "user", "content": "怎么计算1+1."}]}, "qwen7b"))
    assert chunks[-1] == b"data: [DONE]\n\n"
    assert all(c.startswith(b"data: ") for c in chunks)


def test_autoscale_settings_prefer_canonical_key_over_alias_and_fall_back_to_config():
    s = autoscale.settings(
        {"autoscaling.knative.dev/min-scale": "2", "autoscaling.knative.dev/minScale": "5",
         "autoscaling.knative.dev/scaleDownDelay": "30s"},
        {"stable-window": "20s", "initial-scale": "3"},
    )
    assert s.min == 2 and s.initial == 3
    assert s.idle_seconds == 20 + 30 + 0 + 30  # window + grace + retention + delay


def test_desired_replicas_scales_to_zero_only_after_the_idle_window():
    s = autoscale.settings({}, {})
    assert autoscale.desired_replicas(s, 1, 0, idle_for=80, time_factor=1.0, ever_ready=True) == 1
    assert autoscale.desired_replicas(s, 1, 0, idle_for=91, time_factor=1.0, ever_ready=True) == 0
    assert autoscale.desired_replicas(s, 1, 0, idle_for=5, time_factor=0.05, ever_ready=True) == 0
    pinned = autoscale.settings({"autoscaling.knative.dev/min-scale": "1"}, {})
    assert autoscale.desired_replicas(pinned, 1, 0, idle_for=1e6, time_factor=1.0, ever_ready=True) == 1
    off = autoscale.settings({}, {"enable-scale-to-zero": "false"})
    assert autoscale.desired_replicas(off, 1, 0, idle_for=1e6, time_factor=1.0, ever_ready=True) == 1


def test_desired_replicas_follows_concurrency_within_max_scale():
    s = autoscale.settings({"autoscaling.knative.dev/target": "10", "autoscaling.knative.dev/max-scale": "3"}, {})
    # 10 x 70% = 7 requests per pod
    assert autoscale.desired_replicas(s, 1, 14, 0, 1.0, True) == 2
    assert autoscale.desired_replicas(s, 1, 100, 0, 1.0, True) == 3
    assert autoscale.initial_replicas(autoscale.settings({"autoscaling.knative.dev/initial-scale": "0",
                                                          "autoscaling.knative.dev/min-scale": "1"}, {})) == 1


def test_ingress_class_new_key_wins_over_legacy():
    assert ingress_class({"ingress.class": "x", "ingress-class": "kourier.ingress.networking.knative.dev"}) \
        == "kourier.ingress.networking.knative.dev"
    assert ingress_class({"ingress.class": "kourier.ingress.networking.knative.dev"}).startswith("kourier")
    assert ingress_class({}).startswith("istio")


def test_domain_and_urls():
    ks = {"metadata": {"name": "svc", "namespace": "ns", "labels": {}}}
    assert service_urls(ks, {}) == ("http://svc.ns.svc.cluster.local", "http://svc.ns.svc.cluster.local")
    assert service_urls(ks, {"127.0.0.1.nip.io": "", "_example": "x"})[0] == "http://svc.ns.127.0.0.1.nip.io"
    local = {"metadata": {"name": "svc", "namespace": "ns",
                          "labels": {"networking.knative.dev/visibility": "cluster-local"}}}
    assert service_urls(local, {"example.com": ""})[0] == "http://svc.ns.svc.cluster.local"
    assert domain_for({"app": "a"}, {"a.com": "selector:\n  app: a\n", "b.com": ""}) == "a.com"


def _rev(conditions=None) -> Revision:
    return Revision("s-00001", 1, "h", {"metadata": {"annotations": {}}, "spec": {"replicas": 1},
                                         "status": {"conditions": conditions or []}})


def test_revision_failure_reasons():
    assert revision_failure(_rev(), []) is None
    pending = {"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}]}}
    assert revision_failure(_rev(), [pending])[0] == "Unschedulable"
    pull = {"status": {"containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}
    assert revision_failure(_rev(), [pull])[0] == "ImagePullBackOff"
    late = _rev([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}])
    assert revision_failure(late, [pending])[0] == "ProgressDeadlineExceeded"


def test_revision_deployment_names_containers_and_drops_knative_only_fields():
    ks = {"metadata": {"name": "s", "namespace": "n", "uid": "u"},
          "spec": {"template": {"spec": {"containerConcurrency": 4, "timeoutSeconds": 60,
                                         "containers": [{"image": "i"}]}}}}
    dep = revision_deployment(ks, "s-00001", 1, "h", 1, 600)
    spec = dep["spec"]["template"]["spec"]
    assert spec["containers"][0]["name"] == "user-container"
    assert "containerConcurrency" not in spec and "timeoutSeconds" not in spec
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "u"
    assert dep["spec"]["progressDeadlineSeconds"] == 600


def test_nodes_render_gpu_capacity_label_and_taint():
    docs = list(yaml.safe_load_all(render_nodes(2, 2, 4)))
    gpu = [d for d in docs if d["metadata"]["name"].startswith("kwok-gpu")]
    assert len(docs) == 4 and len(gpu) == 2
    assert gpu[0]["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert gpu[0]["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert gpu[0]["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    with pytest.raises(ValueError, match="gpus_per_node"):
        render_nodes(1, 1, 0)


def test_kwok_config_sets_ready_delay():
    cfg = list(yaml.safe_load_all(kwok_config(1234)))
    ready = next(s for s in cfg if s["metadata"]["name"] == "pod-ready")
    assert ready["spec"]["delay"]["durationMilliseconds"] == 1234
    assert {s["metadata"]["name"] for s in cfg} >= {"pod-create", "pod-ready", "pod-image-pull-backoff", "pod-delete"}
