"""The typed plan, the drift rule and the report: pure logic, no cluster."""

from __future__ import annotations

import copy
import random

import pytest

from knfleet.desired import models, plan, settings
from knfleet.desired.bundle import Bundle
from knfleet.kube import diff
from knfleet.kube.client import KubeError, Resource
from knfleet.report import outcome
from knfleet.run.deploy import by_task
from tests.unit.bundle_fixture import fixture_bundle


def desired(data: dict | None = None) -> plan.Desired:
    return plan.desired("@kube/c1", settings.Data(data or {}), bundle_loader=lambda *_: fixture_bundle())


def kinds(steps: list) -> list[str]:
    return [f"{type(s).__name__}:{getattr(s, 'stage', '') or type(getattr(s, 'check', None)).__name__}"
            for s in steps]


def test_install_plan_reads_like_the_flow():
    steps = plan.plan(desired({"models": [{}]}))
    assert kinds(steps) == [
        "Preflight:NoneType", "Capacity:NoneType", "Lock:NoneType", "Version:NoneType", "Smoke:NoneType", "Apply:crds",
        "Gate:CrdsEstablished", "Apply:config", "Apply:core",
        "Gate:DeploymentsAvailable", "Gate:WebhookServing", "Apply:kourier", "Apply:proxy",
        "Gate:DeploymentsAvailable", "Gate:DeploymentsAvailable", "Gate:DeploymentsAvailable", "Gate:PodsReady",
        "Obsolete:NoneType", "PostInstall:NoneType",
        "Own:NoneType", "Apply:services", "Prune:NoneType", "PrunePrepull:NoneType", "Gate:ServicesReady",
        "Smoke:NoneType"]
    assert steps[4].before_upgrade == "1.17.0" and steps[-1].before_upgrade is None
    assert steps[1].mode == "refuse" and steps[1].needs[0].gpus == 2  # 1 GPU x (initial scale 1 + a rollout pod)
    config = next(s for s in steps if isinstance(s, plan.Apply) and s.stage == "config")
    assert config.repair_config
    services = next(s for s in steps if isinstance(s, plan.Apply) and s.stage == "services")
    assert services.webhook_retry > 0  # retries while Knative's webhook (re)starts
    assert [t for t, _ in by_task(steps)] == ["run", "smoke", "knative", "kourier", "proxy", "run", "knative",
                                              "services", "smoke"]


def test_without_models_nothing_is_pruned_an_empty_list_prunes_all_and_smoke_can_be_off():
    """Issue 23: on main group data without `models` pruned every service labelled managed-by=knfleet, including
    another inventory's; now only an explicit list prunes, and only the owner's services."""
    assert not any(isinstance(s, (plan.Prune, plan.Own)) for s in plan.plan(desired()))
    steps = plan.plan(desired({"models": []}))
    assert isinstance(steps[-1], plan.PrunePrepull) and steps[-1].keep == ()  # the pre-pull DaemonSets go too
    steps = steps[:-1]
    assert isinstance(steps[-1], plan.Prune) and steps[-1].keep == () and steps[-1].remove_all
    assert steps[-1].selector == "app.kubernetes.io/managed-by=knfleet,knfleet.dev/owner=default"
    some = plan.plan(desired({"models": [{}], "owner": "team-a"}))
    prune = next(s for s in some if isinstance(s, plan.Prune))
    assert prune.owner == "team-a" and prune.selector.endswith(",knfleet.dev/owner=team-a") and not prune.remove_all
    off = plan.plan(desired({"models": [{}], "smoke": "no"}))
    assert not any(isinstance(s, plan.Smoke) for s in off)


def test_uninstall_plan_and_force():
    steps = plan.plan(desired({"action": "uninstall"}))
    assert kinds(steps)[:4] == ["Preflight:NoneType", "Lock:NoneType", "Guard:NoneType", "DeleteServices:NoneType"]
    assert [s.stage for s in steps if isinstance(s, plan.Delete)] == ["proxy", "kourier", "core", "crds"]
    assert isinstance(steps[-1], plan.Removed)
    forced = plan.plan(desired({"action": "uninstall", "force_uninstall": "yes"}))
    assert forced[2].force and "force_uninstall" in forced[3].title


