"""Issue 5 acceptance: model services from group data — lint, deploy, smoke test, prune."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from knfleet.report import html
from knfleet.report.records import COLD_PHASES, cold_start_line
from localcluster.cluster import Spec
from localcluster.runner.images import LARGE_TEST_IMAGE
from tests.conftest import REPO
from tests.integration.test_deploy import changed_ops, failure, pyinfra

pytestmark = pytest.mark.integration

QWEN = {}  # the runbook's example: every default
SLEEPY = {"name": "qwen7b-scale-to-zero", "autoscaling": {"initial_scale": 1, "min_scale": 0, "max_scale": 2}}


def models_arg(*items: dict) -> str:
    return "models=" + json.dumps(list(items))


@pytest.fixture(scope="module")
def cluster(pool):
    # time factor 0.05: the scale-to-zero idle window (60s stable + 30s grace) is 4.5s
    kube = pool.start("models", Spec(ready_delay_ms=500, time_factor=0.05), group="models")
    yield pool.root_for("models"), kube
    pool.stop(kube)


def test_converges_knative_proxy_and_two_models_smoke_tests_pass(cluster):
    root, kube = cluster
    first = pyinfra(root, "-y", "--data", models_arg(QWEN, SLEEPY))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for name in ("knative-qwen7b-svc", "qwen7b-scale-to-zero"):
        obj = kube.json("get", "ksvc", name, "-n", "knative-qwen7b")
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "knfleet"
        assert obj["status"]["url"] == f"http://{name}.knative-qwen7b.127.0.0.1.nip.io"
    # inventories/local.py names no URL: both go through kourier-internal, port-forwarded by the API server
    # (apiserver -> egress -> kwok's kubelet server -> the simulated gateway)
    for name in ("knative-qwen7b-svc", "qwen7b-scale-to-zero"):
        assert re.search(rf"smoke knative-qwen7b/{name}: 200 in \d+\.\d+s \(via kourier-internal \(port-forward\)\)",
                         first.stderr), first.stderr[-3000:]
    assert "port-forward to pod kourier-system/3scale-kourier-gateway-" in first.stderr
    # group_data/local.py puts the public proxy behind a load balancer: the simulator, as the cloud's controller,
    # gave the knative-nginx Service an address and serves it; public services are smoke-tested through it too.
    proxy = kube.json("get", "service", "knative-nginx", "-n", "knative-nginx")
    assert proxy["spec"]["type"] == "LoadBalancer"
    lb_ip = proxy["status"]["loadBalancer"]["ingress"][0]["ip"]
    for name in ("knative-qwen7b-svc", "qwen7b-scale-to-zero"):
        assert re.search(rf"smoke knative-qwen7b/{name}: 200 in \d+\.\d+s \(via proxy http://{re.escape(lb_ip)}:80\)",
                         first.stderr), first.stderr[-3000:]
    # Let the min-scale 0 service go idle and scale to zero. A converge (smoke when-warm, the default for a
    # service that can scale to zero) reports it at zero and does not wake it: the idle GPU stays free.
    deployment = ("deployment", "qwen7b-scale-to-zero-00001-deployment", "-n", "knative-qwen7b")
    deadline = time.monotonic() + 60
    while kube.json("get", *deployment)["status"].get("readyReplicas"):
        assert time.monotonic() < deadline, "the min-scale 0 service never scaled to zero"
        time.sleep(0.5)
    second = pyinfra(root, "-y", "--json", "--data", models_arg(QWEN, SLEEPY))
    assert second.returncode == 0, second.stderr[-3000:]
    assert changed_ops(second) == []
    assert "smoke knative-qwen7b/qwen7b-scale-to-zero: skipped (at zero, not woken" in second.stderr, \
        second.stderr[-2000:]
    assert kube.json("get", *deployment)["spec"]["replicas"] == 0  # no request reached it
    # Asked to (rollout --smoke-cold sets smoke_cold), the run wakes it and measures the cold start.
    third = pyinfra(root, "-y", "--json", "--data", models_arg(QWEN, SLEEPY), "--data", "smoke_cold=true")
    assert third.returncode == 0, third.stderr[-3000:]
    cold = re.search(r"smoke knative-qwen7b/qwen7b-scale-to-zero: 200 in (\d+\.\d+)s, cold start (\d+\.\d+)s "
                     r"\(via kourier-internal \(port-forward\)\)", third.stderr)
    assert cold, third.stderr[-2000:]
    assert float(cold.group(2)) > 0
    # the proxy path comes second: the service is warm by then
    assert re.search(r"smoke knative-qwen7b/qwen7b-scale-to-zero: 200 in \d+\.\d+s \(via proxy http://", third.stderr)
    print(f"\n{cold.group(0)}")


# Issue 25: a model of its own image (no other service pulls it), scaling to zero
COLD = {"name": "qwen7b-cold", "image": LARGE_TEST_IMAGE,
        "autoscaling": {"initial_scale": 1, "min_scale": 0, "max_scale": 1, "scale_down_delay": "0s"}}
COLD_REF = "knative-qwen7b/qwen7b-cold"
COLD_DEPLOYMENT = ("deployment", "qwen7b-cold-00001-deployment", "-n", "knative-qwen7b")
# three services take 3 of the 4 GPUs; the preflight would also keep one GPU per service free for a rollout
WITH_COLD = ("--data", models_arg(QWEN, SLEEPY, COLD), "--data", "gpu_preflight=warn")


def wait_at_zero(kube) -> None:
    deadline = time.monotonic() + 90
    while kube.json("get", *COLD_DEPLOYMENT)["status"].get("readyReplicas") or kube.json(
            "get", "pods", "-n", "knative-qwen7b", "-l", "serving.knative.dev/service=qwen7b-cold")["items"]:
        assert time.monotonic() < deadline, "the min-scale 0 service never scaled to zero"
        time.sleep(0.5)


def node_images(kube, node: str) -> list[dict]:
    return kube.json("get", "node", node)["status"].get("images") or []


def set_node_images(kube, node: str, images: list[dict]) -> None:
    kube.run("patch", "node", node, "--subresource=status", "--type=merge", "-p",
             json.dumps({"status": {"images": images}}))


def woken(root, tmp_path, name: str) -> tuple[dict, str]:
    """A converge with smoke_cold (services at zero are woken): its cluster's report entry and its output."""
    report = tmp_path / f"{name}.json"
    run = pyinfra(root, "-y", *WITH_COLD, "--data", "smoke_cold=true", report=report)
    assert run.returncode == 0, run.stderr[-3000:]
    (o,) = json.loads(report.read_text())["clusters"].values()
    return o, run.stdout + run.stderr


