"""knfleet's operations and facts, driven by recorded kubectl output through pyinfra's @fake connector."""

from __future__ import annotations

import json

import pytest

from knfleet import operations, summary, waits
from knfleet.facts import CanI, KubeJson, ManifestDiff, ServerVersion, diff_objects
from tests.unit.fakehost import TARGET, run_op

DIFF_OUT = [
    "diff -u -N /tmp/LIVE-1/v1.ConfigMap.knative-serving.config-domain /tmp/MERGED-1/v1.ConfigMap.knative-serving."
    "config-domain",
    "--- /tmp/LIVE-1/v1.ConfigMap.knative-serving.config-domain",
    "+  example.org: \"\"",
    "diff -u -N /tmp/LIVE-1/apiextensions.k8s.io.v1.CustomResourceDefinition..services.serving.knative.dev /tmp/M",
]


def test_diff_objects_are_named_from_kubectl_diff_headers():
    assert diff_objects(DIFF_OUT) == ["ConfigMap/knative-serving/config-domain",
                                      "CustomResourceDefinition/services.serving.knative.dev"]


def test_manifest_diff_fact_tells_in_sync_differs_and_error_apart():
    fact = ManifestDiff()
    assert fact.process(["__rc=0"])["in_sync"] is True
    differs = fact.process([*DIFF_OUT, "__rc=1"])
    assert differs["in_sync"] is False and len(differs["objects"]) == 2
    err = fact.process(['error: resource mapping not found for name: "x" kind "Image"', "__rc=1"])
    assert err["in_sync"] is False and err["error"] is None  # exit 1 is "differs" for kubectl diff
    broken = fact.process(["The connection to the server 127.0.0.1:1 was refused", "__rc=255"])
    assert "refused" in broken["error"]


def test_server_version_and_can_i_facts():
    out = json.dumps({"clientVersion": {}, "serverVersion": {"gitVersion": "v1.32.5"}}).splitlines()
    assert ServerVersion().process([*out, "__rc=0"]) == {"version": "v1.32.5"}
    assert "error" in ServerVersion().process(["Unable to connect to the server: dial tcp", "__rc=1"])
    reviews = [  # kubectl prints one object per created review
        {"spec": {"resourceAttributes": {"verb": "create", "resource": "crds"}}, "status": {"allowed": True}},
        {"spec": {"resourceAttributes": {"verb": "create", "resource": "namespaces"}}, "status": {"allowed": False}},
    ]
    lines = "\n".join(json.dumps(r, indent=2) for r in reviews).splitlines()
    assert CanI().process([*lines, "__rc=0"]) == ["create namespaces"]
    assert "access review failed" in CanI().process(["error: Forbidden", "__rc=1"])[0]
    assert KubeJson().process(["__rc=0"]) == {"items": []}
    assert "error" in KubeJson().process(["Error from server (NotFound)", "__rc=1"])


def test_apply_manifest_applies_only_when_the_cluster_differs():
    ran, changed, ok = run_op(operations.apply_manifest, {" diff ": ["__rc=0"]},
                              target=TARGET, path="/run/core.yaml", stage="core")
    assert ok and not changed
    assert not [c for c in ran if " apply " in c]

    ran, changed, ok = run_op(operations.apply_manifest, {" diff ": [*DIFF_OUT, "__rc=1"]},
                              target=TARGET, path="/run/core.yaml", stage="core")
    applies = [c for c in ran if " apply " in c]
    assert ok and changed and len(applies) == 1
    assert "--server-side" in applies[0] and "--field-manager=knfleet" in applies[0]
    assert "--kubeconfig=/clusters/c1/kubeconfig" in applies[0] and "/run/core.yaml" in applies[0]


