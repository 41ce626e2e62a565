"""Images pulled before they are needed (issue 25, part 2): settings, render, plan, prune and readiness rules. Pure:
no cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from knfleet.desired import manifests, models, plan, prepull, settings
from knfleet.errors import InputError, Reason
from knfleet.kube import readiness
from tests.unit.bundle_fixture import fixture_bundle

DIGEST = "registry.example/vllm/vllm-openai@sha256:" + "ab" * 32


def desired(data: dict) -> plan.Desired:
    return plan.desired("@kube/c1", settings.Data(data), bundle_loader=lambda *_: fixture_bundle())


def prepull_objects(d: plan.Desired) -> dict[str, dict]:
    return {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for s in d.stages if s.name == "prepull"
            for o in s.objects}


def pod(ds: dict) -> dict:
    return ds["spec"]["template"]["spec"]


# --- settings and validation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["maybe", 2, [True]])
def test_group_data_prepull_must_be_a_boolean(value):
    with pytest.raises(settings.SettingsError, match=r"prepull: .* is not allowed; use true or false"):
        settings.from_data(settings.Data({"prepull": value}))


@pytest.mark.parametrize("value", ["yes", 1, {"on": True}])
def test_a_models_prepull_must_be_true_or_false_and_the_error_names_model_field_value_and_what_is_allowed(value):
    with pytest.raises(models.ModelError) as err:
        models.from_data([{"name": "m", "prepull": value}])
    text = str(err.value)
    assert "(m): prepull = " in text and repr(value)[:5] in text and "use true" in text and "or false" in text


def test_prepull_timeout_is_whole_seconds():
    assert settings.from_data(settings.Data({"prepull_timeout": "90"})).run.prepull_timeout == 90
    with pytest.raises(settings.SettingsError, match="prepull_timeout: 'soon' is not allowed; use a whole number"):
        settings.from_data(settings.Data({"prepull_timeout": "soon"}))


def test_a_misspelt_key_names_prepull():
    with pytest.raises(settings.SettingsError, match="did you mean 'prepull'"):
        settings.from_data(settings.Data({"prepul": True}))


def test_model_manifest_settings_prepull_is_checked(tmp_path: Path):
    f = tmp_path / "svc.yaml"
    f.write_text("apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: s, namespace: team}\n"
                 "spec: {template: {spec: {containers: [{name: vllm, image: 'vllm/vllm-openai:v0.6.3', args: "
                 "['--model', 'x'], ports: [{containerPort: 8000}], resources: {limits: {nvidia.com/gpu: '1'}}}, "
                 "{name: side, image: 'registry.example/sidecar:v1'}]}}}\n")
    with pytest.raises(InputError, match=r"model_manifest_settings.prepull.*use true"):
        desired({"model_manifests": [str(f)], "model_manifest_settings": {"s": {"prepull": "on"}}})
    d = desired({"model_manifests": [str(f)], "model_manifest_settings": {"s": {"prepull": True}}})
    assert "team/knfleet-prepull-s" in prepull_objects(d)
    assert [c["image"] for c in pod(prepull_objects(d)["team/knfleet-prepull-s"])["initContainers"][1:]] == [
        "vllm/vllm-openai:v0.6.3", "registry.example/sidecar:v1"]  # every container's image (multi-container)
    assert isinstance(d.models[0], manifests.ManifestService) and d.models[0].prepull is True


def test_a_namespace_the_manifests_declare_is_applied_before_the_daemonset_that_lives_in_it(tmp_path: Path):
    f = tmp_path / "svc.yaml"
    f.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n---\n"
                 "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: s, namespace: team}\n"
                 "spec: {template: {spec: {containers: [{image: 'vllm/vllm-openai:v0.6.3', args: ['--model', 'x'],"
                 " resources: {limits: {nvidia.com/gpu: '1'}}}]}}}\n")
    d = desired({"model_manifests": [str(f)], "model_manifest_settings": {"s": {"prepull": True}}})
    stage = next(s for s in d.stages if s.name == "prepull")
    assert [(o["kind"], o["metadata"]["name"]) for o in stage.objects] == [
        ("Namespace", "team"), ("DaemonSet", "knfleet-prepull-s"), ("DaemonSet", "knfleet-prepull-queue-proxy")]
    assert plan.prepull_refs(d) == ("team/knfleet-prepull-s", "knative-serving/knfleet-prepull-queue-proxy")


def test_knfleet_lint_refuses_a_bad_prepull_in_group_data(tmp_path: Path):
    mod = tmp_path / "gpu.py"
    mod.write_text("models = [{'name': 'a', 'prepull': 'sometimes'}]\n")
    proc = subprocess.run([sys.executable, "-m", "knfleet.cli", "lint", str(mod)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "prepull = 'sometimes' is not allowed" in proc.stdout + proc.stderr
    good = tmp_path / "good.py"
    good.write_text("prepull = True\nmodels = [{'name': 'a'}, {'name': 'b', 'prepull': False}]\n")
    ok = subprocess.run([sys.executable, "-m", "knfleet.cli", "lint", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr


# --- render -----------------------------------------------------------------------------------------------------------
QUEUE_DS = "knative-serving/knfleet-prepull-queue-proxy"


def test_group_default_and_model_override_choose_which_models_prepull():
    assert not prepull_objects(desired({"models": [{}]}))
    d = desired({"prepull": True, "models": [{"name": "a"}, {"name": "b", "prepull": False}]})
    assert set(prepull_objects(d)) == {"knative-qwen7b/knfleet-prepull-a", QUEUE_DS}
    d = desired({"models": [{"name": "a"}, {"name": "b", "prepull": True}]})
    assert set(prepull_objects(d)) == {"knative-qwen7b/knfleet-prepull-b", QUEUE_DS}


def test_a_gpu_models_daemonset_runs_where_its_pods_may_run_and_pulls_by_digest_without_a_gpu():
    d = desired({"owner": "team-a", "models": [{"name": "a", "image": DIGEST, "gpus": 2, "prepull": True,
                                                "runtime_class_name": "nvidia"}]})
    ksvc = next(o for s in d.stages if s.name == "services" for o in s.objects if o["kind"] == "Service")
    ds = prepull_objects(d)["knative-qwen7b/knfleet-prepull-a"]
    assert ds["kind"] == "DaemonSet" and ds["apiVersion"] == "apps/v1"
    labels = ds["metadata"]["labels"]
    assert labels[models.MANAGED_BY] == "knfleet" and labels[models.OWNER] == "team-a"
    assert labels[prepull.LABEL] == "a" and ds["spec"]["template"]["metadata"]["labels"] == labels
    spec, ksvc_spec = pod(ds), ksvc["spec"]["template"]["spec"]
    assert spec["tolerations"] == ksvc_spec["tolerations"] and spec["runtimeClassName"] == "nvidia"
    # no nodeSelector on the model: the GPU node label keeps it off the CPU nodes
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}]
    tools, image = spec["initContainers"]
    assert image["image"] == DIGEST and image["command"] == [f"{prepull.TOOLS}/true"]
    assert tools["command"][0] == "cp"
    assert [c["name"] for c in spec["containers"]] == ["pause"]
    for c in [*spec["initContainers"], *spec["containers"]]:
        for part in ("requests", "limits"):
            assert models.GPU not in c["resources"][part]
    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == "100%"
    # Pod Security `restricted`: non-root, RuntimeDefault seccomp, no privilege escalation, no capability
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["seccompProfile"]["type"] == \
        "RuntimeDefault"
    for c in [*spec["initContainers"], *spec["containers"]]:
        assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert ds["spec"]["selector"]["matchLabels"] == {prepull.LABEL: "a", models.OWNER: "team-a"}
    assert prepull.image_note(DIGEST) == "by digest" and "by tag" in prepull.image_note("vllm/vllm-openai:v0.6.3")


def test_a_models_node_selector_is_its_daemonsets_and_no_gpu_label_is_added():
    d = desired({"models": [{"name": "a", "prepull": True, "node_selector": {"pool": "a100"}, "tolerations": []}]})
    spec = pod(prepull_objects(d)["knative-qwen7b/knfleet-prepull-a"])
    assert spec["nodeSelector"] == {"pool": "a100"} and "affinity" not in spec and "tolerations" not in spec


def test_the_queue_proxy_daemonset_pulls_the_releases_image_on_every_prepull_models_nodes():
    d = desired({"image_mirror": "mirror.example/k", "models": [
        {"name": "a", "prepull": True, "node_selector": {"pool": "a100"}},
        {"name": "b", "prepull": True, "tolerations": [{"key": "x", "operator": "Exists"}]},
        {"name": "c"}]})
    config = next(s for s in d.stages if s.name == "config").objects
    queue = prepull.queue_image(config)
    assert queue and queue.startswith("mirror.example/k/")  # as installed: mirrored
    ds = prepull_objects(d)["knative-serving/knfleet-prepull-queue-proxy"]
    spec = pod(ds)
    assert spec["initContainers"][1]["image"] == queue
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a100"]}]},
                     {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}]
    assert {"key": "x", "operator": "Exists"} in spec["tolerations"]
    assert {"key": models.GPU, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    # the helpers come from the mirror; a model's image is the service's own (models are not mirrored)
    assert spec["initContainers"][0]["image"].startswith("mirror.example/k/")
    model_ds = prepull_objects(d)["knative-qwen7b/knfleet-prepull-a"]
    assert pod(model_ds)["initContainers"][1]["image"] == "vllm/vllm-openai:v0.6.3"


def test_names_stay_within_63_characters_and_each_owner_has_its_own_queue_proxy_daemonset():
    long = "m" * 63
    assert len(prepull.daemonset_name(long)) <= 63
    assert prepull.daemonset_name(long) != prepull.daemonset_name("m" * 62)
    assert prepull.daemonset_name(prepull.QUEUE_PROXY) == "knfleet-prepull-queue-proxy"
    assert prepull.daemonset_name(prepull.QUEUE_PROXY, "team-a") == "knfleet-prepull-queue-proxy-team-a"


def test_eligible_nodes_follow_gpus_selector_and_taints():
    d = desired({"models": [{"name": "a", "prepull": True}]})
    ksvc = next(o for s in d.stages if s.name == "services" for o in s.objects if o["kind"] == "Service")
    gpu = {"metadata": {"name": "gpu-1", "labels": {}}, "spec": {"taints": [
        {"key": models.GPU, "value": "present", "effect": "NoSchedule"}]}, "status": {"allocatable": {models.GPU: "1"}}}
    cpu = {"metadata": {"name": "cpu-1", "labels": {}}, "status": {"allocatable": {"cpu": "16"}}}
    other = {"metadata": {"name": "gpu-2", "labels": {}}, "spec": {"taints": [{"key": "team", "effect": "NoSchedule"}]},
             "status": {"allocatable": {models.GPU: "8"}}}
    assert prepull.eligible_nodes(ksvc, [gpu, cpu, other]) == ["gpu-1"]


# --- plan -------------------------------------------------------------------------------------------------------------
def test_the_plan_pulls_before_the_services_stage_and_prunes_after_it():
    steps = plan.plan(desired({"prepull_timeout": 77, "models": [{"name": "a", "prepull": True}]}))
    names = [f"{type(s).__name__}:{getattr(s, 'stage', '')}" for s in steps]
    i = names.index("Apply:prepull")
    assert names[i - 1] == "Own:" and names[i + 1] == "Prepulled:" and names[i + 2] == "Apply:services"
    gate = steps[i + 1]
    assert isinstance(gate.check, plan.ImagesPulled) and gate.timeout == 77 and gate.task == "services"
    assert gate.check.daemonsets == ("knative-qwen7b/knfleet-prepull-a", "knative-serving/knfleet-prepull-queue-proxy")
    prune = next(s for s in steps if isinstance(s, plan.PrunePrepull))
    assert names.index("PrunePrepull:") > names.index("Apply:services")
    assert prune.keep == gate.check.daemonsets and prune.selector.endswith(",knfleet.dev/owner=default")
    rights = {str(r) for r in steps[0].rights}
    assert {"create daemonsets.apps in knative-qwen7b", "patch daemonsets.apps in knative-serving",
            "list daemonsets.apps", "delete daemonsets.apps", "list pods in knative-qwen7b", "list nodes"} <= rights


def test_progressive_rollouts_come_after_the_pull_so_a_new_image_is_on_the_nodes_first():
    steps = plan.plan(desired({"models": [{"name": "a", "prepull": True, "rollout": {"strategy": "progressive"}}]}))
    kinds = [type(s).__name__ for s in steps]
    assert kinds.index("Prepulled") < kinds.index("Rollout")


def test_a_model_removed_or_turned_off_is_not_kept_and_an_empty_list_prunes_every_prepull_of_the_owner():
    off = plan.plan(desired({"models": [{"name": "a"}]}))
    prune = next(s for s in off if isinstance(s, plan.PrunePrepull))
    assert prune.keep == ()
    assert not any(isinstance(s, plan.Prepulled) for s in off)
    assert next(s for s in plan.plan(desired({"models": []})) if isinstance(s, plan.PrunePrepull)).keep == ()
    assert not any(isinstance(s, plan.PrunePrepull) for s in plan.plan(desired({})))  # no `models`: nothing pruned


def test_uninstall_deletes_every_owners_prepull_daemonsets_before_the_release():
    steps = plan.plan(desired({"action": "uninstall", "models": [{"prepull": True}]}))
    kinds = [type(s).__name__ for s in steps]
    prune = steps[kinds.index("PrunePrepull")]
    assert prune.keep == () and prune.selector == "app.kubernetes.io/managed-by=knfleet,knfleet.dev/prepull"
    assert kinds.index("DeleteServices") < kinds.index("PrunePrepull") < kinds.index("Delete")
    assert {"delete daemonsets.apps", "list daemonsets.apps"} <= {str(r) for r in steps[0].rights}


# --- readiness and prune rules -------------------------------------------------------------------------------------
def ds_with(status: dict, generation: int = 2) -> dict:
    return {"kind": "DaemonSet", "metadata": {"name": "knfleet-prepull-a", "namespace": "ns", "generation": generation},
            "spec": {"selector": {"matchLabels": {prepull.LABEL: "a"}}}, "status": status}


def test_a_daemonset_is_ready_when_every_node_runs_its_current_generation():
    full = {"observedGeneration": 2, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberReady": 2}
    assert readiness.daemonset_ready(ds_with(full))
    assert not readiness.daemonset_ready(ds_with({**full, "observedGeneration": 1}))  # the change not seen yet
    assert not readiness.daemonset_ready(ds_with({**full, "updatedNumberScheduled": 1}))  # an old pod left
    assert not readiness.daemonset_ready(ds_with({**full, "numberReady": 1}))
    assert not readiness.daemonset_ready(ds_with({**full, "numberUnavailable": 1}))
    assert readiness.daemonset_ready(ds_with({"observedGeneration": 2, "desiredNumberScheduled": 0}))


def failing_pod(node: str) -> dict:
    return {"metadata": {"name": f"p-{node}", "namespace": "ns", "labels": {prepull.LABEL: "a"}},
            "spec": {"nodeName": node},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "image", "image": "registry.invalid/x:1", "state": {"waiting": {
                    "reason": "ErrImagePull", "message": "rpc error: registry.invalid/x:1: not found"}}}]}}


def test_a_daemonset_that_cannot_pull_is_explained_node_by_node_with_the_kubelets_reason():
    status = {"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 2, "numberReady": 0}
    events = [{"type": "Warning", "reason": "Failed", "involvedObject": {"name": "p-gpu-2"},
               "message": "Failed to pull image \"registry.invalid/x:1\": not found"}]
    text = readiness.daemonset_problem(ds_with(status), [failing_pod("gpu-1"), failing_pod("gpu-2")], events)
    lines = text.splitlines()
    assert lines[0] == "daemonset ns/knfleet-prepull-a: 0/3 node(s) Ready, 2 updated"
    assert lines[1].startswith("  node gpu-1: container image (registry.invalid/x:1) ErrImagePull: rpc error")
    assert "node gpu-2:" in lines[2] and "event Failed: Failed to pull image" in lines[2]
    assert lines[3] == "  1 node(s) without a pod yet"


def test_the_control_planes_pods_ready_gate_leaves_the_queue_proxy_prepull_pods_to_their_own_wait():
    class FakeLists:
        def list(self, *key):
            if key[1] == "Pod" and key[2] == "knative-serving":
                return [failing_pod("gpu-1"), {"metadata": {"name": "ctl", "namespace": "knative-serving"},
                                               "status": {"phase": "Running", "conditions": [
                                                   {"type": "Ready", "status": "True"}]}}]
            return [] if key[1] == "Event" else [{"metadata": {"name": "x", "namespace": key[2]}, "status": {
                "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}]
    ok, why = readiness.evaluate(FakeLists(), plan.PodsReady(("knative-serving",)))
    assert ok, why


def test_prune_deletes_only_what_knfleet_applied_and_no_model_keeps():
    mine = {"kind": "DaemonSet", "metadata": {"name": "knfleet-prepull-a", "namespace": "ns", "managedFields": [
        {"manager": "knfleet", "operation": "Apply"}]}}
    kept = {**mine, "metadata": {**mine["metadata"], "name": "knfleet-prepull-b"}}
    copied = {"kind": "DaemonSet", "metadata": {"name": "lookalike", "namespace": "ns", "managedFields": [
        {"manager": "kubectl", "operation": "Update"}]}}
    gone, left = prepull.unwanted([mine, kept, copied], ("ns/knfleet-prepull-b",))
    assert [o["metadata"]["name"] for o in gone] == ["knfleet-prepull-a"]
    assert left == ["DaemonSet ns/lookalike (carries knfleet's pre-pull labels but knfleet did not apply it)"]


class OneCluster:
    """What a wait reads, as a cluster's lists would give it (a DaemonSet stuck on one node's pull)."""

    def __init__(self) -> None:
        self.status = {"observedGeneration": 2, "desiredNumberScheduled": 1, "updatedNumberScheduled": 1,
                       "numberReady": 0}

    def check_guard(self, what: str) -> None:
        pass

    def invalidate(self) -> None:
        pass

    def list(self, api_version: str, kind: str, namespace: str | None = None, selector: str | None = None) -> list:
        return {"DaemonSet": [ds_with(self.status)], "Pod": [failing_pod("gpu-1")], "Event": [],
                "Node": [{"metadata": {"name": "gpu-1"}, "status": {"conditions": [{"type": "Ready",
                                                                                    "status": "True"}]}}]}[kind]


def test_a_prepull_that_gives_up_names_the_node_and_the_kubelets_reason_with_its_own_typed_reason():
    from knfleet.errors import NotReadyError
    from knfleet.run.applying import wait_ready
    from knfleet.run.prepull import wait_pulled

    with pytest.raises(NotReadyError) as err:
        wait_pulled(OneCluster(), plan.ImagesPulled(("ns/knfleet-prepull-a",)), 0)
    assert err.value.code == Reason.PREPULL_FAILED
    assert str(err.value).splitlines()[0] == ("gave up after 0s: images not on every eligible node: "
                                              "ns/knfleet-prepull-a: 0/1 node(s) (gpu-1 ErrImagePull)")
    assert "node gpu-1: container image (registry.invalid/x:1) ErrImagePull" in str(err.value)
    with pytest.raises(NotReadyError) as other:  # any other gate keeps its reason
        wait_ready(OneCluster(), plan.PodsReady(("ns",)), 0)
    assert other.value.code == Reason.NOT_READY


def test_gpu_nodes_without_the_gpu_label_are_named_when_the_daemonset_leaves_them_out():
    d = desired({"models": [{"name": "a", "prepull": True}]})
    ds = prepull_objects(d)["knative-qwen7b/knfleet-prepull-a"]
    taint = {"key": models.GPU, "value": "present", "effect": "NoSchedule"}

    def node(name: str, gpus: int, labels: dict, taints: list) -> dict:
        return {"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
                "status": {"allocatable": {models.GPU: str(gpus)}}}
    found = [node("labelled", 2, {"nvidia.com/gpu.present": "true"}, [taint]), node("bare", 2, {}, [taint]),
             node("cpu", 0, {}, []), node("other-team", 2, {}, [{"key": "team", "effect": "NoSchedule"}])]
    assert readiness.unlabelled_gpu_nodes(ds, found) == ["bare"]  # the others: covered, no GPU, not tolerated
    chosen = prepull_objects(desired({"models": [{"name": "a", "prepull": True, "node_selector": {"p": "x"}}]}))
    assert readiness.unlabelled_gpu_nodes(chosen["knative-qwen7b/knfleet-prepull-a"], found) == []  # its selector

    class Ready(OneCluster):
        def list(self, api_version: str, kind: str, namespace: str | None = None, selector: str | None = None):
            if kind == "DaemonSet":
                return [{**ds, "metadata": {**ds["metadata"], "generation": 1}, "status": {
                    "observedGeneration": 1, "desiredNumberScheduled": 1, "updatedNumberScheduled": 1,
                    "numberReady": 1}}]
            if kind == "Node":
                return found
            return [{"metadata": {"name": "p", "namespace": "knative-qwen7b", "labels": ds["spec"]["selector"][
                "matchLabels"]}, "spec": {"nodeName": "labelled"}, "status": {
                "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}] if kind == "Pod" else []
    ok, why = readiness.images_pulled(Ready(), ("knative-qwen7b/knfleet-prepull-a",))
    assert ok and why.splitlines() == [
        "images on every eligible node: knative-qwen7b/knfleet-prepull-a on 1 node(s) (labelled)",
        "warning: knative-qwen7b/knfleet-prepull-a: GPU node(s) without the label nvidia.com/gpu.present=true are "
        "not pre-pulled: bare (label them, or give the model a node_selector)"]


def test_a_daemonset_with_no_node_to_run_on_passes_with_a_warning():
    class NoNode(OneCluster):
        def list(self, api_version: str, kind: str, namespace: str | None = None, selector: str | None = None):
            if kind == "DaemonSet":
                return [ds_with({"observedGeneration": 2, "desiredNumberScheduled": 0})]
            return []
    ok, why = readiness.images_pulled(NoNode(), ("ns/knfleet-prepull-a",))
    assert ok and why.splitlines() == [
        "images on every eligible node: ns/knfleet-prepull-a on 0 node(s)",
        "warning: ns/knfleet-prepull-a: no node matches its nodeSelector, GPU label and tolerations: nothing was "
        "pre-pulled (a node that comes later pulls the image when it joins)"]


def test_without_prepull_the_run_asks_no_daemonset_rights_and_a_forbidden_list_is_skipped_with_a_warning():
    """Any run with `models` asked cluster-wide list/delete on DaemonSets (for the pre-pull prune), so an identity
    without them failed preflight even when no model used prepull. Now only a run with prepull asks; without it the
    prune looks for leftovers when it may and says so when it may not."""
    from types import SimpleNamespace

    from pyinfra.context import ctx_host

    from knfleet.kube.client import Forbidden
    from knfleet.report.records import ClusterRun
    from knfleet.run import prepull as run_prepull
    from knfleet.run.context import ClusterState

    steps = plan.plan(desired({"models": [{"name": "a"}]}))
    assert not {"list daemonsets.apps", "delete daemonsets.apps"} & {str(r) for r in steps[0].rights}
    prune = next(s for s in steps if isinstance(s, plan.PrunePrepull))

    class NoDaemonSets:
        def list(self, *args: object, **kwargs: object) -> list[dict[str, object]]:
            raise Forbidden("a", "list daemonsets", 403, "Forbidden", "daemonsets.apps is forbidden")

    run = ClusterState(ClusterRun(cluster="a", host="@kube/a"))
    run.cluster = NoDaemonSets()  # type: ignore[assignment]
    noops: list[str] = []
    fake = SimpleNamespace(connector=SimpleNamespace(run=run), print_prefix="[a] ", noop=noops.append,
                           state=SimpleNamespace(is_executing=True))
    with ctx_host.use(fake):
        commands = list(run_prepull.prune_prepull._inner(prune))
    assert commands == []  # no failure, nothing deleted
    assert noops == ["not looked for (no right to list DaemonSets)"]
    assert any("cannot list DaemonSets" in w for w in run.record.warnings)