def test_a_woken_service_reports_its_cold_start_phases(cluster, tmp_path):
    """Issue 25: the phases of a service woken from zero add up to its measured cold start (within 5 %); woken again
    on a node that has its image, its pull phase is 0."""
    root, kube = cluster
    kube.cluster.set_image_pulls({LARGE_TEST_IMAGE: 2})
    first = pyinfra(root, "-y", *WITH_COLD, report=tmp_path / "new.json")
    assert first.returncode == 0, first.stderr[-3000:]
    (o,) = json.loads((tmp_path / "new.json").read_text())["clusters"].values()
    (new,) = [c for c in o["cold_starts"] if c["service"] == COLD_REF]  # its first revision's first pod
    assert new["trigger"] == "new_revision" and new["revision"] == "qwen7b-cold-00001", new
    assert new["phases"]["first_answer"] is None and None not in [new["phases"][k] for k in COLD_PHASES[:4]], new
    assert sum(new["phases"][k] for k in COLD_PHASES[:4]) == pytest.approx(new["total_s"], abs=0.01)
    kube.cluster.set_image_pulls({LARGE_TEST_IMAGE: 30})  # a large image: 30 s
    gpu = [n["metadata"]["name"] for n in kube.json("get", "nodes", "-l", "nvidia.com/gpu.present=true")["items"]]
    wait_at_zero(kube)
    for node in gpu:  # no node has it (as after the kubelet's image garbage collection)
        set_node_images(kube, node, [i for i in node_images(kube, node) if LARGE_TEST_IMAGE not in i["names"]])

    o, out = woken(root, tmp_path, "wake1")
    (cold,) = [c for c in o["cold_starts"] if c["service"] == COLD_REF]
    smoke_cold = next(s["cold_start_s"] for s in o["smoke"] if s["service"] == COLD_REF and s["cold_start_s"])
    assert cold["trigger"] == "wake" and cold["image"] == LARGE_TEST_IMAGE and cold["node"] in gpu
    assert cold["revision"] == "qwen7b-cold-00001"
    assert None not in cold["phases"].values(), cold
    assert cold["phases"]["pull"] >= 29, cold  # the kubelet's Pulling..Pulled
    assert sum(cold["phases"].values()) == pytest.approx(cold["total_s"], abs=0.01)
    assert abs(cold["total_s"] - smoke_cold) <= 0.05 * smoke_cold, (cold, smoke_cold)
    assert cold_start_line(cold) in out  # the closing line
    print(f"\n{cold_start_line(cold)} (smoke: cold start {smoke_cold:.2f} s)")
    pulled = [i for i in node_images(kube, cold["node"]) if LARGE_TEST_IMAGE in i["names"]]
    assert pulled, "the node that pulled the image does not list it"

    # woken again: wherever the pod lands, the node has the image (the other GPU nodes get it as a pre-pull would)
    wait_at_zero(kube)
    for node in gpu:
        if node != cold["node"]:
            set_node_images(kube, node, node_images(kube, node) + pulled)
    again, out = woken(root, tmp_path, "wake2")
    (second,) = [c for c in again["cold_starts"] if c["service"] == COLD_REF]
    assert second["phases"]["pull"] == 0.0, second
    assert None not in second["phases"].values(), second
    assert sum(second["phases"].values()) == pytest.approx(second["total_s"], abs=0.01)
    print(f"{cold_start_line(second)}")
    # the page of the two reports draws them (the latest's bar, and both over time)
    page = html.render([html.load(str(tmp_path / "wake1.json")), html.load(str(tmp_path / "wake2.json"))])
    assert page.count(f'class="cold-bar" data-cluster="{again["cluster"]}" data-service="{COLD_REF}"') == 3


