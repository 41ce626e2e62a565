"""Group data `model_manifests`: the user's own Knative Service YAML, checked like `knfleet lint` checks it, with
what knfleet adds, conflicts, per-service settings, and the plan's steps. Pure: no cluster."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from knfleet import cli
from knfleet.desired import lint, manifests, models, plan, settings
from knfleet.desired import progressive as pr
from knfleet.errors import InputError
from tests.unit.bundle_fixture import fixture_bundle

P = "autoscaling.knative.dev/"
NS = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "knative-qwen7b"}}


def runbook(name: str = "knative-qwen7b-svc", ns: str = "knative-qwen7b", annotations: dict | None = None,
            meta: dict | None = None, **pod: Any) -> dict[str, Any]:
    """The runbook's service as a user writes it (../shared/knative/NOTES.md, GPU service shape)."""
    container = {"name": "vllm", "image": "vllm/vllm-openai:v0.6.3",
                 "args": ["--model", "Qwen/Qwen2.5-7B-Instruct", "--served-model-name", "qwen7b", "--port", "8000"],
                 "ports": [{"containerPort": 8000}],
                 "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}},
                 "readinessProbe": {"httpGet": {"path": "/health"}, "periodSeconds": 10}}
    ann = {P + "class": "kpa.autoscaling.knative.dev", P + "metric": "concurrency", P + "target": "16",
           P + "target-utilization-percentage": "80", P + "min-scale": "1", P + "max-scale": "2",
           P + "initial-scale": "1", P + "scale-down-delay": "10m", P + "window": "120s", **(annotations or {})}
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, **(meta or {})},
            "spec": {"template": {"metadata": {"annotations": ann},
                                  "spec": {"containerConcurrency": 64, "timeoutSeconds": 600,
                                           "containers": [container], **pod}}}}


def write(path: Path, *docs: Any) -> Path:
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return path


def desired(data: dict[str, Any]) -> plan.Desired:
    return plan.desired("@kube/c1", settings.Data(data), bundle_loader=lambda *_: fixture_bundle())


def service_of(d: plan.Desired, ref: str) -> dict[str, Any]:
    stage = next(s for s in d.stages if s.name == "services")
    return next(o for o in stage.objects if o["kind"] == "Service" and plan.readiness_ref(o) == ref)


# --- what knfleet adds, and never overrides --------------------------------------------------------------------------
def test_the_runbook_file_gets_the_managed_label_gpu_toleration_and_progress_deadline(tmp_path):
    f = write(tmp_path / "qwen.yaml", NS, runbook())
    d = desired({"model_manifests": [str(f)]})
    (m,) = d.models
    assert isinstance(m, manifests.ManifestService) and m.ref == "knative-qwen7b/knative-qwen7b-svc"
    assert m.served_model_name == "qwen7b" and m.smoke_policy == "always"  # min-scale 1
    svc = service_of(d, m.ref)
    assert svc["metadata"]["labels"] == {models.MANAGED_BY: "knfleet", models.OWNER: "default"}  # (issue 23)
    tmpl = svc["spec"]["template"]
    assert tmpl["spec"]["tolerations"] == [models.GPU_TOLERATION]
    assert tmpl["metadata"]["annotations"]["serving.knative.dev/progress-deadline"] == "1800s"
    # everything the user wrote is there as written
    written = runbook()["spec"]["template"]
    assert {k: v for k, v in tmpl["metadata"]["annotations"].items() if k.startswith(P)} == \
        written["metadata"]["annotations"]
    assert tmpl["spec"]["containers"] == written["spec"]["containers"]
    # the file's Namespace is applied with the label too, once
    stage = next(s for s in d.stages if s.name == "services")
    assert [o["metadata"]["name"] for o in stage.objects if o["kind"] == "Namespace"] == ["knative-qwen7b"]
    # knfleet turns on the feature flag its toleration needs, and says what it adds
    assert d.settings.features["kubernetes.podspec-tolerations"] == "enabled"
    assert "label app.kubernetes.io/managed-by=knfleet" in m.note()
    assert "toleration nvidia.com/gpu" in m.note() and "progress-deadline: 1800s" in m.note()
    assert str(f) in m.note() and "document 2 of 2" in m.note()


