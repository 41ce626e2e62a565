"""Issue 9 acceptance: local clusters run Knative Serving's real webhook and controller (built from
knative.dev/serving v0.44.0) as the processes behind their pods, with admission on; the simulator adds only
what needs a network to pods (the autoscaler's and net-kourier's status work, the gateways, vLLM)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests
import yaml

from localcluster import paths
from localcluster.cluster import Spec
from tests.kube import Kube, eventually

pytestmark = pytest.mark.integration

KOURIER = "kourier.ingress.networking.knative.dev"
DOMAIN = "127.0.0.1.nip.io"
NS = "knative-qwen7b"
CHAT = {"model": "qwen7b", "messages": [{"role": "system", "content": "你是一个有用的助手."},
                                        {"role": "user", "content": "怎么计算1+1."}]}
DIGEST = "@sha256:" + "1" * 64


def ksvc(name: str, gpus: int = 1, annotations: dict | None = None, labels: dict | None = None,
         image: str = "vllm/vllm-openai:v0.6.3", env: str = "") -> str:
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
        "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
        "spec": {"template": {
            "metadata": {"annotations": {"autoscaling.knative.dev/initial-scale": "1", **(annotations or {})}},
            "spec": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                     "containers": [container]},
        }},
    })


def conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def get(kube: Kube, kind: str, name: str, ns: str = NS) -> dict:
    return kube.json("get", kind, name, "-n", ns)


def wait_ready(kube: Kube, name: str, timeout: float = 90) -> dict:
    def check():
        obj = get(kube, "ksvc", name)
        st = obj.get("status") or {}
        return conditions(obj).get("Ready", {}).get("status") == "True" \
            and st.get("observedGeneration") == obj["metadata"]["generation"] \
            and st.get("latestReadyRevisionName") == st.get("latestCreatedRevisionName") and obj
    return eventually(check, timeout, what=f"{NS}/{name} Ready")


def wait_condition(kube: Kube, kind: str, name: str, cond: str, reason: str, timeout: float = 90) -> dict:
    return eventually(lambda: (c := conditions(get(kube, kind, name)).get(cond, {})).get("reason") == reason and c,
                      timeout, what=f"{kind} {NS}/{name} {cond} reason {reason}")


def entry(kube: Kube, which: str) -> str:
    return (kube.cluster.dir / f"{which}.url").read_text().strip()


def patch_cm(kube: Kube, name: str, data: dict, *extra: str, check: bool = True):
    return kube.run("patch", "configmap", name, "-n", "knative-serving", "--type=merge",
                    "-p", json.dumps({"data": data}), *extra, check=check)


@pytest.fixture(scope="module")
def kn(pool, shared_knative: Path) -> Kube:
    """A cluster with the Knative CRDs only; the knative fixture installs the rest."""
    kube = pool.start("kn", Spec(ready_delay_ms=500, time_factor=0.05))
    kube.run("apply", "--server-side", "-f", str(shared_knative / "serving-crds.yaml"))
    kube.run("wait", "--for=condition=Established", "crd", "-l", "knative.dev/crd-install=true", "--timeout=60s")
    kube.run("create", "namespace", NS)
    yield kube
    pool.stop(kube)


def test_without_knative_running_a_service_gets_no_status(kn):
    kn.apply(ksvc("early", image="vllm/vllm-openai" + DIGEST))
    time.sleep(3)
    assert (get(kn, "ksvc", "early").get("status") or {}).get("conditions") is None
    kn.run("delete", "ksvc", "early", "-n", NS)


@pytest.fixture(scope="module")
def knative(kn, shared_knative: Path) -> Kube:
    for f in ("serving-core.yaml", "kourier.yaml"):
        kn.run("apply", "--server-side", "-f", str(shared_knative / f))
    kn.run("wait", "--for=condition=Available", "deploy", "--all", "-n", "knative-serving", "--timeout=180s")
    # Until Knative's webhook has written its rules and CA bundle, nothing is admitted by it.
    eventually(lambda: patch_cm(kn, "config-autoscaler", {"max-scale-up-rate": "0.5"}, "--dry-run=server",
                                check=False).returncode != 0, 90, what="Knative's config webhook enforcing")
    patch_cm(kn, "config-domain", {DOMAIN: ""})
    patch_cm(kn, "config-features", {"kubernetes.podspec-tolerations": "enabled"})
    patch_cm(kn, "config-deployment", {"registries-skipping-tag-resolving": "index.docker.io"})
    return kn


def _pid_of(kube: Kube, app: str) -> int:
    pod = kube.json("get", "pods", "-n", "knative-serving", "-l", f"app={app}")["items"][0]
    cid = pod["status"]["containerStatuses"][0]["containerID"]
    assert cid.startswith("knfleet-runner://"), cid
    return int(cid.split("://", 1)[1])


def test_webhook_and_controller_pods_are_the_real_knative_binaries(knative):
    for app, binary in (("webhook", "webhook"), ("controller", "controller")):
        pid = _pid_of(knative, app)
        assert Path(f"/proc/{pid}/exe").resolve() == (paths.knative_bin_dir() / binary).resolve()
        environ = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in e)
        assert environ["SYSTEM_NAMESPACE"] == "knative-serving"  # from the pod's fieldRef
        assert environ["POD_NAME"].startswith(f"{app}-")
        kubeconfig = yaml.safe_load(Path(environ["KUBECONFIG"]).read_text())
        assert kubeconfig["users"][0]["name"] == "system:serviceaccount:knative-serving:controller"
    # The other Knative pods stay kwok's (nothing runs behind them).
    activator = knative.json("get", "pods", "-n", "knative-serving", "-l", "app=activator")["items"][0]
    assert "containerID" not in activator["status"]["containerStatuses"][0]


def test_installed_webhook_configurations_carry_knatives_ca_bundle_and_rules(knative):
    for kind, name in (("mutatingwebhookconfiguration", "webhook.serving.knative.dev"),
                       ("validatingwebhookconfiguration", "validation.webhook.serving.knative.dev"),
                       ("validatingwebhookconfiguration", "config.webhook.serving.knative.dev")):
        hook = knative.json("get", kind, name)["webhooks"][0]
        assert hook["clientConfig"]["caBundle"], name
        assert hook["clientConfig"]["service"]["path"], name
        rules = hook["rules"]
        if name == "config.webhook.serving.knative.dev":
            assert rules[0]["resources"] == ["configmaps/*"]
        else:  # the release ships one rule for every resource; Knative rewrites it to one rule per resource
            assert len(rules) > 1 and all(len(r["resources"]) <= 2 for r in rules), rules


def test_the_real_webhook_refuses_what_knative_refuses(knative):
    bad = ksvc("too-hot", annotations={"autoscaling.knative.dev/target-utilization-percentage": "150"})
    proc = knative.run("apply", "-f", "-", stdin=bad, check=False)
    assert proc.returncode != 0
    assert 'admission webhook "validation.webhook.serving.knative.dev" denied the request' in proc.stderr
    assert "expected 1 <= 150 <= 100" in proc.stderr
    proc = patch_cm(knative, "config-autoscaler", {"max-scale-up-rate": "0.5"}, check=False)
    assert proc.returncode != 0
    assert 'admission webhook "config.webhook.serving.knative.dev" denied the request' in proc.stderr
    assert "max-scale-up-rate = 0.5, must be greater than 1.0" in proc.stderr


def test_without_a_kourier_ingress_class_the_route_waits_for_its_ingress(knative):
    patch_cm(knative, "config-network", {"ingress-class": None})
    knative.apply(ksvc("no-ingress"))
    cond = wait_condition(knative, "ksvc", "no-ingress", "Ready", "IngressNotConfigured")
    assert cond["status"] == "Unknown"
    knative.run("delete", "ksvc", "no-ingress", "-n", NS)


@pytest.fixture(scope="module")
def kourier(knative) -> Kube:
    patch_cm(knative, "config-network", {"ingress-class": KOURIER})
    return knative


def test_runbook_service_is_made_ready_by_knatives_controller_and_answers_chat(kourier):
    kourier.apply(ksvc("knative-qwen7b-svc"))
    obj = wait_ready(kourier, "knative-qwen7b-svc")
    st = obj["status"]
    assert st["url"] == f"http://knative-qwen7b-svc.{NS}.{DOMAIN}"
    assert st["address"]["url"] == f"http://knative-qwen7b-svc.{NS}.svc.cluster.local"
    assert st["latestCreatedRevisionName"] == "knative-qwen7b-svc-00001"
    # What Knative's controller made, owned as Knative owns it.
    cfg = get(kourier, "configuration", "knative-qwen7b-svc")
    rev = get(kourier, "revision", "knative-qwen7b-svc-00001")
    route = get(kourier, "route", "knative-qwen7b-svc")
    ing = get(kourier, "ingresses.networking.internal.knative.dev", "knative-qwen7b-svc")
    assert cfg["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert rev["metadata"]["ownerReferences"][0]["kind"] == "Configuration"
    assert route["metadata"]["finalizers"] == ["routes.serving.knative.dev"]
    assert ing["metadata"]["annotations"]["networking.knative.dev/ingress.class"] == KOURIER
    assert conditions(ing)["Ready"]["status"] == "True"
    # Knative's defaulting webhook ran: the user container got its default name.
    assert rev["spec"]["containers"][0]["name"] == "user-container"
    dep = get(kourier, "deployment", "knative-qwen7b-svc-00001-deployment")
    assert [c["name"] for c in dep["spec"]["template"]["spec"]["containers"]] == ["user-container", "queue-proxy"]
    assert dep["metadata"]["labels"]["serving.knative.dev/revision"] == "knative-qwen7b-svc-00001"
    # The ExternalName service Knative makes for in-cluster callers points at kourier-internal.
    placeholder = get(kourier, "service", "knative-qwen7b-svc")
    assert placeholder["spec"]["externalName"] == "kourier-internal.kourier-system.svc.cluster.local"

    host = {"Host": f"knative-qwen7b-svc.{NS}.{DOMAIN}"}
    r = requests.post(entry(kourier, "internal") + "/v1/chat/completions", json=CHAT, headers=host, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "qwen7b" and body["id"] and body["choices"][0]["message"]["content"]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    for h in (f"knative-qwen7b-svc.{NS}.svc.cluster.local", f"knative-qwen7b-svc.{NS}.svc",
              f"knative-qwen7b-svc.{NS}"):
        assert requests.get(entry(kourier, "internal") + "/v1/models", headers={"Host": h},
                            timeout=60).json()["data"][0]["id"] == "qwen7b"
    assert requests.get(entry(kourier, "public") + "/health", headers=host, timeout=60).status_code == 200


def test_streaming_malformed_json_and_unknown_host(kourier):
    wait_ready(kourier, "knative-qwen7b-svc")
    url = entry(kourier, "internal") + "/v1/chat/completions"
    host = {"Host": f"knative-qwen7b-svc.{NS}.{DOMAIN}"}
    with requests.post(url, json={**CHAT, "stream": True}, headers=host, stream=True, timeout=60) as r:
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"
    bad = requests.post(url, data=b"{not json", headers={**host, "Content-Type": "application/json"}, timeout=60)
    assert bad.status_code == 400 and bad.json()["object"] == "error" and bad.json()["code"] == 400
    assert requests.post(url, json=CHAT, headers={"Host": "nope.nowhere.example"}, timeout=30).status_code == 404


def test_too_many_gpus_is_reported_unschedulable_by_knative(kourier):
    kourier.apply(ksvc("greedy", gpus=99))
    cond = wait_condition(kourier, "revision", "greedy-00001", "Ready", "Unschedulable")
    assert cond["status"] == "False" and "Insufficient nvidia.com/gpu" in cond["message"]
    # the Configuration and then the Service take the revision's failure up in their own reconciles: wait for it
    configured = wait_condition(kourier, "ksvc", "greedy", "ConfigurationsReady", "RevisionFailed")
    assert configured["status"] == "False" and "Insufficient nvidia.com/gpu" in configured["message"]
    assert requests.get(entry(kourier, "internal") + "/health", headers={"Host": f"greedy.{NS}.{DOMAIN}"},
                        timeout=30).status_code == 404  # no route was ever programmed
    kourier.run("delete", "ksvc", "greedy", "-n", NS)


def test_image_pull_failure_surfaces_once_the_progress_deadline_passes(kourier):
    # Knative reports a waiting container only after the Deployment's progress deadline (reconcileDeployment).
    kourier.apply(ksvc("badimage", image="registry.invalid/vllm" + DIGEST,
                       annotations={"serving.knative.dev/progress-deadline": "5s"}))
    cond = wait_condition(kourier, "revision", "badimage-00001", "ResourcesAvailable", "ImagePullBackOff")
    assert cond["status"] == "False"
    # A tag Knative cannot resolve to a digest fails at once, before any pod (ContainerMissing).
    kourier.apply(ksvc("unresolvable", image="registry.invalid/vllm:1"))
    cond = wait_condition(kourier, "revision", "unresolvable-00001", "ContainerHealthy", "ContainerMissing")
    assert "failed to resolve image to digest" in cond["message"]
    kourier.run("delete", "ksvc", "badimage", "unresolvable", "-n", NS)


def test_cluster_local_service_is_internal_only(kourier):
    kourier.apply(ksvc("private", labels={"networking.knative.dev/visibility": "cluster-local"}))
    obj = wait_ready(kourier, "private")
    assert obj["status"]["url"] == f"http://private.{NS}.svc.cluster.local"
    host = {"Host": f"private.{NS}.svc.cluster.local"}
    assert requests.post(entry(kourier, "internal") + "/v1/chat/completions", json=CHAT, headers=host,
                         timeout=60).status_code == 200
    assert requests.post(entry(kourier, "public") + "/v1/chat/completions", json=CHAT, headers=host,
                         timeout=60).status_code == 404
    kourier.run("delete", "ksvc", "private", "-n", NS)


def test_min_scale_zero_scales_to_zero_and_wakes_on_request(kourier):
    # idle window = stable 60s + grace 30s + retention 0 + delay 0 = 90s, x time factor 0.05 = 4.5s
    kourier.apply(ksvc("sleepy", annotations={"autoscaling.knative.dev/min-scale": "0"}))
    wait_ready(kourier, "sleepy")
    dep = "sleepy-00001-deployment"
    eventually(lambda: get(kourier, "deployment", dep)["spec"]["replicas"] == 0, 60, what="scaled to zero")
    eventually(lambda: not kourier.json("get", "pods", "-n", NS, "-l",
                                        "serving.knative.dev/revision=sleepy-00001")["items"], 60, what="no pods")
    # the autoscaler scales the deployment first and writes the PodAutoscaler's status after: poll
    eventually(lambda: conditions(get(kourier, "podautoscalers.autoscaling.internal.knative.dev",
                                      "sleepy-00001"))["Active"]["reason"] == "NoTraffic", 30,
               what="PodAutoscaler Active=False NoTraffic")
    assert conditions(get(kourier, "ksvc", "sleepy"))["Ready"]["status"] == "True"  # still Ready at zero
    t0 = time.monotonic()
    r = requests.post(entry(kourier, "internal") + "/v1/chat/completions", json=CHAT,
                      headers={"Host": f"sleepy.{NS}.{DOMAIN}"}, timeout=120)
    took = time.monotonic() - t0
    assert r.status_code == 200, r.text
    waited = float(r.headers["X-Cold-Start-Wait-Seconds"])
    assert 0 < waited <= took
    assert get(kourier, "deployment", dep)["spec"]["replicas"] >= 1


def test_template_change_makes_revision_00002_and_the_old_one_is_scaled_away(kourier):
    kourier.apply(ksvc("rolling", annotations={"autoscaling.knative.dev/min-scale": "1"}))
    wait_ready(kourier, "rolling")
    kourier.apply(ksvc("rolling", env="two", annotations={"autoscaling.knative.dev/min-scale": "1"}))
    obj = eventually(lambda: (o := wait_ready(kourier, "rolling"))["status"]["latestReadyRevisionName"]
                     == "rolling-00002" and o, 90, what="revision 00002 ready")
    assert obj["status"]["traffic"][0]["revisionName"] == "rolling-00002"
    # Knative keeps the old revision but stops routing to it: its autoscaler may then take it to zero,
    # min-scale notwithstanding. The route marks the revision (routingState label) and the revision
    # reconciler then sets the PodAutoscaler's reachability: a step later than the route's status, so poll.
    eventually(lambda: get(kourier, "podautoscalers.autoscaling.internal.knative.dev",
                           "rolling-00001")["spec"]["reachability"] == "Unreachable", 60,
               what="old revision's PodAutoscaler Unreachable")
    eventually(lambda: get(kourier, "deployment", "rolling-00001-deployment")["spec"]["replicas"] == 0, 90,
               what="old revision scaled to zero")


def test_deleting_the_service_runs_knatives_finalizers_and_garbage_collection(kourier):
    kourier.apply(ksvc("shortlived"))
    wait_ready(kourier, "shortlived")
    kourier.run("delete", "ksvc", "shortlived", "-n", NS, "--timeout=60s")
    eventually(lambda: not kourier.json("get", "deployments,routes.serving.knative.dev,revisions.serving.knative.dev,"
                                                "ingresses.networking.internal.knative.dev", "-n", NS, "-l",
                                        "serving.knative.dev/service=shortlived")["items"], 60,
               what="everything of shortlived gone")


def test_a_killed_webhook_process_is_restarted_like_a_container(kourier):
    pid = _pid_of(kourier, "webhook")
    os.kill(pid, signal.SIGKILL)
    def webhook_pod() -> dict:
        return kourier.json("get", "pods", "-n", "knative-serving", "-l", "app=webhook")["items"][0]
    pod = eventually(lambda: (p := webhook_pod())["status"]["containerStatuses"][0]["restartCount"] == 1 and p, 60,
                     what="restartCount 1")
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137
    eventually(lambda: _pid_of(kourier, "webhook") != pid, 60, what="a new webhook process")
    # Once it is Ready again it answers: Knative's validation is back.
    hot = ksvc("hot", annotations={"autoscaling.knative.dev/target-utilization-percentage": "150"})
    eventually(lambda: "denied the request" in kourier.run("apply", "--dry-run=server", "-f", "-", check=False,
                                                           stdin=hot).stderr, 90, what="the webhook refusing again")