def test_smoke_via_exec_runs_the_runbooks_curl_inside_the_proxy_pod(cluster, tmp_path, monkeypatch):
    """`smoke_via: exec`: curl from inside a knative-nginx pod to kourier-internal by its cluster DNS name, as the
    runbook does (the API server's exec, kwok's exec server). A cluster-local service is reached that way only: it
    is not behind the public proxy."""
    root, kube = cluster
    internal = {"name": "qwen7b-internal", "visibility": "cluster-local"}
    report = tmp_path / "report.json"
    monkeypatch.setenv("KNFLEET_REPORT", str(report))
    # smoke_cold: the runbook's service may have gone idle to zero by now (min-scale 0 by default); wake it
    run = pyinfra(root, "-y", "--data", models_arg(QWEN, internal), "--data", "smoke_via=exec",
                  "--data", "smoke_cold=true")
    assert run.returncode == 0, run.stderr[-3000:]
    smoke = json.loads(report.read_text())["clusters"][kube.name]["smoke"]
    assert all(r["via"] for r in smoke), smoke
    paths = {(r["service"], r["via"].split(" (")[0] if r["via"].startswith("kourier") else "proxy") for r in smoke}
    assert paths == {("knative-qwen7b/knative-qwen7b-svc", "kourier-internal"),
                     ("knative-qwen7b/knative-qwen7b-svc", "proxy"),
                     ("knative-qwen7b/qwen7b-internal", "kourier-internal")}, smoke
    assert all(r["ok"] and r["status"] == 200 for r in smoke), smoke
    assert all("exec in knative-nginx/knative-nginx-" in r["via"] for r in smoke if r["via"].startswith("kourier")), \
        smoke
    # the Host came from the service's status.url: cluster-local -> its svc.cluster.local name
    assert kube.json("get", "ksvc", "qwen7b-internal", "-n", "knative-qwen7b")["status"]["url"] == \
        "http://qwen7b-internal.knative-qwen7b.svc.cluster.local"


def test_invalid_values_stop_the_run_before_any_change(cluster):
    root, kube = cluster
    before = kube.json("get", "ksvc", "-n", "knative-qwen7b")["items"]
    for bad, field, allowed in (
        ({"target_utilization_percentage": 150}, "target-utilization-percentage", "allowed 1 to 100"),
        ({"scale_down_delay": "5"}, "scale-down-delay", "missing unit"),
    ):
        run = pyinfra(root, "-y", "--data", models_arg(QWEN, {**SLEEPY, "autoscaling": {**SLEEPY["autoscaling"],
                                                                                          **bad}}))
        assert run.returncode != 0
        assert "knative-qwen7b/qwen7b-scale-to-zero" in run.stderr and field in run.stderr and allowed in run.stderr
        assert "nothing was changed on any cluster" in run.stderr
    after = kube.json("get", "ksvc", "-n", "knative-qwen7b")["items"]
    assert [o["metadata"]["generation"] for o in after] == [o["metadata"]["generation"] for o in before]


def test_too_many_gpus_fails_with_unschedulable(cluster, tmp_path):
    root, kube = cluster
    greedy = {"name": "greedy", "namespace": "gpu-test", "gpus": 99}
    report = tmp_path / "run.json"
    run = pyinfra(root, "-y", "--data", models_arg(QWEN, SLEEPY, greedy), "--data", "model_wait_timeout=15",
                  "--data", "gpu_preflight=warn", report=report)  # past the preflight: what Knative says
    assert run.returncode != 0
    fail = failure(report, kube.name)
    assert fail["reason"] == "NotReady" and fail["step"].startswith("Model services Ready"), fail
    # Knative's own words for why, in the message
    assert "ksvc gpu-test/greedy" in fail["message"] and "Insufficient nvidia.com/gpu" in fail["message"]
    warnings = json.loads(report.read_text())["clusters"][kube.name]["warnings"]
    assert any("not enough GPUs" in w and "gpu-test/greedy needs 198 GPU(s)" in w for w in warnings), warnings


