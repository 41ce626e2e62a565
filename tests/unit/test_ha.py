"""High availability (knfleet.desired.ha): replicas, HPA minimums, the PDB warning."""

from __future__ import annotations

import pytest

from knfleet.desired import ha, plan, settings
from tests.unit.bundle_fixture import fixture_bundle


def desired(data: dict) -> plan.Desired:
    return plan.desired("@kube/c", settings.Data(data), bundle_loader=lambda *_: fixture_bundle())


def objs() -> list[dict]:
    return [
        {"kind": "Deployment", "metadata": {"name": "controller", "namespace": "knative-serving"}, "spec": {}},
        {"kind": "Deployment", "metadata": {"name": "webhook", "namespace": "knative-serving"}, "spec": {}},
        {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "webhook", "namespace": "knative-serving"},
         "spec": {"scaleTargetRef": {"name": "webhook"}, "minReplicas": 1, "maxReplicas": 2}},
        {"kind": "Deployment", "metadata": {"name": "proxy", "namespace": "knative-nginx"}, "spec": {"replicas": 1}},
        {"kind": "PodDisruptionBudget", "metadata": {"name": "webhook-pdb", "namespace": "knative-serving"},
         "spec": {"minAvailable": "80%"}},
    ]


def test_replicas_for_plain_deployments_hpa_minimums_for_scaled_ones():
    out = {(o["kind"], o["metadata"]["name"]): o for o in ha.transform(objs(), 3)}
    assert out[("Deployment", "controller")]["spec"]["replicas"] == 3
    assert "replicas" not in out[("Deployment", "webhook")]["spec"]  # the HPA owns its count
    assert out[("HorizontalPodAutoscaler", "webhook")]["spec"] == {"scaleTargetRef": {"name": "webhook"},
                                                                  "minReplicas": 3, "maxReplicas": 3}
    assert out[("Deployment", "proxy")]["spec"]["replicas"] == 1  # not Knative's control plane
    assert ha.transform(objs(), None) == objs()


@pytest.mark.parametrize(("replicas", "allowed"), [(1, 0), (2, 0), (4, 0), (5, 1), (10, 2)])
def test_80_percent_rounds_up(replicas, allowed):
    assert ha.allowed_disruptions("80%", replicas) == allowed


def test_pdb_warning_names_the_budget_and_the_count_that_drains():
    (w,) = ha.pdb_warnings(objs(), 2)
    assert "webhook-pdb (minAvailable 80%) allows no eviction at ha_replicas 2" in w and "ha_replicas >= 5" in w
    assert ha.pdb_warnings(objs(), 5) == [] and ha.pdb_warnings(objs(), None) == []


def test_the_setting_reaches_the_rendered_install():
    d = desired({"ha_replicas": "2"})
    kourier = next(s for s in d.stages if s.name == "kourier")
    assert any(o["kind"] == "HorizontalPodAutoscaler" and o["spec"]["minReplicas"] == 2 for o in kourier.objects) \
        or not any(o["kind"] == "HorizontalPodAutoscaler" for o in kourier.objects)
    with pytest.raises(settings.SettingsError, match="ha_replicas: 0 is not allowed"):
        settings.from_data(settings.Data({"ha_replicas": 0}))