def test_models_are_rendered_once_and_shared_with_lint_and_smoke():
    d = desired({"models": [{}, {"name": "b", "visibility": "cluster-local"}], "knative_domain": "example.com"})
    services = next(s for s in d.stages if s.name == "services")
    assert [o["kind"] for o in services.objects] == ["Service", "Service"]  # namespaces: created, not applied
    assert {o["metadata"]["labels"]["knfleet.dev/owner"] for o in services.objects} == {"default"}
    smoke = next(s for s in plan.plan(d) if isinstance(s, plan.Smoke))
    assert [(t.ref, t.host) for t in smoke.services] == [
        ("knative-qwen7b/knative-qwen7b-svc", "knative-qwen7b-svc.knative-qwen7b.example.com"),
        ("knative-qwen7b/b", "b.knative-qwen7b.svc.cluster.local")]


def test_the_cluster_domain_reaches_the_smoke_host_and_the_proxy():
    d = desired({"models": [{"name": "b", "visibility": "cluster-local"}], "cluster_domain": "corp.internal"})
    smoke = next(s for s in plan.plan(d) if isinstance(s, plan.Smoke))
    assert [t.host for t in smoke.services] == ["b.knative-qwen7b.svc.corp.internal"]
    proxy = next(s for s in d.stages if s.name == "proxy")
    conf = next(o for o in proxy.objects if o["kind"] == "ConfigMap")["data"]["default.conf"]
    assert "server kourier.kourier-system.svc.corp.internal:80;" in conf and "__" not in conf
    with pytest.raises(settings.SettingsError, match=r"^cluster_domain: 'Corp_Internal' is not allowed; use "):
        settings.from_data(settings.Data({"cluster_domain": "Corp_Internal"}))


@pytest.mark.parametrize(("key", "value", "field"), [
    ("smoke", "maybe", "smoke"), ("lock_ttl", -1, "lock_ttl"), ("lock_ttl", 2, "lock_ttl"),
    ("force_uninstall", 2, "force_uninstall"),
    ("smoke_url", "ftp://x", "smoke_url"), ("model_wait_timeout", "soon", "model_wait_timeout"),
])
def test_run_settings_one_boolean_rule_and_named_errors(key, value, field):
    with pytest.raises(settings.SettingsError, match=f"^{field}: "):
        settings.from_data(settings.Data({key: value}))


@pytest.mark.parametrize("value", [True, "true", "TRUE", "yes", "on", "1", 1])
def test_truthy_values(value):
    assert settings.boolean("x", value, False) is True


# --- models never end in a traceback -----------------------------------------------------------------------------
ODD = [None, True, 0, -1, 3.5, "", "ÄÖ", [], [1], {}, {"a": 1}, "x" * 300, ("t",), object()]


def test_malformed_models_always_name_the_field_never_a_traceback():
    rng = random.Random(7)
    keys = [f.name for f in models.fields(models.Model)] + ["nmae", "gpu"]
    for _ in range(600):
        raw = {rng.choice(keys): rng.choice(ODD) for _ in range(rng.randint(1, 3))}
        try:
            models.from_data([raw])
        except models.ModelError as err:
            assert "models[0]" in str(err)


# --- the drift rule ------------------------------------------------------------------------------------------------
def _live(obj: dict, uid: str = "u1", fields: dict | None = None) -> dict:
    live = copy.deepcopy(obj)
    live["metadata"].update(uid=uid, resourceVersion="5", managedFields=[
        {"manager": "knfleet", "operation": "Apply", "fieldsV1": fields or {"f:data": {"f:a": {}}}},
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "fieldsV1": {}}])
    return live


CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}, "data": {"a": "1"}}


class StubCluster:
    """Recorded objects, answering what diff.drift asks (a stand-in for pure logic, not a Kubernetes)."""

    def __init__(self, live: list[dict], dry: dict | None = None) -> None:
        self.live, self.dry, self.dry_runs = live, dry, 0

    def has(self, *_):
        return True

    def resource(self, api_version, kind):
        return Resource("", "v1", kind.lower() + "s", kind, True)

    def list_many(self, keys):
        pass

    def find(self, obj):
        return next((o for o in self.live if o["metadata"]["name"] == obj["metadata"]["name"]), None)

    def parallel(self, calls):
        return [c() for c in calls]

    def apply(self, obj, dry_run=False):
        self.dry_runs += 1
        if isinstance(self.dry, KubeError):
            raise self.dry
        return self.dry if self.dry is not None else _live(obj)


