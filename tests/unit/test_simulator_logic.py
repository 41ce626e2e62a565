"""The local clusters' pure logic: vLLM API, KPA decisions and conditions, Kourier routing, the pod runner,
the egress proxy's resolution, kwok stages."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
import yaml

from localcluster.nodes import kwok_config, render_nodes
from localcluster.runner import egress
from localcluster.runner.binaries import KWOK_IMAGE_TEST, for_image
from localcluster.runner.pods import expand, field_ref
from localcluster.simulator import autoscale, kourier, openai
from localcluster.simulator.autoscaler import PA_CONDITIONS, Autoscaler, living_ready, pod_counts
from localcluster.simulator.kubeapi import Snapshot


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


def _ingress(rules, ready=True, cls="kourier.ingress.networking.knative.dev", deleting=False, taken=False):
    meta = {"name": "svc", "namespace": "ns", "annotations": {"networking.knative.dev/ingress.class": cls}}
    if taken:
        meta["finalizers"] = [kourier.FINALIZER]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"rules": rules},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}]}}


def _snap(ingresses, available=("net-kourier-controller", "3scale-kourier-gateway")):
    system = {}
    for name in available:
        ns = "kourier-system" if name.startswith("3scale") else "knative-serving"
        system[(ns, name)] = {"status": {"conditions": [{"type": "Available", "status": "True"}]}}
    return Snapshot(ingresses=ingresses, system=system)


RULES = [
    {"hosts": ["svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local"], "visibility": "ClusterLocal",
     "http": {"paths": [{"splits": [{"serviceName": "svc-00001", "serviceNamespace": "ns", "percent": 100}]}]}},
    {"hosts": ["svc.ns.example.com"], "visibility": "ExternalIP",
     "http": {"paths": [{"splits": [{"serviceName": "svc-00001", "serviceNamespace": "ns", "percent": 100}]}]}},
]


def test_routing_table_serves_every_host_internally_and_external_ones_publicly():
    table = kourier.routing_table(_snap([_ingress(RULES)]))
    assert set(table) == {"svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local", "svc.ns.example.com"}
    assert [r.external for r in table["svc.ns.example.com"]] == [True]
    assert [r.external for r in table["svc.ns.svc.cluster.local"]] == [False]
    split = table["svc.ns.example.com"][0].path_for("/v1/chat/completions", {}).pick()
    assert (split.namespace, split.revision) == ("ns", "svc-00001")


def test_routing_table_ignores_other_classes_unready_and_deleted_ingresses_and_a_missing_kourier():
    assert kourier.routing_table(_snap([_ingress(RULES, cls="istio.ingress.networking.knative.dev")])) == {}
    assert kourier.routing_table(_snap([_ingress(RULES, ready=False)])) == {}
    assert kourier.routing_table(_snap([_ingress(RULES, deleting=True, taken=True)])) == {}
    assert kourier.routing_table(_snap([_ingress(RULES, deleting=True)])) == {}
    assert kourier.routing_table(_snap([_ingress(RULES)], available=("net-kourier-controller",))) == {}


def test_routing_table_serves_an_ingress_net_kourier_has_taken_before_it_says_ready():
    # net-kourier configures Envoy, then marks the Ingress Ready: a Ready Ingress (and the Route and Service
    # Knative marks Ready after it) must never point at a host the gateway does not serve yet
    table = kourier.routing_table(_snap([_ingress(RULES, ready=False, taken=True)]))
    assert set(table) == {"svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local", "svc.ns.example.com"}


def test_split_pick_follows_percentages():
    path = kourier.Path("/", (), (kourier.Split("ns", "a", 0, ()), kourier.Split("ns", "b", 100, ())))
    assert {path.pick().revision for _ in range(50)} == {"b"}


def test_living_condition_set_ready_is_false_first_then_unknown_then_true():
    t = {"status": "True"}
    assert living_ready({"Active": t, "ScaleTargetInitialized": t, "SKSReady": t}, PA_CONDITIONS)["status"] == "True"
    got = living_ready({"Active": {"status": "False", "reason": "NoTraffic"},
                        "ScaleTargetInitialized": t, "SKSReady": {"status": "Unknown"}}, PA_CONDITIONS)
    assert (got["status"], got["reason"]) == ("False", "NoTraffic")
    assert living_ready({"Active": t}, PA_CONDITIONS)["status"] == "Unknown"


def _pod(phase, ready=False, deleting=False):
    meta = {"deletionTimestamp": "x"} if deleting else {}
    return {"metadata": meta, "status": {"phase": phase,
                                         "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_pod_counts_as_knative_counts_them():
    pods = [_pod("Running", True), _pod("Running"), _pod("Pending"), _pod("Running", True, deleting=True)]
    assert pod_counts(pods) == (1, 1, 1, 1)


@pytest.mark.parametrize(("initialized", "want", "ready", "prev", "active", "init_after"), [
    (False, 1, 0, None, ("Unknown", "Queued"), False),         # activating towards initial scale
    (False, 1, 1, None, ("True", None), True),                  # reached initial scale: initialized, active
    (True, 0, 0, ("True", None), ("False", "NoTraffic"), True),  # scaled to zero
    (True, 1, 0, ("False", "NoTraffic"), ("Unknown", "Queued"), True),  # woken by a request
    (True, -1, 0, ("False", "NoTraffic"), ("False", "NoTraffic"), True),  # no metrics yet, stays inactive
])
def test_active_condition_table_of_the_kpa(initialized, want, ready, prev, active, init_after):
    conds = {}
    if initialized:
        conds["ScaleTargetInitialized"] = {"type": "ScaleTargetInitialized", "status": "True"}
    if prev:
        conds["Active"] = {"type": "Active", "status": prev[0], **({"reason": prev[1]} if prev[1] else {})}
    Autoscaler._active(conds, autoscale.settings({}, {}), initialized, want, ready, has_service=True)
    assert (conds["Active"]["status"], conds["Active"].get("reason")) == active
    assert (conds["ScaleTargetInitialized"]["status"] == "True") == init_after


def test_runner_recognises_knative_images_from_any_registry_and_digest():
    assert for_image("gcr.io/knative-releases/knative.dev/serving/cmd/webhook@sha256:abc").name == "webhook"
    assert for_image("mirror.example.com/knative.dev/serving/cmd/controller:v1.17.2").name == "controller"
    assert for_image("gcr.io/knative-releases/knative.dev/serving/cmd/activator@sha256:abc") is None
    assert for_image("") is None


def test_kubelet_style_env_expansion_and_field_refs():
    assert expand("$(A)-$(B)-$$(A)", {"A": "x"}) == "x-$(B)-$(A)"
    pod = {"metadata": {"name": "p", "namespace": "n", "labels": {"app": "webhook"}},
           "spec": {"nodeName": "kwok-cpu-1"}, "status": {"podIP": "10.0.0.5"}}
    assert field_ref(pod, "metadata.namespace") == "n"
    assert field_ref(pod, "metadata.labels['app']") == "webhook"
    assert field_ref(pod, "status.podIP") == "10.0.0.5"
    assert field_ref(pod, "spec.serviceAccountName") == "default"
    with pytest.raises(ValueError, match="unsupported"):
        field_ref(pod, "spec.hostname")


class _Svc:
    def __init__(self, name, ns, ip, ports, selector):
        self.metadata = SimpleNamespace(name=name, namespace=ns)
        self.spec = SimpleNamespace(cluster_ip=ip, selector=selector,
                                    ports=[SimpleNamespace(port=p, target_port=t) for p, t in ports])


def test_egress_resolves_a_cluster_ip_to_the_local_port_of_a_ready_endpoint():
    svc = _Svc("webhook", "knative-serving", "10.96.0.20", [(443, 8443), (9090, "metrics")], {"app": "webhook"})
    core = SimpleNamespace(list_service_for_all_namespaces=lambda: SimpleNamespace(items=[svc]))
    from localcluster.runner.pods import Container
    ready = Container("knative-serving", "webhook-1", "uid", "webhook", "img", for_image(
        "x/knative.dev/serving/cmd/webhook@sha256:1"), {"app": "webhook"}, ports={8443: 21000, 9090: 21001},
                      named={"metrics": 9090})
    eps = {"on": [ready]}
    resolve = egress.ServiceResolver(core, lambda ns, sel: eps["on"] if sel == {"app": "webhook"} else [])
    assert resolve("10.96.0.20", 443) == ("127.0.0.1", 21000)
    assert resolve("10.96.0.20", 9090) == ("127.0.0.1", 21001)
    assert resolve("webhook.knative-serving.svc", 443) == ("127.0.0.1", 21000)
    assert "no port 80" in resolve("10.96.0.20", 80)
    assert "no Service" in resolve("10.96.0.99", 443)
    eps["on"] = []
    assert "no endpoints available" in resolve("10.96.0.20", 443)


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


def test_kwok_leaves_runner_pods_to_the_runner():
    cfg = list(yaml.safe_load_all(kwok_config(100)))
    for name in ("pod-ready", "pod-complete"):
        stage = next(s for s in cfg if s["metadata"]["name"] == name)
        keys = [e["key"] for e in stage["spec"]["selector"]["matchExpressions"]]
        assert any(KWOK_IMAGE_TEST in k for k in keys), name
    for image in ("gcr.io/knative-releases/knative.dev/serving/cmd/webhook@sha256:1b79",
                  "mirror.corp/knative.dev/pkg/apiextensions/storageversion/cmd/migrate@sha256:64b7",
                  "gcr.io/knative-releases/knative.dev/serving/pkg/cleanup/cmd/cleanup@sha256:1564"):
        assert re.search(KWOK_IMAGE_TEST, image) and for_image(image) is not None, image
    assert not re.search(KWOK_IMAGE_TEST, "docker.io/envoyproxy/envoy:v1.31-latest")