def test_what_the_user_wrote_is_never_overridden(tmp_path):
    mine = [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}]
    svc = runbook(annotations={"serving.knative.dev/progress-deadline": "2400s"}, tolerations=mine,
                  meta={"labels": {models.MANAGED_BY: "knfleet", "team": "search"}})
    f = write(tmp_path / "q.yaml", svc)
    # the manifest's own fields need group data's config-features, as for `kubectl apply`
    with pytest.raises(InputError, match="must not set the field.s.: tolerations"):
        desired({"model_manifests": [str(f)]})
    d = desired({"model_manifests": [str(f)], "knative_features": {"kubernetes.podspec-tolerations": "enabled"}})
    out = service_of(d, "knative-qwen7b/knative-qwen7b-svc")
    assert out["spec"]["template"]["spec"]["tolerations"] == mine
    assert out["spec"]["template"]["metadata"]["annotations"]["serving.knative.dev/progress-deadline"] == "2400s"
    assert out["metadata"]["labels"] == {models.MANAGED_BY: "knfleet", "team": "search", models.OWNER: "default"}
    assert d.models[0].added == ()
    # a CPU service gets neither the toleration nor the deadline; a namespace knfleet makes as for group data
    cpu = runbook("embed", "search")
    cpu["spec"]["template"]["spec"]["containers"][0]["resources"] = {}
    d = desired({"model_manifests": [str(write(tmp_path / "cpu.yaml", cpu))]})
    out = service_of(d, "search/embed")
    assert "tolerations" not in out["spec"]["template"]["spec"]
    assert "serving.knative.dev/progress-deadline" not in out["spec"]["template"]["metadata"]["annotations"]
    stage = next(s for s in d.stages if s.name == "services")  # (issue 23) created when missing, never applied
    assert not [o for o in stage.objects if o["kind"] == "Namespace"]
    assert next(s for s in plan.plan(d) if isinstance(s, plan.Own)).namespaces == ("search",)


def test_a_service_without_namespace_goes_to_default_and_default_is_never_made(tmp_path):
    svc = runbook()
    del svc["metadata"]["namespace"]
    d = desired({"model_manifests": [str(write(tmp_path / "q.yaml", svc))]})
    assert d.models[0].ref == "default/knative-qwen7b-svc"
    assert "namespace default (the manifest names none)" in d.models[0].added
    stage = next(s for s in d.stages if s.name == "services")
    assert not [o for o in stage.objects if o["kind"] == "Namespace"]


# --- refused: kinds, Knative's rules, knfleet's annotations, names ----------------------------------------------------
def problems(tmp_path: Path, *docs: Any, entries: dict | None = None) -> list[str]:
    f = write(tmp_path / "m.yaml", *docs)
    return [str(p) for p in manifests.check_file(str(f), lint.ClusterConfig(), entries).problems
            if p.severity == "error"]


@pytest.mark.parametrize(("docs", "needles"), [
    ([NS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}],
     ["document 2 of 2", "'v1 ConfigMap'", "kind ConfigMap is not allowed", "serving.knative.dev/v1 Service"]),
    ([{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}], ["'apps/v1 Deployment'"]),
    ([{"apiVersion": "serving.knative.dev/v1beta1", "kind": "Service", "metadata": {"name": "x"}}],
     ["serving.knative.dev/v1beta1 Service"]),
    ([["a list"]], ["document 1 of 1", "not a mapping"]),
    ([runbook(annotations={P + "target-utilization-percentage": "150"})],
     ["target-utilization-percentage]", "'150'", "out of range: allowed 1 to 100"]),
    ([runbook(meta={"annotations": {P + "min-scale": "1"}})], ["must be put under"]),
    ([runbook(name="Bad_Name")], ["metadata.name = 'Bad_Name'", "DNS label"]),
    ([runbook(meta={"resourceVersion": "12"})], ["metadata.resourceVersion", "kubectl get -o yaml"]),
    ([runbook(meta={"labels": {models.MANAGED_BY: "Helm"}})], ["managed-by] = 'Helm'", "remove the label"]),
    ([runbook(annotations={P + "min-scale": 1})], ["annotations[autoscaling.knative.dev/min-scale] = 1",
                                                  "quote it: \"1\""]),
    ([runbook(meta={"labels": {"tier": True}})], ["metadata.labels[tier] = True"]),
    ([runbook(meta={"annotations": {"knfleet.dev/smoek": "never"}})],
     ["unknown knfleet annotation (did you mean knfleet.dev/smoke?)"]),
    ([runbook(meta={"annotations": {"knfleet.dev/smoke": "sometimes"}})], ["knfleet.dev/smoke] = 'sometimes'"]),
    ([runbook(meta={"annotations": {pr.STATE_ANNOTATION: "{}"}})], ["knfleet's own record of a rollout"]),
    ([runbook(meta={"annotations": {"knfleet.dev/rollout-strategy": "canary"}})], ["rollout.strategy = 'canary'"]),
    ([runbook(meta={"annotations": {"knfleet.dev/rollout-strategy": "progressive",
                                    "knfleet.dev/rollout-steps": "50,25,100"}})], ["strictly increasing"]),
    ([runbook(meta={"annotations": {"knfleet.dev/rollout-checks": "{requests: 5"}})], ["not JSON"]),
    ([runbook(meta={"annotations": {"knfleet.dev/rollout-strategy": "progressive"}},
              annotations={P + "max-scale": "1", P + "min-scale": "2"})], ["max-scale=1 is less than min-scale=2"]),
])
def test_refused_documents_are_named_by_file_document_and_field(tmp_path, docs, needles):
    found = "\n".join(problems(tmp_path, *docs))
    assert str(tmp_path / "m.yaml") in found
    for needle in needles:
        assert needle in found, found


