"""The field-level diff (knfleet.kube.fielddiff): normalising, keyed paths, last writers, hidden values, RFC 6902.
Pure: objects in, changes out; no cluster."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import pytest

from knfleet.fleet import diff as fleet_diff
from knfleet.kube import diff, fielddiff
from knfleet.report import html, outcome
from tests.unit.test_plan import StubCluster, _live

T0, T1, T2 = "2026-12-01T09:00:00Z", "2026-12-01T09:12:33Z", "2026-12-01T09:14:05Z"


def entry(manager: str, time: str, fields: dict[str, Any], operation: str = "Update") -> dict[str, Any]:
    return {"manager": manager, "operation": operation, "time": time, "fieldsType": "FieldsV1", "fieldsV1": fields}


def ksvc(env_value: str = "8192", **extra_meta: Any) -> dict[str, Any]:
    """A model service as the API server stores it (status, server-set metadata, Knative's annotations)."""
    return {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "svc", "namespace": "ns", "uid": "u1", "resourceVersion": "7", "generation": 2,
                     "creationTimestamp": T0,
                     "annotations": {"serving.knative.dev/creator": "admin",
                                     "serving.knative.dev/lastModifier": "admin"},
                     "labels": {"app.kubernetes.io/managed-by": "knfleet"}, **extra_meta},
        "spec": {"template": {
            "metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "0"}},
            "spec": {"containers": [{
                "name": "vllm", "image": "vllm/vllm-openai:v0.6.3", "args": ["--model", "qwen", "--port", "8000"],
                "env": [{"name": "MAX_MODEL_LEN", "value": env_value},
                        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}],
                "ports": [{"containerPort": 8000, "protocol": "TCP"}]}],
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}}},
        "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def edited_ksvc() -> dict[str, Any]:
    """After `kubectl edit` of the env value: kubectl-edit owns the (atomic) containers list, as on a real cluster."""
    live = ksvc("16384")
    live["metadata"]["managedFields"] = [
        entry("knfleet", T0, {"f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}}},
                              "f:spec": {"f:template": {"f:spec": {"f:tolerations": {}}}}}, "Apply"),
        entry("controller", T1, {"f:status": {".": {}, "f:observedGeneration": {}}}),
        entry("kubectl-edit", T1, {"f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}}),
    ]
    return live


def dry_run_of(live: dict[str, Any], mutate: Any = None) -> dict[str, Any]:
    """What a server-side dry-run apply answers: the live object with knfleet's values, a new generation and
    Knative's lastModifier rewritten (both normalised away)."""
    dry = copy.deepcopy(live)
    dry["metadata"]["generation"] += 1
    dry["metadata"]["annotations"]["serving.knative.dev/lastModifier"] = "knfleet-sa"
    dry["metadata"]["managedFields"] = [entry("knfleet", T2, {"f:spec": {}}, "Apply")]
    if mutate:
        mutate(dry)
    return dry


def set_env(value: str) -> Any:
    def mutate(o: dict[str, Any]) -> None:
        o["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = value
    return mutate


# --- what is normalised away ---------------------------------------------------------------------------------------
def test_a_converged_object_shows_nothing_though_the_dry_run_differs_in_server_set_fields():
    live = ksvc()
    live["metadata"]["managedFields"] = [entry("knfleet", T0, {"f:spec": {}}, "Apply")]
    dry = dry_run_of(live)
    dry["metadata"].update(resourceVersion="8", uid="u1", creationTimestamp=T0)
    dry["status"] = {"observedGeneration": 3}
    dry["metadata"]["annotations"]["serving.knative.dev/creator"] = "someone-else"
    assert fielddiff.changes(live, dry) == []


def test_keyed_lists_are_matched_by_key_not_position():
    live, dry = ksvc(), ksvc()
    spec = dry["spec"]["template"]["spec"]
    spec["containers"][0]["env"].reverse()
    spec["tolerations"] = [{"effect": "NoSchedule", "operator": "Exists", "key": "nvidia.com/gpu"}]
    assert fielddiff.changes(live, dry) == []


# --- paths -----------------------------------------------------------------------------------------------------------
def test_a_changed_env_value_is_one_path_with_list_items_by_key_and_its_value_hidden():
    live = edited_ksvc()
    found = fielddiff.changes(live, dry_run_of(live, set_env("8192")))
    assert [(c.field, c.op, c.old, c.new, c.manager, c.time) for c in found] == [
        ("spec.template.spec.containers[name=vllm].env[name=MAX_MODEL_LEN].value", "replace", "(changed)",
         "(changed)", "kubectl-edit", T1)]
    lines = fielddiff.lines([fielddiff.ObjectDiff("Service/ns/svc", "services", "differs", found)])
    assert lines == ["Service/ns/svc (services)",
                     "    spec.template.spec.containers[name=vllm].env[name=MAX_MODEL_LEN].value: (changed)  "
                     "kubectl-edit 2026-12-01T09:12Z"]
    assert "8192" not in json.dumps(fielddiff.patch(found)) + "\n".join(lines)
    assert "16384" not in json.dumps(fielddiff.patch(found)) + "\n".join(lines)


def test_paths_of_ports_tolerations_annotations_and_atomic_lists():
    live = ksvc()

    def mutate(o: dict[str, Any]) -> None:
        c = o["spec"]["template"]["spec"]["containers"][0]
        c["ports"][0]["name"] = "http1"
        c["args"][1] = "qwen-2"
        o["spec"]["template"]["spec"]["tolerations"].append({"key": "dedicated", "operator": "Exists"})
        o["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] = "1"
    found = {c.field: c for c in fielddiff.changes(live, dry_run_of(live, mutate))}
    assert set(found) == {
        "spec.template.spec.containers[name=vllm].ports[containerPort=8000].name",
        "spec.template.spec.containers[name=vllm].args",  # atomic, as server-side apply treats it
        "spec.template.spec.tolerations[key=dedicated,operator=Exists]",  # a set: the item is its content
        'spec.template.metadata.annotations["autoscaling.knative.dev/min-scale"]',
    }
    args = found["spec.template.spec.containers[name=vllm].args"]
    assert (args.op, args.old, args.new) == ("replace", ["--model", "qwen", "--port", "8000"],
                                             ["--model", "qwen-2", "--port", "8000"])
    assert found["spec.template.spec.tolerations[key=dedicated,operator=Exists]"].op == "add"
    assert found["spec.template.spec.containers[name=vllm].ports[containerPort=8000].name"].op == "add"


def test_a_configmap_key_changed_by_kubectl_patch():
    live = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "config-autoscaler", "namespace": "knative-serving", "managedFields": [
                entry("knfleet", T0, {"f:data": {"f:stable-window": {}, "f:enable-scale-to-zero": {}}}, "Apply"),
                entry("kubectl-patch", T2, {"f:data": {"f:stable-window": {}}})]},
            "data": {"stable-window": "90s", "enable-scale-to-zero": "true"}}
    dry = copy.deepcopy(live)
    dry["data"]["stable-window"] = "60s"
    [c] = fielddiff.changes(live, dry)
    assert (c.field, c.old, c.new, c.manager) == ("data.stable-window", "90s", "60s", "kubectl-patch")
    assert fielddiff.object_lines(fielddiff.ObjectDiff("ConfigMap/knative-serving/config-autoscaler", "config",
                                                       "differs", [c]).as_dict())[1] == \
        '    data.stable-window: "90s" -> "60s"  kubectl-patch 2026-12-01T09:14Z'


# --- last writers ------------------------------------------------------------------------------------------------
KEYED = {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"vllm"}': {
    ".": {}, "f:env": {'k:{"name":"MAX_MODEL_LEN"}': {".": {}, "f:name": {}, "f:value": {}}},
    "f:ports": {'k:{"containerPort":8000,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}}}}}}}


@pytest.mark.parametrize(("path", "expected"), [
    (("spec", "template", "spec", "containers", "[name=vllm]", "env", "[name=MAX_MODEL_LEN]", "value"), True),
    (("spec", "template", "spec", "containers", "[name=vllm]", "env", "[name=MAX_MODEL_LEN]"), True),
    (("spec", "template", "spec", "containers", "[name=vllm]", "env", "[name=HF_TOKEN]", "valueFrom"), False),
    (("spec", "template", "spec", "containers", "[name=vllm]", "image"), False),  # only "." of the item: not its fields
    (("spec", "template", "spec", "containers", "[name=vllm]", "ports", "[containerPort=8000]", "containerPort"),
     True),  # a k: key with more fields (protocol) than the item's label names still finds it
])
def test_the_fieldsv1_trie_is_walked_by_field_and_list_key(path, expected):
    live = ksvc()
    _, _, items = fielddiff.keyed(fielddiff.normalise(live), fielddiff.normalise(live))
    steps = tuple(items.get(path[:i + 1], s) for i, s in enumerate(path))
    assert fielddiff.holds(KEYED, steps, live) is expected


def test_an_atomic_field_above_the_path_holds_it_and_the_newest_writer_wins():
    live = edited_ksvc()
    path = ("spec", "template", "spec", "containers", "[name=vllm]", "env", "[name=MAX_MODEL_LEN]", "value")
    _, _, items = fielddiff.keyed(fielddiff.normalise(live), fielddiff.normalise(live))
    steps = tuple(items.get(path[:i + 1], s) for i, s in enumerate(path))
    assert fielddiff.last_writer(live["metadata"]["managedFields"], steps, live) == ("kubectl-edit", T1)
    older = entry("kubectl-set", T0, KEYED)
    assert fielddiff.last_writer([older, *live["metadata"]["managedFields"]], steps, live) == ("kubectl-edit", T1)
    newer = entry("helm", T2, KEYED)
    assert fielddiff.last_writer([newer, *live["metadata"]["managedFields"]], steps, live) == ("helm", T2)
    assert fielddiff.last_writer([], steps, live) == (None, None)


def test_a_field_missing_from_the_cluster_has_no_writer():
    live = ksvc()
    live["metadata"]["managedFields"] = [entry("kubectl-edit", T1, {"f:spec": {"f:template": {"f:spec": {}}}})]

    def mutate(o: dict[str, Any]) -> None:
        o["spec"]["template"]["spec"]["runtimeClassName"] = "nvidia"
    [c] = fielddiff.changes(live, dry_run_of(live, mutate))
    assert (c.field, c.op, c.manager, c.new) == ("spec.template.spec.runtimeClassName", "add", None, "nvidia")
    assert fielddiff.op_text(fielddiff.patch([c])[0]) == 'spec.template.spec.runtimeClassName: (none) -> "nvidia"'
    assert fielddiff.writer_text(c.manager, c.time) == "-"


# --- never in clear -------------------------------------------------------------------------------------------------
def test_secret_data_env_values_and_last_applied_never_appear_but_references_do():
    secret_live = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "n"},
                   "data": {"token": "c2VjcmV0LW9sZA=="}, "stringData": {"x": "plain-old"}}
    secret_dry = {**secret_live, "data": {"token": "c2VjcmV0LW5ldw==", "other": "bmV3"},
                  "stringData": {"x": "plain-new"}}
    live = ksvc("old-env-value",
                annotations={"kubectl.kubernetes.io/last-applied-configuration": '{"env": "old-env-value"}'})

    def mutate(o: dict[str, Any]) -> None:
        c = o["spec"]["template"]["spec"]["containers"][0]
        c["env"][0]["value"] = "new-env-value"
        c["env"][1]["valueFrom"]["secretKeyRef"]["key"] = "token2"
        c["env"].append({"name": "EXTRA", "value": "added-env-value"})
        o["spec"]["template"]["spec"]["containers"].append(
            {"name": "sidecar", "image": "x", "env": [{"name": "A", "value": "sidecar-env-value"}]})
        o["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = '{"env": "new-env-value"}'
    found = fielddiff.changes(live, dry_run_of(live, mutate)) + fielddiff.changes(secret_live, secret_dry)
    shown = "\n".join(fielddiff.lines([fielddiff.ObjectDiff("x", "s", "differs", found)])) + \
        json.dumps(fielddiff.patch(found))
    for value in ("old-env-value", "new-env-value", "added-env-value", "sidecar-env-value", "c2VjcmV0", "bmV3",
                  "plain-old", "plain-new"):
        assert value not in shown, value
    assert 'env[name=HF_TOKEN].valueFrom.secretKeyRef.key: "token" -> "token2"' in shown  # a reference is shown
    assert "env[name=MAX_MODEL_LEN].value: (changed)" in shown
    assert 'env[name=EXTRA]: (none) -> {"name": "EXTRA", "value": "(changed)"}' in shown
    assert "data.token: (changed)" in shown and "data.other: (none) -> (changed)" in shown
    assert all(c.hidden for c in found if "valueFrom" not in c.field)


# --- RFC 6902 -------------------------------------------------------------------------------------------------------
def test_the_operations_turn_the_live_object_into_the_desired_one():
    live = ksvc()
    live["spec"]["template"]["spec"]["containers"][0]["env"].insert(0, {"name": "GONE", "value": "1"})
    live["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "ALSO_GONE", "value": "2"})
    live["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "shm", "mountPath": "/dev/shm"}]

    def mutate(o: dict[str, Any]) -> None:
        c = o["spec"]["template"]["spec"]["containers"][0]
        c["env"] = [e for e in c["env"] if e["name"] not in ("GONE", "ALSO_GONE")]
        c["env"].append({"name": "NEW", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
        c["args"] = ["--model", "other"]
        c["volumeMounts"][0]["readOnly"] = True
        c["image"] = "vllm/vllm-openai:v0.7.0"
        del c["ports"]
        o["spec"]["template"]["spec"]["nodeSelector"] = {"gpu": "a100"}
        o["metadata"]["labels"]["team"] = "ml"
    dry = dry_run_of(live, mutate)
    ops = fielddiff.patch(fielddiff.changes(live, dry))
    assert {o["op"] for o in ops} == {"add", "remove", "replace"}
    assert [o["path"] for o in ops if o["op"] == "remove" and "/env/" in o["path"]] == [
        "/spec/template/spec/containers/0/env/3", "/spec/template/spec/containers/0/env/0"]  # from the last
    plain = [{k: v for k, v in o.items() if k in ("op", "path", "value")} for o in ops]
    patched = jsonpatch.apply_patch(fielddiff.normalise(live), plain)
    assert fielddiff.changes(patched, dry) == []


# --- drift, the report, the command's exit code -----------------------------------------------------------------------
def test_drift_carries_the_field_changes_and_an_equal_dry_run_is_learned():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}, "data": {"a": "1"}}
    live = _live(cm)
    edited = {**live, "data": {"a": "2"}}
    [d] = diff.drift(StubCluster([edited], dry=_live(cm)), (cm,), diff.Records())
    assert d.why == "differs" and [(c.field, c.old, c.new) for c in d.changes] == [("data.a", "2", "1")]
    text, objects = diff.describe("config", [d])
    assert text == ["ConfigMap/n/c (config)", '    data.a: "2" -> "1"  knfleet']
    assert objects == [{"object": "ConfigMap/n/c", "stage": "config", "why": "differs", "patch": [
        {"op": "replace", "path": "/data/a", "value": "1", "old": "2", "field": "data.a", "manager": "knfleet",
         "time": None}]}]
    # a dry run that differs only in what the API server sets on every write is in sync, and noted
    dry = _live(cm)
    dry["metadata"].update(generation=9, resourceVersion="99")
    records = diff.Records()
    assert diff.drift(StubCluster([live], dry=dry), (cm,), records) == []
    assert records.matches(cm, live)


def test_a_refused_dry_run_fails_the_run_but_diff_keeps_going():
    from knfleet.kube.client import Invalid

    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}, "data": {"a": "1"}}
    refused = Invalid("c1", "apply ConfigMap/n/c (dry run)", 422, "Invalid", "data.a: Duplicate value")
    cluster = StubCluster([{**_live(cm), "data": {"a": "2"}}], dry=refused)
    cluster.apply = lambda obj, dry_run=False: refused  # parallel() hands errors back as values
    with pytest.raises(Invalid):
        diff.drift(cluster, (cm,), diff.Records())
    [d] = diff.drift(cluster, (cm,), diff.Records(), keep_going=True)
    assert d.error and d.why.startswith("cannot be compared: ") and "Duplicate value" in d.why


def change_report(patch: list[dict[str, Any]], why: str = "differs") -> dict[str, Any]:
    return {"object": "ConfigMap/knative-serving/config-autoscaler", "stage": "config", "why": why, "patch": patch}


def test_exit_codes_as_flux_diff():
    same = outcome.ClusterOutcome("a", outcome.IN_SYNC, reachable=True)
    changed = outcome.ClusterOutcome("b", outcome.DRIFT, reachable=True, changes=[change_report([])])
    down = outcome.ClusterOutcome("c", outcome.UNREACHABLE, reachable=False, errors=["API server not reachable"])
    assert fleet_diff.exit_code({"a": same}) == 0
    assert fleet_diff.exit_code({"a": same, "b": changed}) == 1
    assert fleet_diff.exit_code({"a": same, "b": changed, "c": down}) == 3
    assert fleet_diff.text(same) == []


def test_a_stage_missing_entirely_is_one_line():
    o = outcome.ClusterOutcome("a", outcome.DRIFT, reachable=True, changes=[
        {"object": f"CustomResourceDefinition/{i}", "stage": "crds", "why": "missing", "patch": []} for i in range(12)])
    assert fleet_diff.text(o) == ["a: 12 object(s) would change", "  crds: not installed (12 objects missing)"]
    missing = [diff.Drift(f"CustomResourceDefinition/{i}", "missing") for i in range(12)]
    assert diff.describe("crds", missing)[0] == ["crds: not installed (12 objects missing)"]  # --dry says it so too
    assert diff.describe("crds", missing[:2])[0] == ["CustomResourceDefinition/0 (crds): missing",
                                                     "CustomResourceDefinition/1 (crds): missing"]


def test_bad_input_exits_2_before_any_cluster_is_contacted(tmp_path, capsys):
    inv = tmp_path / "inv.py"
    host = {"kubeconfig": str(tmp_path / "nope"), "models": [{"gpus": -1}]}
    inv.write_text(f"local = [('@kube/x', {host!r})]\n")
    assert fleet_diff.run(str(inv)) == 2
    err = capsys.readouterr().err
    assert "gpus" in err and "no cluster was contacted" in err


def test_the_html_page_shows_each_cluster_s_changes_in_collapsible_sections():
    op = {"op": "replace", "path": "/data/stable-window", "value": "60s", "old": "90s", "field": "data.stable-window",
          "manager": "kubectl-patch", "time": T2}
    hidden = {"op": "replace", "path": "/spec/template/spec/containers/0/env/0/value", "value": "(changed)",
              "old": "(changed)", "field": "spec.template.spec.containers[name=vllm].env[name=X].value",
              "manager": "kubectl-edit", "time": T1}
    o = outcome.ClusterOutcome("local-1", outcome.DRIFT, reachable=True,
                               changes=[change_report([op]), {**change_report([hidden]), "object": "Service/ns/svc"}])
    page = html.render([outcome.report("diff", {"local-1": o}, status="changes")])
    assert 'class="status-badge o-drift"' in page and ">changes</span>" in page
    assert "2 object(s) differ" in page  # the cluster's cell: a look, nothing changed
    assert '<details class="changes" data-cluster="local-1" open>' in page
    assert page.count('<details class="object-diff"') == 2
    assert "<td>&#34;90s&#34; -&gt; &#34;60s&#34;</td>" in page and "kubectl-patch 2026-12-01T09:14Z" in page
    assert "<td>(changed)</td>" in page and "kubectl-edit 2026-12-01T09:12Z" in page
