"""Issue 21 acceptance: model services from the Knative Service YAML a user already has (group data
`model_manifests`), on the real Knative control plane (its webhook validates and defaults them, its controller makes
their Routes and Ingresses; the local gateway routes as those say).

One cluster serves every test of the module, in order: the runbook's example as a file (and a second, CPU-only
service in a file of its own) deployed, Ready and answering; a re-run that changes nothing; an edited annotation that
changes exactly that service; a file removed from the list, pruned; bad files that stop the run before any cluster
is touched; the same service rolled out progressively through its annotations; `knfleet status`; uninstall."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from knfleet.desired import models
from localcluster.cluster import Spec
from tests.conftest import knative_release_folder
from tests.integration.test_deploy import changed_ops, pyinfra
from tests.integration.test_rollout import knfleet
from tests.kube import Kube

pytestmark = pytest.mark.integration

NS, NAME, SMALL_NS, SMALL = "knative-qwen7b", "knative-qwen7b-svc", "llm-small", "qwen-small"
P = "autoscaling.knative.dev/"
RUNBOOK_CHAT = {"model": "qwen7b", "messages": [{"role": "system", "content": "你是一个有用的助手."},
                                                {"role": "user", "content": "怎么计算1+1."}]}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}


def runbook_service(image: str = "vllm/vllm-openai:v0.6.3", target: str = "16",
                    meta_annotations: dict[str, str] | None = None, startup_port: int | None = 8000) -> dict[str, Any]:
    """The runbook's example as a user writes it (../shared/knative/NOTES.md, GPU service shape): the appendix's
    autoscaling annotations and the vLLM container. No toleration, no progress deadline, no knfleet label. The
    startup probe names its port: without one (as NOTES.md writes it) Knative 1.17 makes a Deployment Kubernetes
    refuses, and knfleet refuses the file (see the bad-files test)."""
    meta: dict[str, Any] = {"name": NAME, "namespace": NS}
    if meta_annotations:
        meta["annotations"] = meta_annotations
    return {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": meta,
        "spec": {"template": {
            "metadata": {"annotations": {
                P + "class": "kpa.autoscaling.knative.dev", P + "metric": "concurrency", P + "target": target,
                P + "target-utilization-percentage": "80", P + "min-scale": "1", P + "max-scale": "2",
                P + "initial-scale": "1", P + "scale-down-delay": "10m", P + "window": "120s"}},
            "spec": {
                "containerConcurrency": 64, "timeoutSeconds": 600,
                "containers": [{
                    "name": "vllm", "image": image,
                    "args": ["--model", "Qwen/Qwen2.5-7B-Instruct", "--served-model-name", "qwen7b", "--port", "8000",
                             "--max-model-len", "8192"],
                    "ports": [{"containerPort": 8000}],
                    "resources": {"limits": {"nvidia.com/gpu": "1", "memory": "32Gi", "cpu": "8"},
                                  "requests": {"nvidia.com/gpu": "1", "memory": "24Gi", "cpu": "4"}},
                    "readinessProbe": {"httpGet": {"path": "/health"}, "periodSeconds": 10, "timeoutSeconds": 5,
                                       "failureThreshold": 3},
                    "startupProbe": {"httpGet": {"path": "/health", **({"port": startup_port} if startup_port else {})},
                                     "periodSeconds": 10, "failureThreshold": 180},
                }],
            }}}}


def small_service() -> dict[str, Any]:
    """A CPU-only service in a namespace no file holds; its served name is vLLM's default (the --model)."""
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": SMALL, "namespace": SMALL_NS},
            "spec": {"template": {"metadata": {"annotations": {P + "min-scale": "1"}},
                                  "spec": {"containers": [{"image": "vllm/vllm-openai:v0.6.3",
                                                           "args": ["--model", "Qwen/Qwen2.5-0.5B-Instruct"],
                                                           "resources": {"requests": {"cpu": "500m"}}}]}}}}


def write(path: Path, *docs: Any) -> str:
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False, allow_unicode=True))
    return str(path)


def deploy(root: Path, *files: str, extra: tuple[str, ...] = ()) -> Any:
    return pyinfra(root, "-y", *extra, "--data", "models=[]", "--data", "model_manifests=" + json.dumps(list(files)))


