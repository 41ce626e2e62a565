"""Issue 25, part 2 acceptance: images pulled before they are needed (`prepull: true`), on the real local control
plane whose simulated kubelets pull images as a real kubelet records it (localcluster/runner/images.py)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml

from localcluster import nodes
from localcluster.cluster import Spec
from tests.integration.test_deploy import changed_ops, failure, pyinfra
from tests.integration.test_rollout import knfleet
from tests.kube import eventually

pytestmark = pytest.mark.integration

NS = "knative-qwen7b"
IMAGE = "registry.knfleet.local/models/vllm@sha256:" + "5e" * 32  # by digest: Knative leaves it as it is
MODEL = {"name": "pp", "image": IMAGE, "prepull": True, "smoke": "never",
         "autoscaling": {"initial_scale": 1, "min_scale": 1}}
COLD_IMAGE = IMAGE.replace("5e" * 32, "7c" * 32)
COLD = {**MODEL, "name": "cold", "image": COLD_IMAGE, "prepull": False}  # the same service, not pre-pulled
MISSING = {"name": "missing", "image": "registry.invalid/models/vllm:does-not-exist", "prepull": True,
           "smoke": "never"}
GPU_NODES = {"kwok-gpu-1", "kwok-gpu-2"}


def models_arg(*items: dict) -> str:
    return "models=" + json.dumps(list(items))


@pytest.fixture(scope="module")
def cluster(pool):
    kube = pool.start("prepull", Spec(cpu_nodes=1, gpu_nodes=2, ready_delay_ms=300), group="prepull")
    yield pool.root_for("prepull"), kube
    pool.stop(kube)


def daemonset_pods(kube, ns: str, what: str) -> list[dict]:
    return kube.json("get", "pods", "-n", ns, "-l", f"knfleet.dev/prepull={what}")["items"]


def kubelet_events(kube, ns: str, pod: str) -> list[dict]:
    items = kube.json("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={pod}")["items"]
    return [e for e in items if (e.get("source") or {}).get("component") == "kubelet"]


def node_images(kube, node: str) -> set[str]:
    return {n for i in kube.json("get", "node", node)["status"].get("images") or [] for n in i["names"]}


def test_a_new_models_first_revision_starts_without_a_pull_after_the_run_waited_on_every_gpu_node(cluster, tmp_path):
    root, kube = cluster
    kube.cluster.set_image_pulls({IMAGE: 4.0, COLD_IMAGE: 4.0})  # pulls a revision shows unless the image is there
    report = tmp_path / "report.json"
    # --dry on the fresh cluster names the DaemonSets among what a run would create, and creates nothing
    dry = pyinfra(root, "--dry", "--data", models_arg(MODEL, COLD))
    assert dry.returncode == 0, dry.stderr[-3000:]
    said = dry.stderr + dry.stdout
    assert re.search(rf"prepull: 2 object\(s\) differ: DaemonSet/{NS}/knfleet-prepull-pp \(missing\), "
                     r"DaemonSet/knative-serving/knfleet-prepull-queue-proxy \(missing\)", said), \
        [x for x in said.splitlines() if "prepull" in x]
    assert not kube.exists("namespace", NS)
    run = pyinfra(root, "-y", "--data", models_arg(MODEL, COLD), report=report)
    assert run.returncode == 0, run.stderr[-4000:]
    # the run waited for the DaemonSets on every GPU node, and on none of the CPU nodes, before the services stage
    said = re.search(r"images on every eligible node: (.*)", run.stderr)
    assert said, run.stderr[-3000:]
    assert f"{NS}/knfleet-prepull-pp on 2 node(s) (kwok-gpu-1, kwok-gpu-2)" in said.group(1)
    assert "knative-serving/knfleet-prepull-queue-proxy on 2 node(s) (kwok-gpu-1, kwok-gpu-2)" in said.group(1)
    steps = [s["title"] for s in json.loads(report.read_text())["clusters"][kube.name]["steps"]]
    gate = steps.index("Pre-pulled images on every eligible node (DaemonSets Ready)")
    assert steps.index("Pre-pull images on the GPU nodes (DaemonSets)") < gate < steps.index(
        "Model services (Knative Services)")
    for ns, what in ((NS, "pp"), ("knative-serving", "queue-proxy")):
        assert {p["spec"]["nodeName"] for p in daemonset_pods(kube, ns, what)} == GPU_NODES
    ds = kube.json("get", "daemonset", "knfleet-prepull-pp", "-n", NS)
    assert ds["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "knfleet"
    assert ds["metadata"]["labels"]["knfleet.dev/owner"] == "default"
    for node in GPU_NODES:
        assert IMAGE in node_images(kube, node)
    assert IMAGE not in node_images(kube, "kwok-cpu-1")
    # the first revision's pod: the kubelet found the model image (and queue-proxy's) already on its node
    (pod,) = kube.json("get", "pods", "-n", NS, "-l", "serving.knative.dev/service=pp")["items"]
    events = kubelet_events(kube, NS, pod["metadata"]["name"])
    assert events, "no kubelet events for the revision's pod"
    assert not [e for e in events if e["reason"] == "Pulling"], events
    pulled = {e["involvedObject"]["fieldPath"]: e["message"] for e in events if e["reason"] == "Pulled"}
    assert pulled["spec.containers{vllm}"] == f'Container image "{IMAGE}" already present on machine'
    assert pulled["spec.containers{queue-proxy}"].endswith("already present on machine")
    # the same service without prepull: its first revision pulled its image (the phase the pre-pull saves)
    (cold,) = kube.json("get", "pods", "-n", NS, "-l", "serving.knative.dev/service=cold")["items"]
    events = kubelet_events(kube, NS, cold["metadata"]["name"])
    assert [e["message"] for e in events if e["reason"] == "Pulling"] == [f'Pulling image "{COLD_IMAGE}"'], events
    assert not kube.exists("daemonset", "knfleet-prepull-cold", "-n", NS)
    # a converged run changes nothing and waits for nothing
    again = pyinfra(root, "-y", "--json", "--data", models_arg(MODEL, COLD))
    assert again.returncode == 0, again.stderr[-3000:]
    assert changed_ops(again) == []


def test_dry_and_knfleet_diff_show_the_daemonsets_like_any_object_and_change_nothing(cluster, shared_knative,
                                                                                    tmp_path):
    root, kube = cluster
    newer = IMAGE.replace("5e" * 32, "6f" * 32)
    dry = pyinfra(root, "--dry", "--data", models_arg({**MODEL, "image": newer}, COLD))
    assert dry.returncode == 0, dry.stderr[-3000:]
    out = dry.stderr + dry.stdout
    assert re.search(rf"prepull: 1 object\(s\) differ: DaemonSet/{NS}/knfleet-prepull-pp", out), out[-3000:]
    assert newer in out and IMAGE in out  # the field, from and to
    # knfleet diff: the changed image of a pre-pulled model; and the DaemonSets a run would delete
    def diff(*items: dict) -> subprocess.CompletedProcess[str]:
        host = {"kubeconfig": str(kube.kubeconfig), "knative_bundle_dir": str(shared_knative), "models": list(items)}
        inv = tmp_path / "fleet.py"
        inv.write_text(f"local = [('@kube/{kube.name}', {host!r})]\n")  # group `local`, as inventories/local.py
        return knfleet("diff", str(inv))
    changed = diff({**MODEL, "image": newer}, COLD)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert f"DaemonSet/{NS}/knfleet-prepull-pp" in changed.stdout and newer in changed.stdout, changed.stdout
    off = diff({**MODEL, "prepull": False}, COLD)
    assert off.returncode == 1, off.stdout + off.stderr
    for name in (f"{NS}/knfleet-prepull-pp", "knative-serving/knfleet-prepull-queue-proxy"):
        assert re.search(rf"DaemonSet/{name}\S*:? .*no model pre-pulls it any more", off.stdout), off.stdout
    ds = kube.json("get", "daemonset", "knfleet-prepull-pp", "-n", NS)
    assert ds["spec"]["template"]["spec"]["initContainers"][1]["image"] == IMAGE


def test_a_node_added_later_gets_the_image(cluster):
    _, kube = cluster
    third = [d for d in yaml.safe_load_all(nodes.render_nodes(0, 3, 2)) if d["metadata"]["name"] == "kwok-gpu-3"]
    kube.apply(yaml.safe_dump_all(third))
    eventually(lambda: IMAGE in node_images(kube, "kwok-gpu-3"), timeout=60, what="the image on kwok-gpu-3")
    eventually(lambda: any(p["spec"]["nodeName"] == "kwok-gpu-3" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
        for p in daemonset_pods(kube, NS, "pp")), timeout=60, what="the pre-pull pod Ready on kwok-gpu-3")


def test_the_prepull_pods_pass_pod_security_restricted(cluster):
    """A namespace that enforces Pod Security `restricted` admits the pre-pull pods (the API server's own check)."""
    _, kube = cluster
    kube.run("create", "namespace", "psa-restricted")
    kube.run("label", "namespace", "psa-restricted", "pod-security.kubernetes.io/enforce=restricted",
             "pod-security.kubernetes.io/warn=restricted")
    ds = kube.json("get", "daemonset", "knfleet-prepull-pp", "-n", NS)
    template = ds["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "prepull-psa", "namespace": "psa-restricted"},
           "spec": {**template["spec"], "nodeName": "kwok-gpu-1"}}
    made = kube.run("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(pod), check=False)
    assert made.returncode == 0 and "violate" not in made.stderr, made.stderr + made.stdout
    # the check is live: the same pod without its security settings is refused
    bare = json.loads(json.dumps(pod))
    bare["spec"].pop("securityContext")
    for c in [*bare["spec"]["initContainers"], *bare["spec"]["containers"]]:
        c.pop("securityContext")
    refused = kube.run("apply", "--dry-run=server", "-f", "-", stdin=json.dumps(bare), check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr


def test_a_pull_that_fails_stops_the_run_naming_the_node_and_the_kubelets_reason(cluster, tmp_path):
    root, kube = cluster
    report = tmp_path / "report.json"
    run = pyinfra(root, "-y", "--data", models_arg(MODEL, MISSING), "--data", "prepull_timeout=8", report=report)
    assert run.returncode != 0
    f = failure(report, kube.name)
    assert f["reason"] == "PrepullFailed", f
    message = f["message"]
    assert f"daemonset {NS}/knfleet-prepull-missing: 0/3 node(s) Ready" in message, message
    for node in ("kwok-gpu-1", "kwok-gpu-2", "kwok-gpu-3"):
        assert re.search(rf"node {node}: container image \(registry.invalid/models/vllm:does-not-exist\) "
                         r"ErrImagePull: rpc error: code = NotFound", message), message
    assert "kwok-cpu-1" not in message
    closing = next(x for x in run.stderr.splitlines() if x.startswith(f"knfleet: {kube.name}: FAILED"))
    assert (f"images not on every eligible node: {NS}/knfleet-prepull-missing: 0/3 node(s) (kwok-gpu-1 ErrImagePull, "
            "kwok-gpu-2 ErrImagePull, kwok-gpu-3 ErrImagePull)") in closing, closing
    # the run stopped before the services stage: the service was not created
    assert not kube.exists("ksvc", "missing", "-n", NS)


def test_removing_a_model_removes_its_daemonset_and_an_uninstall_removes_them_all(cluster):
    root, kube = cluster
    run = pyinfra(root, "-y", "--data", models_arg(MODEL, COLD))  # `missing` removed from group data
    assert run.returncode == 0, run.stderr[-3000:]
    assert not kube.exists("daemonset", "knfleet-prepull-missing", "-n", NS)
    assert "pre-pull DaemonSets no model needs: knative-qwen7b/knfleet-prepull-missing" in run.stderr
    for name, ns in (("knfleet-prepull-pp", NS), ("knfleet-prepull-queue-proxy", "knative-serving")):
        assert kube.exists("daemonset", name, "-n", ns), name  # still wanted
    gone = pyinfra(root, "-y", "--data", "action=uninstall")
    assert gone.returncode == 0, gone.stderr[-3000:]
    assert kube.json("get", "daemonsets", "-A", "-l", "knfleet.dev/prepull")["items"] == []
    assert not kube.exists("namespace", "knative-serving")
