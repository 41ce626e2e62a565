"""Issue 3 acceptance: the Knative/Kourier/vLLM simulator honours Knative's observable contract."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
import yaml

from localcluster.cluster import Spec
from tests.kube import Kube, eventually

pytestmark = pytest.mark.integration

KOURIER = "kourier.ingress.networking.knative.dev"
DOMAIN = "127.0.0.1.nip.io"
CHAT = {"model": "qwen7b", "messages": [{"role": "system", "content": "你是一个有用的助手."},
                                        {"role": "user", "content": "怎么计算1+1."}]}


def ksvc(name: str, ns: str = "knative-qwen7b", gpus: int = 1, annotations: dict | None = None,
         labels: dict | None = None, image: str = "vllm/vllm-openai:v0.6.3", env: str = "") -> str:
    container = {
        "image": image,
        "args": ["--model", "Qwen/Qwen2.5-7B-Instruct", "--served-model-name", "qwen7b", "--port", "8000"],
        "ports": [{"containerPort": 8000}],
        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
    }
    if env:
        container["env"] = [{"name": "REVISION_MARK", "value": env}]
    return yaml.safe_dump({
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"template": {
            "metadata": {"annotations": {"autoscaling.knative.dev/initial-scale": "1", **(annotations or {})}},
            "spec": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                     "containers": [container]},
        }},
    })


def ready_condition(kube: Kube, name: str, ns: str = "knative-qwen7b") -> dict:
    obj = kube.json("get", "ksvc", name, "-n", ns)
    conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
    return {**conds.get("Ready", {}), "_obj": obj}


def wait_ready(kube: Kube, name: str, ns: str = "knative-qwen7b", timeout: float = 60) -> dict:
    def check():
        c = ready_condition(kube, name, ns)
        st = c["_obj"].get("status") or {}
        return c.get("status") == "True" and st.get("observedGeneration") == c["_obj"]["metadata"]["generation"] \
            and st.get("latestReadyRevisionName") == st.get("latestCreatedRevisionName") and c["_obj"]
    return eventually(check, timeout, what=f"{ns}/{name} Ready")


def wait_reason(kube: Kube, name: str, reason: str, ns: str = "knative-qwen7b", timeout: float = 60) -> dict:
    return eventually(lambda: (c := ready_condition(kube, name, ns)).get("reason") == reason and c,
                      timeout, what=f"{ns}/{name} Ready reason {reason}")


def entry(kube: Kube, which: str) -> str:
    return (kube.cluster.dir / f"{which}.url").read_text().strip()


@pytest.fixture(scope="module")
def kn(pool, shared_knative: Path) -> Kube:
    """A cluster with the Knative CRDs only; the knative fixture installs the rest."""
    kube = pool.start("sim", Spec(ready_delay_ms=500, time_factor=0.05))
    kube.run("apply", "--server-side", "-f", str(shared_knative / "serving-crds.yaml"))
    kube.run("wait", "--for=condition=Established", "crd", "-l", "knative.dev/crd-install=true", "--timeout=60s")
    kube.run("create", "namespace", "knative-qwen7b")
    yield kube
    pool.stop(kube)


def test_no_ready_condition_while_knative_is_not_running(kn):
    kn.apply(ksvc("early"))
    time.sleep(3)
    assert (kn.json("get", "ksvc", "early", "-n", "knative-qwen7b").get("status") or {}).get("conditions") is None
    kn.run("delete", "ksvc", "early", "-n", "knative-qwen7b")


@pytest.fixture(scope="module")
def knative(kn, shared_knative: Path) -> Kube:
    for f in ("serving-core.yaml", "kourier.yaml"):
        kn.run("apply", "--server-side", "-f", str(shared_knative / f))
    kn.run("wait", "--for=condition=Available", "deploy", "--all", "-n", "knative-serving", "--timeout=120s")
    kn.run("patch", "configmap", "config-domain", "-n", "knative-serving", "--type=merge",
           "-p", json.dumps({"data": {DOMAIN: ""}}))
    kn.run("patch", "configmap", "config-features", "-n", "knative-serving", "--type=merge",
           "-p", json.dumps({"data": {"kubernetes.podspec-tolerations": "enabled"}}))
    return kn


def set_ingress_class(kube: Kube, value: str | None) -> None:
    kube.run("patch", "configmap", "config-network", "-n", "knative-serving", "--type=merge",
             "-p", json.dumps({"data": {"ingress-class": value}}))


def test_without_kourier_ingress_class_the_service_is_ingress_not_configured(knative):
    set_ingress_class(knative, None)
    knative.apply(ksvc("no-ingress"))
    cond = wait_reason(knative, "no-ingress", "IngressNotConfigured")
    assert cond["status"] == "False"
    knative.run("delete", "ksvc", "no-ingress", "-n", "knative-qwen7b")


@pytest.fixture(scope="module")
def kourier(knative) -> Kube:
    set_ingress_class(knative, KOURIER)
    return knative


def test_runbook_service_becomes_ready_and_answers_chat(kourier):
    kourier.apply(ksvc("knative-qwen7b-svc"))
    obj = wait_ready(kourier, "knative-qwen7b-svc")
    st = obj["status"]
    assert st["url"] == f"http://knative-qwen7b-svc.knative-qwen7b.{DOMAIN}"
    assert st["address"]["url"] == "http://knative-qwen7b-svc.knative-qwen7b.svc.cluster.local"
    assert st["latestCreatedRevisionName"] == "knative-qwen7b-svc-00001"
    assert {c["type"] for c in st["conditions"]} == {"Ready", "ConfigurationsReady", "RoutesReady"}
    dep = kourier.json("get", "deployment", "knative-qwen7b-svc-00001-deployment", "-n", "knative-qwen7b")
    labels = dep["metadata"]["labels"]
    assert labels["serving.knative.dev/service"] == "knative-qwen7b-svc"
    assert labels["serving.knative.dev/revision"] == "knative-qwen7b-svc-00001"
    assert labels["serving.knative.dev/configuration"] == "knative-qwen7b-svc"
    assert dep["spec"]["replicas"] == 1

    host = {"Host": f"knative-qwen7b-svc.knative-qwen7b.{DOMAIN}"}
    r = requests.post(entry(kourier, "internal") + "/v1/chat/completions", json=CHAT, headers=host, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "qwen7b" and body["id"] and body["choices"][0]["message"]["content"]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    # Every host form Kourier accepts reaches it.
    for h in ("knative-qwen7b-svc.knative-qwen7b.svc.cluster.local", "knative-qwen7b-svc.knative-qwen7b.svc",
              "knative-qwen7b-svc.knative-qwen7b"):
        assert requests.get(entry(kourier, "internal") + "/v1/models", headers={"Host": h},
                            timeout=30).json()["data"][0]["id"] == "qwen7b"
    # The public proxy serves it too: it is not cluster-local.
    assert requests.get(entry(kourier, "public") + "/health", headers=host, timeout=30).status_code == 200


def test_streaming_malformed_json_and_unknown_host(kourier):
    wait_ready(kourier, "knative-qwen7b-svc")
    url = entry(kourier, "internal") + "/v1/chat/completions"
    host = {"Host": f"knative-qwen7b-svc.knative-qwen7b.{DOMAIN}"}
    with requests.post(url, json={**CHAT, "stream": True}, headers=host, stream=True, timeout=30) as r:
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"
    bad = requests.post(url, data=b"{not json", headers={**host, "Content-Type": "application/json"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["object"] == "error" and bad.json()["code"] == 400
    assert requests.post(url, json=CHAT, headers={"Host": "nope.nowhere.example"}, timeout=30).status_code == 404


def test_too_many_gpus_is_unschedulable(kourier):
    kourier.apply(ksvc("greedy", gpus=99))
    cond = wait_reason(kourier, "greedy", "Unschedulable")
    assert cond["status"] == "False" and "nvidia.com/gpu" in cond["message"]
    host = {"Host": f"greedy.knative-qwen7b.{DOMAIN}"}
    assert requests.get(entry(kourier, "internal") + "/health", headers=host, timeout=30).status_code == 503


def test_image_pull_backoff_and_progress_deadline(kourier):
    kourier.apply(ksvc("badimage", image="registry.invalid/vllm:1", gpus=1))
    assert wait_reason(kourier, "badimage", "ImagePullBackOff")["status"] == "False"
    kourier.apply(ksvc("slow", gpus=99, annotations={"serving.knative.dev/progress-deadline": "3s"}))
    cond = wait_reason(kourier, "slow", "ProgressDeadlineExceeded", timeout=90)
    assert cond["status"] == "False"
    kourier.run("delete", "ksvc", "badimage", "slow", "greedy", "-n", "knative-qwen7b")


def test_cluster_local_service_is_internal_only(kourier):
    kourier.apply(ksvc("private", labels={"networking.knative.dev/visibility": "cluster-local"}))
    obj = wait_ready(kourier, "private")
    assert obj["status"]["url"] == "http://private.knative-qwen7b.svc.cluster.local"
    host = {"Host": "private.knative-qwen7b.svc.cluster.local"}
    assert requests.post(entry(kourier, "internal") + "/v1/chat/completions", json=CHAT, headers=host,
                         timeout=30).status_code == 200
    assert requests.post(entry(kourier, "public") + "/v1/chat/completions", json=CHAT, headers=host,
                         timeout=30).status_code == 404
    kourier.run("delete", "ksvc", "private", "-n", "knative-qwen7b")


def test_min_scale_zero_scales_to_zero_and_wakes_on_request(kourier):
    # idle window = stable 60s + grace 30s + retention 0 + delay 0 = 90s, x time factor 0.05 = 4.5s
    kourier.apply(ksvc("sleepy", annotations={"autoscaling.knative.dev/min-scale": "0"}))
    wait_ready(kourier, "sleepy")
    dep = "sleepy-00001-deployment"
    eventually(lambda: kourier.json("get", "deployment", dep, "-n", "knative-qwen7b")["spec"]["replicas"] == 0,
               60, what="scaled to zero")
    eventually(lambda: not kourier.json("get", "pods", "-n", "knative-qwen7b", "-l",
                                        "serving.knative.dev/revision=sleepy-00001")["items"], 60, what="no pods")
    assert ready_condition(kourier, "sleepy")["status"] == "True"  # still Ready at zero
    t0 = time.monotonic()
    r = requests.post(entry(kourier, "internal") + "/v1/chat/completions", json=CHAT,
                      headers={"Host": f"sleepy.knative-qwen7b.{DOMAIN}"}, timeout=120)
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    waited = float(r.headers["X-Cold-Start-Wait-Seconds"])
    assert 0 < waited <= took
    assert kourier.json("get", "deployment", dep, "-n", "knative-qwen7b")["spec"]["replicas"] == 1


def test_template_change_makes_revision_00002_and_removes_the_old_one(kourier):
    kourier.apply(ksvc("rolling"))
    wait_ready(kourier, "rolling")
    kourier.apply(ksvc("rolling", env="two"))
    obj = eventually(lambda: (o := wait_ready(kourier, "rolling"))["status"]["latestReadyRevisionName"]
                     == "rolling-00002" and o, 60, what="revision 00002 ready")
    assert obj["status"]["traffic"][0]["revisionName"] == "rolling-00002"
    eventually(lambda: not kourier.exists("deployment", "rolling-00001-deployment", "-n", "knative-qwen7b"),
               60, what="old revision removed")


def test_deleting_the_service_removes_its_revision_deployments(kourier):
    kourier.apply(ksvc("shortlived"))
    wait_ready(kourier, "shortlived")
    kourier.run("delete", "ksvc", "shortlived", "-n", "knative-qwen7b")
    eventually(lambda: not kourier.json("get", "deployments", "-n", "knative-qwen7b", "-l",
                                        "serving.knative.dev/service=shortlived")["items"], 60, what="deployments gone")