def test_progressive_needs_what_a_rollout_owns(tmp_path):
    prog = {"knfleet.dev/rollout-strategy": "progressive"}
    svc = runbook(meta={"annotations": prog})
    svc["spec"]["traffic"] = [{"latestRevision": True, "percent": 100}]
    svc["spec"]["template"]["metadata"]["name"] = "knative-qwen7b-svc-v1"
    found = "\n".join(problems(tmp_path, svc))
    assert "spec.traffic" in found and "spec.template.metadata.name = 'knative-qwen7b-svc-v1'" in found
    nameless = runbook(meta={"annotations": prog})
    nameless["spec"]["template"]["spec"]["containers"][0]["args"] = ["--port", "8000"]
    assert "needs the served model name" in "\n".join(problems(tmp_path, nameless))
    assert "at most 56 characters" in "\n".join(problems(tmp_path, runbook(name="x" * 60, meta={"annotations": prog})))


def test_a_file_that_is_not_yaml_or_cannot_be_read(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    (p,) = manifests.check_file(str(bad), lint.ClusterConfig()).problems
    assert p.severity == "error" and p.file == str(bad) and "not valid YAML" in p.message
    with pytest.raises(InputError, match=r"model_manifests: .*bad\.yaml: not valid YAML"):
        desired({"model_manifests": [str(bad)]})


# --- one verdict: knfleet lint FILE and the deploy --------------------------------------------------------------------
VERDICT_CASES = {
    "clean": [NS, runbook(annotations={"serving.knative.dev/progress-deadline": "1800s"})],
    "warnings": [runbook(annotations={P + "initial-scale": "3", P + "max-scale": "2", P + "scale-to-zero": "1"})],
    "refused-annotation": [NS, runbook(annotations={P + "target-utilization-percentage": "150"})],
    "configmap": [NS, runbook(), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}],
    "many": [runbook(annotations={P + "window": "5s", P + "scale-down-delay": "5"},
                     meta={"annotations": {"knfleet.dev/smoke": "maybe"}}),
             runbook("second", annotations={P + "initialScale": "2", P + "initial-scale": "1"})],
}


@pytest.mark.parametrize("case", sorted(VERDICT_CASES))
def test_knfleet_lint_and_the_deploy_give_the_same_problems_for_the_same_file(tmp_path, monkeypatch, case, capsys):
    """One function: what `knfleet lint FILE` prints is what the deploy refuses (its errors) or warns about."""
    f = write(tmp_path / f"{case}.yaml", *VERDICT_CASES[case])
    data = {"model_manifests": [str(f)], "knative_features": {"kubernetes.podspec-tolerations": "enabled"}}
    cfg = plan.cluster_config(settings.from_data(settings.Data(data)))  # the configuration the deploy lints with
    linted = [str(p) for p in cli.lint_path(str(f), cfg)]
    assert linted, "every case has something to say"
    try:
        d = desired(data)
    except InputError as err:
        deploy_errors = [line.strip() for line in str(err).splitlines()[1:]]
        assert deploy_errors == [p for p in linted if ": error: " in p]
        assert str(f) in str(err)
    else:
        assert not [p for p in linted if ": error: " in p]
        assert [w for w in d.warnings if w.startswith(str(f))] == linted
    # and the exit codes of `knfleet lint` follow: 1 with an error
    code = cli.main(["lint", str(f)])
    capsys.readouterr()
    assert code == (1 if lint.has_errors(cli.lint_path(str(f), lint.ClusterConfig())) else 0)


