"""Knative's config ConfigMaps checked as Knative 1.17 parses them, and what follows from it: settings, the shared
cluster config of lint and deploy, the webhook configurations left to Knative, uninstall's guard. No cluster."""

from __future__ import annotations

import textwrap

import pytest

from knfleet import cli
from knfleet.desired import knconfig, models, plan, render, settings
from knfleet.run import uninstall
from tests.unit.bundle_fixture import fixture_bundle

IMAGE = {"queue-sidecar-image": "gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:" + "0" * 64}


def errors(cm: str, data: dict[str, str]) -> list[str]:
    base = IMAGE if cm == "config-deployment" else {}
    return [p.key for p in knconfig.check(cm, {**base, **data}) if p.severity == "error"]


@pytest.mark.parametrize(("cm", "data", "bad"), [
    # the examples, each refused by Knative's webhook
    ("config-autoscaler", {"container-concurrency-target-percentage": "150"},
     ["container-concurrency-target-percentage"]),
    ("config-autoscaler", {"max-scale-up-rate": "0.5"}, ["max-scale-up-rate"]),
    ("config-defaults", {"container-concurrency": "5000"}, ["container-concurrency"]),
    ("config-autoscaler", {"scale-down-delay": "60"}, ["scale-down-delay"]),  # the runbook appendix's default
    # cross-key rules
    ("config-autoscaler", {"min-scale": "3", "max-scale": "2"}, ["min-scale"]),
    ("config-autoscaler", {"max-scale": "5", "max-scale-limit": "4"}, ["max-scale"]),
    ("config-autoscaler", {"max-scale-limit": "4"}, ["max-scale"]),  # a limit needs max-scale >= 1
    ("config-autoscaler", {"initial-scale": "0"}, ["initial-scale"]),
    ("config-autoscaler", {"container-concurrency-target-percentage": "0.001",
                           "container-concurrency-target-default": "1"}, ["container-concurrency-target-default"]),
    ("config-defaults", {"revision-timeout-seconds": "700"}, ["revision-timeout-seconds"]),
    ("config-defaults", {"revision-timeout-seconds": "100", "revision-idle-timeout-seconds": "200"},
     ["revision-idle-timeout-seconds"]),
    ("config-defaults", {"revision-memory-request": "1Gb"}, ["revision-memory-request"]),
    ("config-deployment", {"progress-deadline": "1500ms"}, ["progress-deadline"]),
    ("config-deployment", {"default-affinity-type": "None"}, ["default-affinity-type"]),
    ("config-deployment", {"runtime-class-name": "Bad_Name: {}"}, ["runtime-class-name"]),
    ("config-network", {"http-protocol": "redirect"}, ["http-protocol"]),
    ("config-network", {"rollout-duration": "-1"}, ["rollout-duration"]),
])
def test_what_knative_refuses_is_refused_naming_the_key(cm, data, bad):
    assert errors(cm, data) == bad


@pytest.mark.parametrize(("cm", "data"), [
    ("config-autoscaler", {"container-concurrency-target-percentage": "0.7"}),  # a fraction, read as 70 %
    ("config-autoscaler", {"container-concurrency-target-percentage": "100"}),
    ("config-autoscaler", {"max-scale-up-rate": "NaN"}),  # NaN slips through Go's comparisons: accepted
    ("config-autoscaler", {"max-scale-up-rate": "1_000"}),  # Go's ParseFloat takes underscores between digits
    ("config-autoscaler", {"enable-scale-to-zero": "T", "allow-zero-initial-scale": "1", "initial-scale": "0"}),
    ("config-autoscaler", {"stable-window": "1h", "scale-down-delay": "10m"}),
    ("config-defaults", {"container-concurrency": "1000", "revision-cpu-request": "1.5"}),
    ("config-deployment", {"progress-deadline": "1800s", "runtime-class-name": "nvidia:\n  selector:\n    gpu: 'x'"}),
    ("config-features", {"kubernetes.podspec-tolerations": "enabeld"}),  # ignored, not refused: a warning
    ("config-network", {"http-protocol": "Redirected", "rollout-duration": "120"}),
    ("config-domain", {"example.com": "", "internal.example.com": "selector:\n  app: x\n"}),
])
def test_what_knative_accepts_is_accepted(cm, data):
    assert errors(cm, data) == []


def test_ignored_values_are_warnings():
    found = knconfig.check("config-features", {"kubernetes.podspec-tolerations": "enabeld"})
    assert [(p.severity, p.field) for p in found] == [("warning", "knative_features.kubernetes.podspec-tolerations")]
    assert knconfig.check("config-autoscaler", {"max-scale-up-rate": "NaN"})[0].severity == "warning"