def test_removed_service_is_deleted_and_unmanaged_one_survives(cluster):
    root, kube = cluster
    kube.apply("""
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: hand-made, namespace: knative-qwen7b}
spec:
  template:
    spec:
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
      containers: [{image: vllm/vllm-openai:v0.6.3, args: [--served-model-name, other]}]
""")
    run = pyinfra(root, "-y", "--data", models_arg(QWEN))
    assert run.returncode == 0, run.stderr[-3000:]
    names = {o["metadata"]["name"] for o in kube.json("get", "ksvc", "-A")["items"]}
    assert "qwen7b-scale-to-zero" not in names and "greedy" not in names
    assert {"knative-qwen7b-svc", "hand-made"} <= names


def test_a_failed_pod_in_knative_serving_does_not_fail_the_run(cluster, tmp_path, monkeypatch):
    """An evicted pod (phase Failed, as after a node shutdown) stays until someone deletes it; its ReplicaSet has
    made another. Readiness leaves it alone and names it as information."""
    root, kube = cluster
    kube.apply("""
apiVersion: v1
kind: Pod
metadata: {name: evicted-activator, namespace: knative-serving}
spec:
  nodeSelector: {knfleet-test/nowhere: "true"}
  containers: [{name: activator, image: registry.invalid/activator:1}]
""")
    kube.run("patch", "pod", "evicted-activator", "-n", "knative-serving", "--subresource=status", "--type=merge",
             "-p", '{"status":{"phase":"Failed","reason":"Evicted","message":"The node was low on resource: memory."}}')
    assert kube.json("get", "pod", "evicted-activator", "-n", "knative-serving")["status"]["phase"] == "Failed"
    report = tmp_path / "report.json"
    monkeypatch.setenv("KNFLEET_REPORT", str(report))
    run = pyinfra(root, "-y", "--data", models_arg(QWEN))
    assert run.returncode == 0, run.stderr[-3000:]
    steps = json.loads(report.read_text())["clusters"][kube.name]["steps"]
    pods = next(s for s in steps if s["title"].startswith("Every pod Ready"))
    assert pods["status"] == "ok"
    assert "finished pods left alone: knative-serving/evicted-activator (Failed: Evicted)" in pods["note"], pods
    kube.run("delete", "pod", "evicted-activator", "-n", "knative-serving")


def test_an_apiserver_that_stops_answering_mid_wait_fails_the_cluster_within_its_timeouts(cluster):
    """SIGSTOP the apiserver while the run waits for a model service that cannot be scheduled: every request
    times out (request_timeout 3 s), the wait gives up at model_wait_timeout (20 s) naming the step and the cause,
    and the run ends (no hang)."""
    root, kube = cluster
    greedy = {"name": "greedy", "namespace": "gpu-test", "gpus": 99}
    env = dict(os.environ, KNFLEET_LOCAL=str(root.parent), PYINFRA_PROGRESS="off")
    argv = [str(REPO / ".venv" / "bin" / "pyinfra"), "inventories/local.py", "deploy.py", "-y",
            "--data", models_arg(QWEN, greedy), "--data", "model_wait_timeout=20", "--data", "request_timeout=3",
            "--data", "gpu_preflight=warn"]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    apiserver = kube.cluster.load_state().pids["kube-apiserver"]
    lines: list[str] = []
    stopped_at = None
    try:
        for line in proc.stderr:
            lines.append(line)
            if stopped_at is None and "Model services Ready" in line:
                os.kill(apiserver, signal.SIGSTOP)
                stopped_at = time.monotonic()
        proc.wait(timeout=120)
    finally:
        os.kill(apiserver, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - (stopped_at or time.monotonic())
    out = "".join(lines)
    assert stopped_at is not None, out[-3000:]
    assert proc.returncode != 0, out[-3000:]
    assert "Model services Ready" in out and "failed" in out and "not ready after 20s" in out, out[-3000:]
    assert "ReadTimeout" in out or "timed out" in out, out[-3000:]
    print(f"\nthe run ended {took:.1f}s after the apiserver stopped answering")
    kube.run("delete", "ksvc", "greedy", "-n", "gpu-test")