def test_noted_objects_take_the_fast_path_without_a_dry_run():
    live = _live(CM)
    records = diff.Records()
    records.remember(CM, live)
    cluster = StubCluster([live])
    assert diff.drift(cluster, (CM,), records) == [] and cluster.dry_runs == 0


def test_someone_taking_a_field_or_a_new_desired_state_or_a_new_uid_is_checked_by_dry_run():
    records = diff.Records()
    records.remember(CM, _live(CM))
    taken = _live(CM, fields={"f:data": {}})  # someone else changed data.a: knfleet no longer owns it
    changed_live = {**taken, "data": {"a": "2"}}
    cluster = StubCluster([changed_live], dry=_live(CM))
    assert [str(d) for d in diff.drift(cluster, (CM,), records)] == ["ConfigMap/n/c"]
    assert cluster.dry_runs == 1
    new = {**CM, "data": {"a": "3"}}
    cluster = StubCluster([_live(CM)], dry=_live(new))
    assert [d.why for d in diff.drift(cluster, (new,), records)] == ["differs"]
    cluster = StubCluster([_live(CM, uid="u2")], dry=_live(CM, uid="u2"))
    assert diff.drift(cluster, (CM,), records) == [] and cluster.dry_runs == 1  # equal: learned for next time
    assert records.matches(CM, _live(CM, uid="u2"))


def test_missing_unowned_and_bare_objects():
    assert [d.why for d in diff.drift(StubCluster([]), (CM,), diff.Records())] == ["missing"]
    unowned = copy.deepcopy(CM)
    unowned["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Update", "fieldsV1": {}}]
    assert [d.why for d in diff.drift(StubCluster([unowned]), (CM,), diff.Records())] == [
        "not applied by knfleet yet"]
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    assert diff.drift(StubCluster([{**ns, "metadata": {"name": "x", "uid": "1"}}]), (ns,), diff.Records()) == []


# --- the report ------------------------------------------------------------------------------------------------------
def test_report_schema_and_closing_lines():
    results = {
        "a": outcome.ClusterOutcome("a", outcome.CONVERGED, smoke=[{"service": "ns/s", "ok": True, "status": 200,
                                                                   "latency_s": 0.1, "cold_start_s": None,
                                                                   "attempts": 1, "error": None}]),
        "b": outcome.ClusterOutcome("b", outcome.FAILED, errors=["preflight: API server not reachable\nmore"]),
        "c": outcome.ClusterOutcome("c", outcome.LOCKED, errors=["lock: cluster is locked by x"]),
    }
    rep = outcome.report("run", results, action="install", dry_run=False)
    assert rep["schema"] == outcome.SCHEMA and rep["kind"] == "run" and set(rep["clusters"]) == {"a", "b", "c"}
    assert rep["clusters"]["b"]["errors"][0].startswith("preflight")
    text = outcome.lines(results, "install")
    assert text == ["knfleet: a: install done, no change (already converged)",
                    "    smoke ns/s: 200 in 0.10s",
                    "knfleet: b: FAILED (install) - preflight: API server not reachable",
                    "knfleet: c: LOCKED (install) - lock: cluster is locked by x"]
    assert results["a"].ok and not results["b"].ok and not results["c"].ok


def test_bundle_fixture_is_small_and_self_contained():
    b = fixture_bundle()
    assert isinstance(b, Bundle) and sum(len(t) for t in b.files.values()) < 20_000


# --- the Kubernetes layer's pure parts ------------------------------------------------------------------------------
def test_api_errors_are_typed_and_name_the_request():
    from knfleet.kube import client

    body = '{"kind":"Status","reason":"NotFound","message":"services \\"x\\" not found"}'
    err = client.error_for("c1", "get Service x", 404, body)
    assert isinstance(err, client.NotFound) and str(err) == 'get Service x: services "x" not found'
    message = '{"message": "Internal error occurred: failed calling webhook \\"webhook.serving.knative.dev\\": x"}'
    hook = client.error_for("c1", "apply Service/ns/x", 500, message)
    assert isinstance(hook, client.WebhookUnavailable)
    assert isinstance(client.error_for("c1", "x", 409, "conflict"), client.Conflict)
    assert isinstance(client.error_for("c1", "x", 422, "{}"), client.Invalid)
    assert isinstance(hook, KubeError) and hook.cluster == "c1"