def test_settings_refuse_before_any_cluster_naming_field_value_and_what_is_allowed():
    with pytest.raises(settings.SettingsError) as err:
        settings.from_data({"knative_autoscaler": {"max-scale-up-rate": "0.5", "stable-window": "5s"}})
    text = str(err.value)
    assert "knative_autoscaler.max-scale-up-rate = '0.5': must be greater than 1.0" in text
    assert "knative_autoscaler.stable-window = '5s': must be in [6s; 1h0m0s] range" in text
    with pytest.raises(settings.SettingsError, match="did you mean 'stable-window'"):
        settings.from_data({"knative_autoscaler": {"stable-windo": "60s"}})
    with pytest.raises(settings.SettingsError, match="knative_network: unknown key 'ingress-class'"):
        settings.from_data({"knative_network": {"ingress-class": "istio.ingress.networking.knative.dev"}})


def test_network_keys_render_beside_the_kourier_ingress_class():
    cfg = settings.from_data({"knative_network": {"http-protocol": "redirected"}})
    net = cfg.owned_config()["config-network"]
    assert net == {"http-protocol": "redirected", "ingress-class": "kourier.ingress.networking.knative.dev"}


def test_knatives_webhook_configurations_are_applied_without_what_knative_writes():
    b = fixture_bundle()
    core = next(s for s in render.install_stages(b, settings.from_data({})) if s.name == "core")
    hooks = [o for o in core.objects if o["kind"] in render.WEBHOOK_KINDS]
    assert {h["metadata"]["name"] for h in hooks} == {
        "webhook.serving.knative.dev", "validation.webhook.serving.knative.dev", "config.webhook.serving.knative.dev"}
    for h in hooks:
        for w in h["webhooks"]:
            assert "rules" not in w and "caBundle" not in w["clientConfig"]
            assert "path" not in w["clientConfig"]["service"]
            assert w["failurePolicy"] == "Fail" and w["clientConfig"]["service"]["name"] == "webhook"
    other = {"kind": "ValidatingWebhookConfiguration", "metadata": {"name": "not-knative"},
             "webhooks": [{"rules": [{}]}]}
    assert render.leave_to_knative(other) is other


def _group_data(tmp_path, group_text: str):
    (tmp_path / "all.py").write_text(textwrap.dedent("""
        knative_features = {"kubernetes.podspec-tolerations": "enabled"}
        knative_deployment = {"registries-skipping-tag-resolving": "index.docker.io"}
    """))
    path = tmp_path / "gpu.py"
    path.write_text(textwrap.dedent(group_text))
    return path


def test_lint_of_group_data_builds_the_cluster_config_exactly_as_the_deploy(tmp_path):
    path = _group_data(tmp_path, """
        knative_features = {"kubernetes.podspec-tolerations": "disabled"}
        models = [{}]
    """)
    linted = [p for p in cli.lint_path(str(path), plan.lint.ClusterConfig()) if p.severity == "error"]
    assert [p.path for p in linted] == ["spec.template.spec.tolerations"]
    values = settings.Data(cli.group_data_values(path), action="install")
    cfg = plan.with_model_features(settings.from_data(values), models.from_data(values["models"]))
    with pytest.raises(plan.LintFailed, match="spec.template.spec.tolerations"):
        plan.check_models("@kube/x", cfg, models.from_data(values["models"]))
    # Left to knfleet, the flag the model needs is turned on: both pass.
    ok = _group_data(tmp_path, "models = [{}]\n")
    assert not [p for p in cli.lint_path(str(ok), plan.lint.ClusterConfig()) if p.severity == "error"]


def test_lint_of_group_data_reports_config_knative_would_refuse(tmp_path):
    path = _group_data(tmp_path, 'knative_autoscaler = {"max-scale-up-rate": "0.5"}\n')
    found = cli.lint_path(str(path), plan.lint.ClusterConfig())
    assert [(p.severity, p.path) for p in found] == [("error", "group data")]
    assert "max-scale-up-rate = '0.5'" in found[0].message


def _obj(kind, name, ns="team", labels=None, owner=None):
    meta = {"name": name, "namespace": ns, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "apiVersion": "serving.knative.dev/v1"}]
    return {"kind": kind, "metadata": meta}


def test_uninstall_guard_counts_foreign_services_domain_mappings_and_direct_routes():
    mine = {"app.kubernetes.io/managed-by": "knfleet"}
    everything = [
        _obj("Service", "ours", labels=mine), _obj("Route", "ours", labels=mine, owner="Service"),
        _obj("Configuration", "ours", owner="Service"), _obj("Service", "theirs"),
        _obj("DomainMapping", "chat.example.com"), _obj("Route", "handmade"), _obj("Configuration", "bare"),
    ]
    assert uninstall.foreign_objects(everything, "app.kubernetes.io/managed-by=knfleet") == [
        "Configuration team/bare (created directly)", "DomainMapping team/chat.example.com",
        "Knative Service team/theirs", "Route team/handmade (created directly)"]


def test_uninstall_waits_on_what_knative_made_by_its_service_label():
    refs = ["a/x", "a/y", "b/z"]

    def made(ns, service):
        return {"metadata": {"namespace": ns, "labels": {"serving.knative.dev/service": service}}}
    assert all(uninstall.made_for(made(ns, svc), refs) for ns, svc in (("a", "x"), ("a", "y"), ("b", "z")))
    others = (made("a", "z"), made("b", "x"), {"metadata": {"namespace": "a"}})
    assert not any(uninstall.made_for(o, refs) for o in others)
