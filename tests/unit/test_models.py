"""Model services from group data: defaults, errors, rendering, feature flags; smoke answer checks."""

from __future__ import annotations

import pytest

from knfleet.desired import models
from knfleet.run import smoke


def test_defaults_reproduce_the_runbook_example():
    (m,) = models.from_data([{}])
    ksvc = models.render_service(m)
    assert ksvc["metadata"]["namespace"] == "knative-qwen7b" and ksvc["metadata"]["name"] == "knative-qwen7b-svc"
    assert ksvc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "knfleet"
    tpl = ksvc["spec"]["template"]
    # GPU services get a progress deadline long enough for an image pull plus a model download
    assert tpl["metadata"]["annotations"] == {"autoscaling.knative.dev/initial-scale": "1",
                                              "serving.knative.dev/progress-deadline": "1800s"}
    ctr = tpl["spec"]["containers"][0]
    assert ctr["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert ctr["args"][:4] == ["--model", "Qwen/Qwen2.5-7B-Instruct", "--served-model-name", "qwen7b"]
    assert tpl["spec"]["tolerations"] == [models.GPU_TOLERATION]
    assert models.needed_features([m]) == {"kubernetes.podspec-tolerations": "enabled"}


def test_every_setting_renders():
    (m,) = models.from_data([{
        "name": "big", "namespace": "llm", "gpus": 2, "cpu": "8", "memory": "32Gi", "shm_size": "8Gi",
        "timeout_seconds": 600, "container_concurrency": 64, "visibility": "cluster-local",
        "node_selector": {"gpu": "a100"}, "runtime_class_name": "nvidia", "progress_deadline": "1800s",
        "env": {"VLLM_LOGGING_LEVEL": "INFO"}, "secret_env": {"HF_TOKEN": {"secret": "hf", "key": "token"}},
        "startup_probe": {"httpGet": {"path": "/health"}, "failureThreshold": 180},
        "autoscaling": {"class": "kpa", "metric": "concurrency", "target": 16, "min_scale": 0, "max_scale": 2,
                        "window": "120s", "activation_scale": 2, "target_burst_capacity": -1},
    }])
    k = models.render_service(m)
    ann = k["spec"]["template"]["metadata"]["annotations"]
    assert ann["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev"
    assert ann["autoscaling.knative.dev/window"] == "120s" and ann["serving.knative.dev/progress-deadline"] == "1800s"
    spec = k["spec"]["template"]["spec"]
    assert spec["volumes"][0]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert spec["nodeSelector"] == {"gpu": "a100"} and spec["runtimeClassName"] == "nvidia"
    # the startup probe gets the container port (Knative fills it into readiness and liveness probes only)
    assert spec["containers"][0]["startupProbe"] == {"httpGet": {"path": "/health", "port": 8000},
                                                     "failureThreshold": 180}
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert k["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    assert set(models.needed_features([m])) == {"kubernetes.podspec-nodeselector", "kubernetes.podspec-tolerations",
                                                "kubernetes.podspec-runtimeclassname"}


@pytest.mark.parametrize(("item", "needle"), [
    ({"name": "Bad_Name"}, "name = 'Bad_Name'"),
    ({"visibility": "internal"}, "visibility"),
    ({"gpus": -1}, "gpus"),
    ({"env": {"HF_TOKEN": "hf_abc"}}, "secrets are never inline"),
    ({"autoscaling": {"min-scale": 1}}, "autoscaling key(s) min-scale unknown"),
    ({"replicas": 2}, "unknown key(s) replicas"),
])
def test_bad_model_data_is_named(item, needle):
    with pytest.raises(models.ModelError) as err:
        models.from_data([item])
    assert needle in str(err.value)
    assert "hf_abc" not in str(err.value)


def test_duplicate_services_are_rejected():
    with pytest.raises(models.ModelError, match="defined twice"):
        models.from_data([{}, {}])


def test_smoke_checks_the_answer_shape_and_model():
    good = {"model": "qwen7b", "choices": [{"message": {"role": "assistant", "content": "2"}}],
            "usage": {"total_tokens": 3}}
    assert smoke.check_body(good, "qwen7b") is None
    assert "expected 'qwen7b'" in smoke.check_body({**good, "model": "other"}, "qwen7b")
    assert smoke.check_body({"model": "qwen7b"}, "qwen7b") is not None
    assert smoke.runbook_request("qwen7b")["messages"][1]["content"] == "怎么计算1+1."


def test_gpu_deadlines_reach_the_wait_and_the_cold_smoke():
    from knfleet.desired import plan, settings
    from tests.unit.bundle_fixture import fixture_bundle

    def steps(data: dict) -> list:
        return plan.plan(plan.desired("@kube/c", settings.Data(data), bundle_loader=lambda *_: fixture_bundle()))

    gpu, cpu = {"name": "gpu"}, {"name": "cpu", "gpus": 0, "progress_deadline": "5m"}
    (cpu_model,) = models.from_data([cpu])
    assert "serving.knative.dev/progress-deadline" not in models.render_service(
        models.from_data([{**cpu, "progress_deadline": None}])[0])["spec"]["template"]["metadata"]["annotations"]
    assert cpu_model.deadline_s() == 300
    run = steps({"models": [gpu, cpu]})
    wait = next(s for s in run if isinstance(s, plan.Gate) and isinstance(s.check, plan.ServicesReady))
    assert wait.timeout == 1800 + 60  # the longest progress deadline, then a minute for Knative to say why
    smoke = next(s for s in run if isinstance(s, plan.Smoke))
    assert [(t.ref, t.cold_deadline) for t in smoke.services] == [("knative-qwen7b/gpu", 1800), ("knative-qwen7b/cpu",
                                                                                                300)]
    assert smoke.deadline == 120  # a warm service
    set_by_hand = steps({"models": [gpu], "model_wait_timeout": 900})
    assert next(s for s in set_by_hand if isinstance(s, plan.Gate) and isinstance(s.check, plan.ServicesReady)
                ).timeout == 900