def ksvc(kube: Kube, name: str = NAME, ns: str = NS) -> dict[str, Any]:
    return kube.json("get", "ksvc", name, "-n", ns)


def ready(obj: dict[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
    return conds.get("Ready") == "True" and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]


def tags(kube: Kube) -> dict[str, tuple[str, int]]:
    return {t["tag"]: (t["revisionName"], t["percent"]) for t in ksvc(kube)["spec"]["traffic"] if t.get("tag")}


@pytest.fixture(scope="module")
def byo(pool, tmp_path_factory):
    kube = pool.start("byo", Spec(ready_delay_ms=300, time_factor=0.05), group="byo")
    folder = tmp_path_factory.mktemp("manifests")
    yield pool.root_for("byo"), kube, folder
    pool.stop(kube)


def test_the_runbook_file_is_deployed_ready_answers_the_chat_request_and_a_rerun_changes_nothing(byo):
    root, kube, folder = byo
    qwen = write(folder / "serverless.yaml", NAMESPACE, runbook_service())
    small = write(folder / "small.yaml", small_service())
    run = deploy(root, qwen, small)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    svc = ksvc(kube)
    assert ready(svc), svc.get("status")
    assert svc["metadata"]["labels"][models.MANAGED_BY] == "knfleet"
    tmpl = svc["spec"]["template"]
    # what knfleet adds where the manifest is silent, next to everything the manifest says
    assert tmpl["spec"]["tolerations"] == [models.GPU_TOLERATION]
    assert tmpl["metadata"]["annotations"]["serving.knative.dev/progress-deadline"] == "1800s"
    for key, value in runbook_service()["spec"]["template"]["metadata"]["annotations"].items():
        assert tmpl["metadata"]["annotations"][key] == value
    assert tmpl["spec"]["containers"][0]["args"] == runbook_service()["spec"]["template"]["spec"]["containers"][0][
        "args"]
    assert f"{NS}/{NAME} from {qwen} (document 2 of 2): knfleet adds label app.kubernetes.io/managed-by=knfleet; " \
           "toleration nvidia.com/gpu" in run.stderr, run.stderr[-3000:]
    # the CPU-only service: no toleration, its namespace made by knfleet
    other = ksvc(kube, SMALL, SMALL_NS)
    assert ready(other) and "tolerations" not in other["spec"]["template"]["spec"]
    assert kube.json("get", "namespace", SMALL_NS)["metadata"]["labels"][models.MANAGED_BY] == "knfleet"
    # smoke-tested by the run: the runbook's served name from --served-model-name, the other's from --model
    for ref in (f"{NS}/{NAME}", f"{SMALL_NS}/{SMALL}"):
        assert re.search(rf"smoke {ref}: 200 in \d+\.\d+s \(via kourier-internal", run.stderr), run.stderr[-3000:]
    # the runbook's chat request through kourier-internal, with the Host of the service's URL
    internal = (kube.cluster.dir / "internal.url").read_text().strip()
    host = svc["status"]["url"].split("://", 1)[1]
    r = requests.post(internal + "/v1/chat/completions", json=RUNBOOK_CHAT, headers={"Host": host}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "qwen7b" and "2" in r.json()["choices"][0]["message"]["content"]
    again = pyinfra(root, "-y", "--json", "--data", "models=[]", "--data",
                    "model_manifests=" + json.dumps([qwen, small]))
    assert again.returncode == 0, again.stderr[-3000:]
    assert changed_ops(again) == []
    assert ksvc(kube)["metadata"]["generation"] == svc["metadata"]["generation"]


def test_an_edited_annotation_changes_exactly_that_service(byo, tmp_path, monkeypatch):
    root, kube, folder = byo
    before, other_before = ksvc(kube), ksvc(kube, SMALL, SMALL_NS)
    qwen = write(folder / "serverless.yaml", NAMESPACE, runbook_service(target="8"))
    report = tmp_path / "report.json"
    monkeypatch.setenv("KNFLEET_REPORT", str(report))
    run = deploy(root, qwen, str(folder / "small.yaml"))
    assert run.returncode == 0, run.stderr[-3000:]
    steps = json.loads(report.read_text())["clusters"][kube.name]["steps"]
    applied = next(s for s in steps if s["title"] == "Model services (Knative Services)")
    assert applied["status"] == "changed" and applied["objects"] == [f"Service/{NS}/{NAME}"], applied
    after = ksvc(kube)
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert after["spec"]["template"]["metadata"]["annotations"][P + "target"] == "8"
    assert ready(after) and after["status"]["latestReadyRevisionName"] != before["status"]["latestReadyRevisionName"]
    other = ksvc(kube, SMALL, SMALL_NS)
    assert other["metadata"]["generation"] == other_before["metadata"]["generation"]
    assert other["metadata"]["resourceVersion"] == other_before["metadata"]["resourceVersion"]


def test_a_file_removed_from_the_list_prunes_its_service_only(byo):
    root, kube, folder = byo
    before = ksvc(kube)
    run = deploy(root, str(folder / "serverless.yaml"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"removed from group data (models, model_manifests): {SMALL_NS}/{SMALL}" in run.stderr
    assert not kube.exists("ksvc", SMALL, "-n", SMALL_NS)
    assert ksvc(kube)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def snapshot(kube: Kube) -> tuple[str, str, list[str]]:
    """What a run that touched the cluster would have changed: the service, knfleet's notes, the namespaces."""
    return (ksvc(kube)["metadata"]["resourceVersion"],
            kube.json("get", "configmap", "knfleet-state", "-n", "kube-system")["metadata"]["resourceVersion"],
            sorted(n["metadata"]["name"] for n in kube.json("get", "namespaces")["items"]))


def test_a_configmap_document_or_a_refused_annotation_value_stops_the_run_before_any_cluster_is_touched(byo):
    root, kube, folder = byo
    before = snapshot(kube)
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vllm-settings", "namespace": NS},
                 "data": {"max-model-len": "8192"}}
    with_cm = write(folder / "with-configmap.yaml", runbook_service(), configmap)
    run = deploy(root, with_cm, write(folder / "ok.yaml", small_service()))
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"{with_cm}: error: -: document 2 of 2 = 'v1 ConfigMap': kind ConfigMap is not allowed" in run.stderr
    assert "nothing was changed on any cluster" in run.stderr
    too_hot = copy.deepcopy(runbook_service())
    too_hot["spec"]["template"]["metadata"]["annotations"][P + "target-utilization-percentage"] = "150"
    hot = write(folder / "too-hot.yaml", NAMESPACE, too_hot)
    run = deploy(root, hot)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert (f"{hot}: error: {NS}/{NAME}: spec.template.metadata.annotations[{P}target-utilization-percentage] = "
            "'150': out of range: allowed 1 to 100") in run.stderr, run.stderr[-2000:]
    assert "nothing was changed on any cluster" in run.stderr
    # NOTES.md's shape verbatim (a startup probe without its port): Knative's webhook takes it, but the revision's
    # Deployment would be refused (port 0) and the revision never start; refused here, before any change
    portless = write(folder / "portless.yaml", NAMESPACE, runbook_service(startup_port=None))
    run = deploy(root, portless)
    assert run.returncode == 2 and f"{portless}: error: {NS}/{NAME}: spec.template.spec.containers[0].startupProbe." \
        "httpGet.port: a startup probe needs its port" in run.stderr, run.stderr[-2000:]
    # `knfleet lint` says the same of the same files
    for path, needle in ((with_cm, "kind ConfigMap is not allowed"), (hot, "out of range: allowed 1 to 100"),
                         (portless, "a startup probe needs its port")):
        linted = knfleet("lint", path)
        assert linted.returncode == 1 and needle in linted.stdout, linted.stdout + linted.stderr
    assert snapshot(kube) == before
    assert not kube.exists("ksvc", SMALL, "-n", SMALL_NS)


PROGRESSIVE = {"knfleet.dev/rollout-strategy": "progressive", "knfleet.dev/rollout-steps": "50,100",
               "knfleet.dev/rollout-bake": "1s", "knfleet.dev/rollout-checks": json.dumps({
                   "requests": 5, "prompts": [{"messages": [{"role": "user", "content": "怎么计算1+1."}],
                                               "expect": "2"}],
                   # the flow is what is tested here (test_progressive.py tests the gates): no latency verdict on a
                   # machine shared with other tests
                   "max_latency_ratio": 10, "latency_slack": "2s"})}


def test_the_manifest_service_rolled_out_progressively_through_its_annotations(byo, tmp_path, monkeypatch):
    root, kube, folder = byo
    running = ksvc(kube)["status"]["latestReadyRevisionName"]
    qwen = write(folder / "serverless.yaml", NAMESPACE, runbook_service(target="8", meta_annotations=PROGRESSIVE))
    report = tmp_path / "report.json"
    monkeypatch.setenv("KNFLEET_REPORT", str(report))
    # the running revision (Knative named it) becomes `stable`; the template named by knfleet rolls out beside it
    first = deploy(root, qwen)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    named = ksvc(kube)["spec"]["template"]["metadata"]["name"]
    assert named.startswith(f"{NAME}-") and named != running
    assert tags(kube) == {"stable": (named, 100), "previous": (running, 0)}
    assert f"revision name {named}" in first.stderr
    # a new version of the model in the file: checked against the running one step by step, promoted
    image = write(folder / "serverless.yaml", NAMESPACE,
                  runbook_service("vllm/vllm-openai:v0.6.4", target="8", meta_annotations=PROGRESSIVE))
    second = deploy(root, image)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    new = ksvc(kube)["spec"]["template"]["metadata"]["name"]
    assert new != named and tags(kube) == {"stable": (new, 100), "previous": (named, 0)}
    r = json.loads(report.read_text())["clusters"][kube.name]["rollouts"][0]
    assert r["outcome"] == "promoted" and [s["percent"] for s in r["steps"]] == [0, 50, 100]
    assert all(s["ok"] and s["candidate"]["requests"] >= 5 for s in r["steps"])
    assert f"rollout {NS}/{NAME}: 50 % ok (p95 " in second.stderr
    again = pyinfra(root, "-y", "--json", "--data", "models=[]", "--data", "model_manifests=" + json.dumps([image]))
    assert again.returncode == 0, again.stderr[-3000:]
    assert changed_ops(again) == []


def test_knfleet_status_shows_the_manifest_service_and_where_it_comes_from(byo, tmp_path):
    _, kube, folder = byo
    inv = tmp_path / "fleet.py"
    bundle = knative_release_folder()
    host = {"kubeconfig": str(kube.kubeconfig), "models": [],
            "model_manifests": [str(folder / "serverless.yaml")],
            **({"knative_bundle_dir": str(bundle)} if bundle else {})}
    # group `local`: group_data/local.py's settings, as the runs above had them (its models left out by host data)
    inv.write_text(f"local = [({f'@kube/{kube.name}'!r}, {host!r})]\n")
    status = knfleet("status", str(inv), "--json")
    assert status.returncode == 0, status.stdout[-3000:] + status.stderr[-3000:]
    c = json.loads(status.stdout)["clusters"][kube.name]
    assert c["status"] == "in-sync" and c["drift"] == [], c
    (svc,) = c["services"]
    assert svc["service"] == f"{NS}/{NAME}" and svc["ready"] and svc["rollout"] == "promoted"
    assert svc["source"] == f"{folder / 'serverless.yaml'} (document 2 of 2)"
    text = knfleet("status", str(inv))
    assert f"ksvc {NS}/{NAME}: Ready (rollout promoted" in text.stdout and "[from " in text.stdout, text.stdout


def test_uninstall_deletes_the_manifest_services_first_without_reading_the_files(byo, tmp_path, monkeypatch):
    root, kube, folder = byo
    report = tmp_path / "report.json"
    monkeypatch.setenv("KNFLEET_REPORT", str(report))
    run = pyinfra(root, "-y", "--data", "action=uninstall", "--data", "models=[]",
                  "--data", "model_manifests=" + json.dumps([str(folder / "gone.yaml")]))  # no such file: not read
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    steps = json.loads(report.read_text())["clusters"][kube.name]["steps"]
    first_delete = next(i for i, s in enumerate(steps) if s["title"].startswith("Delete "))
    assert steps[first_delete]["title"] == "Delete knfleet's Knative Services (controllers still running)"
    # (an Ingress of the service pruned before may still be finishing its deletion: that step waits for it too)
    assert steps[first_delete]["objects"][0] == f"Service/{NS}/{NAME} (deleted)", steps[first_delete]
    assert not [o for o in steps[first_delete]["objects"] if o.startswith("Service/") and o !=
                f"Service/{NS}/{NAME} (deleted)"]
    assert not kube.exists("crd", "services.serving.knative.dev")
