"""Issue 20 acceptance: new model versions rolled out progressively on the real Knative control plane (its webhook
and controller write the Routes and Ingresses; the local gateway routes exactly as those Ingresses say).

One pair of clusters (wave 0 and wave 1) serves every test of the module, in order: the first version, a healthy
new one, three bad ones, a rollback by hand, a run killed mid-step, GPUs for one more pod only, and the Prometheus
gate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from knfleet.desired import progressive as pr
from localcluster import prometheus
from localcluster.cluster import Spec
from tests.conftest import REPO
from tests.integration.test_deploy import changed_ops
from tests.integration.test_rollout import knfleet, write_inventory
from tests.kube import Kube, eventually

pytestmark = pytest.mark.integration

RUNBOOK = {"model": "qwen7b", "messages": [{"role": "system", "content": "你是一个有用的助手."},
                                           {"role": "user", "content": "怎么计算1+1."}]}
# 20 requests per version and step: the p95 is the 19th answer, so one slow outlier of a loaded CI machine does
# not decide it; and a slack a 500 ms slower version is far beyond
CHECKS = {"requests": 20, "latency_slack": "200ms",
          "prompts": [{"messages": [{"role": "user", "content": "怎么计算1+1."}], "expect": "2"}]}
ROLLOUT = {"strategy": "progressive", "steps": [5, 25, 50, 100], "bake": "1s", "checks": CHECKS}


def model(tag: str, env: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """The runbook's service (knative-qwen7b/knative-qwen7b-svc) at an image tag, rolled out progressively."""
    return {"image": f"vllm/vllm-openai:{tag}", "autoscaling": {"initial_scale": 1, "min_scale": 1},
            "rollout": ROLLOUT, **({"env": env} if env else {}), **extra}


def models(*items: dict[str, Any]) -> str:
    return "models=" + json.dumps(list(items))


def run_pyinfra(inv: Path, *args: str, timeout: float = 900, env: dict[str, str] | None = None,
                ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / ".venv" / "bin" / "pyinfra"), str(inv), "deploy.py", *args], cwd=REPO,
                          env=dict(os.environ, PYINFRA_PROGRESS="off", **(env or {})), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def ksvc(kube: Kube, name: str = "knative-qwen7b-svc", ns: str = "knative-qwen7b") -> dict[str, Any]:
    return kube.json("get", "ksvc", name, "-n", ns)


def tags(kube: Kube, name: str = "knative-qwen7b-svc") -> dict[str, tuple[str, int]]:
    return {t["tag"]: (t["revisionName"], t["percent"]) for t in ksvc(kube, name)["spec"]["traffic"]}


def rollout_of(report: Path, cluster: str) -> dict[str, Any]:
    return json.loads(report.read_text())["clusters"][cluster]["rollouts"][0]


@pytest.fixture(scope="module")
def pair(pool, tmp_path_factory):
    spec = Spec(ready_delay_ms=300, time_factor=0.05)
    a, b = pool.start("prog", spec, group="progressive"), pool.start("prog", spec, group="progressive")
    inv = write_inventory(tmp_path_factory.mktemp("inv") / "fleet.py", [a, b], [0, 1])
    only_a = write_inventory(tmp_path_factory.mktemp("inv") / "canary.py", [a], [0])
    yield inv, only_a, a, b
    pool.stop(a)
    pool.stop(b)


class Client(threading.Thread):
    """The runbook's chat request, again and again, to the service's main host through the cluster's
    kourier-internal (the local gateway), as users send it while a rollout runs."""

    def __init__(self, kube: Kube, host: str) -> None:
        super().__init__(daemon=True)
        self.url = (kube.cluster.dir / "internal.url").read_text().strip() + "/v1/chat/completions"
        self.host, self.statuses, self.done = host, [], threading.Event()

    def run(self) -> None:
        http = requests.Session()
        http.trust_env = False
        while not self.done.is_set():
            try:
                self.statuses.append(http.post(self.url, json=RUNBOOK, headers={"Host": self.host}, timeout=30)
                                     .status_code)
            except requests.RequestException as err:
                self.statuses.append(type(err).__name__)
            time.sleep(0.02)

    def stop(self) -> list[Any]:
        self.done.set()
        self.join(60)
        return self.statuses