def test_lint_of_group_data_reads_its_manifests_as_the_deploy_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifests").mkdir()
    write(tmp_path / "manifests" / "qwen.yaml", runbook(annotations={P + "target-utilization-percentage": "150"}))
    gd = tmp_path / "group_data"
    gd.mkdir()
    (gd / "gpu.py").write_text('model_manifests = ["manifests/*.yaml"]\nmodels = []\n')
    found = cli.lint_path(str(gd / "gpu.py"), lint.ClusterConfig())
    assert [p.file for p in found if p.severity == "error"] == ["manifests/qwen.yaml"]
    (gd / "twice.py").write_text('model_manifests = ["manifests/*.yaml"]\nmodels = [{}]\n')
    write(tmp_path / "manifests" / "qwen.yaml", runbook())
    found = cli.lint_path(str(gd / "twice.py"), lint.ClusterConfig())
    assert any("defined twice" in p.message and "models[0]" in p.message for p in found if p.severity == "error")


# --- conflicts --------------------------------------------------------------------------------------------------------
def test_the_same_service_twice_is_refused_naming_both_places(tmp_path):
    a, b = write(tmp_path / "a.yaml", NS, runbook()), write(tmp_path / "b.yaml", runbook())
    with pytest.raises(InputError) as err:
        desired({"model_manifests": [str(a), str(b)]})
    assert f"in {a} (document 2 of 2) and in {b} (document 1 of 1)" in str(err.value)
    with pytest.raises(InputError) as err:
        desired({"model_manifests": [str(a)], "models": [{"name": "other"}, {}]})
    assert f"knative-qwen7b/knative-qwen7b-svc is defined twice: in group data models[1] and in {a}" \
           in str(err.value)
    # the same file matched twice is one file, not a conflict
    assert len(desired({"model_manifests": [str(a), str(tmp_path / "*.yaml")[:-6] + "a.y*ml"]}).models) == 1
    # a Namespace in two files: the same is fine, a different one is not
    other = copy.deepcopy(NS)
    other["metadata"]["labels"] = {"team": "x"}
    c = write(tmp_path / "c.yaml", other, runbook("second"))
    with pytest.raises(InputError, match="Namespace knative-qwen7b is defined twice, differently"):
        desired({"model_manifests": [str(a), str(c)]})


def test_a_namespace_keeps_the_label_its_owner_wrote(tmp_path):
    ns = {"apiVersion": "v1", "kind": "Namespace",
          "metadata": {"name": "knative-qwen7b", "labels": {models.MANAGED_BY: "Helm"}}}
    d = desired({"model_manifests": [str(write(tmp_path / "q.yaml", ns, runbook()))]})
    stage = next(s for s in d.stages if s.name == "services")
    assert stage.objects[0]["metadata"]["labels"] == {models.MANAGED_BY: "Helm"}


def test_paths_and_globs_relative_to_the_deploy_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    write(tmp_path / "m" / "b.yaml", runbook("b"))
    write(tmp_path / "m" / "a.yaml", runbook("a"))
    assert manifests.resolve(["m/*.yaml"]) == ("m/a.yaml", "m/b.yaml")
    assert manifests.resolve("m/b.yaml,m/*.yaml") == ("m/b.yaml", "m/a.yaml")  # --data's comma form; each once
    assert manifests.resolve([str(tmp_path / "m" / "a.yaml")]) == (str(tmp_path / "m" / "a.yaml"),)
    for raw, needle in ((["m/*.yml"], "matches no file"), (["m"], "is a folder; use its files"),
                        (["nope.yaml"], "'nope.yaml': no such file"), ([3], "is not allowed"),
                        ({"a": 1}, "use a list of YAML file paths")):
        with pytest.raises(InputError, match="model_manifests") as err:
            manifests.resolve(raw)
        assert needle in str(err.value)