def test_preflight_fails_the_host_with_the_reason():
    summary.ERRORS.clear()
    _, _, ok = run_op(operations.preflight, {"version": ["Unable to connect to the server", "__rc=1"]},
                      target=TARGET)
    assert not ok
    assert "not reachable" in summary.ERRORS["@fake/c1"][0]

    summary.ERRORS.clear()
    old = json.dumps({"serverVersion": {"gitVersion": "v1.29.4"}})
    _, _, ok = run_op(operations.preflight, {"version": [old, "__rc=0"]}, target=TARGET)
    assert not ok and ">= v1.30.0" in summary.ERRORS["@fake/c1"][0]

    summary.ERRORS.clear()
    new = json.dumps({"serverVersion": {"gitVersion": "v1.32.5"}})
    denied = json.dumps({"items": [{"spec": {"resourceAttributes": {"verb": "create",
                                                                    "resource": "customresourcedefinitions"}},
                                    "status": {"allowed": False}}]})
    _, _, ok = run_op(operations.preflight, {"version": [new, "__rc=0"], "SelfSubjectAccessReview": [denied, "__rc=0"]},
                      target=TARGET)
    assert not ok and "customresourcedefinitions" in summary.ERRORS["@fake/c1"][0]

    summary.ERRORS.clear()
    allowed = json.dumps({"spec": {"resourceAttributes": {"verb": "create", "resource": "namespaces"}},
                          "status": {"allowed": True}})
    ran, changed, ok = run_op(operations.preflight, {"version": [new, "__rc=0"],
                                                     "SelfSubjectAccessReview": [allowed, "__rc=0"]}, target=TARGET)
    assert ok and not changed


def _deployment(available: bool) -> dict:
    return {"metadata": {"name": "controller", "namespace": "knative-serving", "generation": 1},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": int(available),
                       "conditions": [{"type": "Available", "status": "True" if available else "False"}]}}


def test_deployments_available_waits_only_when_something_is_not_ready(monkeypatch):
    calls = []
    monkeypatch.setattr(waits, "deployments_available", lambda *a: calls.append(a))
    listing = json.dumps({"items": [_deployment(True)]})
    _, changed, ok = run_op(operations.deployments_available, {"get deployments": [listing, "__rc=0"]},
                            target=TARGET, namespace="knative-serving")
    assert ok and not changed and calls == []
    listing = json.dumps({"items": [_deployment(False)]})
    _, changed, ok = run_op(operations.deployments_available, {"get deployments": [listing, "__rc=0"]},
                            target=TARGET, namespace="knative-serving", timeout=5)
    assert ok and changed and calls == [(TARGET, "knative-serving", 5)]


def test_delete_manifest_is_a_no_op_when_nothing_exists():
    ran, changed, ok = run_op(operations.delete_manifest, {" get ": ["__rc=0"]},
                              target=TARGET, path="/run/proxy.yaml", stage="proxy")
    assert ok and not changed and not [c for c in ran if " delete " in c]
    listing = json.dumps({"items": [{"kind": "Namespace", "metadata": {"name": "knative-nginx"}}]})
    ran, changed, ok = run_op(operations.delete_manifest, {" get ": [listing, "__rc=0"]},
                              target=TARGET, path="/run/proxy.yaml", stage="proxy")
    deletes = [c for c in ran if " delete " in c]
    assert ok and changed and "--ignore-not-found" in deletes[0]


@pytest.mark.parametrize(("text", "want"), [("v1.32.5", (1, 32)), ("v1.30.0-gke.100", (1, 30)), ("v1.29+", (1, 29))])
def test_parse_version(text, want):
    assert operations.parse_version(text) == want


def test_gpu_capacity_warns_without_changing_anything(caplog):
    nodes = json.dumps({"items": [{"status": {"allocatable": {"nvidia.com/gpu": "2"}}}, {"status": {}}]})
    ran, changed, ok = run_op(operations.gpu_capacity, {"get nodes": [nodes, "__rc=0"]}, target=TARGET,
                              services=(("llm/small", 1), ("llm/huge", 8)))
    assert ok and not changed
    assert "llm/huge asks for 8" in caplog.text and "llm/small" not in caplog.text.split("asks for")[0]
