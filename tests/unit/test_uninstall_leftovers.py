"""A namespace an uninstall cannot remove: the objects in it holding finalizers are named (issue 13 part 6)."""

from __future__ import annotations

from knfleet.kube.client import Resource
from knfleet.run import operations

TERMINATING = {
    "kind": "Namespace", "metadata": {"name": "knative-serving"}, "spec": {"finalizers": ["kubernetes"]},
    "status": {"phase": "Terminating", "conditions": [
        {"type": "NamespaceContentRemaining", "status": "True",
         "message": "Some resources are remaining: configmaps. has 1 resource instances, leases.coordination.k8s.io "
                    "has 2 resource instances"},
        {"type": "NamespaceFinalizersRemaining", "status": "True",
         "message": "Some content in the namespace has finalizers remaining: knfleet.test/hold in 1 resource "
                    "instances"}]}}


class FakeCluster:
    def discovery(self):
        return {("v1", "ConfigMap"): Resource("", "v1", "configmaps", "ConfigMap", True),
                ("coordination.k8s.io/v1", "Lease"): Resource("coordination.k8s.io", "v1", "leases", "Lease", True)}

    def list(self, api_version, kind, namespace=None, selector=None):
        if kind == "ConfigMap":
            return [{"kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["knfleet.test/hold"]}},
                    {"kind": "ConfigMap", "metadata": {"name": "free"}}]
        return [{"kind": "Lease", "metadata": {"name": "l"}}]


def test_a_terminating_namespace_names_the_objects_holding_finalizers():
    assert operations.held_in_namespace(FakeCluster(), TERMINATING) == [
        "ConfigMap knative-serving/held holds finalizers ['knfleet.test/hold']"]
    (line,) = operations._left([TERMINATING], FakeCluster())
    assert line.startswith("Namespace knative-serving") and "ConfigMap knative-serving/held holds finalizers" in line


def test_without_the_content_condition_the_controllers_words_are_given():
    ns = {**TERMINATING, "status": {"conditions": [TERMINATING["status"]["conditions"][1]]}}
    assert operations.held_in_namespace(FakeCluster(), ns) == [
        "Some content in the namespace has finalizers remaining: knfleet.test/hold in 1 resource instances"]