def test_a_file_is_read_once_and_again_when_edited(tmp_path):
    f = write(tmp_path / "q.yaml", runbook())
    first = manifests.parse(str(f))
    assert manifests.parse(str(f))[0] is first[0]  # one read for every cluster of a run
    d = desired({"model_manifests": [str(f)]})
    assert "labels" not in first[0]["metadata"] and service_of(d, d.models[0].ref)["metadata"]["labels"]  # unchanged
    write(f, runbook("edited"))
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert manifests.parse(str(f))[0]["metadata"]["name"] == "edited"


# --- served model name, smoke and rollout settings --------------------------------------------------------------------
def one(tmp_path: Path, svc: dict, entries: dict | None = None) -> manifests.ManifestService:
    data: dict[str, Any] = {"model_manifests": [str(write(tmp_path / "q.yaml", svc))]}
    if entries is not None:
        data["model_manifest_settings"] = entries
    (m,) = desired(data).models
    return m


def test_served_model_name_from_the_argument_else_the_settings_annotation_or_vllms_default(tmp_path):
    svc = runbook(meta={"annotations": {"knfleet.dev/served-model-name": "from-annotation"}})
    assert one(tmp_path, svc).served_model_name == "qwen7b"  # the argument is what vLLM serves
    args = svc["spec"]["template"]["spec"]["containers"][0]["args"]
    args[:] = ["--model", "Qwen/Qwen2.5-7B-Instruct", "--port", "8000"]
    assert one(tmp_path, svc).served_model_name == "from-annotation"
    assert one(tmp_path, svc, {"knative-qwen7b-svc": {"served_model_name": "from-group-data"}}).served_model_name \
        == "from-group-data"
    del svc["metadata"]["annotations"]
    assert one(tmp_path, svc).served_model_name == "Qwen/Qwen2.5-7B-Instruct"  # vLLM's own default
    args[:] = ["--served-model-name=eq", "--port", "8000"]
    assert one(tmp_path, svc).served_model_name == "eq"
    args[:] = ["--port", "8000"]
    m = one(tmp_path, svc)
    assert m.served_model_name == "" and m.smoke_policy == "never"
    d = desired({"model_manifests": [str(tmp_path / "q.yaml")]})
    assert any("no served model name" in w for w in d.warnings) and plan.smoke_targets(d) == ()


def test_smoke_and_rollout_from_annotations_and_group_data_over_them(tmp_path):
    ann = {"knfleet.dev/smoke": "never", "knfleet.dev/rollout-strategy": "progressive",
           "knfleet.dev/rollout-steps": "10, 50,100", "knfleet.dev/rollout-bake": "5s",
           "knfleet.dev/rollout-checks": json.dumps({"requests": 7, "max_latency_ratio": 1.5,
                                                     "prompts": [{"messages": [{"role": "user", "content": "1+1"}],
                                                                  "expect": "2"}]})}
    m = one(tmp_path, runbook(meta={"annotations": ann}))
    assert m.smoke_policy == "never"
    assert m.rollout == pr.Rollout("progressive", (10, 50, 100), 5.0, pr.Checks(
        requests=7, max_latency_ratio=1.5, prompts=(pr.Prompt(({"role": "user", "content": "1+1"},), "2"),)))
    over = one(tmp_path, runbook(meta={"annotations": ann}),
               {"knative-qwen7b/knative-qwen7b-svc": {"smoke": "always", "rollout": {"steps": [50, 100]}}})
    assert over.smoke_policy == "always" and over.rollout.steps == (50, 100) and over.rollout.bake_s == 5.0
    assert one(tmp_path, runbook(meta={"annotations": {"knfleet.dev/rollout-steps": "[25, 100]"}})).rollout.steps \
        == (25, 100)
    assert one(tmp_path, runbook(annotations={P + "min-scale": "0"})).smoke_policy == "when-warm"
    for entries, needle in (({"nope": {"smoke": "always"}}, "'nope' names no service of model_manifests"),
                            ({"knative-qwen7b-svc": {"smoek": 1}}, "unknown key(s) smoek (did you mean smoke?)"),
                            ({"knative-qwen7b-svc": {"smoke": "sometimes"}}, "smoke = 'sometimes'"),
                            ({"knative-qwen7b-svc": {"rollout": {"steps": [5]}}}, "rollout.steps = [5]"),
                            ({"Bad Key": {}}, "key 'Bad Key' is not allowed")):
        with pytest.raises(InputError) as err:
            one(tmp_path, runbook(), entries)
        assert needle in str(err.value) and "model_manifest_settings" in str(err.value), str(err.value)