def test_resource_paths():
    deploy = Resource("apps", "v1", "deployments", "Deployment", True)
    assert deploy.path("ns", "web", "scale") == "/apis/apps/v1/namespaces/ns/deployments/web/scale"
    assert Resource("", "v1", "namespaces", "Namespace", False).path(None, "a b") == "/api/v1/namespaces/a%20b"
    crd = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False)
    assert crd.path("ignored") == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@pytest.mark.parametrize(("kind", "resource"), [
    ("Deployment", "deployments"), ("Ingress", "ingresses"), ("PodDisruptionBudget", "poddisruptionbudgets"),
    ("NetworkPolicy", "networkpolicies"), ("Gateway", "gateways"), ("Endpoints", "endpoints"),
    ("ValidatingWebhookConfiguration", "validatingwebhookconfigurations"), ("Image", "images"),
])
def test_resource_names_follow_kubernetes_default_guess(kind, resource):
    assert plan.resource_of(kind) == resource


def test_install_rights_cover_what_the_run_does():
    d = desired({"models": [{}]})
    rights = {str(r) for r in plan.plan(d)[0].rights}
    assert {"escalate clusterroles.rbac.authorization.k8s.io", "bind clusterroles.rbac.authorization.k8s.io",
            "create leases.coordination.k8s.io in kube-system", "update leases.coordination.k8s.io in kube-system",
            "patch configmaps in kube-system", "create services.serving.knative.dev in knative-qwen7b",
            "patch deployments.apps in knative-serving", "create customresourcedefinitions.apiextensions.k8s.io",
            "delete services.serving.knative.dev", "list nodes", "create pods/portforward in kourier-system"} <= rights
    every_object = {(o["kind"], (o.get("metadata") or {}).get("namespace") or "") for s in d.stages for o in s.objects}
    covered = {(r.resource, r.namespace) for r in plan.plan(d)[0].rights if r.verb == "patch"}
    assert {(plan.resource_of(k), ns) for k, ns in every_object} <= covered


def test_uninstall_rights_delete_what_the_stages_declare():
    rights = {str(r) for r in plan.plan(desired({"action": "uninstall"}))[0].rights}
    assert {"delete namespaces", "delete customresourcedefinitions.apiextensions.k8s.io",
            "delete services.serving.knative.dev", "delete leases.coordination.k8s.io in kube-system"} <= rights


def test_uninstall_rights_cover_every_knative_object_it_waits_for_and_its_webhook_probe():
    """The services step lists these cluster-wide and dry-runs a Service through Knative's webhook: a 403 there
    would come after the guard, so the preflight asks for them first."""
    rights = {str(r) for r in plan.plan(desired({"action": "uninstall"}))[0].rights}
    assert {"list revisions.serving.knative.dev", "list ingresses.networking.internal.knative.dev",
            "list serverlessservices.networking.internal.knative.dev",
            "list certificates.networking.internal.knative.dev",
            "list podautoscalers.autoscaling.internal.knative.dev", "list domainmappings.serving.knative.dev",
            "list routes.serving.knative.dev", "list configurations.serving.knative.dev",
            "delete domainmappings.serving.knative.dev", "delete routes.serving.knative.dev",
            "delete configurations.serving.knative.dev",
            "create services.serving.knative.dev in knative-serving"} <= rights
    from knfleet.kube import webhook
    assert webhook.PROBE_SERVICE["metadata"]["namespace"] == "knative-serving"


def test_smoke_policy_defaults_to_when_warm_for_services_that_can_scale_to_zero():
    d = desired({"models": [{}, {"name": "warm", "autoscaling": {"min_scale": 1}},
                            {"name": "off", "smoke": False}, {"name": "forced", "smoke": "always"}],
                 "smoke_cold": "yes"})
    smoke = next(s for s in plan.plan(d) if isinstance(s, plan.Smoke))
    assert [(t.ref.split("/")[1], t.policy) for t in smoke.services] == [
        ("knative-qwen7b-svc", "when-warm"), ("warm", "always"), ("forced", "always")]
    assert smoke.cold
    with pytest.raises(models.ModelError, match=r"smoke.*'sometimes'.*use always, when-warm or never"):
        models.from_data([{"smoke": "sometimes"}])