class Traffic(threading.Thread):
    """Samples the Route's traffic (status.traffic) of a service while a run goes on: the least the stable
    revision had and the most any other revision had."""

    def __init__(self, kube: Kube, stable: str) -> None:
        super().__init__(daemon=True)
        self.kube, self.stable, self.done, self.samples = kube, stable, threading.Event(), []

    def run(self) -> None:
        while not self.done.is_set():
            try:
                st = ksvc(self.kube)["status"].get("traffic") or []
                self.samples.append(pr.serving(st))
            except AssertionError:
                pass
            time.sleep(0.2)

    def stop(self) -> tuple[int, int]:
        self.done.set()
        self.join(30)
        least = min(s.get(self.stable, 0) for s in self.samples)
        most_other = max(max((v for r, v in s.items() if r != self.stable), default=0) for s in self.samples)
        return least, most_other


def test_first_version_then_a_healthy_one_step_by_step_with_no_failed_request_and_a_quiet_rerun(pair, tmp_path):
    inv, _, a, b = pair
    first = knfleet("rollout", str(inv), "--data", models(model("v0.6.3")))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    v1 = {k: ksvc(k)["spec"]["template"]["metadata"]["name"] for k in (a, b)}
    for kube in (a, b):
        assert v1[kube].startswith("knative-qwen7b-svc-")
        assert tags(kube) == {"stable": (v1[kube], 100)}
    client = Client(a, ksvc(a)["status"]["url"].split("://", 1)[1])
    client.start()
    report = tmp_path / "rollout.json"
    try:
        second = knfleet("rollout", str(inv), "--report", str(report), "--data", models(model("v0.6.4")))
    finally:
        statuses = client.stop()
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert statuses and all(s == 200 for s in statuses), [s for s in statuses if s != 200][:10]
    for kube in (a, b):
        new = ksvc(kube)["spec"]["template"]["metadata"]["name"]
        assert new != v1[kube]
        assert tags(kube) == {"stable": (new, 100), "previous": (v1[kube], 0)}
        r = rollout_of(report, kube.name)
        assert r["outcome"] == "promoted" and r["stable"] == new and r["previous"] == v1[kube]
        assert [s["percent"] for s in r["steps"]] == [0, 5, 25, 50, 100] and all(s["ok"] for s in r["steps"])
        assert all(s["candidate"]["requests"] >= 20 and s["stable"]["requests"] >= 20 for s in r["steps"])
        # issue 25: the new version's pods started during the rollout, phase by phase (no request of their own)
        colds = [c for c in json.loads(report.read_text())["clusters"][kube.name]["cold_starts"]
                 if c["trigger"] == "rollout_step"]
        assert colds and all(c["revision"] == new and c["image"] == "vllm/vllm-openai:v0.6.4" for c in colds), colds
        assert all(v is not None for c in colds for k, v in c["phases"].items() if k != "first_answer"), colds
        # the previous revision gave its GPUs back: its PodAutoscaler's min-scale dropped to 0
        pa = kube.json("get", "podautoscaler", v1[kube], "-n", "knative-qwen7b")
        assert pa["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "0"
    assert "rollout knative-qwen7b/knative-qwen7b-svc: 25 % ok (p95 " in second.stderr
    again = run_pyinfra(inv, "-y", "--json", "--data", models(model("v0.6.4")))
    assert again.returncode == 0, again.stderr[-3000:]
    assert changed_ops(again) == []


@pytest.mark.parametrize(("env", "check"), [
    ({"KNFLEET_SIM_LATENCY_MS": "500"}, "latency"),
    ({"KNFLEET_SIM_ERROR_RATE": "0.1"}, "errors"),
    ({"KNFLEET_SIM_ANSWER": "1+1 等于 3。"}, "expect"),
], ids=["500ms-slower", "10%-errors", "wrong-answer"])
def test_a_bad_new_version_is_rolled_back_at_the_first_step_and_the_second_wave_is_untouched(pair, tmp_path, env,
                                                                                              check):
    inv, _, a, b = pair
    stable = tags(a)["stable"][0]
    b_before = ksvc(b)["metadata"]["resourceVersion"]
    watch = Traffic(a, stable)
    watch.start()
    report = tmp_path / "rollout.json"
    try:
        run = knfleet("rollout", str(inv), "--report", str(report), "--data", models(model("v0.6.5", env)))
    finally:
        least, most_other = watch.stop()
    assert run.returncode == 2, run.stdout[-3000:] + run.stderr[-3000:]  # halted after wave 0
    assert least >= 95 and most_other <= 5, (least, most_other)
    assert tags(a)["stable"] == (stable, 100) and tags(a)["candidate"][1] == 0
    rep = json.loads(report.read_text())
    ca = rep["clusters"][a.name]
    assert ca["status"] == "failed" and ca["failures"][0]["reason"] == "RolloutCheckFailed"
    r = ca["rollouts"][0]
    assert r["outcome"] == "rolled back" and r["steps"][-1]["check"] == check and r["steps"][-1]["percent"] <= 5
    assert rep["clusters"][b.name]["status"] == "untouched"
    assert ksvc(b)["metadata"]["resourceVersion"] == b_before
    # the closing line names the check and both versions' figures (the new version's first)
    line = next(x for x in run.stderr.splitlines() if "FAILED (install)" in x and a.name in x)
    assert f"{check} at " in line and " vs " in line and "errors " in line, line


def test_a_rolled_back_version_is_not_tried_again_until_rollout_retry_names_it(pair, tmp_path):
    _, only_a, a, _ = pair
    bad = model("v0.6.5", {"KNFLEET_SIM_ANSWER": "1+1 等于 3。"})
    generation = ksvc(a)["metadata"]["generation"]
    report = tmp_path / "run.json"
    again = run_pyinfra(only_a, "-y", "--data", models(bad), env={"KNFLEET_REPORT": str(report)})
    assert again.returncode != 0
    failure = json.loads(report.read_text())["clusters"][a.name]["failures"][0]
    assert failure["reason"] == "RolloutCheckFailed" and "was rolled back" in failure["message"]
    assert ksvc(a)["metadata"]["generation"] == generation  # no new attempt: nothing applied


def test_a_new_revision_that_never_becomes_ready_is_rolled_back_without_its_tag(pair, tmp_path):
    _, only_a, a, _ = pair
    stable = tags(a)["stable"][0]
    greedy = model("v0.6.5", gpus=99)  # no node has 99 GPUs: Knative reports the revision Unschedulable
    report = tmp_path / "run.json"
    run = run_pyinfra(only_a, "-y", "--data", models(greedy), "--data", "gpu_preflight=off",
                      "--data", "model_wait_timeout=20", env={"KNFLEET_REPORT": str(report)})
    assert run.returncode != 0
    cluster = json.loads(report.read_text())["clusters"][a.name]
    assert cluster["failures"][0]["reason"] == "RolloutFailed", cluster["failures"]
    assert cluster["rollouts"][0]["outcome"] == "rolled back" and "Unschedulable" in cluster["rollouts"][0]["reason"]
    # the Route stays Ready on the running version: the failed revision is not named by any tag
    assert tags(a)["stable"] == (stable, 100) and "candidate" not in tags(a)
    assert pr.serving(ksvc(a)["status"]["traffic"]) == {stable: 100}


def test_sigkill_during_a_step_then_a_new_run_resumes_at_that_step(pair, tmp_path):
    _, only_a, a, _ = pair
    slow_bake = model("v0.6.6", rollout={**ROLLOUT, "bake": "4s"})
    argv = [str(REPO / ".venv" / "bin" / "pyinfra"), str(only_a), "deploy.py", "-y", "--data", models(slow_bake)]
    proc = subprocess.Popen(argv, cwd=REPO, env=dict(os.environ, PYINFRA_PROGRESS="off"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    def at_25() -> pr.State | None:
        st = pr.state_of(ksvc(a))
        return st if st and st.phase == pr.PROGRESSING and st.step == 1 and st.step_started else None
    try:
        killed_at = eventually(at_25, timeout=300, interval=0.2, what="the rollout at its 25 % step")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert tags(a)["candidate"][1] == 25
    report = tmp_path / "run.json"
    resumed = run_pyinfra(only_a, "-y", "--data", models(slow_bake), env={"KNFLEET_REPORT": str(report)})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    r = rollout_of(report, a.name)
    assert r["resumed_at"] == 25 and r["outcome"] == "promoted"
    assert [s["percent"] for s in r["steps"] if s["at"] > killed_at.step_started] == [25, 50, 100]
    assert tags(a)["stable"] == (killed_at.candidate, 100)


def test_knfleet_rollback_puts_the_previous_version_back_at_100_percent(pair, tmp_path):
    inv, only_a, a, b = pair
    stable, previous = tags(a)["stable"][0], tags(a)["previous"][0]
    report = tmp_path / "rollback.json"
    back = knfleet("rollback", str(inv), "knative-qwen7b-svc", "--limit", a.name, "--report", str(report),
                   "--data", models(model("v0.6.6")))
    assert back.returncode == 0, back.stdout[-3000:] + back.stderr[-3000:]
    assert tags(a) == {"stable": (previous, 100), "candidate": (stable, 0)}
    assert json.loads(report.read_text())["clusters"][a.name]["status"] == "changed"
    pa = a.json("get", "podautoscaler", previous, "-n", "knative-qwen7b")
    assert pa["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1"  # its own again


def test_gpus_for_one_more_pod_only_surge_by_one_and_none_free_stops_before_any_change(pair, tmp_path):
    _, only_a, a, _ = pair
    # three pods of one GPU each at min scale on a cluster of four GPUs: one free
    # the runbook's service at its stable version (one GPU) and two pods of one GPU each at min scale: of four GPUs,
    # one is free (the GPU preflight, which counts a spare pod per service, only warns here)
    qwen = model(tags_image(a))
    big = {"name": "big", "namespace": "surge", "gpus": 1, "autoscaling": {"initial_scale": 1, "min_scale": 2},
           "rollout": {**ROLLOUT, "steps": [50, 100]}}
    warn = ("--data", "gpu_preflight=warn")
    first = run_pyinfra(only_a, "-y", *warn, "--data", models(qwen, {**big, "image": "vllm/vllm-openai:v0.6.3"}))
    assert first.returncode == 0, first.stderr[-3000:]
    eventually(lambda: len(running(a, "surge")) == 2, timeout=120, what="two pods of big")
    eventually(lambda: len(running(a, "knative-qwen7b")) == 1, timeout=120, what="one pod of the runbook service")
    seen: list[tuple[int, str, bool]] = []  # (rollout step, pod, pending)
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                st = pr.state_of(ksvc(a, "big", "surge"))
                for pod in a.json("get", "pods", "-n", "surge")["items"]:
                    pending = pod["status"].get("phase") == "Pending"
                    seen.append((st.step if st else -9, pod["metadata"]["name"], pending))
            except AssertionError:
                pass
            time.sleep(0.2)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    report = tmp_path / "run.json"
    try:
        second = run_pyinfra(only_a, "-y", *warn, "--data", models(qwen, {**big, "image": "vllm/vllm-openai:v0.6.4"}),
                             env={"KNFLEET_REPORT": str(report)})
    finally:
        stop.set()
        t.join(30)
    assert second.returncode == 0, second.stderr[-3000:]
    r = next(x for x in json.loads(report.read_text())["clusters"][a.name]["rollouts"] if x["service"] == "surge/big")
    assert r["surge"] is True and r["outcome"] == "promoted"
    pending_steps: dict[str, set[int]] = {}
    for step, pod, pending in seen:
        if pending:
            pending_steps.setdefault(pod, set()).add(step)
    assert all(len(steps) == 1 for steps in pending_steps.values()), pending_steps  # never Pending across a step
    # every GPU taken: one more pod cannot start anywhere -> the rollout stops before any change, naming the nodes
    eventually(lambda: len(running(a, "surge")) == 2, timeout=120, what="the previous revision's pods gone")
    a.apply(BLOCKER)
    eventually(lambda: running(a, "default", "app=blocker"), timeout=60, what="the blocker pod")
    generation = ksvc(a, "big", "surge")["metadata"]["generation"]
    report2 = tmp_path / "run2.json"
    third = run_pyinfra(only_a, "-y", *warn, "--data", models(qwen, {**big, "image": "vllm/vllm-openai:v0.6.5"}),
                        env={"KNFLEET_REPORT": str(report2)})
    assert third.returncode != 0
    failure = json.loads(report2.read_text())["clusters"][a.name]["failures"][0]
    assert failure["reason"] == "CapacityShortfall" and "kwok-gpu-1: 0 of 2 free" in failure["message"] \
        and "kwok-gpu-2: 0 of 2 free" in failure["message"], failure
    assert ksvc(a, "big", "surge")["metadata"]["generation"] == generation
    a.run("delete", "pod", "blocker", "-n", "default", "--wait=false")


BLOCKER = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "blocker", "namespace": "default",
                                                                       "labels": {"app": "blocker"}},
                      "spec": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                               "containers": [{"name": "c", "image": "busybox",
                                               "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})


def tags_image(kube: Kube) -> str:
    """The image tag of the runbook service's stable revision."""
    stable = tags(kube)["stable"][0]
    rev = kube.json("get", "revision", stable, "-n", "knative-qwen7b")
    return rev["spec"]["containers"][0]["image"].rsplit(":", 1)[1]


def running(kube: Kube, ns: str, selector: str = "") -> list[str]:
    pods = kube.json("get", "pods", "-n", ns, *(["-l", selector] if selector else []))["items"]
    return [p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]


def test_prometheus_gate_compares_the_two_revisions_time_to_first_token(pair, tmp_path):
    _, only_a, a, _ = pair
    try:
        prom = prometheus.start(tmp_path / "prometheus", [(a.cluster.dir / "metrics.url").read_text().strip()])
    except prometheus.PrometheusMissing as err:
        pytest.fail(str(err))
    try:
        gate = {"ttft_p95": {"query": pr.PROMETHEUS_DEFAULTS["ttft_p95"], "max_ratio": 1.5}}
        # the checks' own figures are left lenient: the real-traffic figure from Prometheus decides
        lenient = {**CHECKS, "max_latency_ratio": 1000, "max_ttft_ratio": 1000, "prometheus": gate,
                   "prometheus_window": "30s"}
        rollout = {**ROLLOUT, "steps": [100], "bake": "5s", "checks": lenient}
        data = ("--data", f"prometheus_url={prom.url}")
        healthy = tmp_path / "healthy.json"
        ok = run_pyinfra(only_a, "-y", *data, "--data", models(model("v0.7.0", rollout=rollout)),
                         env={"KNFLEET_REPORT": str(healthy)})
        assert ok.returncode == 0, ok.stderr[-3000:]
        step = rollout_of(healthy, a.name)["steps"][-1]
        assert step["stable"]["prometheus"]["ttft_p95"] is not None
        assert step["candidate"]["prometheus"]["ttft_p95"] is not None
        slow = tmp_path / "slow.json"
        bad = run_pyinfra(only_a, "-y", *data, "--data",
                          models(model("v0.7.1", {"KNFLEET_SIM_LATENCY_MS": "400"}, rollout=rollout)),
                          env={"KNFLEET_REPORT": str(slow)})
        assert bad.returncode != 0
        r = rollout_of(slow, a.name)
        assert r["outcome"] == "rolled back" and r["steps"][-1]["check"] == "prometheus:ttft_p95", r
        figures = r["steps"][-1]
        assert figures["candidate"]["prometheus"]["ttft_p95"] > 0.3 > figures["stable"]["prometheus"]["ttft_p95"]
    finally:
        prom.stop()