# --- the plan ---------------------------------------------------------------------------------------------------------
def test_plain_and_progressive_manifest_services_in_the_plan(tmp_path):
    prog = runbook("rolled", meta={"annotations": {"knfleet.dev/rollout-strategy": "progressive",
                                                   "knfleet.dev/rollout-bake": "1s"}})
    f = write(tmp_path / "q.yaml", NS, runbook(), prog)
    d = desired({"model_manifests": [str(f)], "models": [{"name": "from-group-data"}]})
    steps = plan.plan(d)
    apply = next(s for s in steps if isinstance(s, plan.Apply) and s.stage == "services")
    applied = [plan.readiness_ref(o) for o in apply.objects if o["kind"] == "Service"]
    assert applied == ["knative-qwen7b/from-group-data", "knative-qwen7b/knative-qwen7b-svc"]
    assert [ref for ref, _ in apply.notes] == ["Service/knative-qwen7b/knative-qwen7b-svc",
                                               "Service/knative-qwen7b/rolled"]
    prune = next(s for s in steps if isinstance(s, plan.Prune))
    assert prune.keep == ("knative-qwen7b/from-group-data", "knative-qwen7b/knative-qwen7b-svc",
                          "knative-qwen7b/rolled")
    gate = next(s for s in steps if isinstance(s, plan.Gate) and isinstance(s.check, plan.ServicesReady))
    assert gate.check.refs == ("knative-qwen7b/from-group-data", "knative-qwen7b/knative-qwen7b-svc")
    (rollout,) = [s for s in steps if isinstance(s, plan.Rollout)]
    assert rollout.ref == "knative-qwen7b/rolled" and rollout.model == "qwen7b" and rollout.settings.bake_s == 1
    assert pr.template_name(rollout.service).startswith("rolled-") and "revision name rolled-" in rollout.notes
    assert rollout.gpus_per_pod == 1 and rollout.tolerations == (models.GPU_TOLERATION,)
    smoke = steps[-1]
    assert isinstance(smoke, plan.Smoke)
    assert [t.ref for t in smoke.services] == ["knative-qwen7b/from-group-data", "knative-qwen7b/knative-qwen7b-svc",
                                               "knative-qwen7b/rolled"]
    capacity = next(s for s in steps if isinstance(s, plan.Capacity))
    assert sorted(n.service for n in capacity.needs) == ["knative-qwen7b/from-group-data",
                                                          "knative-qwen7b/knative-qwen7b-svc", "knative-qwen7b/rolled"]
    rights = {str(r) for r in plan.install_rights(d)}
    assert "patch revisions.serving.knative.dev in knative-qwen7b" in rights
    # rollback and rollout_retry name a progressive manifest service as they name a group-data one
    assert plan.plan(desired({"model_manifests": [str(f)], "rollback": "rolled"}))[2].ref == "knative-qwen7b/rolled"
    retry = plan.plan(desired({"model_manifests": [str(f)], "rollout_retry": "rolled"}))
    assert next(s for s in retry if isinstance(s, plan.Rollout)).retry
    with pytest.raises(InputError, match="rollout_retry: 'knative-qwen7b-svc' is not allowed"):
        desired({"model_manifests": [str(f)], "rollout_retry": "knative-qwen7b-svc"})


def test_uninstall_does_not_read_the_manifests(tmp_path):
    d = desired({"action": "uninstall", "model_manifests": [str(tmp_path / "gone.yaml")]})
    steps = plan.plan(d)
    assert isinstance(steps[3], plan.DeleteServices) and steps[3].selector == models.MANAGED


def test_explicitly_disabled_tolerations_get_no_toleration_from_knfleet(tmp_path):
    f = write(tmp_path / "q.yaml", runbook())
    d = desired({"model_manifests": [str(f)], "knative_features": {"kubernetes.podspec-tolerations": "disabled"}})
    assert "tolerations" not in service_of(d, d.models[0].ref)["spec"]["template"]["spec"]
    assert d.settings.features["kubernetes.podspec-tolerations"] == "disabled"
    assert not any("toleration" in a for a in d.models[0].added)
